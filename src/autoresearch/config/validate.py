"""One generic checker that walks the schema's dataclass fields, and the few rules across keys.

The checker takes each key's type from its annotation and its rules from its metadata (see
`schema.meta`); nothing here names a key of a section, except the rules across keys at the
bottom, each a small named function. Every error names the file, the section and the key
(``autoresearch.toml: [budget] seconds: must be positive, got -1.0``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from pathlib import Path
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

from autoresearch.config.schema import (
    CONFIG_NAME,
    NOT_SECTIONS,
    REFERENCE_CONFIDENCE,
    REFERENCE_MAX_RUNS,
    REQUIRED_SECTIONS,
    SEQUENTIAL_MAX_RUNS,
    STATE_DIR,
    TaskConfig,
    VerdictSection,
    expand_globs,
)
from autoresearch.errors import ConfigError

UNION_TYPES = (Union, types.UnionType)
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


@functools.lru_cache(maxsize=None)
def hints(cls: type) -> dict[str, Any]:
    """A dataclass's field types (get_type_hints evaluates every annotation string on each call:
    ~1 ms of every command for the sections)."""
    return get_type_hints(cls)


SECTIONS: dict[str, type] = {name: tp for name, tp in hints(TaskConfig).items() if name not in NOT_SECTIONS}


def describe(tp: Any) -> str:
    """A type as an error message says what was expected."""
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if tp == list[str]:
        return "a list of strings"
    if origin in UNION_TYPES:
        return " or ".join(describe(a) for a in get_args(tp) if a is not type(None))
    return _NAMES.get(tp, str(tp))


def _is_a(tp: Any, value: Any) -> bool:
    origin = get_origin(tp)
    if origin is Literal:
        return value in get_args(tp)
    if tp == list[str]:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if tp is int or tp is float:  # bool is an int in Python, but `true` is no number in a config
        return isinstance(value, (int, float) if tp is float else int) and not isinstance(value, bool)
    if tp in (str, bool):
        return isinstance(value, tp)
    raise TypeError(f"the schema has a field of type {tp!r}, which the checker does not know")


def check_value(where: str, tp: Any, value: Any) -> Any:
    """VALUE as a field of type TP holds it (an integer given for a number becomes a float);
    a ConfigError naming WHERE when it is not one."""
    if get_origin(tp) in UNION_TYPES:  # only `X | None`: TOML has no null, so a value is an X
        if value is None:
            return None
        (tp,) = (a for a in get_args(tp) if a is not type(None))
    if not _is_a(tp, value):
        raise ConfigError(f"{where}: expected {describe(tp)}, got {value!r}")
    if tp is float:
        value = float(value)
        if not math.isfinite(value):  # nan disables every comparison, inf every limit
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    return value


def bounds_text(metadata: Any) -> str:
    """The bounds of a number as "must ..." goes on ('' when it has none)."""
    ge, gt, lt = metadata.get("ge"), metadata.get("gt"), metadata.get("lt")
    if ge is not None and lt is not None:
        return f"be in [{ge}, {lt})"
    if ge == 0 and gt is None and lt is None:
        return "not be negative"
    if gt == 0 and ge is None and lt is None:
        return "be positive"
    parts = [f"be {word} {bound}" for word, bound in (("at least", ge), ("greater than", gt), ("less than", lt))
             if bound is not None]
    return " and ".join(parts)


def _within(metadata: Any, value: Any) -> bool:
    ge, gt, lt = metadata.get("ge"), metadata.get("gt"), metadata.get("lt")
    return (ge is None or value >= ge) and (gt is None or value > gt) and (lt is None or value < lt)


_BOUNDS = ("ge", "gt", "lt")
_RULES = (*_BOUNDS, "check", "each")


def check_rules(where: str, metadata: Any, value: Any) -> None:
    """The rules in a field's metadata (see `schema.meta`), on a value of the right type."""
    if value is not None and any(k in metadata for k in _BOUNDS) and not _within(metadata, value):
        raise ConfigError(f"{where}: must {bounds_text(metadata)}{metadata.get('note', '')}, got {value}")
    check: Callable[[Any], str] | None = metadata.get("check")
    problem = check(value) if check else ""
    if problem:
        raise ConfigError(f"{where}: {problem}")
    each: Callable[[Any], str] | None = metadata.get("each")
    if each:
        for i, item in enumerate(value):
            problem = each(item)
            if problem:
                raise ConfigError(f"{where}[{i}]: {problem}")


@functools.lru_cache(maxsize=None)
def _plan(cls: type) -> tuple[tuple[str, Any, Any, bool], ...]:
    """Each field of a section: name, type, metadata, and whether the metadata holds rules."""
    types_of = hints(cls)
    return tuple((f.name, types_of[f.name], f.metadata, any(k in f.metadata for k in _RULES))
                 for f in dataclasses.fields(cls))


def check_fields(section: Any, where: str, *, types: bool = True) -> None:
    """Every field of a section instance: its type (unless TYPES is false: the values were
    checked as they were read), then its rules. WHERE is the prefix of the messages
    (``autoresearch.toml: [loop]``), followed by the key."""
    cls: type = type(section)
    for name, tp, metadata, ruled in _plan(cls):
        value = getattr(section, name)
        if types:
            value = check_value(f"{where} {name}", tp, value)
        if ruled:
            check_rules(f"{where} {name}", metadata, value)


def build_section(path: Path, name: str, cls: type, table: Any) -> Any:
    """The section CLS from its TOML table: unknown keys, wrong types and missing required keys
    are errors (in the table's order, then the fields')."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}]: expected a table, got {table!r}")
    types_of = hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{path}: [{name}] {key}: unknown key (known keys: {known})")
        values[key] = check_value(f"{path}: [{name}] {key}", types_of[key], value)
    for key, f in fields.items():
        if key not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}: [{name}] {key}: missing required key")
    return cls(**values)


def build_config(data: dict[str, Any], path: Path, root: Path) -> TaskConfig:
    """A parsed TOML document as a TaskConfig, every key and rule checked except the files on
    disk (see `check_files`)."""
    for key in data:
        if key not in SECTIONS:
            known = ", ".join(f"[{k}]" for k in SECTIONS)
            raise ConfigError(f"{path}: [{key}]: unknown section (known sections: {known})")
    for name in REQUIRED_SECTIONS:
        if name not in data:
            raise ConfigError(f"{path}: [{name}]: missing required section")
    sections = {name: build_section(path, name, cls, data[name]) for name, cls in SECTIONS.items() if name in data}
    if "verdict" in sections:
        sections["verdict"] = normalize_verdict(path, data["verdict"], sections["verdict"])
    config = TaskConfig(**sections, root=root, path=path)
    for name in SECTIONS:  # the types were checked by build_section (and the defaults' by the tests)
        check_fields(getattr(config, name), f"{path}: [{name}]", types=False)
    timeout_covers_budget(config)
    model_needs_evaluate(config)
    return config


# -- rules across keys ------------------------------------------------------------------------

def normalize_verdict(path: Path, table: dict[str, Any], v: VerdictSection) -> VerdictSection:
    """`[verdict] test` agrees with `confirm`: `test = "sequential"` needs a confirmation,
    `confirm = "sequential"` (short for `"paired"` with the sequential test) takes no other test,
    and `confirm = "reference"` no test key.

    After loading, the rest of the code sees only confirm = "none" | "paired" | "reference"
    (sequential: max_runs 20 unless written; reference: confidence 0.97 and max_runs 20
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


def timeout_covers_budget(config: TaskConfig) -> None:
    """`[budget] timeout`, when set, is at least `[budget] seconds`."""
    b = config.budget
    if b.timeout and b.timeout < b.seconds:
        raise ConfigError(f"{config.path}: [budget] timeout: must be at least [budget] seconds ({b.seconds}), "
                          f"got {b.timeout}")


def globs_match(config: TaskConfig) -> None:
    """Every `[task] editable` and `readonly` pattern matches a file of the task folder (not checked once
    the config is locked: a missing harness file is then a rejected experiment)."""
    for key in ("editable", "readonly"):
        for pattern in getattr(config.task, key):
            if not expand_globs(config.root, [pattern]):
                raise ConfigError(f"{config.path}: [task] {key}: {pattern!r} matches no file under {config.root}")


def editable_is_not_harness(config: TaskConfig) -> None:
    """No file is both editable and read-only (`readonly`, the config, the `program` file)."""
    both = set(config.editable_files()) & (set(config.readonly_files()) | {CONFIG_NAME, config.task.program})
    if both:
        raise ConfigError(f"{config.path}: [task] editable: {', '.join(sorted(both))} is also read-only "
                          f"(readonly, the config or program.md)")


def editable_is_not_state(config: TaskConfig) -> None:
    """No editable file belongs to autoresearch (`.autoresearch/`, `results.tsv`)."""
    for name in config.editable_files():
        if name.startswith(STATE_DIR + "/") or name == "results.tsv":
            raise ConfigError(f"{config.path}: [task] editable: {name} belongs to autoresearch and cannot be editable")


def model_needs_evaluate(config: TaskConfig) -> None:
    """`[task] model` serves an evaluate phase: without `evaluate` nothing would talk to it."""
    if config.task.model and not config.task.evaluate:
        raise ConfigError(f"{config.path}: [task] model: needs [task] evaluate, the scorer it answers "
                          f"(add evaluate, or drop model)")


FILE_RULES = (globs_match, editable_is_not_harness, editable_is_not_state)
CROSS_KEY_RULES: tuple[Callable[..., Any], ...] = (normalize_verdict, timeout_covers_budget, model_needs_evaluate,
                                                   *FILE_RULES)


def check_files(config: TaskConfig) -> None:
    """The rules on the files on disk (skipped for a locked config: see `task.parse_config`)."""
    for rule in FILE_RULES:
        rule(config)
