"""The rules for N experiments in flight: what happens to a winner whose parent is no longer
the best, and what each proposer is told about the others.

Merge semantics
---------------
A candidate is measured and screened against the parent it was proposed on. When it finishes:

- it crashed, broke a constraint, or is not better than its parent: `crash` / `discard`, exactly
  as in the sequential loop;
- it is better and its parent is still the best: the verdict policy runs to the end (repeats,
  paired confirmation) and a keep moves the branch forward to it;
- it is better but the best has moved meanwhile (another slot kept something): the candidate is
  recorded as `discard` with reason `stale-replayed`, and its diff is replayed on the new best by
  a three-way merge (`git merge-tree`). The combination becomes a new experiment in the same
  slot (`replay #<seq>: <description>`), run and judged against the new best like any other,
  so it is kept only when its own run confirms it. If the diff does not apply the candidate's
  reason is `stale-conflict`; if it adds nothing to the new best, `stale-duplicate`. A replay
  that goes stale in turn is replayed again, at most MAX_REPLAYS times (`stale-superseded`).

So: every keep is a child of the previous keep (the branch only moves forward), nothing kept is
ever dropped (a keep is never replaced, only built upon), and no combination is kept without a
run of its own. Replays get their own seq, so keeps are in seq order, `journal.best` (the last
keep) is always the branch's tip, and each row of results.tsv is one measured commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoresearch.git.replay import replay_tree
from autoresearch.git.workspace import Workspace
from autoresearch.journal.records import Experiment
from autoresearch.verdict import Verdict

MAX_REPLAYS = 3  # replays of one idea before it gives up on a best that keeps moving


@dataclass
class Replay:
    """Work for a slot: run this stale candidate's change again on top of ONTO."""

    of: Experiment
    tree: str
    onto: str
    round: int


def replay_outcome(ws: Workspace, exp: Experiment, best: str, best_tree: str,
                   stopping: bool) -> tuple[Verdict, Replay | None]:
    """A better candidate whose parent is no longer the best: its verdict, and the replay of
    its diff on the new best when there is one to run."""
    exp.details["stale"] = {"parent": exp.parent, "best": best}
    round_ = int(exp.details.get("replay_round", 0)) + 1
    if stopping:
        return Verdict("discard", "stale-stopped"), None
    if round_ > MAX_REPLAYS:
        return Verdict("discard", "stale-superseded"), None
    tree = replay_tree(ws, exp.commit_sha, best)
    if tree is None:
        return Verdict("discard", "stale-conflict"), None
    if tree == best_tree:
        return Verdict("discard", "stale-duplicate"), None
    return Verdict("discard", "stale-replayed"), Replay(of=exp, tree=tree, onto=best, round=round_)


def in_flight_note(others: list["Experiment"]) -> str:
    """The brief's note on the ideas other slots are running, so a proposer does not repeat them."""
    others = [e for e in others if e.description not in ("", "(proposing)")]
    if not others:
        return ""
    lines = ["", "## Running in parallel right now (do not repeat these ideas)"]
    lines += [f"- seq {e.seq}: {' '.join(e.description.split())[:100]}" for e in others]
    return "\n".join(lines) + "\n"
