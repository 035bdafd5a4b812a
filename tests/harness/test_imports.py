"""The static check that the scorer never imports an editable file: every template keeps the
rule, the ways a harness usually breaks it are found, and `init` from flags warns about them."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ar

import autoresearch
from autoresearch.config.task import load_config
from autoresearch.harness.imports import scorer_reaches_editable

TEMPLATES = Path(autoresearch.__file__).resolve().parent / "templates"


@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.iterdir() if (p / "autoresearch.toml").exists()))
def test_every_template_keeps_the_scorer_away_from_editable_code(name: str) -> None:
    assert scorer_reaches_editable(load_config(TEMPLATES / name)) == []


def task(root: Path, evaluate_source: str, evaluate: str = "python evaluate.py") -> Path:
    root.mkdir()
    (root / "train.py").write_text("print('loss: 1')\n")
    (root / "helper.py").write_text("import train\n")
    (root / "evaluate.py").write_text(evaluate_source)
    (root / "autoresearch.toml").write_text(
        '[task]\nname = "t"\neditable = ["train.py"]\nreadonly = ["evaluate.py", "helper.py"]\n'
        f'run = "python train.py"\nevaluate = "{evaluate}"\n[metric]\nname = "loss"\n')
    return root


@pytest.mark.parametrize("source, chain", [
    ("import train\n", "evaluate.py -> train.py"),
    ("from train import GPT\n", "evaluate.py -> train.py"),
    ("import importlib\nmodel = importlib.import_module('train')\n", "evaluate.py -> train.py"),
    ("def load():\n    return __import__('train')\n", "evaluate.py -> train.py"),
    ("import json, helper\n", "evaluate.py -> helper.py -> train.py"),
])
def test_a_scorer_that_imports_an_editable_file_is_found(tmp_path: Path, source: str, chain: str) -> None:
    problems = scorer_reaches_editable(load_config(task(tmp_path / "t", source)))
    assert len(problems) == 1 and chain in problems[0]


def test_a_scorer_that_imports_only_harness_files_passes(tmp_path: Path) -> None:
    root = task(tmp_path / "t", "import json\nimport os.path\nfrom pathlib import Path\n# import train\n")
    assert scorer_reaches_editable(load_config(root)) == []


def test_without_an_evaluate_phase_the_run_command_is_the_scorer(tmp_path: Path) -> None:
    root = task(tmp_path / "t", "print('loss: 1')\n", evaluate="")
    problems = scorer_reaches_editable(load_config(root))
    assert len(problems) == 1 and "the scorer is an editable file (train.py)" in problems[0]


def test_init_from_flags_warns_about_a_scorer_that_imports_the_editable_file(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "train.py").write_text("SIZE = 3\n")
    (root / "score.py").write_text("from train import SIZE\nprint(f'score: {SIZE}')\n")
    out = ar(root, "init", "--editable", "train.py", "--readonly", "score.py", "--run", "python train.py",
             "--evaluate", "python score.py", "--metric", "score", "--budget", "5")
    assert "score: 3" in out.stdout
    assert "warning: the scorer imports an editable file (score.py -> train.py)" in out.stderr
