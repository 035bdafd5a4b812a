"""What the agents of a session cost: tokens, money and time, summed over its proposals.

One function for every place that shows it (`status`, `review`, the report's summary and the
final line of `run`), so they always agree. Failed attempts count: a crash still spent what its
agent reported. Cost is in the currency the CLIs report (US dollars); an attempt whose agent
reported none (Codex, Gemini CLI, a model with no price) adds nothing, and the line says how
many were priced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from autoresearch.journal.records import Experiment


@dataclass(frozen=True)
class Totals:
    proposals: int  # attempts at a change (the baseline and replays are none)
    tokens_in: int | None  # None: no attempt reported any
    tokens_out: int | None
    cost_usd: float | None
    priced: int  # attempts that reported a cost
    agent_seconds: float  # time spent proposing

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """`3 proposals, 12,000 tokens in / 600 out, $0.0412 (2 of 3 priced), 1.2 min of agent time`."""
        parts = [f"{self.proposals} proposal{'s' if self.proposals != 1 else ''}"]
        if self.tokens_in is not None or self.tokens_out is not None:
            parts.append(f"{self.tokens_in or 0:,} tokens in / {self.tokens_out or 0:,} out")
        else:
            parts.append("no tokens reported")
        if self.cost_usd is None:
            parts.append("cost not reported")
        else:
            priced = "" if self.priced == self.proposals else f" ({self.priced} of {self.proposals} priced)"
            parts.append(f"${self.cost_usd:.4g}{priced}")
        parts.append(f"{duration(self.agent_seconds)} of agent time")
        return ", ".join(parts)


def totals(experiments: list[Experiment]) -> Totals:
    """The agents' totals over EXPERIMENTS (one tag's, or one `run`'s)."""
    proposals = [e for e in experiments if not e.is_baseline and "replay_of" not in e.details]
    tokens_in = [e.tokens_in for e in proposals if e.tokens_in is not None]
    tokens_out = [e.tokens_out for e in proposals if e.tokens_out is not None]
    costs = [e.cost_usd for e in proposals if e.cost_usd is not None]
    return Totals(proposals=len(proposals), tokens_in=sum(tokens_in) if tokens_in else None,
                  tokens_out=sum(tokens_out) if tokens_out else None, cost_usd=sum(costs) if costs else None,
                  priced=len(costs), agent_seconds=sum(e.propose_seconds or 0.0 for e in proposals))


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
