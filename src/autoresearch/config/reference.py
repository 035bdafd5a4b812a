"""The configuration reference, rendered from the schema: what the docs show is what is checked.

`markdown()` is what docs/hooks/config_reference.py puts into docs/reference/config.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, get_args, get_origin

from autoresearch.config.schema import REQUIRED_SECTIONS, TaskConfig
from autoresearch.config.validate import CROSS_KEY_RULES, SECTIONS, UNION_TYPES, bounds_text, hints

EXAMPLE = '''\
[task]
name = "solver"
editable = ["src/solver.py"]
readonly = ["bench.py"]
run = "python bench.py"                # "python" is autoresearch's own interpreter
env = ["HF_HOME"]                      # passed on to runs; nothing else of yours is

[metric]
name = "seconds"                       # the run prints a line `seconds: 1.234`
goal = "minimize"
constraints = ["peak_vram_mb <= 60000"]

[budget]
seconds = 60                           # given to the run as AUTORESEARCH_BUDGET_S

[verdict]
confirm = "sequential"                 # a timing is noisy: confirm apparent wins

[agent]
kind = "claude"

[loop]
hours = 8
plateau = 30

[executor]
slots = 2
devices = ["0", "1"]
'''


def type_text(tp: Any) -> str:
    """A key's type as the reference shows it."""
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(f'`"{a}"`' for a in get_args(tp))
    if origin is list:
        return "list of strings"
    if origin in UNION_TYPES:
        return " or ".join(type_text(a) for a in get_args(tp) if a is not type(None)) + " (optional)"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))


def toml_text(value: Any) -> str:
    """A default as it would be written in the file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    return repr(value)


def default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return "unset" if f.default is None else f"`{toml_text(f.default)}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{toml_text(f.default_factory())}`"
    return "**required**"


def what_text(f: dataclasses.Field) -> str:
    """The field's doc, and its rules in words."""
    text = f.metadata["doc"]
    bounds = bounds_text(f.metadata)
    if bounds:
        text += f" Must {bounds}."
    for rule in (f.metadata.get("check"), f.metadata.get("each")):
        if rule is not None:
            text += " " + first_paragraph(rule)
    return text.replace("|", "\\|")


def first_paragraph(function: Any) -> str:
    """A function's docstring up to its first blank line, as one line."""
    return " ".join((function.__doc__ or "").strip().split("\n\n")[0].split())


def section_markdown(name: str, cls: type) -> str:
    doc = next(f for f in dataclasses.fields(TaskConfig) if f.name == name).metadata["doc"]
    required = " This section is required." if name in REQUIRED_SECTIONS else ""
    rows = [f"## `[{name}]`", "", doc + required, "", "| key | type | default | what it does |", "|---|---|---|---|"]
    types_of = hints(cls)
    for f in dataclasses.fields(cls):
        rows.append(f"| `{f.name}` | {type_text(types_of[f.name])} | {default_text(f)} | {what_text(f)} |")
    return "\n".join(rows)


def markdown() -> str:
    """The whole reference: one table per section, in the file's order, the rules across keys,
    and an example file."""
    parts = [section_markdown(name, cls) for name, cls in SECTIONS.items()]
    rules = [f"- {first_paragraph(rule)}" for rule in CROSS_KEY_RULES]
    parts.append("## Rules across keys\n\nBesides each key's own type and range:\n\n" + "\n".join(rules))
    parts.append("Unknown sections and keys, wrong types (`true` is no number), NaN or infinite numbers and "
                 "missing required keys are errors too. Each error names the file and the key, and nothing is "
                 "written (exit 2).")
    parts.append(f"## An example\n\n```toml\n{EXAMPLE}```")
    return "\n\n".join(parts) + "\n"
