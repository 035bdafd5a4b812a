"""Load and validate `autoresearch.toml` into typed config.

Every error names the file and the key (``autoresearch.toml: [metric] goal: ...``) so a
user can fix it without reading this code. Loading never writes anything.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import hashlib
import json
import glob
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "autoresearch.toml"
STATE_DIR = ".autoresearch"


from .errors import ConfigError  # noqa: E402 - re-exported: `from autoresearch.task import ConfigError`


@dataclass(frozen=True)
class TaskSection:
    name: str
    editable: list[str]
    run: str
    readonly: list[str] = field(default_factory=list)
    evaluate: str = ""  # optional harness-owned second phase; its metrics count
    program: str = "program.md"
    setup: str = ""  # idempotent one-time preparation (data, tokenizer), run before a baseline
    description: str = ""  # one line, shown by `autoresearch templates`
    env: list[str] = field(default_factory=list)  # variable names passed on to runs (all others stay out)


@dataclass(frozen=True)
class MetricSection:
    name: str
    goal: Literal["minimize", "maximize"] = "minimize"
    constraints: list[str] = field(default_factory=list)  # e.g. "peak_vram_mb <= 60000"
    holdout: str = ""  # a second metric computed on data the agent never sees


@dataclass(frozen=True)
class ResourceSection:
    name: str = ""  # e.g. peak_vram_mb; empty: memory_gb is 0.0
    scale: float = 1.0 / 1024.0  # multiplies the printed value into memory_gb


@dataclass(frozen=True)
class BudgetSection:
    seconds: float = 300.0  # passed to the run as AUTORESEARCH_BUDGET_S
    timeout: float = 0.0  # hard kill of the process group; 0 means 2 x seconds + 60
    evaluate_timeout: float = 0.0  # for the evaluate phase; 0 means the same as timeout
    log_max_bytes: int = 4 * 1024 * 1024  # run.log keeps its tail beyond this
    grace: float = -1.0  # start-up allowance: a run phase longer than seconds + grace is over-budget
    keep_outputs: int = 5  # run output folders kept besides the best's (older ones are pruned)
    max_new_file_bytes: int = 50 * 1024 * 1024  # a bigger new file is quarantined, never committed; also caps
    # one experiment's quarantine copies (scratch.collect)

    @property
    def allowance(self) -> float:
        """The declared start-up allowance: `grace`, or a quarter of the budget (at least 30 s)."""
        return self.grace if self.grace >= 0 else max(30.0, 0.25 * self.seconds)

    @property
    def hard_timeout(self) -> float:
        return self.timeout if self.timeout > 0 else 2 * self.seconds + 60

    @property
    def hard_evaluate_timeout(self) -> float:
        return self.evaluate_timeout if self.evaluate_timeout > 0 else self.hard_timeout


@dataclass(frozen=True)
class VerdictSection:
    # the smallest improvement worth keeping, applied once: by the screen when confirm = "none",
    # as the confirmation test's margin otherwise (verdict.threshold says which)
    min_delta: float = 0.0
    relative: bool = False  # min_delta is a fraction of |best| instead of absolute
    repeats: int = 1  # run a candidate k times and compare medians
    # "sequential" is shorthand for confirm = "paired" + test = "sequential" (normalized on load);
    # "reference": against the best's stored runs, re-running the side with fewer runs (verdict.flow)
    confirm: Literal["none", "paired", "sequential", "reference"] = "none"
    test: Literal["bootstrap", "sign", "sequential"] = "bootstrap"
    confidence: float = 0.95
    max_runs: int = 12  # cap on confirmation runs per side in paired mode
    seed: int = 0  # seeds the bootstrap so verdicts are reproducible
    simplicity: bool = False  # keep a not-worse change that removes lines
    # confirm = "reference": runs of the baseline and of a new best (its confirmation runs count)
    # before it is the reference; later candidates add runs of the best where they need them
    reference_runs: int = 4


@dataclass(frozen=True)
class AgentSection:
    kind: str = "tune"  # claude | codex | aider | gemini | opencode | command:... | api | tune
    model: str = ""
    provider: Literal["openai", "anthropic"] = "openai"
    base_url: str = ""
    api_key_env: str = ""  # default OPENAI_API_KEY / ANTHROPIC_API_KEY
    timeout: float = 1800.0  # seconds one proposal may take
    fix_attempts: int = 2  # crash repairs a model-driven proposer gets
    max_failures: int = 5  # consecutive proposer failures that stop the loop
    history: int = 15  # rows of the experiment table in the brief
    extra_args: list[str] = field(default_factory=list)
    temperature: float = 0.7
    max_tokens: int = 8192


@dataclass(frozen=True)
class LoopSection:
    max_experiments: int = 0  # 0: no limit
    hours: float = 0.0
    target: Union[float, None] = None
    plateau: int = 0


@dataclass(frozen=True)
class SandboxSection:
    kind: Literal["auto", "none", "bwrap"] = "auto"
    network: bool = False
    train_data: list[str] = field(default_factory=list)  # paths bound read-only into the run
    eval_data: list[str] = field(default_factory=list)  # only the evaluate phase sees these


@dataclass(frozen=True)
class ExecutorSection:
    kind: Literal["local", "ray"] = "local"
    slots: int = 1
    devices: list[str] = field(default_factory=list)  # one CUDA_VISIBLE_DEVICES value per slot
    cpus: list[str] = field(default_factory=list)  # optional core set per slot, e.g. "0-3"
    address: str = ""  # ray: "auto", "ray://host:10001", or empty for a local cluster
    num_gpus: float = 0.0
    num_cpus: float = 1.0


@dataclass(frozen=True)
class TaskConfig:
    task: TaskSection
    metric: MetricSection
    resource: ResourceSection = field(default_factory=ResourceSection)
    budget: BudgetSection = field(default_factory=BudgetSection)
    verdict: VerdictSection = field(default_factory=VerdictSection)
    agent: AgentSection = field(default_factory=AgentSection)
    loop: LoopSection = field(default_factory=LoopSection)
    sandbox: SandboxSection = field(default_factory=SandboxSection)
    executor: ExecutorSection = field(default_factory=ExecutorSection)
    root: Path = Path(".")
    path: Path = Path(CONFIG_NAME)

    @property
    def maximize(self) -> bool:
        return self.metric.goal == "maximize"

    def editable_files(self, root: Path | None = None) -> list[str]:
        return expand_globs(root or self.root, self.task.editable)

    def readonly_files(self, root: Path | None = None) -> list[str]:
        return expand_globs(root or self.root, self.task.readonly)

    def harness_files(self, root: Path | None = None) -> list[str]:
        """Files hashed at lock: the read-only files plus the config and program.md."""
        base = root or self.root
        extra = [CONFIG_NAME]
        if (base / self.task.program).exists():
            extra.append(self.task.program)
        return sorted(set(self.readonly_files(base)) | set(extra))


_SECTIONS: dict[str, type] = {
    name: tp for name, tp in get_type_hints(TaskConfig).items() if name not in ("root", "path")
}
_REQUIRED_SECTIONS = ("task", "metric")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|<|>|==|!=)\s*(-?[\d.eE+\-]+)\s*$")


def expand_globs(root: Path, patterns: list[str]) -> list[str]:
    """Paths (relative, posix) of the files under root that match any pattern."""
    found: set[str] = set()
    for pattern in patterns:
        literal = root / pattern
        if literal.is_file() or literal.is_symlink():  # a name like `data[1].csv` is itself, not a glob
            found.add(Path(pattern).as_posix())
        for match in glob.glob(pattern, root_dir=root, recursive=True):
            if (root / match).is_file() or (root / match).is_symlink():
                found.add(Path(match).as_posix())
    return sorted(found)


def parse_constraint(text: str) -> tuple[str, str, float]:
    match = _CONSTRAINT.match(text)
    if not match:
        raise ValueError(f"expected 'name OP number' with OP one of <= >= < > == !=, got {text!r}")
    return match.group(1), match.group(2), float(match.group(3))


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin is list:
        return "a list of strings"
    if origin is Union:
        return " or ".join(_describe(a) for a in get_args(tp) if a is not type(None))
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _check_value(where: str, tp: Any, value: Any) -> Any:
    origin = get_origin(tp)
    ok: bool
    if origin is Literal:
        ok = value in get_args(tp)
    elif origin is list:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif origin is Union:
        for option in get_args(tp):
            if option is type(None):
                continue
            try:
                return _check_value(where, option, value)
            except ConfigError:
                pass
        ok = False
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            if not math.isfinite(value):  # nan disables every comparison, inf every limit
                raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    elif tp is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - every field type is handled above
        ok = True
    if not ok:
        raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")
    return value


def _build_section(path: Path, name: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}]: expected a table, got {table!r}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{path}: [{name}] {key}: unknown key (known keys: {known})")
        values[key] = _check_value(f"{path}: [{name}] {key}", hints[key], value)
    for key, f in fields.items():
        if key not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}: [{name}] {key}: missing required key")
    return cls(**values)


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    """A section's field types (get_type_hints evaluates every annotation string on each call:
    ~1 ms of every command for the six sections)."""
    return get_type_hints(cls)


def parse_config(data: dict[str, Any], path: Path, root: Path) -> TaskConfig:
    """Validate a parsed TOML document into a TaskConfig (does not check the files on disk)."""
    for key in data:
        if key not in _SECTIONS:
            known = ", ".join(f"[{k}]" for k in _SECTIONS)
            raise ConfigError(f"{path}: [{key}]: unknown section (known sections: {known})")
    for name in _REQUIRED_SECTIONS:
        if name not in data:
            raise ConfigError(f"{path}: [{name}]: missing required section")
    sections = {name: _build_section(path, name, cls, data[name]) for name, cls in _SECTIONS.items() if name in data}
    if "verdict" in sections:
        sections["verdict"] = _normalize_verdict(path, data["verdict"], sections["verdict"])
    config = TaskConfig(**sections, root=root, path=path)
    _check_semantics(config)
    return config


SEQUENTIAL_MAX_RUNS = 20  # the sequential test stops nulls early, so a higher cap costs little
# confirm = "reference" defaults: confidence 0.97 (Ville's bound is loose for a sequential test: the
# A/A cell of benchmarks/false_keeps.py measures 0.3 false keeps per 100 at this setting, under the
# 1-in-100 goal), at most 20 runs of a candidate: the best runs beside it where its reference is
# thin, and a real gain against a thin reference needs more runs than 12
REFERENCE_CONFIDENCE = 0.97
REFERENCE_MAX_RUNS = 20


def _normalize_verdict(path: Path, table: dict[str, Any], v: VerdictSection) -> VerdictSection:
    """`confirm = "sequential"` is the short spelling of paired confirmation by the sequential
    test (with max_runs = 20 unless written); after loading, the rest of the code sees only
    confirm = "none" | "paired" | "reference" (the last with confidence 0.97 and max_runs 20
    unless written)."""
    if v.confirm == "sequential":
        if "test" in table and v.test != "sequential":
            raise ConfigError(f'{path}: [verdict] test: {v.test!r} contradicts confirm = "sequential" '
                              f'(write confirm = "paired" to use test = {v.test!r}, or drop the test key)')
        max_runs = v.max_runs if "max_runs" in table else SEQUENTIAL_MAX_RUNS
        return dataclasses.replace(v, confirm="paired", test="sequential", max_runs=max_runs)
    if v.confirm == "reference":
        if "test" in table:
            raise ConfigError(f'{path}: [verdict] test: confirm = "reference" has its own test '
                              f'(drop the test key, or write confirm = "paired" to use test = {v.test!r})')
        return dataclasses.replace(v, confidence=v.confidence if "confidence" in table else REFERENCE_CONFIDENCE,
                                   max_runs=v.max_runs if "max_runs" in table else REFERENCE_MAX_RUNS)
    if v.test == "sequential" and v.confirm == "none":
        raise ConfigError(f'{path}: [verdict] test: "sequential" is a confirmation test, but confirm = "none" '
                          f'(write confirm = "sequential", or confirm = "paired" with this test)')
    return v


def _check_semantics(config: TaskConfig) -> None:
    path = config.path
    if not config.task.editable:
        raise ConfigError(f"{path}: [task] editable: must name at least one file")
    if not config.task.run.strip():
        raise ConfigError(f"{path}: [task] run: must be a command")
    _check_task_env(path, config.task.env)
    for i, text in enumerate(config.metric.constraints):
        try:
            parse_constraint(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: [metric] constraints[{i}]: {exc}") from None
    b = config.budget
    if b.seconds <= 0:
        raise ConfigError(f"{path}: [budget] seconds: must be positive, got {b.seconds}")
    if b.timeout < 0 or b.evaluate_timeout < 0:
        raise ConfigError(f"{path}: [budget] timeout: must not be negative")
    if b.keep_outputs < 0:
        raise ConfigError(f"{path}: [budget] keep_outputs: must not be negative, got {b.keep_outputs}")
    if b.log_max_bytes < 4096:
        raise ConfigError(f"{path}: [budget] log_max_bytes: must be at least 4096, got {b.log_max_bytes}")
    if b.timeout and b.timeout < b.seconds:
        raise ConfigError(f"{path}: [budget] timeout: must be at least [budget] seconds ({b.seconds}), got {b.timeout}")
    v = config.verdict
    if v.repeats < 1:
        raise ConfigError(f"{path}: [verdict] repeats: must be at least 1, got {v.repeats}")
    if v.min_delta < 0:
        raise ConfigError(f"{path}: [verdict] min_delta: must not be negative, got {v.min_delta}")
    if not 0.5 <= v.confidence < 1:
        raise ConfigError(f"{path}: [verdict] confidence: must be in [0.5, 1), got {v.confidence}")
    if v.max_runs < 2:
        raise ConfigError(f"{path}: [verdict] max_runs: must be at least 2, got {v.max_runs}")
    if v.reference_runs < 3:
        raise ConfigError(f"{path}: [verdict] reference_runs: must be at least 3, got {v.reference_runs}")
    if config.executor.slots < 1:
        raise ConfigError(f"{path}: [executor] slots: must be at least 1, got {config.executor.slots}")
    if config.agent.max_failures < 1:
        raise ConfigError(f"{path}: [agent] max_failures: must be at least 1")
    for key in ("timeout", "history", "fix_attempts", "max_tokens"):
        if getattr(config.agent, key) < 0:
            raise ConfigError(f"{path}: [agent] {key}: must not be negative")
    check_limits(config.loop, f"{path}: [loop]")
    for key in ("editable", "readonly"):
        for pattern in getattr(config.task, key):
            problem = path_problem(pattern)
            if problem:
                raise ConfigError(f"{path}: [task] {key}: {pattern!r} {problem}")
    # Files on disk: the editable globs must match, and nothing is both editable and read-only.
    # Once this exact config is locked, a missing file is the guard's business (a deleted
    # harness file is a rejected experiment, not a broken config), so the check is skipped.
    if _is_locked(config):
        return
    root = config.root
    for pattern in config.task.editable:
        if not expand_globs(root, [pattern]):
            raise ConfigError(f"{path}: [task] editable: {pattern!r} matches no file under {root}")
    for pattern in config.task.readonly:
        if not expand_globs(root, [pattern]):
            raise ConfigError(f"{path}: [task] readonly: {pattern!r} matches no file under {root}")
    both = set(config.editable_files()) & (set(config.readonly_files()) | {CONFIG_NAME, config.task.program})
    if both:
        raise ConfigError(f"{path}: [task] editable: {', '.join(sorted(both))} is also read-only (readonly, the config or program.md)")
    for name in config.editable_files():
        if name.startswith(STATE_DIR + "/") or name == "results.tsv":
            raise ConfigError(f"{path}: [task] editable: {name} belongs to autoresearch and cannot be editable")


def path_problem(pattern: str) -> str:
    """Why a path pattern cannot name files of the task ('' when it can)."""
    parts = Path(pattern).parts
    if Path(pattern).is_absolute() or pattern.startswith("~"):
        return "must be relative to the task folder"
    if ".." in parts:
        return "must stay inside the task folder (no '..')"
    if parts and parts[0] in (".git", STATE_DIR):
        return f"must not point into {parts[0]}/"
    return ""


def check_limits(loop: "LoopSection", where: str) -> None:
    """The loop's stop conditions (from the config or the command line) must be usable numbers."""
    if loop.max_experiments < 0:
        raise ConfigError(f"{where} max_experiments: must not be negative (0 means no limit), got {loop.max_experiments}")
    if not math.isfinite(loop.hours) or loop.hours < 0:
        raise ConfigError(f"{where} hours: must be a finite number >= 0 (0 means no limit), got {loop.hours}")
    if loop.target is not None and not math.isfinite(loop.target):
        raise ConfigError(f"{where} target: must be a finite number, got {loop.target}")
    if loop.plateau < 0:
        raise ConfigError(f"{where} plateau: must not be negative (0 means no limit), got {loop.plateau}")


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_task_env(path: Path, names: list[str]) -> None:
    """`[task] env` lists variable names (not NAME=value, not a pattern)."""
    for i, name in enumerate(names):
        if not _ENV_NAME.match(name):
            hint = " (list the name only; the value comes from your environment)" if "=" in name else ""
            raise ConfigError(f"{path}: [task] env[{i}]: {name!r} is not an environment variable name; "
                              f"expected letters, digits and _ not starting with a digit{hint}")


def _is_locked(config: TaskConfig) -> bool:
    lock = config.root / STATE_DIR / "lock.json"
    try:
        files = json.loads(lock.read_text())["files"]
        return files.get(CONFIG_NAME) == hashlib.sha256(config.path.read_bytes()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError):
        return False


# Locked configs already read by this process (and, forked from `autoresearch serve`, by its
# copies), by the identity of the config file and the lock: a TaskConfig is frozen, and a locked
# config's checks depend on those two files only (see _check_semantics).
_LOCKED: dict[tuple, TaskConfig] = {}


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """What changes whenever a file does (inode, size, mtime and ctime in ns), for caches of
    what was read from it; None when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def load_config(root: Path | str = ".") -> TaskConfig:
    """Read ROOT/autoresearch.toml. Raises ConfigError with the file and key on any problem."""
    root = Path(root).resolve()
    path = root / CONFIG_NAME
    lock = root / STATE_DIR / "lock.json"
    key = (str(root), file_identity(path), file_identity(lock))
    cached = _LOCKED.get(key) if key[1] and key[2] else None
    if cached is not None:
        return cached
    if not path.exists():
        raise ConfigError(f"{path}: not found (run `autoresearch init` first, or cd into a task folder)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8: {exc}") from None
    config = parse_config(data, path, root)
    if key[1] and key[2] and _is_locked(config) and key == (str(root), file_identity(path), file_identity(lock)):
        _LOCKED[key] = config  # unchanged while it was read: the key names what was parsed
    return config


def find_root(start: Path | str = ".") -> Path:
    """The nearest folder at or above START that holds autoresearch.toml (START itself if none)."""
    here = Path(start).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_NAME).exists():
            return candidate
    return here


def with_overrides(config: TaskConfig, section: str, **changes: Any) -> TaskConfig:
    """A copy of config with some keys of one section replaced (CLI flags over the file)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return config
    updated = dataclasses.replace(getattr(config, section), **changes)
    return dataclasses.replace(config, **{section: updated})


