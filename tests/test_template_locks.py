"""Locked environments: the templates with third-party dependencies ship a `uv.lock` that matches
their pyproject.toml and that `uv sync --locked` accepts (checked offline: no download), read-only
to the agent; the others import nothing outside the standard library, so there is nothing to lock
(their interpreter is in the environment fingerprint)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch.scaffold import list_templates

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TEMPLATES = Path(__file__).resolve().parent.parent / "src" / "autoresearch" / "templates"
UV = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
needs_uv = pytest.mark.skipif(not Path(UV).exists(), reason="uv is not installed (pip install uv; it is in [dev])")
LOCKED = sorted(p.parent.name for p in TEMPLATES.glob("*/pyproject.toml"))


def test_the_templates_with_dependencies_are_the_locked_ones() -> None:
    assert LOCKED == ["nanochat", "tinylm"]
    for name in [t.name for t in list_templates()]:
        folder = TEMPLATES / name
        if name in LOCKED:
            assert (folder / "uv.lock").is_file()
            readonly = tomllib.loads((folder / "autoresearch.toml").read_text())["task"]["readonly"]
            assert {"pyproject.toml", "uv.lock"} <= set(readonly), name  # experiments may not add packages
            continue
        local = {p.stem for p in folder.glob("*.py")}
        for path in folder.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                for name_ in names:
                    top = name_.split(".")[0]
                    assert top in sys.stdlib_module_names or top in local or top == "__future__", (path, top)


@needs_uv
@pytest.mark.parametrize("template", LOCKED)
def test_the_lockfile_matches_and_uv_sync_accepts_it(template: str, tmp_path: Path) -> None:
    task = tmp_path / template
    shutil.copytree(TEMPLATES / template, task)
    env = {"UV_CACHE_DIR": str(tmp_path / "uv-cache"), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    check = subprocess.run([UV, "lock", "--check", "--offline"], cwd=task, capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stderr
    sync = subprocess.run([UV, "sync", "--locked", "--dry-run", "--offline"], cwd=task, capture_output=True,
                          text=True, env=env)
    assert sync.returncode == 0, sync.stderr
    assert "+ torch==" in sync.stderr + sync.stdout
    # a dependency edited without `uv lock` is caught
    pyproject = task / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"numpy>=1.26"', '"numpy>=1.27"'))
    stale = subprocess.run([UV, "lock", "--check", "--offline"], cwd=task, capture_output=True, text=True, env=env)
    assert stale.returncode != 0, stale.stderr  # offline: "needs to be updated" or "no solution"
