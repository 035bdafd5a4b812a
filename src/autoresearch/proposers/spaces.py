"""Search spaces: the ``# search:`` comment grammar, the `Space` it describes, and the default
space of a knob that has no comment.

Kept apart from knob discovery (`knobs`) because it is pure Python with no libcst: it reads
a comment's text and a knob's value and says where tune may look. It also holds the safe
evaluation of constant literals (`literal_value`) that both the grammar and discovery use.

A trailing ``# search: ...`` comment narrows the space a knob is searched in. Two spellings
are accepted, a readable range and the older call form:

    LEARNING_RATE = 0.05   # search: float log 0.001..0.5     (or: log(0.001, 0.5))
    LOAD_FACTOR = 1000     # search: int log 100..10000       (or: log(100, 10000) on an int)
    DEPTH = 8              # search: int 4..16                (or: int(4, 16))
    MOMENTUM = 0.9         # search: float 0.5..0.99          (or: float(0.5, 0.99))
    BATCH = 2**19          # search: pow2 2**16..2**20        (or: pow2(2**16, 2**20))
    WINDOW = "SSSL"        # search: ["SSSL", "LLLL", "SL"]
    PEAK_FLOPS = 989e12    # search: fixed

Without one, the space comes from the value (see `default_space`).
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any

SEARCH_COMMENT = re.compile(r"\bsearch:\s*(.*?)\s*$")
DEFAULT_FLOAT_FACTOR = 4.0  # positive floats: log-uniform within x/÷ this factor
DEFAULT_INT_FRACTION = 0.5  # positive ints: ± this fraction of the value ...
DEFAULT_INT_MIN_STEP = 2  # ... or ± this many, whichever is wider (never below 1)
DEFAULT_POW2_STEPS = 2  # 2**k: exponents k-2 .. k+2
SIGNIFICANT_DIGITS = 3  # sampled floats are rounded so they read well in a diff
MAX_EXPONENT = 256  # constant arithmetic refuses anything larger (no 10**10**10)

KINDS = ("fixed", "choices", "float", "int", "pow2")
SEARCH_FORMS = ("[a, b, ...]", "int LO..HI", "int log LO..HI", "float LO..HI", "float log LO..HI", "pow2 LO..HI",
                "fixed")
RANGE_FORM = re.compile(r"^(int|float|log|pow2)(\s+log)?\s+(\S.*?)\s*\.\.\s*(\S.*)$")


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
        """The space in the `# search:` grammar's range form, e.g. `int log 100..10000`."""
        if self.kind == "choices":
            return "[" + ", ".join(repr(c) for c in self.choices) + "]"
        if self.kind == "fixed":
            return "fixed"
        if self.kind == "pow2":
            return f"pow2 2**{int(math.log2(self.low))}..2**{int(math.log2(self.high))}"
        log = " log" if self.log else ""
        if self.kind == "int":
            return f"int{log} {int(self.low)}..{int(self.high)}"
        return f"float{log} {self.low:g}..{self.high:g}"


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


def power_of_two_form(code: str) -> tuple[str, int] | None:
    """For a value written `2**k` (any spacing), the text between 2 and k, and k."""
    match = re.fullmatch(r"\s*2(\s*\*\*\s*)(\d+)\s*", code)
    return (match.group(1), int(match.group(2))) if match else None


def is_power_of_two(value: Any) -> bool:
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
        pow2 = power_of_two_form(source)
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


def _bad_form() -> ValueError:
    return ValueError("expected " + ", ".join(SEARCH_FORMS[:-1]) + " or fixed "
                      "(the call forms log(lo, hi), int(lo, hi), float(lo, hi), pow2(lo, hi) work too)")


def _parse_bounds(text: str) -> tuple[str, bool, Any, Any]:
    """(kind, log, low, high) of a range (`int log 100..10000`) or call (`log(100, 10000)`)."""
    match = RANGE_FORM.match(text)
    if match:
        kind, log = match.group(1), bool(match.group(2))
        if kind in ("log", "pow2") and log:
            raise ValueError(f"`{kind} log` is not a space: write `int log LO..HI` or `float log LO..HI`")
        bounds = []
        for part in (match.group(3), match.group(4)):
            try:
                bounds.append(literal_value(part))
            except NotLiteral as exc:
                raise ValueError(f"bounds must be numbers ({exc})") from None
        return kind, log, bounds[0], bounds[1]
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise _bad_form() from None
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and not tree.keywords
            and tree.func.id in ("log", "int", "float", "pow2")):
        raise _bad_form()
    kind = tree.func.id
    if len(tree.args) != 2:
        raise ValueError(f"{kind}(lo, hi) takes two bounds")
    try:
        low, high = (_evaluate(a) for a in tree.args)
    except NotLiteral as exc:
        raise ValueError(f"bounds must be numbers ({exc})") from None
    return kind, False, low, high


def parse_search(text: str, value: Any) -> Space:
    """The space a `# search:` comment's text describes, checked against the knob's value."""
    text = text.strip()
    if text in ("fixed", "none", "off"):
        return Space("fixed", explicit=True)
    if text.startswith("["):
        try:
            tree = ast.parse(text, mode="eval").body
        except SyntaxError:
            raise ValueError("a list of choices must be a Python list, e.g. [\"a\", \"b\"]") from None
        if not isinstance(tree, ast.List):
            raise _bad_form()
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
    kind, log, low, high = _parse_bounds(text)
    form = f"{kind}{' log' if log else ''}"
    if not (_is_number(low) and _is_number(high)) or not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("bounds must be finite numbers")
    if not low < high:
        raise ValueError(f"the low bound {low!r} must be below the high bound {high!r}")
    if not _is_number(value):
        raise ValueError(f"a numeric space for a {type(value).__name__} value {value!r} (use a list of choices)")
    whole = float(low).is_integer() and float(high).is_integer()
    if kind == "log":  # the call form, or `log LO..HI`: an int knob with whole bounds stays an int
        kind, log = ("int" if isinstance(value, int) and whole else "float"), True
    if log and low <= 0:
        raise ValueError(f"{form} needs a low bound above 0 (a log scale has no zero)")
    if kind == "float":
        return Space("float", low=float(low), high=float(high), log=log, explicit=True)
    if not whole:
        raise ValueError(f"{form} needs whole-number bounds")
    if kind == "int":
        return Space("int", low=int(low), high=int(high), log=log, explicit=True)
    if not (is_power_of_two(int(low)) and is_power_of_two(int(high))):
        raise ValueError(f"{form} needs powers of two as bounds")
    return Space("pow2", low=int(low), high=int(high), explicit=True)
