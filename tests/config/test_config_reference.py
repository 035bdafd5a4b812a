"""The configuration reference is rendered from the schema: every section and key is in it, its
example is a valid file, and the MkDocs hook puts it into docs/reference/config.md."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

from autoresearch.config import reference
from autoresearch.config.schema import TaskConfig
from autoresearch.config.task import tomllib
from autoresearch.config.validate import SECTIONS, build_config

REPO = Path(__file__).resolve().parents[2]


def sections_of(text: str) -> dict[str, str]:
    """The reference's text under each `## [section]` heading."""
    parts = re.split(r"^## `\[(\w+)\]`$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_every_section_and_key_is_in_the_reference_in_order() -> None:
    text = reference.markdown()
    found = sections_of(text)
    assert list(found) == list(SECTIONS)  # every section, in the file's order
    for name, cls in SECTIONS.items():
        rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| [^|]+ \| (.+) \|$", found[name], flags=re.M)
        assert [key for key, _ in rows] == [f.name for f in dataclasses.fields(cls)], name
        docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(cls)}
        assert all(what.startswith(docs[key]) for key, what in rows), name


def test_the_reference_shows_defaults_rules_and_the_rules_across_keys() -> None:
    found = sections_of(reference.markdown())
    assert "| `name` | string | **required** |" in found["task"]
    assert '| `goal` | `"minimize"` or `"maximize"` | `"minimize"` |' in found["metric"]
    assert "| `seconds` | number | `300.0` |" in found["budget"] and "Must be positive." in found["budget"]
    assert "Must be in [0.5, 1)." in found["verdict"]
    assert "| `target` | number (optional) | unset |" in found["loop"]
    assert "- `[budget] timeout`, when set, is at least `[budget] seconds`." in reference.markdown()


def test_the_example_is_a_valid_file() -> None:
    config = build_config(tomllib.loads(reference.EXAMPLE), Path("autoresearch.toml"), Path("."))
    assert isinstance(config, TaskConfig) and config.verdict.test == "sequential"
    assert f"```toml\n{reference.EXAMPLE}```" in reference.markdown()


def test_the_docs_hook_replaces_the_marker() -> None:
    path = REPO / "docs" / "hooks" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference_hook", path)
    assert spec and spec.loader
    hook = importlib.util.module_from_spec(spec)
    sys.modules.pop("config_reference_hook", None)
    spec.loader.exec_module(hook)
    page = (REPO / "docs" / "reference" / "config.md").read_text()
    assert hook.MARKER in page
    out = hook.on_page_markdown(page, page=None, config=None, files=None)
    assert hook.MARKER not in out and reference.markdown() in out
    assert hook.on_page_markdown("# Other\n", page=None, config=None, files=None) == "# Other\n"
