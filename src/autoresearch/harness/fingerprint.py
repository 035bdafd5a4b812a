"""The environment a run measures in, as a fingerprint: the interpreter the run command uses, its
installed distributions, torch and the CUDA it was built for, the GPU or CPU model.

A package upgraded between two runs moves the metric as surely as an edited harness, so the
fingerprint is compared from one experiment to the next (trial.environment) and a change starts
a new epoch. It is taken by the run's own interpreter, not ours: a harness-owned probe (PROBE)
runs as `<the run command's python> -c PROBE` in the run's environment (probe_command finds that
python in the command: `python train.py`, `.venv/bin/python3 -u train.py`, `uv run train.py`).
The probe reads what importlib.metadata reads (each `.dist-info` METADATA on sys.path) without
importing a package, and torch's CUDA version from torch/version.py as text: importing torch
would cost seconds, the probe costs a Python start-up (about 25 ms).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import threading
from pathlib import Path
from typing import Any

from autoresearch.harness.process import run_command

MARK = "autoresearch-env: "
PROBE_TIMEOUT_S = 120.0  # `uv run` may sync the environment first

# Runs as `python -c PROBE`: prints one line, MARK + the fingerprint as JSON.
PROBE = r'''
import sys
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]  # not the working folder: a planted json.py there must not answer for us
import glob, json, os, platform, re
dists = {}
torch_dir = None
sites = []
for folder in sys.path:
    try:
        names = sorted(os.listdir(folder or "."))
    except OSError:
        continue
    sites.append(os.path.abspath(folder or "."))
    if torch_dir is None and "torch" in names and os.path.isfile(os.path.join(folder, "torch", "version.py")):
        torch_dir = os.path.join(folder, "torch")
    for name in names:
        if not name.endswith((".dist-info", ".egg-info")):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            path = os.path.join(path, "METADATA" if name.endswith(".dist-info") else "PKG-INFO")
        try:
            with open(path, "rb") as fh:
                head = fh.read(16384).decode("utf-8", "replace")
        except OSError:
            continue
        n = re.search(r"^Name:[ \t]*(\S+)", head, re.M)
        v = re.search(r"^Version:[ \t]*(\S+)", head, re.M)
        if n and v:  # the first on sys.path wins, as for importlib.metadata
            dists.setdefault(re.sub(r"[-_.]+", "-", n.group(1)).lower(), v.group(1))
cuda = hip = None
if torch_dir:
    with open(os.path.join(torch_dir, "version.py"), encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    found = re.search(r"^cuda\s*(?::[^=\n]*)?=\s*['\"]([^'\"]+)", text, re.M)
    cuda = found.group(1) if found else None
    found = re.search(r"^hip\s*(?::[^=\n]*)?=\s*['\"]([^'\"]+)", text, re.M)
    hip = found.group(1) if found else None
gpus = set()
for info in glob.glob("/proc/driver/nvidia/gpus/*/information"):
    try:
        with open(info, encoding="utf-8", errors="replace") as fh:
            found = re.search(r"^Model:\s*(.+?)\s*$", fh.read(), re.M)
    except OSError:
        found = None
    if found:
        gpus.add(found.group(1))
cpu = ""
try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
        found = re.search(r"^(?:model name|Hardware|cpu model)\s*:\s*(.+?)\s*$", fh.read(), re.M)
    cpu = found.group(1) if found else ""
except OSError:
    pass
print("autoresearch-env: " + json.dumps({
    "python": platform.python_implementation() + " " + platform.python_version(),
    "machine": platform.machine(), "dists": dists, "torch": dists.get("torch"), "cuda": cuda, "hip": hip,
    "gpu": sorted(gpus), "cpu": cpu or platform.processor() or platform.machine(),
    "sites": sites, "executable": os.path.realpath(sys.executable),
}, sort_keys=True), flush=True)
'''

_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")
_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")"}
# `<tool> run ... script.py` runs the script with the project's `python`: uv, poetry, pdm, hatch, pixi, conda
_RUNNERS = {"uv", "poetry", "pdm", "hatch", "pixi", "conda", "pipenv", "rye"}


def _join(words: list[str]) -> str:
    return " ".join(w if w in _OPERATORS else shlex.quote(w) for w in words)


def probe_command(run: str) -> str:
    """The command that asks the run command's interpreter for its fingerprint: the run command
    up to its python, then `-c PROBE`. A script started by a runner (`uv run train.py`) is
    replaced by `python`, which the runner resolves the way it resolves the script's; a command
    with no python in it (`make`, `bash run.sh`) is probed through the `python` on the run's PATH."""
    try:
        words = shlex.split(run)
    except ValueError:
        words = []
    code = "-c " + shlex.quote(PROBE)
    for i, word in enumerate(words):
        if _PYTHON.match(os.path.basename(word)):
            return f"{_join(words[:i + 1])} {code}"
        if word.endswith(".py"):
            start = max([j + 1 for j, w in enumerate(words[:i]) if w in _OPERATORS], default=0)
            prefix = words[start:i]
            if len(prefix) >= 2 and os.path.basename(prefix[0]) in _RUNNERS and prefix[1] == "run":
                return f"{_join(words[:i])} python {code}"
            break
    return f"python {code}"


def read_probe(text: str) -> dict[str, Any] | None:
    """The fingerprint the probe printed in TEXT (its log), or None."""
    for line in reversed(text.splitlines()):
        if line.startswith(MARK):
            try:
                data = json.loads(line[len(MARK):])
            except ValueError:
                return None
            if isinstance(data, dict) and isinstance(data.get("dists"), dict):
                data["packages"] = packages_hash(data["dists"])
                return data
            return None
    return None


def packages_hash(dists: dict[str, str]) -> str:
    text = "\n".join(f"{name}=={version}" for name, version in sorted(dists.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


KEYS = ("python", "machine", "packages", "torch", "cuda", "hip", "gpu", "cpu")


def fingerprint_id(fp: dict[str, Any]) -> str:
    """A short name of the fingerprint: equal ids, the same environment."""
    text = json.dumps({k: fp.get(k) for k in KEYS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _versions(old: dict[str, str], new: dict[str, str], limit: int = 6) -> str:
    moved = [f"{n} {old[n]} -> {new[n]}" for n in sorted(old.keys() & new.keys()) if old[n] != new[n]]
    moved += [f"+{n} {new[n]}" for n in sorted(new.keys() - old.keys())]
    moved += [f"-{n} {old[n]}" for n in sorted(old.keys() - new.keys())]
    more = f" and {len(moved) - limit} more" if len(moved) > limit else ""
    return ", ".join(moved[:limit]) + more


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, one phrase each (empty: the same environment)."""
    changes = []
    for key, label in (("python", "Python"), ("machine", "machine"), ("torch", "torch"), ("cuda", "CUDA"),
                       ("hip", "ROCm"), ("gpu", "GPU"), ("cpu", "CPU")):
        a, b = old.get(key), new.get(key)
        if a != b:
            show = (lambda v: ", ".join(v) or "none") if key == "gpu" else (lambda v: v or "none")
            changes.append(f"{label} {show(a)} -> {show(b)}")
    if old.get("packages") != new.get("packages"):
        changes.append("packages: " + (_versions(old.get("dists") or {}, new.get("dists") or {}) or "changed"))
    return changes


def summary(fp: dict[str, Any]) -> str:
    """One line: the interpreter, the packages, torch/CUDA, the device."""
    parts = [fp.get("python") or "?", f"{len(fp.get('dists') or {})} packages ({fp.get('packages', '?')[:8]})"]
    if fp.get("torch"):
        parts.append(f"torch {fp['torch']}" + (f" CUDA {fp['cuda']}" if fp.get("cuda") else "")
                     + (f" ROCm {fp['hip']}" if fp.get("hip") else ""))
    parts.append(", ".join(fp.get("gpu") or []) or fp.get("cpu") or "?")
    return " · ".join(parts)


def _stat(path: str) -> list[int]:
    try:
        st = os.stat(path)
    except OSError:
        return []
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def stat_key(fp: dict[str, Any], run: str, env: dict[str, str]) -> str:
    """What a fingerprint depends on, read in microseconds: the probe command and its environment,
    the `python` the PATH resolves, the interpreter and every folder on its sys.path (an install,
    an upgrade or an uninstall adds or renames a `.dist-info` folder there, which changes the
    folder's mtime), and the boot (a new GPU needs one). Equal keys, the same fingerprint: the
    probe's Python start-up is spent only when one of these moved."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = ""
    python = shutil.which("python", path=env.get("PATH")) or ""
    parts = [probe_command(run), sorted(env.items()), boot, python, _stat(python),
             fp.get("executable"), _stat(str(fp.get("executable") or ""))]
    parts += [(site, _stat(site)) for site in fp.get("sites") or []]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def probe(run: str, *, cwd: Path, env: dict[str, str], log_path: Path,
          stop: threading.Event | None = None) -> dict[str, Any] | None:
    """The fingerprint of the environment RUN (the task's run command) runs in, taken by its own
    interpreter in ENV; None when the probe failed (LOG_PATH says why)."""
    log_path.unlink(missing_ok=True)  # the log is appended to: one probe's output in it
    result = run_command(probe_command(run), cwd=cwd, env=env, timeout=PROBE_TIMEOUT_S, log_path=log_path,
                         log_max_bytes=1024 * 1024, stop=stop)
    if not result.ok:
        return None
    try:
        return read_probe(log_path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
