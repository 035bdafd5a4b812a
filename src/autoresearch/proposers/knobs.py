"""Knobs: the module-level UPPER_CASE constants of an editable Python file, found and edited.

A knob is a top-level ``NAME = <literal>`` (or ``NAME: type = <literal>``) whose value is a
number, a string, a boolean, None or a tuple of those; constant arithmetic such as ``2**19``
or ``8 * 1024`` counts as a number. Anything computed from other names, assigned more than
once, or assigned inside a function or class is not a knob.

A trailing ``# search: ...`` comment narrows the space a knob is searched in:

    LEARNING_RATE = 0.05   # search: log(0.001, 0.5)
    DEPTH = 8              # search: int(4, 16)
    MOMENTUM = 0.9         # search: float(0.5, 0.99)
    WINDOW = "SSSL"        # search: ["SSSL", "LLLL", "SL"]
    BATCH = 2**19          # search: pow2(2**16, 2**20)
    PEAK_FLOPS = 989e12    # search: fixed

Without one, the space comes from the value (see `default_space`). Files are parsed and
rewritten with libcst, a concrete syntax tree, so an edit changes the value's characters and
nothing else: formatting, comments and blank lines stay byte for byte.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

KNOB_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
SEARCH_COMMENT = re.compile(r"\bsearch:\s*(.*?)\s*$")
DEFAULT_FLOAT_FACTOR = 4.0  # positive floats: log-uniform within x/÷ this factor
DEFAULT_INT_FRACTION = 0.5  # positive ints: ± this fraction of the value ...
DEFAULT_INT_MIN_STEP = 2  # ... or ± this many, whichever is wider (never below 1)
DEFAULT_POW2_STEPS = 2  # 2**k: exponents k-2 .. k+2
SIGNIFICANT_DIGITS = 3  # sampled floats are rounded so they read well in a diff
MAX_EXPONENT = 256  # constant arithmetic refuses anything larger (no 10**10**10)

KINDS = ("fixed", "choices", "float", "int", "pow2")


class KnobError(ValueError):
    """A file that cannot be parsed, or a malformed ``# search:`` comment. Names file and line."""


class NotLiteral(ValueError):
    """The expression is not constant arithmetic over literals."""


@dataclass(frozen=True)
class Space:
    """Where a knob is searched. `low`/`high` are values (for pow2: the powers themselves)."""

    kind: str = "fixed"  # one of KINDS
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    explicit: bool = False  # given by a `# search:` comment

    @property
    def tunable(self) -> bool:
        if self.kind == "fixed":
            return False
        if self.kind == "choices":
            return len(self.choices) > 1
        return self.high > self.low

    def describe(self) -> str:
        if self.kind == "choices":
            return "[" + ", ".join(repr(c) for c in self.choices) + "]"
        if self.kind == "fixed":
            return "fixed"
        if self.kind == "float":
            return f"{'log' if self.log else 'float'}({self.low:g}, {self.high:g})"
        if self.kind == "int":
            return f"{'log' if self.log else 'int'}({int(self.low)}, {int(self.high)})"
        return f"pow2(2**{int(math.log2(self.low))}, 2**{int(math.log2(self.high))})"


@dataclass(frozen=True)
class Knob:
    name: str
    path: str  # the file, relative to the task root
    line: int  # 1-based, for messages
    value: Any
    source: str  # the value as written, e.g. "2**19"
    space: Space
    stmt_index: int  # position in the module body, for editing
    small_index: int  # position within a `A = 1; B = 2` line

    @property
    def tunable(self) -> bool:
        return self.space.tunable


# -- safe evaluation of constant expressions ------------------------------------------------------

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a ** b,
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        if node.value is None or isinstance(node.value, (bool, int, float, str)):
            return node.value
        raise NotLiteral(f"unsupported constant {node.value!r}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _evaluate(node.operand)
        if not _is_number(operand):
            raise NotLiteral("sign of a non-number")
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if not (_is_number(left) and _is_number(right)):
            raise NotLiteral("arithmetic on a non-number")
        if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or abs(left) > 2**64):
            raise NotLiteral("power too large")
        try:
            result = _BINOPS[type(node.op)](left, right)
        except (ArithmeticError, ValueError) as exc:
            raise NotLiteral(str(exc)) from None
        if isinstance(result, complex):
            raise NotLiteral("complex result")
        return result
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e) for e in node.elts)
    raise NotLiteral(f"not a literal: {type(node).__name__}")


def literal_value(code: str) -> Any:
    """The value of constant arithmetic over literals (`2**19`, `-3e-4`, `(0.8, 0.95)`)."""
    try:
        tree = ast.parse("(" + code + "\n)", mode="eval")
    except SyntaxError as exc:
        raise NotLiteral(str(exc)) from None
    if any(isinstance(n, ast.Starred) for n in ast.walk(tree)):
        raise NotLiteral("starred expression")
    return _evaluate(tree.body)


def _power_of_two_form(code: str) -> tuple[str, int] | None:
    """For a value written `2**k` (any spacing), the text between 2 and k, and k."""
    match = re.fullmatch(r"\s*2(\s*\*\*\s*)(\d+)\s*", code)
    return (match.group(1), int(match.group(2))) if match else None


def _is_power_of_two(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1 and value & (value - 1) == 0


# -- spaces ---------------------------------------------------------------------------------------

def default_space(value: Any, source: str = "") -> Space:
    """The space of a knob without a `# search:` comment, derived from its value.

    Positive floats: log-uniform within x/÷ 4. Positive ints: ±50% or ±2, whichever is wider,
    never below 1; a value written `2**k` searches the powers 2**(k-2) .. 2**(k+2). Booleans:
    both. Strings, tuples, None, zero and negative numbers stay fixed (give them a comment).
    """
    if isinstance(value, bool):
        return Space("choices", choices=(True, False))
    if isinstance(value, int):
        pow2 = _power_of_two_form(source)
        if pow2 is not None and pow2[1] >= 1:
            k = pow2[1]
            return Space("pow2", low=2 ** max(0, k - DEFAULT_POW2_STEPS), high=2 ** (k + DEFAULT_POW2_STEPS))
        if value <= 0:
            return Space("fixed")
        step = max(DEFAULT_INT_MIN_STEP, math.ceil(value * DEFAULT_INT_FRACTION))
        return Space("int", low=max(1, value - step), high=value + step)
    if isinstance(value, float):
        if value > 0 and math.isfinite(value):
            return Space("float", low=value / DEFAULT_FLOAT_FACTOR, high=value * DEFAULT_FLOAT_FACTOR, log=True)
        return Space("fixed")
    return Space("fixed")


def parse_search(text: str, value: Any) -> Space:
    """The space a `# search:` comment's text describes, checked against the knob's value."""
    text = text.strip()
    if text in ("fixed", "none", "off"):
        return Space("fixed", explicit=True)
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError("expected [a, b, ...], log(lo, hi), int(lo, hi), float(lo, hi), pow2(lo, hi) or fixed") from None
    if isinstance(tree, ast.List):
        try:
            items = [_evaluate(e) for e in tree.elts]
        except NotLiteral as exc:
            raise ValueError(f"choices must be literals ({exc})") from None
        unique: list[Any] = []
        for item in items:
            if not any(type(item) is type(u) and item == u for u in unique):
                unique.append(item)
        if not unique:
            raise ValueError("an empty list of choices")
        return Space("choices", choices=tuple(unique), explicit=True)
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and not tree.keywords
            and tree.func.id in ("log", "int", "float", "pow2")):
        raise ValueError("expected [a, b, ...], log(lo, hi), int(lo, hi), float(lo, hi), pow2(lo, hi) or fixed")
    kind = tree.func.id
    if len(tree.args) != 2:
        raise ValueError(f"{kind}(lo, hi) takes two bounds")
    try:
        low, high = (_evaluate(a) for a in tree.args)
    except NotLiteral as exc:
        raise ValueError(f"bounds must be numbers ({exc})") from None
    if not (_is_number(low) and _is_number(high)) or not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("bounds must be finite numbers")
    if not low < high:
        raise ValueError(f"the low bound {low!r} must be below the high bound {high!r}")
    if not _is_number(value):
        raise ValueError(f"a numeric space for a {type(value).__name__} value {value!r} (use a list of choices)")
    if kind == "float":
        return Space("float", low=float(low), high=float(high), explicit=True)
    if kind == "log":
        if low <= 0:
            raise ValueError("log(lo, hi) needs lo > 0")
        if isinstance(value, int) and float(low).is_integer() and float(high).is_integer():
            return Space("int", low=int(low), high=int(high), log=True, explicit=True)
        return Space("float", low=float(low), high=float(high), log=True, explicit=True)
    if not (float(low).is_integer() and float(high).is_integer()):
        raise ValueError(f"{kind}(lo, hi) needs whole-number bounds")
    if kind == "int":
        return Space("int", low=int(low), high=int(high), explicit=True)
    if not (_is_power_of_two(int(low)) and _is_power_of_two(int(high))):
        raise ValueError("pow2(lo, hi) needs powers of two as bounds")
    return Space("pow2", low=int(low), high=int(high), explicit=True)


# -- discovery ------------------------------------------------------------------------------------

class _Assignments(cst.CSTVisitor):
    """Counts module-scope assignments per name, and names declared `global` anywhere."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.globals: set[str] = set()
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
        self.globals.update(item.name.value for item in node.names)


def parse_module(source: str, path: str = "<string>") -> cst.Module:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise KnobError(f"{path}:{exc.raw_line}: cannot parse: {exc.message}") from None


def find_knobs(source: str, path: str = "<string>", strict: bool = True) -> list[Knob]:
    """The knobs of one Python file, in file order.

    With strict=False a malformed `# search:` comment falls back to the default space instead
    of raising (used to read the values of old commits).
    """
    module = parse_module(source, path)
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    assignments = _Assignments()
    module.visit(assignments)
    knobs: list[Knob] = []
    for i, stmt in enumerate(module.body):
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        comment = stmt.trailing_whitespace.comment
        search = SEARCH_COMMENT.search(comment.value) if comment is not None else None
        for j, small in enumerate(stmt.body):
            if isinstance(small, cst.Assign):
                if len(small.targets) != 1:
                    continue
                target = small.targets[0].target
            elif isinstance(small, cst.AnnAssign) and small.value is not None:
                target = small.target
            else:
                continue
            if not isinstance(target, cst.Name) or not KNOB_NAME.match(target.value):
                continue
            name = target.value
            if assignments.count.get(name, 0) != 1 or name in assignments.globals:
                continue
            assert small.value is not None
            code = module.code_for_node(small.value)
            try:
                value = literal_value(code)
            except NotLiteral:
                continue
            line = positions[small].start.line
            space = default_space(value, code)
            if search is not None and len(stmt.body) == 1:
                try:
                    space = parse_search(search.group(1), value)
                except ValueError as exc:
                    if strict:
                        raise KnobError(f"{path}:{line}: {name}: bad `# search:` comment "
                                        f"{search.group(1)!r}: {exc}") from None
            knobs.append(Knob(name=name, path=path, line=line, value=value, source=code.strip(), space=space,
                              stmt_index=i, small_index=j))
    return knobs


def knob_values(source: str, path: str = "<string>") -> dict[str, Any]:
    """Name -> value of the knobs of a file (lenient: for reading old commits)."""
    return {k.name: k.value for k in find_knobs(source, path, strict=False)}


# -- writing values -------------------------------------------------------------------------------

def _shortest_float(value: float) -> tuple[str, str]:
    """The shortest mantissa/exponent pair that reads back as exactly `value`."""
    for digits in range(1, 18):
        text = f"{value:.{digits - 1}e}"
        if float(text) == value:
            break
    mantissa, exponent = text.split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return mantissa, str(int(exponent))


def format_value(knob: Knob, value: Any) -> str:
    """Python source for `value`, in the knob's own style where there is one.

    Keeps `2**k` for powers of two written that way, `_` digit groups, scientific notation
    and the quote character of strings.
    """
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        pow2 = _power_of_two_form(knob.source)
        if pow2 is not None and _is_power_of_two(value) and value >= 2:
            return f"2{pow2[0]}{value.bit_length() - 1}"
        if re.fullmatch(r"-?\d+(_\d+)+", knob.source):
            return f"{value:_}"
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{knob.name}: cannot write the non-finite value {value!r}")
        if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", knob.source):
            mantissa, exponent = _shortest_float(value)
            return f"{mantissa}e{exponent}"
        return repr(value)
    if isinstance(value, str):
        text = repr(value)
        if knob.source[:1] == '"' and text[:1] == "'" and '"' not in value:
            text = '"' + text[1:-1] + '"'
        return text
    if isinstance(value, tuple):
        return repr(value)
    raise ValueError(f"{knob.name}: cannot write a {type(value).__name__} value")


def set_knobs(source: str, knobs: Sequence[Knob], values: dict[str, Any]) -> str:
    """The source with each named knob's value replaced; every other character kept."""
    module = parse_module(source, knobs[0].path if knobs else "<string>")
    by_name = {k.name: k for k in knobs}
    body = list(module.body)
    for name, value in values.items():
        knob = by_name[name]
        stmt = body[knob.stmt_index]
        small = stmt.body[knob.small_index] if isinstance(stmt, cst.SimpleStatementLine) else None
        target = None
        if isinstance(small, cst.Assign):
            target = small.targets[0].target
        elif isinstance(small, cst.AnnAssign):
            target = small.target
        if not isinstance(target, cst.Name) or target.value != name or small is None or small.value is None:
            raise KnobError(f"{knob.path}:{knob.line}: {name} is no longer where it was found")
        old = small.value
        new = cst.parse_expression(format_value(knob, value))
        if old.lpar and not new.lpar:
            new = new.with_changes(lpar=old.lpar, rpar=old.rpar)
        new_small = small.with_changes(value=new)
        smalls = list(stmt.body)
        smalls[knob.small_index] = new_small
        body[knob.stmt_index] = stmt.with_changes(body=smalls)
    return module.with_changes(body=body).code
