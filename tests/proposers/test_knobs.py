"""Knob discovery and editing (proposers/knobs.py): what counts as a knob, its space, and
edits that change the value's characters and nothing else."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ar, git

import autoresearch
from autoresearch.cli import cli
from autoresearch.proposers.knobs import KnobError, find_knobs, knob_values, list_files
from autoresearch.proposers.knobs_cli import knobs_command
from autoresearch.proposers.knobs_write import format_value, set_knobs
from autoresearch.proposers.spaces import NotLiteral, Space, default_space, literal_value, parse_search
from autoresearch.trial.session import Session

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


# -- class attributes, `# search:` opt-ins and the range grammar -------------------------------------

SORTEDLIST = '''"""A sorted list kept as a list of sublists (the sortedcontainers design, cut down)."""

from bisect import bisect_right, insort


class SortedList:
    DEFAULT_LOAD_FACTOR = 1000{comment}

    def __init__(self):
        self._load = self.DEFAULT_LOAD_FACTOR
        self._lists = []
        self._maxes = []
        self.cost = 0  # elements shifted by inserts, plus sublists searched

    def add(self, value):
        if not self._lists:
            self._lists.append([value])
            self._maxes.append(value)
            return
        pos = min(bisect_right(self._maxes, value), len(self._maxes) - 1)
        self.cost += len(self._maxes).bit_length() * 40  # the index is searched ...
        sub = self._lists[pos]
        self.cost += len(sub) - bisect_right(sub, value)  # ... then the sublist's tail shifts
        insort(sub, value)
        self._maxes[pos] = sub[-1]
        if len(sub) > 2 * self._load:  # split, as sortedcontainers does; the index is rebuilt
            self._lists[pos:pos + 1] = [sub[:self._load], sub[self._load:]]
            self._maxes[pos:pos + 1] = [sub[self._load - 1], sub[-1]]
            self.cost += len(self._maxes) * 8
'''

BENCH = '''import random
from sortedmini.sortedlist import SortedList

rng = random.Random(7)
s = SortedList()
for _ in range(20000):
    s.add(rng.random())
print(f"cost: {s.cost / 20000:.4f}")
'''


def test_class_attributes_are_knobs_and_edits_keep_the_class() -> None:
    source = SORTEDLIST.format(comment="")
    knobs = knobs_by_name(source, "sortedmini/sortedlist.py")
    assert list(knobs) == ["SortedList.DEFAULT_LOAD_FACTOR"]  # the lower-case attributes of __init__ are not
    knob = knobs["SortedList.DEFAULT_LOAD_FACTOR"]
    assert (knob.name, knob.scope, knob.line, knob.value) == ("DEFAULT_LOAD_FACTOR", "SortedList", 7, 1000)
    assert knob.space == Space("int", low=500, high=1500)  # the default: ±50%
    commented = SORTEDLIST.format(comment="  # search: int log 100..10000")
    knob = knobs_by_name(commented)["SortedList.DEFAULT_LOAD_FACTOR"]
    assert knob.space == Space("int", low=100, high=10000, log=True, explicit=True)
    assert knob.space.describe() == "int log 100..10000"
    updated = set_knobs(commented, [knob], {"SortedList.DEFAULT_LOAD_FACTOR": 350})
    assert updated == commented.replace("DEFAULT_LOAD_FACTOR = 1000", "DEFAULT_LOAD_FACTOR = 350")
    assert knob_values(updated) == {"SortedList.DEFAULT_LOAD_FACTOR": 350}


NESTED = '''LIMIT = 3
rate = 0.5  # search: float log 0.01..1


class Outer:
    SIZE = 16
    name = "x"

    class Inner:
        DEPTH: int = 2  # search: int 1..6

    def method(self):
        step = 10  # search: int log 1..1000
        STEP = 4
        return step + STEP


def main():
    window = 128  # search: pow2 2**4..2**10
    if window:
        inside = 3  # search: int 1..5
    return window


class Config: SMALL = 1
'''


def test_search_comments_opt_in_any_scope_and_qualified_names() -> None:
    knobs = knobs_by_name(NESTED, "n.py")
    assert list(knobs) == ["LIMIT", "rate", "Outer.SIZE", "Outer.Inner.DEPTH", "Outer.method().step", "main().window"]
    assert knobs["rate"].space == Space("float", low=0.01, high=1.0, log=True, explicit=True)
    assert knobs["Outer.method().step"].space == Space("int", low=1, high=1000, log=True, explicit=True)
    assert knobs["main().window"].space == Space("pow2", low=16, high=1024, explicit=True)
    changes = {"rate": 0.25, "Outer.SIZE": 20, "Outer.Inner.DEPTH": 5, "Outer.method().step": 300,
               "main().window": 256}
    updated = set_knobs(NESTED, list(knobs.values()), changes)
    expected = (NESTED.replace("rate = 0.5", "rate = 0.25").replace("SIZE = 16", "SIZE = 20")
                .replace("DEPTH: int = 2", "DEPTH: int = 5").replace("step = 10", "step = 300")
                .replace("window = 128", "window = 256"))
    assert updated == expected
    assert {k: v for k, v in knob_values(updated, "n.py").items() if k in changes} == changes


@pytest.mark.parametrize("comment, value, expected", [
    ("int log 100..10000", 1000, Space("int", low=100, high=10000, log=True, explicit=True)),
    ("int 4..16", 8, Space("int", low=4, high=16, explicit=True)),
    ("float 0..0.95", 0.9, Space("float", low=0.0, high=0.95, explicit=True)),
    ("float log 1e-6..0.1", 0.01, Space("float", low=1e-6, high=0.1, log=True, explicit=True)),
    ("float log 0.001 .. 1", 0.04, Space("float", low=0.001, high=1.0, log=True, explicit=True)),
    ("log 16..256", 64, Space("int", low=16, high=256, log=True, explicit=True)),  # like log(16, 256)
    ("log 0.5..4", 1, Space("float", low=0.5, high=4.0, log=True, explicit=True)),
    ("pow2 2**8..2**12", 1024, Space("pow2", low=256, high=4096, explicit=True)),
    ("pow2 256..4096", 1024, Space("pow2", low=256, high=4096, explicit=True)),
    ("log(100, 10000)", 1000, Space("int", low=100, high=10000, log=True, explicit=True)),  # the older call form
])
def test_range_grammar(comment: str, value: object, expected: Space) -> None:
    space = parse_search(comment, value)
    assert space == expected
    assert parse_search(space.describe(), value) == space  # what the listing prints reads back


@pytest.mark.parametrize("comment, problem", [
    ("int log 0..100", "above 0"),
    ("int log 1.5..100", "whole-number"),
    ("float 1..0", "below the high bound"),
    ("pow2 3..16", "powers of two"),
    ("pow2 log 2..16", "is not a space"),
    ("int 1..x", "numbers"),
    ("uniform 0..1", "expected"),
])
def test_range_grammar_errors(comment: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_search(comment, 8)


SKIPS = '''import os

A = B = 3
X, Y = 1, 2
COUNT = 1
COUNT += 1
FROM_ENV = int(os.environ.get("N", "4"))
MUTATED = 2
obj.attr = 5  # search: int 1..9
for i in range(3):
    LOOPED = 1  # search: int 1..3
FINE = 7


def f():
    global MUTATED
    MUTATED = 3
'''


def test_listing_says_what_was_skipped_and_why(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(SKIPS)
    (tmp_path / "b.py").write_text("LR = 0.1  # search: log(0, 1)\n")
    (tmp_path / "c.py").write_text("def (:\n")
    (tmp_path / "data.csv").write_text("x\n")
    listing = list_files(tmp_path, ["a.py", "b.py", "c.py", "data.csv"])
    assert [k.qualname for k in listing.knobs] == ["FINE"]
    reasons = {(s.path, s.line, s.name): s.reason for s in listing.skipped}
    assert "chained assignment" in reasons[("a.py", 3, "A")]
    assert "unpacks several names" in reasons[("a.py", 4, "X")]
    assert "assigned 2 times in the module" in reasons[("a.py", 5, "COUNT")]
    assert reasons[("a.py", 7, "FROM_ENV")].startswith("not a literal: `int(os.environ.get(\"N\", \"4\"))`")
    assert "declared `global`" in reasons[("a.py", 8, "MUTATED")]
    assert "assigns an attribute" in reasons[("a.py", 9, "obj.attr")]
    assert "inside an if/for/with block" in reasons[("a.py", 11, "")]
    assert "bad `# search:` comment 'log(0, 1)'" in reasons[("b.py", 1, "LR")]
    assert "cannot parse" in reasons[("c.py", 1, "")]
    assert reasons[("data.csv", 0, "")] == "not a Python file"
    assert [s.path for s in listing.errors] == ["b.py", "c.py"]
    assert listing.problem() == ("tune: b.py:1 LR: bad `# search:` comment 'log(0, 1)': log needs a low bound "
                                 "above 0 (a log scale has no zero) (and 1 more); see `autoresearch knobs`")
    assert listing.lines() == ["a.py:12 FINE = 7  int 3..11  (default)"]
    assert "  a.py:7 FROM_ENV: not a literal" in "\n".join(listing.skipped_lines(verbose=True))
    summary, *errors = listing.skipped_lines()
    assert summary.startswith("skipped ") and "not a literal" in summary and summary.endswith("(--verbose lists them)")
    assert [e.split(":")[0] for e in errors] == ["error", "error"]  # the mistakes are always listed


# -- the `autoresearch knobs` command, on real task folders -----------------------------------------

def sorted_project(tmp_path: Path, comment: str) -> Path:
    root = tmp_path / "proj"
    (root / "sortedmini").mkdir(parents=True)
    (root / "sortedmini" / "__init__.py").write_text("")
    (root / "sortedmini" / "sortedlist.py").write_text(SORTEDLIST.format(comment=comment))
    (root / "bench.py").write_text(BENCH)
    (root / "README.md").write_text("notes\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the project")
    return root


def init_task(root: Path) -> None:
    ar(root, "init", "--editable", "sortedmini/*.py", "--editable", "README.md", "--readonly", "bench.py",
       "--run", "python3 bench.py", "--metric", "cost", "--budget", "60")


def test_knobs_command_lists_knobs_and_skips(tmp_path: Path) -> None:
    root = sorted_project(tmp_path, "")
    init_task(root)
    runner = CliRunner()
    result = runner.invoke(knobs_command, ["--dir", str(root)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "sortedmini/sortedlist.py:7 SortedList.DEFAULT_LOAD_FACTOR = 1000  int 500..1500  (default)"
    # what it found first, then what it skipped in one line; --verbose lists each
    assert lines[1:] == ["1 knobs, 1 searched by tune (in README.md, sortedmini/__init__.py, sortedmini/sortedlist.py)",
                         "skipped 1: 1 not a Python file (--verbose lists them)"]
    verbose = runner.invoke(knobs_command, ["--dir", str(root), "--verbose"]).stdout.splitlines()
    assert verbose[2:] == ["skipped:", "  README.md: not a Python file"]
    data = json.loads(runner.invoke(knobs_command, ["--dir", str(root / "sortedmini"), "--json"]).stdout)
    assert data["problem"] is None and data["skipped"][0]["reason"] == "not a Python file"
    [knob] = data["knobs"]
    assert (knob["path"], knob["line"], knob["scope"], knob["qualname"], knob["value"]) == (
        "sortedmini/sortedlist.py", 7, "SortedList", "SortedList.DEFAULT_LOAD_FACTOR", 1000)
    assert knob["space"]["kind"] == "int" and knob["space"]["text"] == "int 500..1500" and knob["tunable"]

    # registered in the real CLI, it runs as `autoresearch knobs`
    cli.add_command(knobs_command)
    try:
        result = runner.invoke(cli, ["knobs", "--dir", str(root)])
    finally:
        cli.commands.pop("knobs", None)
    assert result.exit_code == 0 and result.stdout.startswith("sortedmini/sortedlist.py:7 ")

    # without knobs: exit 1 and the reason; outside a task: exit 2 and where to go
    source = root / "sortedmini" / "sortedlist.py"
    source.write_text(source.read_text().replace("DEFAULT_LOAD_FACTOR = 1000", "DEFAULT_LOAD_FACTOR = load()"))
    result = runner.invoke(knobs_command, ["--dir", str(root)])
    assert result.exit_code == 1
    assert "DEFAULT_LOAD_FACTOR: not a literal: `load()`" in result.stdout
    assert "tune: no knobs found in the editable files" in result.stderr
    result = runner.invoke(knobs_command, ["--dir", str(tmp_path)])
    assert result.exit_code == 2 and "autoresearch.toml: not found" in result.stderr


def test_run_tune_stops_before_the_baseline_without_knobs(tmp_path: Path) -> None:
    root = sorted_project(tmp_path, "")
    source = root / "sortedmini" / "sortedlist.py"
    source.write_text(source.read_text().replace("DEFAULT_LOAD_FACTOR = 1000", "default_load_factor = 1000")
                      .replace("self.DEFAULT_LOAD_FACTOR", "self.default_load_factor"))
    git(root, "commit", "-qam", "a lower-case attribute")
    init_task(root)
    proc = ar(root, "run", "--agent", "tune", "-n", "2", "--quiet", check=False)
    assert proc.returncode == 1
    assert "error: tune: no knobs found in the editable files (README.md, sortedmini/__init__.py, " \
           "sortedmini/sortedlist.py)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (root / "results.tsv").exists()  # not even a baseline ran


@pytest.mark.slow
def test_tune_on_a_class_attribute_after_adding_only_a_search_comment(tmp_path: Path) -> None:
    root = sorted_project(tmp_path, "  # search: int log 100..10000")
    init_task(root)
    proc = ar(root, "run", "--agent", "tune", "-n", "2", "--quiet", timeout=600)
    assert "stopped:" in proc.stdout and "(3 experiments" in proc.stdout, proc.stdout + proc.stderr
    with Session.open(root) as session:
        experiments = session.journal.experiments(session.tag)
        assert [e.is_baseline for e in experiments] == [True, False, False]
        for exp in experiments[1:]:
            assert exp.status in ("keep", "discard") and exp.metric is not None, (exp.status, exp.reason)
            assert exp.proposer == "tune"
            match = re.fullmatch(r"SortedList\.DEFAULT_LOAD_FACTOR 1000 -> (\d+)", exp.description)
            assert match, exp.description
            diff = git(root, "diff", exp.parent, exp.commit_sha)
            changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
            assert changed == ["-    DEFAULT_LOAD_FACTOR = 1000  # search: int log 100..10000",
                               f"+    DEFAULT_LOAD_FACTOR = {match.group(1)}  # search: int log 100..10000"]
            assert 100 <= int(match.group(1)) <= 10000
            log = (session.run_dir(exp.seq) / "agent.log").read_text()
            assert f"this is trial {exp.seq}" in log and f"proposal: {exp.description}" in log
        # a keep moved the best to a commit whose class attribute is the tuned value
        best = session.journal.best(session.tag)
        value = knob_values(session.ws.show_file(best.commit_sha, "sortedmini/sortedlist.py"))
        assert value["SortedList.DEFAULT_LOAD_FACTOR"] == (1000 if best.is_baseline else
                                                            int(best.description.rsplit(" ", 1)[1]))
    for line in proc.stdout.splitlines()[:3]:
        assert " seq " in line


def test_past_commits_values_read_fast_equal_the_knob_listing() -> None:
    """tune reads every past commit's knob values with Python's parser (knobs_read.py), not
    libcst: on every template file the two agree on every knob, value and type."""
    from importlib import resources

    from autoresearch.proposers.knobs import knob_values
    from autoresearch.proposers.knobs_read import read_values

    templates = resources.files("autoresearch") / "templates"
    sources = [p.read_text() for t in templates.iterdir() if t.is_dir() for p in t.iterdir() if p.name.endswith(".py")]
    sources += [SORTEDLIST.format(comment=""), "X = 1\nX = 2\nY = 3\ndef f():\n    global Y\n    Y = 4\n"
                "class C:\n    A = (1, 2.5)  # search: [(1, 2.5), (2, 3)]\n    B: int = 2**10\n"]
    assert len(sources) > 10
    for source in sources:
        slow, fast = knob_values(source), read_values(source)
        assert {k: (v, type(v)) for k, v in slow.items()} == {k: (fast[k], type(fast[k])) for k in slow}
    assert "X" not in read_values(sources[-1]) and "Y" not in read_values(sources[-1])  # set twice; rebound
    assert read_values(sources[-1])["C.B"] == 1024
