"""The run's environment across a session: a fingerprint per experiment, a new epoch when it changes.

Before each experiment (native or in the loop, the baseline too), the run command's own
interpreter is asked for its fingerprint (harness.fingerprint: Python, the installed
distributions' hash, torch and CUDA, the GPU or CPU model), and the experiment records its id
(`details["env"]`). The fingerprint the tag's epoch was measured in is kept in the journal (meta
`env:<tag>`). A different one, on a tag whose epoch has a best, starts a new epoch at the best,
as `lock --force` does after a harness change (trial.branch.new_epoch): nothing measured before
the change is compared with anything after it, and the best is re-measured under the new
environment before any candidate is compared with it (`experiment` and the loop run that
baseline first). The probe runs on this machine: runs on Ray workers are not fingerprinted.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from autoresearch.harness.env import task_env
from autoresearch.harness.fingerprint import describe_changes, fingerprint_id, probe, stat_key
from autoresearch.journal.store import Journal
from autoresearch.trial.branch import new_epoch
from autoresearch.trial.session import Session


def take(session: Session, stop: threading.Event | None = None) -> dict[str, Any] | None:
    """The fingerprint of the environment the task's runs use now (None: the probe failed; its
    log, `.autoresearch/env/probe.log`, says why).

    The last fingerprint is cached (`env/cache.json`) with the stat key of what it depends on
    (harness.fingerprint.stat_key): while the key holds, no probe runs. The key is read before
    the probe, so an install that lands during a probe leaves a key that no longer matches."""
    folder = session.state_dir / "env"
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = task_env({"AUTORESEARCH_PHASE": "probe"}, list(session.config.task.env), home=home, pycache_prefix=None)
    run = session.config.task.run
    cache = folder / "cache.json"
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        before = stat_key(cached["fp"], run, env)
        if cached["key"] == before:
            return dict(cached["fp"])
    except (OSError, ValueError, KeyError, TypeError):
        cached, before = None, ""
    fp = probe(run, cwd=session.root, env=env, log_path=folder / "probe.log", stop=stop)
    if fp is not None:
        same_sites = cached is not None and cached["fp"].get("sites") == fp.get("sites") \
            and cached["fp"].get("executable") == fp.get("executable")
        key = before if same_sites else stat_key(fp, run, env)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, "fp": fp}), encoding="utf-8")
        tmp.replace(cache)
    return fp


def recorded(journal: Journal, tag: str) -> dict[str, Any] | None:
    """The fingerprint TAG's current epoch was measured in (None before the first experiment)."""
    try:
        data = json.loads(journal.get_meta(f"env:{tag}", "") or "null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def check(session: Session, tag: str, stop: threading.Event | None = None) -> list[str]:
    """Fingerprint the environment now and compare it with TAG's. Returns what changed (empty:
    nothing, the first fingerprint of the tag, or a probe that failed and so cannot tell).

    On a change, when the tag's epoch has a best, a new epoch starts at the best first and the
    new fingerprint is recorded second: a kill between the two leaves an epoch with no best, which
    the next command fills with the baseline, never a change that went unnoticed."""
    fp = take(session, stop)
    if fp is None:
        return []
    journal = session.journal
    old = recorded(journal, tag)
    changes = describe_changes(old, fp) if old else []
    if changes and journal.best(tag) is not None:
        new_epoch(session, tag, session.best_commit(tag), [f"environment: {c}" for c in changes])
    if old is None or changes or old.get("id") != fingerprint_id(fp):
        journal.set_meta(f"env:{tag}", json.dumps({**fp, "id": fingerprint_id(fp)}, sort_keys=True))
    return changes


def current_id(journal: Journal, tag: str) -> str:
    """The id of TAG's current fingerprint ("" before any), for an experiment's record."""
    fp = recorded(journal, tag)
    return str(fp.get("id", "")) if fp else ""
