"""Only your own folders: no command reads a config, or runs anything, from a folder another
user owns (as git's safe.directory), unless the caller says it trusts it."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest
from conftest import ar, git, make_task

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@needs_root
def test_a_folder_owned_by_someone_else_runs_nothing(tmp_path: Path) -> None:
    root = make_task(tmp_path, baseline=False)
    marker = tmp_path / "setup-ran"
    config = root / "autoresearch.toml"
    config.write_text(config.read_text().replace("[task]\n", f'[task]\nsetup = "touch {marker}"\n', 1))
    git(root, "commit", "-qam", "a setup")
    ar(root, "lock")
    sub = root / "deeper"
    sub.mkdir()
    nobody = pwd.getpwnam("nobody")
    subprocess.run(["chown", "-R", f"{nobody.pw_uid}:{nobody.pw_gid}", str(root)], check=True)
    out = ar(sub, "baseline", check=False)  # below the other user's folder, as git's attack has it
    assert out.returncode != 0 and not marker.exists()
    assert "nobody" in out.stderr and "AUTORESEARCH_SAFE_DIRECTORIES" in out.stderr and str(root) in out.stderr
    assert "Traceback" not in out.stderr
    for command in (("status",), ("results",), ("experiment", "-m", "x")):
        proc = ar(sub, *command, check=False)
        assert proc.returncode != 0 and "nobody" in proc.stderr, command


@needs_root
def test_a_config_file_owned_by_someone_else_is_refused_and_trust_is_a_way_out(tmp_path: Path) -> None:
    root = make_task(tmp_path, start=False)
    os.chown(root / "autoresearch.toml", pwd.getpwnam("nobody").pw_uid, -1)
    out = ar(root, "status", check=False)
    assert out.returncode != 0 and "autoresearch.toml" in out.stderr and "nobody" in out.stderr
    trusted = ar(root, "status", env={"AUTORESEARCH_SAFE_DIRECTORIES": str(root)})
    assert "task" in trusted.stdout
