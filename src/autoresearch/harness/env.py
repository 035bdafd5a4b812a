"""The environment contract of a run: what a run (or the task's setup, or an agent) inherits from
ours, and what it is told (`AUTORESEARCH_*`, a private HOME, no bytecode caches).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from autoresearch.harness.cpuclock import available_cpus


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a run: ours, `python` resolving to this interpreter, plus EXTRA."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("AUTORESEARCH_CACHE", str(Path.home() / ".cache" / "autoresearch"))
    env.update(extra)
    return env


# What a run may inherit from our environment, by name (task_env). Everything else (API keys,
# tokens, cloud credentials, SSH agents, the user's PYTHONPATH) stays out unless the task lists
# it in `[task] env`.
PASSED_NAMES = frozenset({
    "LANG", "LANGUAGE", "TZ", "TERM",
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "TORCH_NUM_THREADS", "OMP_WAIT_POLICY", "LD_LIBRARY_PATH",
    "CUDA_HOME", "CUDA_PATH", "ROCM_PATH", "HIP_PATH",
})
PASSED_PREFIXES = ("LC_", "AUTORESEARCH_")


def task_env(extra: dict[str, str], allow: list[str], *, home: Path, pycache_prefix: Path | None,
             environ: dict[str, str] | None = None) -> dict[str, str]:
    """The minimal environment of a run: PATH (this interpreter's bin first), HOME pointed at
    the caller's private folder, locale and time zone, the device and thread-count variables,
    `AUTORESEARCH_*`, the names in ALLOW (`[task] env`), then EXTRA.

    Bytecode: Python never writes caches (PYTHONDONTWRITEBYTECODE), so a run cannot leave one
    for a later run. With PYCACHE_PREFIX set, it also reads none from next to the sources: a
    cache planted in an ignored `__pycache__/` of the task folder is never loaded. The price is
    that nothing is cached, libraries included (measured on 2 cores: `import torch` 6.5 s ->
    15 s, `import numpy` 0.5 s -> 1.7 s), so a run from a clean export (no `__pycache__` in
    it, read-only to the run) may pass None and keep the libraries' own caches, which the
    sandbox makes read-only to the agent and the runs. The user site is off (PYTHONNOUSERSITE)."""
    source = os.environ if environ is None else environ
    allowed = set(allow)
    env = {name: value for name, value in source.items()
           if name in PASSED_NAMES or name.startswith(PASSED_PREFIXES) or name in allowed}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + source.get("PATH", os.defpath)
    env["HOME"] = str(home)
    env.setdefault("LANG", "C.UTF-8")
    # Templates keep data under $AUTORESEARCH_CACHE: the real user's cache, not the private HOME's.
    env.setdefault("AUTORESEARCH_CACHE", str(Path(source.get("HOME") or Path.home()) / ".cache" / "autoresearch"))
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1"})
    if pycache_prefix is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache_prefix)
    env.update(extra)
    return env


# The thread-pool variables a run is given, unless the user's environment sets them itself.
THREAD_NAMES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS")


def thread_env(env: dict[str, str]) -> dict[str, str]:
    """Thread pools sized to the cores this run may use (`cpuclock.available_cpus`: the slot's
    core set, a CPU quota), and OpenMP threads that sleep when they wait (OMP_WAIT_POLICY=PASSIVE).

    Spinning threads are the trap of a shared machine: beside a one-core hog on 2 cores, tinylm
    with OpenMP's default waits trained 8x slower than with passive ones, and on the cpu clock
    the spin is charged as training (benchmarks/noise.py). A value already in ENV (the user's
    own, passed through) wins. AUTORESEARCH_CPUS says the count to code that sizes its own pools."""
    cpus = str(available_cpus())
    out = {"AUTORESEARCH_CPUS": cpus}
    for name in THREAD_NAMES:
        if name not in env:
            out[name] = cpus
    if "OMP_WAIT_POLICY" not in env:
        out["OMP_WAIT_POLICY"] = "PASSIVE"
    return out
