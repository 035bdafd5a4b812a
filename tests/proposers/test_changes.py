"""What an experiment changed, from its diff: knob moves and the innermost code regions."""

from __future__ import annotations

from pathlib import Path

from conftest import git, make_task

from autoresearch.git.workspace import Workspace
from autoresearch.proposers.changes import changes_between, python_changes

OLD = '''LR = 0.05  # search: log(0.001, 0.5)
import math


class Block:
    WIDTH = 64

    def forward(self, x):
        return x * 2

    def extra(self):
        return 1


def train():
    return LR
'''


def test_a_knob_move_is_not_a_code_edit() -> None:
    assert python_changes(OLD, OLD.replace("LR = 0.05", "LR = 0.08"), "train.py") == \
        {"knobs": {"LR": [0.05, 0.08]}, "regions": []}
    moved = python_changes(OLD, OLD.replace("WIDTH = 64", "WIDTH = 128"), "train.py")
    assert moved == {"knobs": {"Block.WIDTH": [64, 128]}, "regions": []}


def test_the_innermost_region_is_named() -> None:
    edited = python_changes(OLD, OLD.replace("x * 2", "x * 3"), "train.py")
    assert edited["regions"] == ["train.py:Block.forward"]  # not the class around it
    top = python_changes(OLD, OLD.replace("import math", "import math, os"), "train.py")
    assert top["regions"] == ["train.py (top level)"]
    added = python_changes(OLD, OLD + "\n\ndef helper():\n    pass\n", "train.py")
    assert added["regions"] == ["train.py:helper"]


def test_a_file_that_does_not_parse_is_one_region() -> None:
    assert python_changes(OLD, "def broken(:\n", "train.py") == {"knobs": {}, "regions": ["train.py"]}


def test_from_git_and_from_the_record(tmp_path: Path) -> None:
    root = make_task(tmp_path, start=False)
    ws = Workspace(root)
    before = git(root, "rev-parse", "HEAD").strip()
    train = root / "train.py"
    train.write_text(train.read_text().replace("LEARNING_RATE = 0.05", "LEARNING_RATE = 0.1")
                     .replace("weights[k] += velocity[k]", "weights[k] += 0.5 * velocity[k]"))
    (root / "program.md").write_text("changed\n")
    git(root, "commit", "-qam", "edit")
    found = changes_between(ws, before, "HEAD")
    assert found == {"knobs": {"LEARNING_RATE": [0.05, 0.1]}, "regions": ["program.md", "train.py:train"]}
