"""Transfer checks (`autoresearch transfer`) as the journal keeps them: one JSON list per tag in
the meta table (`transfers:<tag>`), oldest first, the last KEEP_CHECKS of them. Their runs live in
the check's own record, never in the runs table: they measure another configuration, and the
best's reference and the drift rule must not read them as runs of the best.
"""

from __future__ import annotations

import json
from typing import Any

from autoresearch.journal.store import Journal

KEEP_CHECKS = 20


def transfers(journal: Journal, tag: str) -> list[dict[str, Any]]:
    """The transfer checks recorded for TAG, oldest first (none when the entry is unreadable)."""
    try:
        data = json.loads(journal.get_meta(f"transfers:{tag}", "[]") or "[]")
    except ValueError:
        return []
    return [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []


def add_transfer(journal: Journal, tag: str, check: dict[str, Any]) -> int:
    """Record CHECK for TAG; returns its number (1 for the tag's first)."""
    history = transfers(journal, tag)
    number = int(history[-1].get("number", len(history))) + 1 if history else 1
    history.append({**check, "number": number})
    journal.set_meta(f"transfers:{tag}", json.dumps(history[-KEEP_CHECKS:], allow_nan=False))
    return number
