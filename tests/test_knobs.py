"""Knob discovery and editing (proposers/knobs.py): what counts as a knob, its space, and
edits that change the value's characters and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

import autoresearch
from autoresearch.proposers.knobs import (KnobError, NotLiteral, Space, default_space, find_knobs, format_value,
                                          knob_values, literal_value, parse_search, set_knobs)

EXAMPLE_TRAIN = Path(autoresearch.__file__).parent / "templates" / "example" / "train.py"

SYNTHETIC = '''"""A file with every kind of constant."""
import math

DEPTH = 8
LR = 0.04   # learning rate of the matrices
NEG_INT = -3
NEG_FLOAT = -0.5  # search: float(-1.0, 0.0)
EPS = 1e-8
SCI = 3E-4  # search: log(1e-5, 1e-2)
BIG = 2**19
BIG_SPACED = 2 ** 10  # search: pow2(2**8, 2**12)
PRODUCT = 8 * 1024
GROUPED = 1_000_000
NAME = "SSSL"  # search: ["SSSL", "LLLL", 'SL']
PLAIN_STRING = 'cosine'
FLAG = True
OFF = False  # search: fixed
BETAS = (0.8, 0.95)  # search: [(0.8, 0.95), (0.9, 0.99)]
PAIR = (1, 2)
NOTHING = None
STEPS: int = 200  # search: int(50, 2000)
MOMENTUM = 0.0  # search: float(0.0, 0.95)
WD = 0.0  # search: log(1e-6, 0.1)
HIDDEN = 64  # search: log(16, 256)

# not knobs
lower_case = 5
Mixed_Case = 5
COMPUTED = DEPTH * 64
CALLED = int(3)
FROM_MATH = math.pi
LISTED = [1, 2]
FORMATTED = f"{DEPTH}"
CHAINED_A = CHAINED_B = 4
REASSIGNED = 1
REASSIGNED = 2
AUGMENTED = 10
AUGMENTED += 1
MUTATED = 3
UNPACK_A, UNPACK_B = 1, 2


def helper():
    global MUTATED
    INSIDE = 7
    MUTATED = INSIDE
    return INSIDE


class Config:
    IN_CLASS = 9


if __name__ == "__main__":
    IN_MAIN = 11
'''


def knobs_by_name(source: str, path: str = "train.py") -> dict:
    return {k.qualname: k for k in find_knobs(source, path)}


def test_example_template_knobs() -> None:
    knobs = find_knobs(EXAMPLE_TRAIN.read_text(), "train.py")
    assert [k.name for k in knobs] == ["DEGREE", "LEARNING_RATE", "STEPS", "MOMENTUM", "WEIGHT_DECAY"]
    spaces = {k.name: k.space for k in knobs}
    assert spaces["DEGREE"] == Space("int", low=1, high=8, explicit=True)
    assert spaces["LEARNING_RATE"] == Space("float", low=0.001, high=0.5, log=True, explicit=True)
    assert spaces["STEPS"] == Space("int", low=50, high=2000, explicit=True)
    assert spaces["MOMENTUM"] == Space("float", low=0.0, high=0.95, explicit=True)
    assert spaces["WEIGHT_DECAY"] == Space("float", low=1e-6, high=0.1, log=True, explicit=True)
    assert all(k.tunable and k.path == "train.py" for k in knobs)
    assert [k.line for k in knobs] == [8, 9, 10, 11, 12]


def test_synthetic_file_finds_every_kind_and_nothing_else() -> None:
    knobs = knobs_by_name(SYNTHETIC)
    assert list(knobs) == ["DEPTH", "LR", "NEG_INT", "NEG_FLOAT", "EPS", "SCI", "BIG", "BIG_SPACED", "PRODUCT",
                           "GROUPED", "NAME", "PLAIN_STRING", "FLAG", "OFF", "BETAS", "PAIR", "NOTHING", "STEPS",
                           "MOMENTUM", "WD", "HIDDEN", "Config.IN_CLASS"]
    values = {name: k.value for name, k in knobs.items()}
    assert values["NEG_INT"] == -3 and values["NEG_FLOAT"] == -0.5
    assert values["EPS"] == 1e-8 and values["SCI"] == 3e-4
    assert values["BIG"] == 524288 and isinstance(values["BIG"], int) and knobs["BIG"].source == "2**19"
    assert values["PRODUCT"] == 8192 and values["GROUPED"] == 1_000_000
    assert values["NAME"] == "SSSL" and values["FLAG"] is True and values["OFF"] is False
    assert values["BETAS"] == (0.8, 0.95) and values["NOTHING"] is None and values["STEPS"] == 200

    s = {name: k.space for name, k in knobs.items()}
    # search comments of each kind
    assert s["NEG_FLOAT"] == Space("float", low=-1.0, high=0.0, explicit=True)
    assert s["SCI"] == Space("float", low=1e-5, high=1e-2, log=True, explicit=True)
    assert s["BIG_SPACED"] == Space("pow2", low=256, high=4096, explicit=True)
    assert s["NAME"] == Space("choices", choices=("SSSL", "LLLL", "SL"), explicit=True)
    assert s["BETAS"] == Space("choices", choices=((0.8, 0.95), (0.9, 0.99)), explicit=True)
    assert s["OFF"] == Space("fixed", explicit=True) and not knobs["OFF"].tunable
    assert s["STEPS"] == Space("int", low=50, high=2000, explicit=True)
    assert s["HIDDEN"] == Space("int", low=16, high=256, log=True, explicit=True)  # log over an int knob
    # defaults derived from the value
    assert s["DEPTH"] == Space("int", low=4, high=12)
    assert s["LR"] == Space("float", low=0.01, high=0.16, log=True)
    assert s["BIG"] == Space("pow2", low=2**17, high=2**21)
    assert s["PRODUCT"] == Space("int", low=4096, high=12288)
    assert s["FLAG"] == Space("choices", choices=(True, False))
    for fixed in ("NEG_INT", "PLAIN_STRING", "PAIR", "NOTHING"):
        assert not knobs[fixed].tunable, fixed


@pytest.mark.parametrize("value, source, expected", [
    (0.05, "0.05", Space("float", low=0.0125, high=0.2, log=True)),
    (1, "1", Space("int", low=1, high=3)),  # never below 1
    (3, "3", Space("int", low=1, high=5)),  # ±2 beats ±50% for small ints
    (200, "200", Space("int", low=100, high=300)),  # ±50%
    (0, "0", Space("fixed")),
    (0.0, "0.0", Space("fixed")),
    (-2.5, "-2.5", Space("fixed")),
    (2**3, "2**3", Space("pow2", low=2, high=32)),
    (2, "2**1", Space("pow2", low=1, high=8)),
    (False, "False", Space("choices", choices=(True, False))),
    ("adam", "'adam'", Space("fixed")),
    ((1, 2), "(1, 2)", Space("fixed")),
])
def test_default_spaces(value: object, source: str, expected: Space) -> None:
    assert default_space(value, source) == expected


@pytest.mark.parametrize("comment, problem", [
    ("log(0, 1)", "above 0"),
    ("int(5, 1)", "below the high bound"),
    ("int(1.5, 4)", "whole-number"),
    ("pow2(3, 16)", "powers of two"),
    ("[]", "empty"),
    ("[x, y]", "literals"),
    ("uniform(0, 1)", "expected"),
    ("log(1, ", "expected"),
])
def test_bad_search_comments_name_file_and_line(comment: str, problem: str) -> None:
    source = f"A = 1\nB = 2  # search: {comment}\n"
    with pytest.raises(KnobError) as info:
        find_knobs(source, "model/train.py")
    assert str(info.value).startswith("model/train.py:2: B: bad `# search:` comment")
    assert problem in str(info.value)
    # reading an old commit is lenient: the default space instead of an error
    assert knob_values(source) == {"A": 1, "B": 2}


def test_numeric_space_on_a_string_is_an_error() -> None:
    with pytest.raises(ValueError, match="list of choices"):
        parse_search("log(1, 2)", "text")


def test_literal_values_are_safe() -> None:
    assert literal_value("2**19") == 524288
    assert literal_value("-(3 * 4) + 1") == -11
    assert literal_value("(1, -2.5, 'x')") == (1, -2.5, "x")
    for bad in ("10**10**10", "1 / 0", "os.getpid()", "[1, 2]", "X + 1", "(*a,)", "1j", "b'x'"):
        with pytest.raises(NotLiteral):
            literal_value(bad)


def test_edit_preserves_everything_but_the_changed_values() -> None:
    knobs = find_knobs(SYNTHETIC, "train.py")
    changes = {"LR": 0.06, "SCI": 1.5e-3, "BIG": 2**18, "BIG_SPACED": 2**12, "PRODUCT": 4096, "GROUPED": 1_500_000,
               "NAME": "SL", "PLAIN_STRING": "linear", "FLAG": False, "BETAS": (0.9, 0.99), "STEPS": 350,
               "NEG_FLOAT": -0.25}
    updated = set_knobs(SYNTHETIC, knobs, changes)
    expected = SYNTHETIC
    for old, new in [("LR = 0.04   #", "LR = 0.06   #"), ("SCI = 3E-4  #", "SCI = 1.5e-3  #"),
                     ("BIG = 2**19\n", "BIG = 2**18\n"), ("BIG_SPACED = 2 ** 10", "BIG_SPACED = 2 ** 12"),
                     ("PRODUCT = 8 * 1024\n", "PRODUCT = 4096\n"), ("GROUPED = 1_000_000", "GROUPED = 1_500_000"),
                     ('NAME = "SSSL"  #', 'NAME = "SL"  #'), ("PLAIN_STRING = 'cosine'", "PLAIN_STRING = 'linear'"),
                     ("FLAG = True", "FLAG = False"), ("BETAS = (0.8, 0.95)  #", "BETAS = (0.9, 0.99)  #"),
                     ("STEPS: int = 200  #", "STEPS: int = 350  #"), ("NEG_FLOAT = -0.5  #", "NEG_FLOAT = -0.25  #")]:
        assert expected.count(old) == 1, old
        expected = expected.replace(old, new)
    assert updated == expected
    after = knob_values(updated)
    assert all(after[name] == value for name, value in changes.items())
    assert after["DEPTH"] == 8 and after["EPS"] == 1e-8  # untouched knobs keep their values


def test_edit_keeps_crlf_tabs_and_odd_spacing_byte_for_byte() -> None:
    source = "# header\r\nA  =  0.5\t# search: float(0, 1)\r\nB = (3)\r\n\r\ndef f():\r\n    return A\r\n"
    knobs = find_knobs(source, "x.py")
    updated = set_knobs(source, knobs, {"A": 0.25, "B": 4})
    assert updated == "# header\r\nA  =  0.25\t# search: float(0, 1)\r\nB = (4)\r\n\r\ndef f():\r\n    return A\r\n"


def test_format_value_keeps_the_knob_style() -> None:
    knobs = knobs_by_name(SYNTHETIC)
    assert format_value(knobs["BIG"], 2**21) == "2**21"
    assert format_value(knobs["BIG"], 3 * 2**17) == "393216"  # not a power of two: a plain literal
    assert format_value(knobs["BIG_SPACED"], 512) == "2 ** 9"
    assert format_value(knobs["GROUPED"], 2_500_000) == "2_500_000"
    assert format_value(knobs["EPS"], 3e-9) == "3e-9"
    assert format_value(knobs["LR"], 0.0634) == "0.0634"
    assert format_value(knobs["NAME"], "LLLL") == '"LLLL"'
    assert format_value(knobs["NAME"], 'say "hi"') == "'say \"hi\"'"
    assert format_value(knobs["PLAIN_STRING"], "x") == "'x'"
    assert format_value(knobs["DEPTH"], 12) == "12"


def test_syntax_error_is_a_knob_error() -> None:
    with pytest.raises(KnobError, match=r"^broken.py:\d+: cannot parse"):
        find_knobs("A = 1\ndef (:\n", "broken.py")


def test_training_script_shape() -> None:
    """A nanochat-style script: knobs at the top, derived values and a long module body below."""
    source = '''import os, time
import torch

# Model
DEPTH = 8                 # search: int(4, 16)
ASPECT_RATIO = 64
HEAD_DIM = 128
WINDOW_PATTERN = "SSSL"
# Optimization
TOTAL_BATCH_SIZE = 2**19  # tokens per step
MATRIX_LR = 0.04
ADAM_BETAS = (0.8, 0.95)
WARMDOWN_RATIO = 0.5
FINAL_LR_FRAC = 0.0
DEVICE_BATCH_SIZE = 128

model_dim = DEPTH * ASPECT_RATIO
NUM_HEADS = max(1, model_dim // HEAD_DIM)
TOKENS_PER_FWDBWD = DEVICE_BATCH_SIZE * 2048
GRAD_ACCUM = TOTAL_BATCH_SIZE // TOKENS_PER_FWDBWD
t0 = time.time()
for step in range(10):
    lr = MATRIX_LR * (1 - step / 10)
print(f"val_bpb: {0.99:.6f}")
'''
    knobs = knobs_by_name(source)
    assert list(knobs) == ["DEPTH", "ASPECT_RATIO", "HEAD_DIM", "WINDOW_PATTERN", "TOTAL_BATCH_SIZE", "MATRIX_LR",
                           "ADAM_BETAS", "WARMDOWN_RATIO", "FINAL_LR_FRAC", "DEVICE_BATCH_SIZE"]
    assert [name for name, k in knobs.items() if k.tunable] == [
        "DEPTH", "ASPECT_RATIO", "HEAD_DIM", "TOTAL_BATCH_SIZE", "MATRIX_LR", "WARMDOWN_RATIO", "DEVICE_BATCH_SIZE"]
    updated = set_knobs(source, list(knobs.values()), {"MATRIX_LR": 0.06, "TOTAL_BATCH_SIZE": 2**18})
    assert updated == source.replace("MATRIX_LR = 0.04", "MATRIX_LR = 0.06").replace("2**19  #", "2**18  #")
