"""Which names a Python scope binds, and how often.

Knob discovery (`knobs`) needs this to tell a constant from a variable: a name assigned once
in its scope, and never declared ``global``/``nonlocal`` by code that could rebind it, is
set once; anything else changes at run time and is no knob. The counting is a libcst
visitor that stays inside one scope (nested functions, classes and lambdas are their own).
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst


class ScopeAssignments(cst.CSTVisitor):
    """Counts the assignments to each name in one scope (nested functions, classes and lambdas
    are other scopes), and collects the names declared `global`/`nonlocal` anywhere inside."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.declared: set[str] = set()
        self._depth = 0

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._depth += 1

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._depth -= 1

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._depth += 1

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self._depth -= 1

    def visit_Lambda(self, node: cst.Lambda) -> None:
        self._depth += 1

    def leave_Lambda(self, node: cst.Lambda) -> None:
        self._depth -= 1

    def _target(self, node: cst.BaseExpression) -> None:
        if self._depth:
            return
        if isinstance(node, cst.Name):
            self.count[node.value] = self.count.get(node.value, 0) + 1
        elif isinstance(node, (cst.Tuple, cst.List)):
            for element in node.elements:
                self._target(element.value)
        elif isinstance(node, cst.StarredElement):
            self._target(node.value)

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self._target(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._target(node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._target(node.target)

    def visit_For(self, node: cst.For) -> None:
        self._target(node.target)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._target(node.target)

    def visit_Global(self, node: cst.Global) -> None:
        self.declared.update(item.name.value for item in node.names)

    def visit_Nonlocal(self, node: cst.Nonlocal) -> None:
        self.declared.update(item.name.value for item in node.names)


def count_assignments(node: cst.CSTNode) -> ScopeAssignments:
    """The assignments of the scope whose body is NODE."""
    counter = ScopeAssignments()
    node.visit(counter)
    return counter


@dataclass
class Scope:
    """One scope as knob discovery walks it: what it is called in messages and what it binds."""

    kind: str  # "module", "class" or "function"
    name: str  # "" for the module; "SortedList", "SortedList.__init__()", ...
    counter: ScopeAssignments
    declared: set[str]  # names that code elsewhere rebinds (`global`/`nonlocal`)
