"""The edit format of API proposers: parsing, validation against real files, atomic apply."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from autoresearch.proposers.edits import (
    DESCRIPTION_MAX_CHARS,
    WHOLE_FILE_MAX_CHARS,
    EditError,
    apply_answer,
    parse_answer,
)

TRAIN = """\
DEGREE = 3  # search: int(1, 8)
LEARNING_RATE = 0.05

def train():
    x = 1
    return x

def other():
    x = 1
    return x
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "model.py").write_text("WIDTH = 64\nDEPTH = 2\n")
    (tmp_path / "prepare.py").write_text("DATA = 1\n")
    return tmp_path


EDITABLE = ["train.py", "model.py"]


def block(path: str, search: str, replace: str) -> str:
    new = f"{replace}\n" if replace else ""  # an empty REPLACE has no line at all
    return f"{path}\n<<<<<<< SEARCH\n{search}\n=======\n{new}>>>>>>> REPLACE\n"


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_search_replace_applies_and_reads_description(tree: Path) -> None:
    answer = "DESCRIPTION: raise the learning rate\n\n" + block("train.py", "LEARNING_RATE = 0.05", "LEARNING_RATE = 0.08")
    parsed, changed = apply_answer(tree, answer, EDITABLE)
    assert parsed.description == "raise the learning rate"
    assert changed == ["train.py"]
    assert (tree / "train.py").read_text() == TRAIN.replace("0.05", "0.08")
    assert leftovers(tree) == []


def test_blocks_apply_in_order_across_files(tree: Path) -> None:
    answer = ("DESCRIPTION: two files\n"
              + block("train.py", "LEARNING_RATE = 0.05", "LEARNING_RATE = 0.1")
              + block("train.py", "LEARNING_RATE = 0.1", "LEARNING_RATE = 0.2\nMOMENTUM = 0.9")
              + block("model.py", "DEPTH = 2", "DEPTH = 4"))
    _, changed = apply_answer(tree, answer, EDITABLE)
    assert sorted(changed) == ["model.py", "train.py"]
    assert "LEARNING_RATE = 0.2\nMOMENTUM = 0.9\n" in (tree / "train.py").read_text()
    assert (tree / "model.py").read_text() == "WIDTH = 64\nDEPTH = 4\n"


def test_fences_and_decorated_paths_are_tolerated(tree: Path) -> None:
    answer = ("**DESCRIPTION:** wider model\n\nHere is the change:\n\n### `model.py`\n```python\n"
              "<<<<<<< SEARCH\nWIDTH = 64\n=======\nWIDTH = 128\n>>>>>>> REPLACE\n```\n")
    parsed, changed = apply_answer(tree, answer, EDITABLE)
    assert parsed.description == "wider model"
    assert changed == ["model.py"]
    assert (tree / "model.py").read_text().startswith("WIDTH = 128\n")


def test_whole_file_block(tree: Path) -> None:
    answer = "DESCRIPTION: rewrite\nmodel.py\n<<<<<<< FILE\n```python\nWIDTH = 32\nDEPTH = 8\n```\n>>>>>>> FILE\n"
    _, changed = apply_answer(tree, answer, EDITABLE)
    assert changed == ["model.py"]
    assert (tree / "model.py").read_text() == "WIDTH = 32\nDEPTH = 8\n"


def test_whole_file_refused_for_large_files(tree: Path) -> None:
    big = "X = 1\n" * (WHOLE_FILE_MAX_CHARS // 6 + 10)
    (tree / "model.py").write_text(big)
    answer = "DESCRIPTION: rewrite\nmodel.py\n<<<<<<< FILE\nX = 2\n>>>>>>> FILE\n"
    with pytest.raises(EditError, match=r"block 1 .*model\.py.*SEARCH/REPLACE"):
        apply_answer(tree, answer, EDITABLE)
    assert (tree / "model.py").read_text() == big


def test_search_must_match_exactly_once(tree: Path) -> None:
    missing = "DESCRIPTION: x\n" + block("train.py", "LEARNING_RATE = 0.5", "LEARNING_RATE = 0.1")
    with pytest.raises(EditError, match=r"block 1 \(SEARCH/REPLACE for train\.py.*does not match train\.py"):
        apply_answer(tree, missing, EDITABLE)
    twice = "DESCRIPTION: x\n" + block("train.py", "    x = 1\n    return x", "    return 2")
    with pytest.raises(EditError, match=r"matches 2 places in train\.py \(lines 5, 9\)"):
        apply_answer(tree, twice, EDITABLE)
    unique = "DESCRIPTION: x\n" + block("train.py", "def other():\n    x = 1", "def other():\n    x = 2")
    apply_answer(tree, unique, EDITABLE)
    assert (tree / "train.py").read_text().endswith("def other():\n    x = 2\n    return x\n")


def test_search_matches_whole_lines_only(tree: Path) -> None:
    # `RATE = 0.05` is inside `LEARNING_RATE = 0.05` but is not a whole line of the file
    answer = "DESCRIPTION: x\n" + block("train.py", "RATE = 0.05", "RATE = 0.1")
    with pytest.raises(EditError, match="does not match"):
        apply_answer(tree, answer, EDITABLE)


def test_trailing_whitespace_is_ignored_when_matching(tree: Path) -> None:
    answer = "DESCRIPTION: x\n" + block("train.py", "LEARNING_RATE = 0.05   ", "LEARNING_RATE = 0.07")
    apply_answer(tree, answer, EDITABLE)
    assert "LEARNING_RATE = 0.07\n" in (tree / "train.py").read_text()


def test_edit_outside_the_editable_files_writes_nothing(tree: Path) -> None:
    answer = ("DESCRIPTION: sneaky\n" + block("train.py", "LEARNING_RATE = 0.05", "LEARNING_RATE = 0.09")
              + block("prepare.py", "DATA = 1", "DATA = 2"))
    with pytest.raises(EditError, match=r"block 2 .*'prepare\.py' is not an editable file"):
        apply_answer(tree, answer, EDITABLE)
    assert (tree / "train.py").read_text() == TRAIN  # the valid first block was not applied either
    assert (tree / "prepare.py").read_text() == "DATA = 1\n"
    traversal = "DESCRIPTION: x\n" + block("../train.py", "LEARNING_RATE = 0.05", "LEARNING_RATE = 0.09")
    with pytest.raises(EditError, match="not an editable file"):
        apply_answer(tree, traversal, EDITABLE)


def test_a_failing_later_block_leaves_every_file_untouched(tree: Path) -> None:
    answer = ("DESCRIPTION: x\n" + block("model.py", "DEPTH = 2", "DEPTH = 3")
              + block("train.py", "NOT THERE", "X"))
    with pytest.raises(EditError, match=r"block 2 \(SEARCH/REPLACE for train\.py"):
        apply_answer(tree, answer, EDITABLE)
    assert (tree / "model.py").read_text() == "WIDTH = 64\nDEPTH = 2\n"


@pytest.mark.parametrize("answer, message", [
    ("DESCRIPTION: x\nno blocks at all", "no edit blocks found"),
    ("DESCRIPTION: x\ntrain.py\n<<<<<<< SEARCH\nDEGREE = 3\n>>>>>>> REPLACE\n", "expected `=======`"),
    ("DESCRIPTION: x\ntrain.py\n<<<<<<< SEARCH\nDEGREE = 3\n=======\nDEGREE = 4\n", "`>>>>>>> REPLACE` is missing"),
    ("DESCRIPTION: x\ntrain.py\n<<<<<<< SEARCH\nDEGREE = 3\n", "`=======` is missing"),
    ("DESCRIPTION: x\n<<<<<<< SEARCH\nDEGREE = 3\n=======\nDEGREE = 4\n>>>>>>> REPLACE\n", "no file path"),
    ("DESCRIPTION: x\n=======\n", "outside a block"),
    ("DESCRIPTION: x\ntrain.py\n<<<<<<< SEARCH\n=======\nDEGREE = 4\n>>>>>>> REPLACE\n", "SEARCH is empty"),
    ("DESCRIPTION: x\ntrain.py\n<<<<<<< FILE\nDEGREE = 4\n", "`>>>>>>> FILE` is missing"),
    ("DESCRIPTION: x\ntrain.py\n<<<<<<< FILE\n\n>>>>>>> FILE\n", "new content is empty"),
    ("DESCRIPTION: x\n" + block("new.py", "A", "B"), "not an editable file"),
])
def test_malformed_answers_are_rejected_with_a_reason(tree: Path, answer: str, message: str) -> None:
    with pytest.raises(EditError, match=message):
        apply_answer(tree, answer, EDITABLE)
    assert (tree / "train.py").read_text() == TRAIN


def test_editable_but_missing_file_is_refused(tree: Path) -> None:
    answer = "DESCRIPTION: x\n" + block("gone.py", "A", "B")
    with pytest.raises(EditError, match="does not exist"):
        apply_answer(tree, answer, EDITABLE + ["gone.py"])


def test_deleting_lines_and_description_fallbacks(tree: Path) -> None:
    parsed, _ = apply_answer(tree, block("model.py", "DEPTH = 2", ""), EDITABLE)
    assert parsed.description == ""  # the proposer falls back to "edit model.py"
    assert (tree / "model.py").read_text() == "WIDTH = 64\n"
    long = "DESCRIPTION: " + "word " * 100 + "\n" + block("model.py", "WIDTH = 64", "WIDTH = 65")
    assert len(parse_answer(long).description) <= DESCRIPTION_MAX_CHARS
    assert "\n" not in parse_answer(long).description


def test_crlf_files_keep_their_line_ends_and_mode(tree: Path) -> None:
    path = tree / "model.py"
    path.write_bytes(b"WIDTH = 64\r\nDEPTH = 2\r\n")
    os.chmod(path, 0o755)
    apply_answer(tree, "DESCRIPTION: x\r\n" + block("model.py", "DEPTH = 2", "DEPTH = 5").replace("\n", "\r\n"),
                 EDITABLE)
    assert path.read_bytes() == b"WIDTH = 64\r\nDEPTH = 5\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


def test_a_write_failure_touches_no_file_and_leaves_no_temp(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tempfile.mkstemp
    calls = []

    def flaky(*args: object, **kwargs: object) -> tuple[int, str]:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tempfile, "mkstemp", flaky)
    answer = ("DESCRIPTION: x\n" + block("train.py", "LEARNING_RATE = 0.05", "LEARNING_RATE = 0.09")
              + block("model.py", "DEPTH = 2", "DEPTH = 3"))
    with pytest.raises(OSError):
        apply_answer(tree, answer, EDITABLE)
    assert (tree / "train.py").read_text() == TRAIN
    assert (tree / "model.py").read_text() == "WIDTH = 64\nDEPTH = 2\n"
    assert leftovers(tree) == []


def test_an_edit_that_changes_nothing_reports_no_file(tree: Path) -> None:
    _, changed = apply_answer(tree, "DESCRIPTION: x\n" + block("model.py", "DEPTH = 2", "DEPTH = 2"), EDITABLE)
    assert changed == []
