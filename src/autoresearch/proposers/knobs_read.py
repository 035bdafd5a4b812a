"""The knob values of a file, read fast: what `tune` needs of every past commit.

`knobs.knob_values` parses with libcst (a concrete syntax tree with positions, which knob
discovery and editing need): 0.3-1.5 s for a 300-line train.py, once per past experiment, and
tune's proposal waited for it (issue 23: 3.5-10.5 s per proposal, as long as a run). Reading old
values needs neither comments nor positions, so this reads them with Python's own parser (`ast`,
tens of times faster) under the same rules: a statement `NAME = <literal>` directly in a module,
class or function body, its name bound once in that scope and not declared global/nonlocal, its
value `spaces.literal_value` of the code as written. The result is a superset of knob_values
(every such name, not only UPPER_CASE or commented ones: the caller looks up the knobs it has);
tests/proposers/test_knobs.py holds the two equal on the templates.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from autoresearch.proposers.spaces import NotLiteral, literal_value

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _scopes(tree: ast.Module) -> dict[int, tuple[dict[str, int], set[str]]]:
    """For each scope (the module, every class and function; by id of its node): how often each
    name is bound directly in it (nested scopes aside), and the names declared global/nonlocal
    anywhere inside it (nested functions too: they rebind at run time). One pass over the tree."""
    found: dict[int, tuple[dict[str, int], set[str]]] = {}

    def bind(node: ast.AST, count: dict[str, int]) -> None:
        if isinstance(node, ast.Name):
            count[node.id] = count.get(node.id, 0) + 1
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                bind(element, count)
        elif isinstance(node, ast.Starred):
            bind(node.value, count)

    def visit(node: ast.AST, stack: list[tuple[dict[str, int], set[str]]]) -> None:
        count = stack[-1][0]
        if isinstance(node, ast.Assign):
            for t in node.targets:
                bind(t, count)
        elif isinstance(node, ast.AugAssign) or (isinstance(node, ast.AnnAssign) and node.value is not None):
            bind(node.target, count)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            bind(node.target, count)
        elif isinstance(node, ast.NamedExpr):
            bind(node.target, count)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for _, declared in stack:
                declared.update(node.names)
        if isinstance(node, _SCOPES):
            found[id(node)] = ({}, set())
            stack = [*stack, found[id(node)]]
        for child in ast.iter_child_nodes(node):
            visit(child, stack)

    found[id(tree)] = ({}, set())
    for stmt in tree.body:
        visit(stmt, [found[id(tree)]])
    return found


def read_values(source: str) -> dict[str, Any]:
    """Qualified name -> literal value of every set-once `NAME = <literal>` of SOURCE's module,
    class and function bodies. Raises SyntaxError for a file Python cannot parse."""
    tree = ast.parse(source)
    values: dict[str, Any] = {}
    # the lines as the parser counts them, in UTF-8 (its column offsets are bytes), split once:
    # ast.get_source_segment splits the whole file again at every call
    lines = [line.encode() for line in re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", source)]

    def segment(node: ast.expr) -> str | None:
        end_line, end_col = node.end_lineno, node.end_col_offset
        if end_line is None or end_col is None:
            return None
        first, last = node.lineno - 1, end_line - 1
        if first == last:
            return lines[first][node.col_offset:end_col].decode()
        return (lines[first][node.col_offset:] + b"".join(lines[first + 1:last]) + lines[last][:end_col]).decode()

    scopes = _scopes(tree)

    def walk(owner: ast.AST, body: list[ast.stmt], scope: str, checks_declared: bool) -> None:
        count, declared = scopes[id(owner)]
        for stmt in body:
            if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                is_class = isinstance(stmt, ast.ClassDef)
                name = stmt.name + ("" if is_class else "()")
                walk(stmt, stmt.body, f"{scope}.{name}".lstrip("."), not is_class)  # a class body: no such check
                continue
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                node, value = stmt.targets[0], stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                node, value = stmt.target, stmt.value
            else:
                continue
            if not isinstance(node, ast.Name) or count.get(node.id) != 1 or (checks_declared and node.id in declared):
                continue
            code = segment(value)
            if code is None:
                continue
            try:
                values[f"{scope}.{node.id}" if scope else node.id] = literal_value(code)
            except NotLiteral:
                continue

    walk(tree, tree.body, "", True)  # a module's name declared global in a function changes at run time
    return values


__all__ = ["read_values"]
