"""The run sandbox: bubblewrap (`bwrap`) around each phase of an experiment.

Run phase: the whole filesystem read-only, the task's `.autoresearch/` hidden except the run's
own fresh output dir (writable), a private /tmp and HOME that vanish after the run, the
validation and holdout data hidden, no network unless asked. Evaluate phase: the same, with
the evaluation data visible and the run's outputs read-only.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .session import SessionError


class SandboxUnavailable(SessionError):
    """`[sandbox] kind = "bwrap"` where bubblewrap cannot run."""


@dataclass(frozen=True)
class SandboxSpec:
    """Mounts, applied in this order over a read-only root and an empty private /tmp:
    `visible` re-exposes what the run needs that lives under /tmp (the task, the interpreter,
    the data), `hidden` masks folders with an empty one, `readonly` re-exposes paths inside a
    masked folder, `writable` binds the output dir read-write."""

    writable: list[Path] = field(default_factory=list)
    readonly: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)
    visible: list[Path] = field(default_factory=list)
    network: bool = False
    home: str = "/tmp/home"  # private HOME inside the private /tmp
    agent: bool = False  # the proposer phase: everything writable except `readonly`, real HOME, network


@functools.lru_cache(maxsize=1)
def bwrap_works() -> bool:
    """Whether bwrap is installed and can create its namespaces here (it can't everywhere)."""
    exe = shutil.which("bwrap")
    if not exe:
        return False
    probe = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
             "--unshare-pid", "--unshare-net", "--die-with-parent", "/bin/true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def resolve_kind(kind: str) -> tuple[str, str]:
    """The sandbox that will actually be used, and a message for the user when it differs."""
    if kind == "none":
        return "none", ""
    if bwrap_works():
        return "bwrap", ""
    hint = ("bubblewrap is not usable here, so runs are NOT sandboxed (install it: "
            "`apt-get install bubblewrap`, or `[sandbox] kind = \"none\"` to silence this)")
    if kind == "bwrap":
        raise SandboxUnavailable(f"[sandbox] kind = \"bwrap\" but {hint.split(', so')[0]}")
    return "none", hint


def expand_path(text: str, env: dict[str, str]) -> Path:
    """`$AUTORESEARCH_CACHE/x` and `~/x` in config paths, expanded against the run's env."""
    expanded = text
    for key, value in env.items():
        if key.startswith("AUTORESEARCH_"):
            expanded = expanded.replace(f"${{{key}}}", value).replace(f"${key}", value)
    return Path(os.path.expanduser(os.path.expandvars(expanded))).resolve()


def agent_spec(kind: str, root: Path, run_dir: Path) -> SandboxSpec | None:
    """The coding agent's sandbox: it may edit the task, use the network and write its own
    scratch files in RUN_DIR, but the journal, earlier runs and git itself are read-only, so an
    agent cannot rewrite its own record or move the branch."""
    if kind == "none" or not bwrap_works():
        return None
    protected = [root / ".autoresearch", root / ".git"]
    return SandboxSpec(readonly=[p for p in protected if p.exists()], writable=[run_dir], network=True, agent=True)


def wrap_command(command: str, *, cwd: Path, spec: SandboxSpec) -> list[str]:
    exe = shutil.which("bwrap") or "bwrap"
    if spec.agent:
        argv = [exe, "--bind", "/", "/", "--dev-bind", "/dev", "/dev", "--die-with-parent"]
        for path in spec.readonly:
            argv += ["--ro-bind", str(path), str(path)]
        if any(_within(cwd, p) for p in spec.readonly):  # a parallel slot's worktree, .autoresearch/worktrees/
            argv += ["--bind", str(cwd), str(cwd)]
        for path in spec.writable:
            argv += ["--bind", str(path), str(path)]
        return argv + ["--chdir", str(cwd), "/bin/sh", "-c", command]
    argv = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--unshare-pid", "--die-with-parent", "--unshare-ipc", "--unshare-uts"]
    if not spec.network:
        argv.append("--unshare-net")
    for path in _needed_under_tmp(cwd, spec):
        argv += ["--ro-bind", str(path), str(path)]
    for path in spec.hidden:
        if path.exists():
            argv += ["--tmpfs", str(path)]
    inside_hidden = [cwd] if any(_within(cwd, h) for h in spec.hidden) else []
    for path in [*inside_hidden, *spec.readonly]:
        if path.exists():
            argv += ["--ro-bind", str(path), str(path)]
    for path in spec.writable:
        path.mkdir(parents=True, exist_ok=True)
        argv += ["--bind", str(path), str(path)]
    argv += ["--dir", spec.home, "--setenv", "HOME", spec.home, "--setenv", "TMPDIR", "/tmp",
             "--chdir", str(cwd), "/bin/sh", "-c", command]
    return argv


def _within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _needed_under_tmp(cwd: Path, spec: SandboxSpec) -> list[Path]:
    """Paths under /tmp that the private /tmp would otherwise hide: the task folder, the
    Python installation, the data and the cache (tests and CI clones often live in /tmp)."""
    tmp = Path("/tmp").resolve()
    candidates = [cwd, Path(sys.prefix), Path(sys.base_prefix), *spec.visible, *spec.readonly]
    cache = os.environ.get("AUTORESEARCH_CACHE")
    if cache:
        candidates.append(Path(cache))
    seen: list[Path] = []
    for path in candidates:
        path = path.resolve()
        if _within(path, tmp) and path.exists() and not any(_within(path, s) for s in seen):
            seen = [s for s in seen if not _within(s, path)] + [path]
    return seen
