"""The shape of `autoresearch.toml`: one frozen dataclass per section, one field per key.

Each field says everything about its key in one place: the annotation is its type (a
``Literal`` lists the allowed choices), the default is what an absent key means, and the
metadata (built by `meta`) holds the one-sentence doc and the rules on its value. The generic
checker in `validate` reads these, and `reference` renders them as the documentation, so the
checks and the docs cannot drift apart. Rules that span several keys are in `validate`.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

CONFIG_NAME = "autoresearch.toml"
STATE_DIR = ".autoresearch"

SEQUENTIAL_MAX_RUNS = 20  # the sequential test stops nulls early, so a higher cap costs little
# confirm = "reference" defaults: confidence 0.97 (Ville's bound is loose for a sequential test: the
# A/A cell of benchmarks/false_keeps.py measures 0.3 false keeps per 100 at this setting, under the
# 1-in-100 goal), at most 20 runs of a candidate: the best runs beside it where its reference is
# thin, and a real gain against a thin reference needs more runs than 12
REFERENCE_CONFIDENCE = 0.97
REFERENCE_MAX_RUNS = 20


def meta(doc: str, *, ge: float | None = None, gt: float | None = None, lt: float | None = None,
         note: str = "", check: Callable[[Any], str] | None = None,
         each: Callable[[Any], str] | None = None) -> dict[str, Any]:
    """A field's metadata: DOC (one sentence: what the key does, what its default means) and
    the rules on its value. ge / gt / lt bound a number (NOTE is added to the message when one
    fails); CHECK gets the whole value and EACH every item of a list, and return what is wrong
    with it ('' when nothing is). Their docstrings say in words what they accept: the reference
    shows them."""
    rules = {"ge": ge, "gt": gt, "lt": lt, "check": check, "each": each}
    return {"doc": doc, **{k: v for k, v in rules.items() if v is not None}, **({"note": note} if note else {})}


# -- rules on single values (what `meta`'s check and each point to) ----------------------------

_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|<|>|==|!=)\s*(-?[\d.eE+\-]+)\s*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_constraint(text: str) -> tuple[str, str, float]:
    match = _CONSTRAINT.match(text)
    if not match:
        raise ValueError(f"expected 'name OP number' with OP one of <= >= < > == !=, got {text!r}")
    return match.group(1), match.group(2), float(match.group(3))


def constraint_problem(text: str) -> str:
    """Each is `name OP number`, with OP one of <= >= < > == !=."""
    try:
        parse_constraint(text)
    except ValueError as exc:
        return str(exc)
    return ""


def env_name_problem(name: str) -> str:
    """Each is a variable name (letters, digits and _, not starting with a digit), not NAME=value
    and not a pattern."""
    if _ENV_NAME.match(name):
        return ""
    hint = " (list the name only; the value comes from your environment)" if "=" in name else ""
    return (f"{name!r} is not an environment variable name; "
            f"expected letters, digits and _ not starting with a digit{hint}")


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


def paths_problem(patterns: list[str]) -> str:
    """Each pattern is relative and stays inside the task folder, out of `.git/` and `.autoresearch/`."""
    for pattern in patterns:
        problem = path_problem(pattern)
        if problem:
            return f"{pattern!r} {problem}"
    return ""


def editable_problem(patterns: list[str]) -> str:
    """At least one pattern; each is relative and stays inside the task folder, out of `.git/` and
    `.autoresearch/`."""
    return paths_problem(patterns) if patterns else "must name at least one file"


def command_problem(command: str) -> str:
    """Must not be blank."""
    return "" if command.strip() else "must be a command"


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


# -- the sections -------------------------------------------------------------------------------

_NO_LIMIT = " (0 means no limit)"


@dataclass(frozen=True)
class TaskSection:
    """What the agent may edit, what it may not, and how a run is made."""

    name: str = field(metadata=meta("The task's name, shown in reports and on the run branch's table."))
    editable: list[str] = field(metadata=meta(
        "Globs (relative to the task folder) of the files a proposer may change; each must match a file.",
        check=editable_problem))
    run: str = field(metadata=meta(
        "The shell command of one run; it prints `name: value` lines, one of them the metric.",
        check=command_problem))
    readonly: list[str] = field(default_factory=list, metadata=meta(
        "Globs of the harness files, hashed at `lock` so that a candidate that changes one is rejected.",
        check=paths_problem))
    evaluate: str = field(default="", metadata=meta(
        "An optional second phase owned by the harness, run after `run`; its metrics count (empty: none)."))
    program: str = field(default="program.md", metadata=meta(
        "The agent's instructions, part of the harness."))
    setup: str = field(default="", metadata=meta(
        "An idempotent one-time preparation (data, tokenizer) run with your environment before a baseline "
        "(empty: none)."))
    description: str = field(default="", metadata=meta("One line, shown by `autoresearch templates`."))
    env: list[str] = field(default_factory=list, metadata=meta(
        "Names of environment variables passed on to runs; all others stay out.", each=env_name_problem))
    model: str = field(default="", metadata=meta(
        "The evaluate phase's model process: a harness command that imports the editable code, loads what the "
        "run saved and answers the scorer's forward requests. The harness starts `model_processes` of them in "
        "the run phase's sandbox (no evaluation data) beside `evaluate`, each joined to it by one socket "
        "($AUTORESEARCH_MODEL_FD there, $AUTORESEARCH_MODEL_FDS in `evaluate`), so the process that computes "
        "the metric never runs the agent's code (empty: none; needs `evaluate`)."))
    model_processes: int = field(default=2, metadata=meta(
        "How many model processes `model` starts: two lets the scorer send a causality probe and the row it "
        "is compared with to different processes, so no state a model keeps can match them up.", ge=1))


@dataclass(frozen=True)
class MetricSection:
    """Which printed number counts, and which way is better."""

    name: str = field(metadata=meta("The metric: the run prints a line `name: value`."))
    goal: Literal["minimize", "maximize"] = field(default="minimize", metadata=meta(
        "Which direction is better."))
    constraints: list[str] = field(default_factory=list, metadata=meta(
        'Conditions on any printed metric, such as "peak_vram_mb <= 60000"; a candidate that breaks one is '
        "discarded.", each=constraint_problem))
    holdout: str = field(default="", metadata=meta(
        "A second metric computed on data the agent never sees, shown beside the metric (empty: none)."))


@dataclass(frozen=True)
class ResourceSection:
    """The resource column of results.tsv."""

    name: str = field(default="", metadata=meta(
        "A printed metric that goes into results.tsv's memory_gb column, e.g. peak_vram_mb (empty: memory_gb "
        "is 0.0)."))
    scale: float = field(default=1.0 / 1024.0, metadata=meta(
        "Multiplies the printed value into gigabytes (the default turns megabytes into gigabytes)."))


@dataclass(frozen=True)
class BudgetSection:
    """Time, disk and output limits of one run."""

    seconds: float = field(default=300.0, metadata=meta(
        "The budget of one run's run phase, in seconds on `clock`, given to it as AUTORESEARCH_BUDGET_S.", gt=0))
    clock: Literal["wall", "cpu"] = field(default="wall", metadata=meta(
        'What a budget second is. "wall": elapsed time, the original\'s meaning (the best model for this '
        'hardware; right for a dedicated GPU). "cpu": CPU seconds of the run\'s whole process tree, measured by '
        "the harness through a cgroup of its own (right for a laptop, a shared machine or a noisy VM: a "
        "neighbour's load and sleeping are not charged; cache and memory-bandwidth contention still are). "
        "The run reads it as AUTORESEARCH_BUDGET_CLOCK and its own CPU time from AUTORESEARCH_CPU_USAGE."))
    timeout: float = field(default=0.0, metadata=meta(
        "Wall seconds after which the run's process group is killed, on either clock (0: twice the budget plus "
        '60; four times on clock = "cpu", where a busy machine stretches the wall time of a CPU second).', ge=0))
    evaluate_timeout: float = field(default=0.0, metadata=meta(
        "The same hard limit for the evaluate phase (0: the same as timeout).", ge=0))
    log_max_bytes: int = field(default=4 * 1024 * 1024, metadata=meta(
        "run.log keeps only its tail beyond this many bytes.", ge=4096))
    grace: float = field(default=-1.0, metadata=meta(
        "The start-up allowance, in seconds on `clock`: a run phase that takes more than seconds plus grace is "
        "rejected as over-budget. Declare what the task's start-up costs (imports, data loading, a compile "
        "step); negative: a fifth of the budget (at least 1 s), so a run that trains 1.3 times its budget is "
        "rejected whatever its start-up."))
    keep_outputs: int = field(default=5, metadata=meta(
        "How many run output folders are kept besides the best's; older ones are pruned.", ge=0))
    max_new_file_bytes: int = field(default=50 * 1024 * 1024, metadata=meta(
        "A bigger new file is quarantined and never committed; also caps one experiment's quarantine copies."))

    @property
    def allowance(self) -> float:
        """The declared start-up allowance: `grace`, or a fifth of the budget (at least 1 s)."""
        return self.grace if self.grace >= 0 else max(1.0, 0.2 * self.seconds)

    @property
    def hard_timeout(self) -> float:
        if self.timeout > 0:
            return self.timeout
        return (4 if self.clock == "cpu" else 2) * self.seconds + 60

    @property
    def hard_evaluate_timeout(self) -> float:
        return self.evaluate_timeout if self.evaluate_timeout > 0 else self.hard_timeout


@dataclass(frozen=True)
class VerdictSection:
    """When a candidate is kept (see the Verdicts page)."""

    min_delta: float = field(default=0.0, metadata=meta(
        'The smallest improvement worth keeping, applied once: by the screen when confirm = "none", as the '
        "confirmation test's margin otherwise.", ge=0))
    relative: bool = field(default=False, metadata=meta(
        "Whether min_delta is a fraction of the best value instead of an absolute amount."))
    repeats: int = field(default=1, metadata=meta(
        "Runs of each candidate whose median is compared (1: a single run).", ge=1))
    confirm: Literal["none", "paired", "sequential", "reference"] = field(default="none", metadata=meta(
        'How an apparent win is confirmed: "none" keeps on the screen alone, "paired" re-runs candidate and '
        'best side by side, "sequential" is paired with test = "sequential", "reference" compares with the '
        "best's stored runs."))
    test: Literal["bootstrap", "sign", "sequential"] = field(default="bootstrap", metadata=meta(
        'The statistical test of paired confirmation (confirm = "paired" only).'))
    confidence: float = field(default=0.95, metadata=meta(
        "The confidence a confirmation needs to keep a candidate (default 0.95; "
        f'{REFERENCE_CONFIDENCE} under confirm = "reference").', ge=0.5, lt=1))
    max_runs: int = field(default=12, metadata=meta(
        f"The cap on confirmation runs per side (default 12; {SEQUENTIAL_MAX_RUNS} with the sequential test "
        f'and {REFERENCE_MAX_RUNS} under confirm = "reference").', ge=2))
    seed: int = field(default=0, metadata=meta("Seeds the bootstrap, so that verdicts are reproducible."))
    simplicity: bool = field(default=False, metadata=meta(
        "Whether a change that is not worse and removes lines is kept too."))
    reference_runs: int = field(default=4, metadata=meta(
        'Under confirm = "reference": the runs of the baseline and of a new best before they are the '
        "reference.", ge=3))


@dataclass(frozen=True)
class AgentSection:
    """Who proposes the changes."""

    kind: str = field(default="tune", metadata=meta(
        "The proposer: claude, codex, aider, gemini, opencode, command:..., api, or tune (the built-in "
        "optimizer)."))
    model: str = field(default="", metadata=meta("The model the proposer uses (empty: its own default)."))
    provider: Literal["openai", "anthropic"] = field(default="openai", metadata=meta(
        "The API the api proposer speaks."))
    base_url: str = field(default="", metadata=meta(
        "The api proposer's OpenAI-compatible endpoint (empty: the provider's own)."))
    api_key_env: str = field(default="", metadata=meta(
        "The variable holding the api proposer's key (empty: OPENAI_API_KEY or ANTHROPIC_API_KEY)."))
    timeout: float = field(default=1800.0, metadata=meta("Seconds one proposal may take.", ge=0))
    fix_attempts: int = field(default=2, metadata=meta(
        "Tries a model-driven proposer gets at repairing a crash.", ge=0))
    max_failures: int = field(default=5, metadata=meta(
        "Proposer failures in a row that stop the loop.", ge=1))
    max_cost: float = field(default=0.0, metadata=meta(
        "Stop the loop once its proposals cost this much, summed as the agents report it (US dollars; "
        "attempts that report no cost, e.g. Codex and Gemini CLI, add nothing; 0: no limit).", ge=0, note=_NO_LIMIT))
    history: int = field(default=15, metadata=meta(
        "Rows of the experiment table shown in the agent's brief.", ge=0))
    extra_args: list[str] = field(default_factory=list, metadata=meta(
        "Arguments appended to the coding agent's command line."))
    temperature: float = field(default=0.7, metadata=meta("The sampling temperature passed to an API model."))
    max_tokens: int = field(default=8192, metadata=meta("The answer length limit passed to an API model.", ge=0))


@dataclass(frozen=True)
class LoopSection:
    """When `autoresearch run` stops (the command line's flags override these)."""

    max_experiments: int = field(default=0, metadata=meta(
        "Stop after this many experiments (0: no limit).", ge=0, note=_NO_LIMIT))
    hours: float = field(default=0.0, metadata=meta(
        "Stop after this many hours (0: no limit).", ge=0, note=_NO_LIMIT))
    target: float | None = field(default=None, metadata=meta(
        "Stop when the best reaches this value (unset: no target)."))
    plateau: int = field(default=0, metadata=meta(
        "Stop after this many experiments in a row without a keep (0: no limit).", ge=0, note=_NO_LIMIT))


@dataclass(frozen=True)
class SandboxSection:
    """What a run may see and reach."""

    kind: Literal["auto", "none", "bwrap"] = field(default="auto", metadata=meta(
        'The sandbox of runs and agents: "auto" uses bubblewrap when it works, "bwrap" requires it, "none" '
        "goes without."))
    network: bool = field(default=False, metadata=meta("Whether the run and evaluate phases may use the network."))
    train_data: list[str] = field(default_factory=list, metadata=meta(
        "Folders bound read-only into the run phase."))
    eval_data: list[str] = field(default_factory=list, metadata=meta(
        "Folders hidden from the agent and the run phase, shown only to the evaluate phase."))


@dataclass(frozen=True)
class ExecutorSection:
    """Where experiments run, and how many at once."""

    kind: Literal["local", "ray"] = field(default="local", metadata=meta(
        'Where runs happen: "local" on this machine, "ray" on a Ray cluster.'))
    slots: int = field(default=1, metadata=meta("Experiments in flight at once.", ge=1))
    devices: list[str] = field(default_factory=list, metadata=meta(
        "One CUDA_VISIBLE_DEVICES value per slot (empty: the devices are not pinned)."))
    cpus: list[str] = field(default_factory=list, metadata=meta(
        'An optional core set per slot, e.g. "0-3" (empty: not pinned).'))
    address: str = field(default="", metadata=meta(
        'The Ray cluster: "auto", "ray://host:10001", a head\'s address, or empty for a local instance.'))
    num_gpus: float = field(default=0.0, metadata=meta("GPUs one experiment takes on Ray (0.5 packs two on a GPU)."))
    num_cpus: float = field(default=1.0, metadata=meta("CPUs one experiment takes on Ray."))


@dataclass(frozen=True)
class TaskConfig:
    """The whole file, with the folder it was read from. The sections' docs are the reference's."""

    task: TaskSection = field(metadata=meta("What the agent may edit, what it may not, and how a run is made."))
    metric: MetricSection = field(metadata=meta("Which printed number counts, and which way is better."))
    resource: ResourceSection = field(default_factory=ResourceSection, metadata=meta(
        "An optional resource figure recorded beside the metric."))
    budget: BudgetSection = field(default_factory=BudgetSection, metadata=meta(
        "The limits of one run: time, log size, outputs kept, new files."))
    verdict: VerdictSection = field(default_factory=VerdictSection, metadata=meta(
        "When a candidate is kept: the screen, the confirmation and its statistics."))
    agent: AgentSection = field(default_factory=AgentSection, metadata=meta(
        "The proposer that makes the changes, and its limits."))
    loop: LoopSection = field(default_factory=LoopSection, metadata=meta(
        "When `autoresearch run` stops; its flags override these."))
    sandbox: SandboxSection = field(default_factory=SandboxSection, metadata=meta(
        "What runs may see and reach."))
    executor: ExecutorSection = field(default_factory=ExecutorSection, metadata=meta(
        "Where experiments run, and how many at once."))
    root: Path = field(default=Path("."), metadata=meta("The task folder (set on load; not a key of the file)."))
    path: Path = field(default=Path(CONFIG_NAME), metadata=meta("The config file read (set on load; not a key)."))

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


REQUIRED_SECTIONS = ("task", "metric")
NOT_SECTIONS = ("root", "path")  # TaskConfig's fields that are no section of the file
