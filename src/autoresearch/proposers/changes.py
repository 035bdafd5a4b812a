"""What an experiment changed, read from its diff: the knobs it moved and the code regions it
touched. The research log (`digest`) groups experiments by these.

A knob is a module- or class-level UPPER_CASE constant (`knobs.py`); its move is `NAME: old -> new`. A code
region is the innermost function or class whose source changed (`train.py:Block.forward`), or
`train.py (top level)` for other module-level lines, or the path itself for a file that is not
Python (or does not parse). Computed once per experiment by the loop (stored in the record's
`details["changed"]`); `change_of` reads it back, or works it out from git for an older record.
"""

from __future__ import annotations

import ast
from typing import Any

from autoresearch.git.workspace import GitError, Workspace
from autoresearch.journal.records import Experiment
from autoresearch.proposers.knobs_read import read_values

TOP_LEVEL = "(top level)"


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else repr(value)


def constants(source: str) -> dict[str, Any]:
    """Qualified name -> value of the module- and class-level UPPER_CASE constants with a literal
    value: the knobs, their values read by the one reader tune uses too (`knobs_read`, Python's
    own parser: fast enough once per experiment)."""
    return {name: value for name, value in read_values(source).items()
            if "()" not in name and name.rsplit(".", 1)[-1].isupper()}


def _segment(lines: list[str], node: ast.AST) -> str:
    """NODE's whole lines (ast.get_source_segment splits the source anew on every call)."""
    return "".join(lines[node.lineno - 1:node.end_lineno])  # type: ignore[attr-defined]


def _defs(tree: ast.Module, source: str) -> dict[str, str]:
    """Qualified name -> source of every function and class (nested ones too)."""
    found: dict[str, str] = {}
    lines = source.splitlines(keepends=True)

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{node.name}"
                found[name] = _segment(lines, node)
                walk(node.body, name + ".")

    walk(tree.body, "")
    return found


def _top_level(tree: ast.Module, source: str, knobs: set[str]) -> list[str]:
    """The module's statements other than defs, classes and knob assignments, as source."""
    kept = []
    lines = source.splitlines(keepends=True)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) else []
        if targets and all(isinstance(t, ast.Name) and t.id in knobs for t in targets):
            continue
        kept.append(_segment(lines, node))
    return kept


def python_changes(old: str, new: str, path: str) -> dict[str, Any]:
    """The knob moves and the regions changed between two versions of a Python file."""
    try:
        old_tree, new_tree = ast.parse(old), ast.parse(new)
    except (SyntaxError, ValueError):
        return {"knobs": {}, "regions": [path]}
    old_knobs, new_knobs = constants(old), constants(new)
    moved = {name: [_jsonable(old_knobs.get(name)), _jsonable(new_knobs.get(name))]
             for name in sorted(set(old_knobs) | set(new_knobs)) if old_knobs.get(name) != new_knobs.get(name)}
    old_defs, new_defs = _defs(old_tree, old), _defs(new_tree, new)
    changed = {name for name in set(old_defs) | set(new_defs) if old_defs.get(name) != new_defs.get(name)}
    # the innermost: a method's edit changes its class's source too; name the method only
    # (knob lines inside a class are the knob's move, not an edit of the class)
    innermost = sorted(name for name in changed if not any(other.startswith(name + ".") for other in changed))
    class_knobs = {name.rsplit(".", 1)[0] for name in moved if "." in name}
    regions = [f"{path}:{name}" for name in innermost if name not in class_knobs or
               _without_knobs(old_defs.get(name, ""), new_defs.get(name, ""))]
    top = set(old_knobs) | set(new_knobs)
    if _top_level(old_tree, old, top) != _top_level(new_tree, new, top):
        regions.append(f"{path} {TOP_LEVEL}")
    return {"knobs": moved, "regions": regions}


def _without_knobs(old: str, new: str) -> bool:
    """Whether two versions of a class differ in more than their constant lines."""
    def body(text: str) -> list[str]:
        return [line for line in text.splitlines() if not _is_constant_line(line)]
    return body(old) != body(new)


def _is_constant_line(line: str) -> bool:
    head = line.strip().split("=", 1)[0].split(":", 1)[0].strip()
    return "=" in line and head.isidentifier() and head.isupper()


def changes_between(ws: Workspace, old: str, new: str) -> dict[str, Any]:
    """The knobs moved and regions changed from commit or tree OLD to NEW (one git process for
    the listing, one for the files)."""
    paths = [c.path for c in ws.changes(old, new)]
    texts = ws.read_texts([f"{rev}:{path}" for path in paths if path.endswith(".py") for rev in (old, new)])
    knobs: dict[str, Any] = {}
    regions: list[str] = []
    for path in paths:
        if not path.endswith(".py"):
            regions.append(path)
            continue
        before, after = texts.get(f"{old}:{path}"), texts.get(f"{new}:{path}")
        if before is None or after is None:
            regions.append(path)
            continue
        found = python_changes(before, after, path)
        knobs.update(found["knobs"])
        regions += found["regions"]
    return {"knobs": knobs, "regions": regions}


def change_of(exp: Experiment, ws: Workspace | None = None) -> dict[str, Any]:
    """EXP's knob moves and regions: from its record, else from git (when WS is given)."""
    known = exp.details.get("changed")
    if isinstance(known, dict):
        return known
    if ws is None or not exp.commit_sha or not exp.parent or exp.is_baseline:
        return {"knobs": {}, "regions": []}
    try:
        return changes_between(ws, exp.parent, exp.commit_sha)
    except GitError:  # an unreadable old commit is one ungrouped experiment, not a failed brief
        return {"knobs": {}, "regions": []}
