"""Whether the process that computes the metric can run editable code: a static check of imports.

The scorer is the command whose numbers count: `[task] evaluate`, or `run` when there is no
evaluate phase. Its Python script, and every module of the task folder that script imports
(followed through the task's own modules), must not be an editable file: module-level code in
an imported file runs inside the scorer and can rewrite its loss, its checks or `print`. A
model process (`[task] model`) is not the scorer and may import editable files; that is its job.

A plain reading of the source (`import x`, `from x import y`, `importlib.import_module("x")`,
`__import__("x")`), no code run: it catches the common mistake, not a harness that hides an
import on purpose (the harness is yours). A harness file that is also the program of its own
guarded child process (fastfunc's bench.py) marks the child's import with a comment on its
line, `scorer-check: child process`, and the check passes over it.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

from autoresearch.config.task import TaskConfig

CHILD_MARK = "scorer-check: child process"  # on an import line: it runs in a child, not in the scorer


def _imported_names(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    lines = source.splitlines()
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if line and CHILD_MARK in lines[line - 1]:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in ("import_module", "__import__"):
                names.add(node.args[0].value)
    return names


def _module_file(root: Path, name: str) -> str | None:
    """The task-folder file (relative path) that module NAME would load from the folder, if any."""
    parts = name.split(".")
    for candidate in (Path(*parts).with_suffix(".py"), Path(*parts) / "__init__.py"):
        if (root / candidate).is_file():
            return candidate.as_posix()
    return None


def scorer_scripts(config: TaskConfig) -> list[str]:
    """The task-folder Python files named in the scorer's command."""
    command = config.task.evaluate or config.task.run
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return [w for w in words if w.endswith(".py") and (config.root / w).is_file()]


def scorer_reaches_editable(config: TaskConfig) -> list[str]:
    """One sentence per way the scorer runs an editable file (empty: it runs none)."""
    editable = set(config.editable_files())
    problems: list[str] = []
    for script in scorer_scripts(config):
        chains = {script: [script]}
        todo = [script]
        while todo:
            current = todo.pop()
            if current in editable:
                chain = " -> ".join(chains[current])
                what = "is" if len(chains[current]) == 1 else "imports"
                problems.append(f"the scorer {what} an editable file ({chain}): its module-level code would run "
                                f"where the metric is computed; load it in a model process instead "
                                f"(see the guide: Writing an evaluate phase)")
                continue
            source = (config.root / current).read_text(encoding="utf-8", errors="replace")
            for name in sorted(_imported_names(source)):
                found = _module_file(config.root, name)
                if found and found not in chains:
                    chains[found] = [*chains[current], found]
                    todo.append(found)
    return problems
