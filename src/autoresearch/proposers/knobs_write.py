"""Knob values written back: a knob's new value as Python source in the knob's own style, and
the file with only those characters changed (libcst keeps formatting and comments byte for byte).
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import libcst as cst

from autoresearch.proposers.knobs import Knob, KnobError, parse_module
from autoresearch.proposers.spaces import is_power_of_two, power_of_two_form


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
        pow2 = power_of_two_form(knob.source)
        if pow2 is not None and is_power_of_two(value) and value >= 2:
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


def _replace_at(body: Sequence[cst.BaseStatement], at: tuple[int, ...], small_index: int,
                edit: Any) -> list[cst.BaseStatement]:
    """BODY with the small statement at AT (statement indices down through class/def bodies)
    replaced by EDIT(small); None from `_small_at` means it moved."""
    body = list(body)
    stmt = body[at[0]]
    if len(at) > 1:
        if not (isinstance(stmt, (cst.ClassDef, cst.FunctionDef)) and isinstance(stmt.body, cst.IndentedBlock)):
            raise LookupError
        inner = _replace_at(stmt.body.body, at[1:], small_index, edit)
        body[at[0]] = stmt.with_changes(body=stmt.body.with_changes(body=inner))
        return body
    if not isinstance(stmt, cst.SimpleStatementLine) or small_index >= len(stmt.body):
        raise LookupError
    smalls = list(stmt.body)
    smalls[small_index] = edit(smalls[small_index])
    body[at[0]] = stmt.with_changes(body=smalls)
    return body


def set_knobs(source: str, knobs: Sequence[Knob], values: dict[str, Any]) -> str:
    """The source with each knob's value replaced (VALUES: qualified name -> value); every other
    character kept."""
    module = parse_module(source, knobs[0].path if knobs else "<string>")
    by_name = {k.qualname: k for k in knobs}
    body: Sequence[cst.BaseStatement] = module.body
    for qualname, value in values.items():
        knob = by_name[qualname]

        def edit(small: cst.BaseSmallStatement, knob: Knob = knob, value: Any = value) -> cst.BaseSmallStatement:
            target = None
            if isinstance(small, cst.Assign) and len(small.targets) == 1:
                target = small.targets[0].target
            elif isinstance(small, cst.AnnAssign):
                target = small.target
            if not isinstance(small, (cst.Assign, cst.AnnAssign)) or not isinstance(target, cst.Name) \
                    or target.value != knob.name or small.value is None:
                raise LookupError
            old = small.value
            new = cst.parse_expression(format_value(knob, value))
            if old.lpar and not new.lpar:
                new = new.with_changes(lpar=old.lpar, rpar=old.rpar)
            return small.with_changes(value=new)

        try:
            body = _replace_at(body, knob.stmt_path, knob.small_index, edit)
        except (LookupError, IndexError):
            raise KnobError(f"{knob.path}:{knob.line}: {qualname} is no longer where it was found") from None
    return module.with_changes(body=body).code
