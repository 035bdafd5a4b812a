"""The environment the runs measured in, for `status` and the report: the tag's current
fingerprint (trial.environment) and every change that started a new epoch.
"""

from __future__ import annotations

import html
from typing import Any

from autoresearch.harness.fingerprint import KEYS, summary
from autoresearch.trial.branch import epochs
from autoresearch.trial.environment import recorded
from autoresearch.trial.session import Session

PREFIX = "environment: "


def environment_info(session: Session, tag: str) -> dict[str, Any]:
    """The current fingerprint (without the package list) and the environment's epoch changes."""
    fp = recorded(session.journal, tag)
    changes = [{"epoch": e.get("epoch"), "after_seq": e.get("after_seq"), "at": e.get("at"),
                "changes": [c[len(PREFIX):] for c in e.get("changed", []) if c.startswith(PREFIX)]}
               for e in epochs(session, tag)]
    return {"id": fp.get("id") if fp else None, "summary": summary(fp) if fp else None,
            "fingerprint": {k: fp.get(k) for k in KEYS} if fp else None,
            "changes": [c for c in changes if c["changes"]]}


def environment_lines(info: dict[str, Any]) -> list[str]:
    """`status` lines: the fingerprint, then each change and the epoch it started."""
    lines = [f"env      {info['summary']} [{info['id']}]"] if info.get("summary") else []
    for change in info.get("changes", []):
        lines.append(f"         changed after seq {change['after_seq']} (epoch {change['epoch']}, the best re-measured "
                     f"under it): {'; '.join(change['changes'])}")
    return lines


def environment_html(info: dict[str, Any]) -> str:
    """The report's section: the fingerprint and the changes (empty without a fingerprint)."""
    if not info.get("summary"):
        return ""
    items = "".join(f"<li>after seq {c['after_seq']}: epoch {c['epoch']} started, the best re-measured under it: "
                    f"{html.escape('; '.join(c['changes']))}</li>" for c in info.get("changes", []))
    changes = f'<ul class="env-changes">{items}</ul>' if items else '<p class="muted">No change during the run.</p>'
    return (f'<section id="environment"><h2>Environment</h2><p>{html.escape(info["summary"])} '
            f'<span class="muted">[{html.escape(str(info["id"]))}]</span></p>{changes}</section>\n')
