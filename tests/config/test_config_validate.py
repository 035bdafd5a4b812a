"""The schema-driven checker refuses each kind of hostile input with an error that names the
file, the section and the key (and, where there is one, the way out)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, get_origin

import pytest

from autoresearch.config.schema import LoopSection, meta
from autoresearch.config.task import ConfigError, check_limits, load_config
from autoresearch.config.validate import SECTIONS, check_rules, check_value, hints

KNOWN_TYPES = (str, int, float, bool, list[str], float | None)
BASE: dict[str, dict[str, str]] = {
    "task": {"name": '"t"', "editable": '["train.py"]', "run": '"python train.py"', "readonly": '["prepare.py"]'},
    "metric": {"name": '"m"'},
}


def write_task(root: Path, edits: dict[str, Any]) -> Path:
    """A task folder whose autoresearch.toml is BASE with EDITS: {section: {key: TOML value or None
    to drop it}}, {section: None} to drop a section, or {name: "raw"} for a top-level key."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("train.py", "prepare.py", "program.md", "results.tsv"):
        (root / name).write_text("x = 1\n")
    sections: dict[str, Any] = {name: dict(keys) for name, keys in BASE.items()}
    for name, change in edits.items():
        if change is None or isinstance(change, str):
            sections[name] = change
        else:
            sections.setdefault(name, {}).update(change)
    top = [f"{name} = {value}" for name, value in sections.items() if isinstance(value, str)]
    tables = [f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None)
              for name, keys in sections.items() if isinstance(keys, dict)]
    (root / "autoresearch.toml").write_text("\n".join(top) + "\n" + "\n".join(tables))
    return root


def refused(tmp_path: Path, edits: dict[str, Any]) -> str:
    root = write_task(tmp_path / "task", edits)
    with pytest.raises(ConfigError) as info:
        load_config(root)
    message = str(info.value)
    assert message.startswith(f"{root / 'autoresearch.toml'}: "), message  # the file, first
    return message


def test_the_base_task_loads(tmp_path: Path) -> None:
    config = load_config(write_task(tmp_path / "task", {}))
    assert config.task.editable == ["train.py"] and config.budget.seconds == 300.0


@pytest.mark.parametrize("edits, expected", [
    # wrong type
    ({"budget": {"seconds": '"ten"'}}, "[budget] seconds: expected a number, got 'ten'"),
    ({"task": {"run": "3"}}, "[task] run: expected a string, got 3"),
    ({"task": {"env": '"HOME"'}}, "[task] env: expected a list of strings, got 'HOME'"),
    ({"sandbox": {"train_data": "[1, 2]"}}, "[sandbox] train_data: expected a list of strings, got [1, 2]"),
    ({"sandbox": {"network": '"yes"'}}, "[sandbox] network: expected true or false, got 'yes'"),
    ({"executor": {"slots": "1.5"}}, "[executor] slots: expected an integer, got 1.5"),
    ({"loop": {"target": '"low"'}}, "[loop] target: expected a number, got 'low'"),
    # bool is an int in Python, but not in a config
    ({"verdict": {"repeats": "true"}}, "[verdict] repeats: expected an integer, got True"),
    ({"budget": {"seconds": "false"}}, "[budget] seconds: expected a number, got False"),
    # numbers that disable comparisons or limits
    ({"budget": {"seconds": "nan"}}, "[budget] seconds: must be a finite number, got nan"),
    ({"agent": {"timeout": "inf"}}, "[agent] timeout: must be a finite number, got inf"),
    ({"loop": {"target": "-inf"}}, "[loop] target: must be a finite number, got -inf"),
    # unknown keys and sections, tables that are not tables, missing keys and sections
    ({"metric": {"speed": "3"}}, "[metric] speed: unknown key (known keys: constraints, goal, holdout, name)"),
    ({"metric": {"extra": "{}"}}, "[metric] extra: unknown key"),
    ({"budgett": {"seconds": "1"}}, "[budgett]: unknown section (known sections: [task], [metric], [resource]"),
    ({"loop": "3"}, "[loop]: expected a table, got 3"),
    ({"metric": {"name": None}}, "[metric] name: missing required key"),
    ({"metric": None}, "[metric]: missing required section"),
    # out of range
    ({"budget": {"seconds": "0"}}, "[budget] seconds: must be positive, got 0.0"),
    ({"budget": {"timeout": "-1"}}, "[budget] timeout: must not be negative, got -1.0"),
    ({"budget": {"evaluate_timeout": "-1"}}, "[budget] evaluate_timeout: must not be negative, got -1.0"),
    ({"budget": {"keep_outputs": "-2"}}, "[budget] keep_outputs: must not be negative, got -2"),
    ({"budget": {"log_max_bytes": "4095"}}, "[budget] log_max_bytes: must be at least 4096, got 4095"),
    ({"verdict": {"repeats": "0"}}, "[verdict] repeats: must be at least 1, got 0"),
    ({"verdict": {"min_delta": "-0.1"}}, "[verdict] min_delta: must not be negative, got -0.1"),
    ({"verdict": {"confidence": "1"}}, "[verdict] confidence: must be in [0.5, 1), got 1.0"),
    ({"verdict": {"confidence": "0.4"}}, "[verdict] confidence: must be in [0.5, 1), got 0.4"),
    ({"verdict": {"max_runs": "1"}}, "[verdict] max_runs: must be at least 2, got 1"),
    ({"verdict": {"reference_runs": "2"}}, "[verdict] reference_runs: must be at least 3, got 2"),
    ({"agent": {"max_failures": "0"}}, "[agent] max_failures: must be at least 1, got 0"),
    ({"agent": {"history": "-1"}}, "[agent] history: must not be negative, got -1"),
    ({"executor": {"slots": "0"}}, "[executor] slots: must be at least 1, got 0"),
    ({"task": {"model_processes": "0"}}, "[task] model_processes: must be at least 1, got 0"),
    ({"task": {"model": '"python serve.py"'}}, "[task] model: needs [task] evaluate, the scorer it answers"),
    ({"loop": {"hours": "-1"}}, "[loop] hours: must not be negative (0 means no limit), got -1.0"),
    ({"loop": {"plateau": "-3"}}, "[loop] plateau: must not be negative (0 means no limit), got -3"),
    # a choice outside the allowed ones
    ({"metric": {"goal": '"min"'}}, "[metric] goal: expected 'minimize' or 'maximize', got 'min'"),
    ({"sandbox": {"kind": '"docker"'}}, "[sandbox] kind: expected 'auto' or 'none' or 'bwrap', got 'docker'"),
    ({"verdict": {"test": '"wald"'}}, "[verdict] test: expected 'bootstrap' or 'sign' or 'sequential', got 'wald'"),
    # rules on the whole value and on each item
    ({"task": {"editable": "[]"}}, "[task] editable: must name at least one file"),
    ({"task": {"run": '"  "'}}, "[task] run: must be a command"),
    ({"task": {"editable": '["train.py", "../x.py"]'}}, "[task] editable: '../x.py' must stay inside the task folder"),
    ({"task": {"readonly": '["/etc/passwd"]'}}, "[task] readonly: '/etc/passwd' must be relative to the task folder"),
    ({"task": {"editable": '[".git/config"]'}}, "[task] editable: '.git/config' must not point into .git/"),
    ({"task": {"env": '["OK", "1BAD"]'}}, "[task] env[1]: '1BAD' is not an environment variable name"),
    ({"task": {"env": '["A=b"]'}}, "(list the name only; the value comes from your environment)"),
    ({"metric": {"constraints": '["mem < lots"]'}}, "[metric] constraints[0]: expected 'name OP number'"),
    # rules across keys
    ({"budget": {"seconds": "100", "timeout": "50"}}, "[budget] timeout: must be at least [budget] seconds (100.0), got 50.0"),
    ({"verdict": {"test": '"sequential"'}}, '[verdict] test: "sequential" is a confirmation test, but confirm = "none"'),
    ({"verdict": {"confirm": '"sequential"', "test": '"sign"'}}, "[verdict] test: 'sign' contradicts confirm = \"sequential\""),
    ({"verdict": {"confirm": '"reference"', "test": '"sign"'}}, '[verdict] test: confirm = "reference" has its own test'),
    ({"task": {"editable": '["nope_*.py"]'}}, "[task] editable: 'nope_*.py' matches no file under"),
    ({"task": {"readonly": '["gone.py"]'}}, "[task] readonly: 'gone.py' matches no file under"),
    ({"task": {"readonly": '["train.py"]'}}, "[task] editable: train.py is also read-only"),
    ({"task": {"editable": '["train.py", "results.tsv"]'}}, "[task] editable: results.tsv belongs to autoresearch"),
])
def test_hostile_input_is_refused_naming_file_and_key(tmp_path: Path, edits: dict[str, Any], expected: str) -> None:
    message = refused(tmp_path, edits)
    assert expected in message, message


def test_the_first_unknown_key_is_named_before_later_type_errors(tmp_path: Path) -> None:
    message = refused(tmp_path, {"budget": {"bogus": "1", "seconds": '"x"'}})
    assert "[budget] bogus: unknown key" in message


def test_an_integer_for_a_number_is_stored_as_a_float(tmp_path: Path) -> None:
    config = load_config(write_task(tmp_path / "task", {"budget": {"seconds": "10"}, "loop": {"target": "2"}}))
    assert type(config.budget.seconds) is float and config.budget.seconds == 10.0
    assert type(config.loop.target) is float


def test_verdict_shorthands_are_normalized(tmp_path: Path) -> None:
    config = load_config(write_task(tmp_path / "a", {"verdict": {"confirm": '"sequential"'}}))
    assert (config.verdict.confirm, config.verdict.test, config.verdict.max_runs) == ("paired", "sequential", 20)
    config = load_config(write_task(tmp_path / "b", {"verdict": {"confirm": '"reference"'}}))
    assert (config.verdict.confidence, config.verdict.max_runs) == (0.97, 20)


@pytest.mark.parametrize("loop, expected", [
    (LoopSection(max_experiments=-1), "W: max_experiments: must not be negative (0 means no limit), got -1"),
    (LoopSection(hours=float("nan")), "W: hours: must be a finite number, got nan"),
    (LoopSection(hours=-2.0), "W: hours: must not be negative (0 means no limit), got -2.0"),
    (LoopSection(target=float("inf")), "W: target: must be a finite number, got inf"),
    (LoopSection(plateau=-3), "W: plateau: must not be negative (0 means no limit), got -3"),
])
def test_check_limits_refuses_command_line_limits(loop: LoopSection, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_limits(loop, "W:")
    assert str(info.value) == expected


def test_check_limits_accepts_no_limits_and_a_target() -> None:
    check_limits(LoopSection(), "W:")
    check_limits(LoopSection(max_experiments=3, hours=0.5, target=-1.0, plateau=2), "W:")


def test_the_generic_checker_on_its_own() -> None:
    assert check_value("w", int, 3) == 3
    assert check_value("w", float, 3) == 3.0 and isinstance(check_value("w", float, 3), float)
    assert check_value("w", float | None, None) is None
    for tp, value in ((int, True), (float, True), (str, 1), (bool, 1), (list[str], ["a", 2]), (int, 2.0)):
        with pytest.raises(ConfigError, match="^w: expected "):
            check_value("w", tp, value)
    rules = meta("A doc.", ge=1, lt=5, note=" (a note)")
    check_rules("w", rules, 1)
    with pytest.raises(ConfigError, match=r"^w: must be in \[1, 5\) \(a note\), got 5$"):
        check_rules("w", rules, 5)
    with pytest.raises(ConfigError, match=r"^w: must be greater than 2, got 2$"):
        check_rules("w", meta("A doc.", gt=2), 2)
    with pytest.raises(ConfigError, match=r"^w\[1\]: bad$"):
        check_rules("w", meta("A doc.", each=lambda item: "bad" if item == "y" else ""), ["x", "y"])


def test_every_key_has_a_doc_a_known_type_and_a_default_that_passes_its_rules() -> None:
    for name, cls in SECTIONS.items():
        assert cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("), name  # its own docstring
        types_of = hints(cls)
        for f in dataclasses.fields(cls):
            where = f"[{name}] {f.name}"
            doc = f.metadata.get("doc", "")
            assert doc.strip() and doc.rstrip().endswith("."), f"{where} has no one-sentence doc"
            for rule in (f.metadata.get("check"), f.metadata.get("each")):
                assert rule is None or rule.__doc__, f"{where}: its rule has no docstring (the reference shows it)"
            tp = types_of[f.name]
            assert tp in KNOWN_TYPES or get_origin(tp) is Literal, f"{where}: a type the checker does not know"
            if f.default_factory is not dataclasses.MISSING:
                check_rules(where, f.metadata, check_value(where, types_of[f.name], f.default_factory()))
            elif f.default is not dataclasses.MISSING:
                check_rules(where, f.metadata, check_value(where, types_of[f.name], f.default))


def test_a_locked_config_is_not_refused_for_a_missing_file(tmp_path: Path) -> None:
    """Once this exact config is locked, a missing harness file is the guard's business."""
    root = write_task(tmp_path / "task", {})
    (root / "prepare.py").unlink()
    with pytest.raises(ConfigError, match=r"\[task\] readonly: 'prepare.py' matches no file"):
        load_config(root)
    digest = hashlib.sha256((root / "autoresearch.toml").read_bytes()).hexdigest()
    (root / ".autoresearch").mkdir()
    (root / ".autoresearch" / "lock.json").write_text(json.dumps({"files": {"autoresearch.toml": digest}}))
    assert load_config(root).task.readonly == ["prepare.py"]
