"""Knob spaces as Optuna sees them: a space's distribution, a knob value encoded as a study's
parameter and decoded back, a random value of a space (tune's fallback), the comparable form
of a point, and Optuna kept quiet while tune uses it.

Optuna is imported only when a study is built (it costs every other command ~0.5 s).
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from typing import Any, Iterator

from autoresearch.proposers.spaces import SIGNIFICANT_DIGITS, Space


def round_float(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    return float(f"{value:.{digits}g}")


def distribution(space: Space) -> Any:
    import optuna.distributions as od

    if space.kind == "float":
        return od.FloatDistribution(space.low, space.high, log=space.log)
    if space.kind == "int":
        return od.IntDistribution(int(space.low), int(space.high), log=space.log)
    if space.kind == "pow2":
        return od.IntDistribution(int(space.low).bit_length() - 1, int(space.high).bit_length() - 1)
    if space.kind == "choices":
        return od.CategoricalDistribution([repr(c) for c in space.choices])
    raise ValueError(f"no distribution for a {space.kind} space")


def encode(space: Space, value: Any) -> Any | None:
    """The study's parameter for a knob value (numbers are clamped into range; None: not representable)."""
    if space.kind == "choices":
        text = repr(value)
        return text if text in [repr(c) for c in space.choices] else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if space.kind == "float":
        return min(max(float(value), space.low), space.high)
    if space.kind == "int":
        return int(min(max(round(value), space.low), space.high))
    if space.kind == "pow2":
        if value <= 0:
            return int(space.low).bit_length() - 1
        exponent = round(math.log2(value))
        return min(max(exponent, int(space.low).bit_length() - 1), int(space.high).bit_length() - 1)
    return None


def decode(space: Space, param: Any) -> Any:
    """The knob value for a study parameter (floats rounded to readable digits)."""
    if space.kind == "choices":
        return space.choices[[repr(c) for c in space.choices].index(param)]
    if space.kind == "float":
        return min(max(round_float(float(param)), space.low), space.high)
    if space.kind == "int":
        return int(param)
    if space.kind == "pow2":
        return 2 ** int(param)
    raise ValueError(f"cannot decode a {space.kind} space")


def sample(space: Space, rng: random.Random) -> Any:
    """A random value of a space (the fallback when TPE keeps asking for tried points)."""
    if space.kind == "choices":
        return rng.choice(space.choices)
    if space.kind == "float":
        if space.log:
            return decode(space, math.exp(rng.uniform(math.log(space.low), math.log(space.high))))
        return decode(space, rng.uniform(space.low, space.high))
    if space.kind == "int":
        if space.log:
            return int(min(max(round(math.exp(rng.uniform(math.log(space.low), math.log(space.high)))),
                               space.low), space.high))
        return rng.randint(int(space.low), int(space.high))
    if space.kind == "pow2":
        return 2 ** rng.randint(int(space.low).bit_length() - 1, int(space.high).bit_length() - 1)
    raise ValueError(f"cannot sample a {space.kind} space")


def normalize(value: Any) -> Any:
    """A hashable form for comparing points (floats to 10 digits; True is not 1)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, tuple):
        return tuple(normalize(v) for v in value)
    return value


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's log lines and warnings for the duration, then put its verbosity back."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(previous)
