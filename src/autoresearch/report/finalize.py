"""`autoresearch finalize`: the night's keeps as a clean branch a human can review and merge.

The branch `autoresearch/<tag>-final` starts at the commit the run started from (journal meta
`start:<tag>`) and gets one commit per kept experiment, in order: that experiment's diff
against its parent, applied with a 3-way merge, with a message that carries the description
and the measured delta. A keep that does not apply cleanly is reported, never forced: the
branch stops before it (or, with skip_conflicts, leaves it out and goes on).

Everything happens in a temporary index with git plumbing, so the work tree, the real index
and the branch that is checked out are never touched; a running loop is not disturbed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from autoresearch.errors import AutoresearchError
from autoresearch.git.workspace import GitError, Workspace, branch_name
from autoresearch.journal.records import Experiment, fixed
from autoresearch.report.gains import estimate_words, keep_estimate
from autoresearch.trial.session import Session


class FinalizeError(AutoresearchError):
    """Finalize cannot start (no run, no start commit, the branch exists)."""


@dataclass
class Applied:
    seq: int
    commit: str  # the new commit on the final branch
    source: str  # the experiment's commit
    description: str
    delta: float | None
    gain: str = ""  # the gain as its decision's evidence states it (gains.estimate_words)


@dataclass
class Conflict:
    seq: int
    description: str
    paths: list[str]
    message: str


@dataclass
class FinalizeResult:
    branch: str
    start: str
    tip: str
    applied: list[Applied] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (seq, why)
    conflicts: list[Conflict] = field(default_factory=list)
    stopped_at: int | None = None  # the seq of the conflict that stopped it
    matches_best: bool = False
    differs_from_best: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.conflicts

    def to_json(self) -> dict[str, Any]:
        return {
            "branch": self.branch, "start": self.start, "tip": self.tip, "ok": self.ok,
            "applied": [vars(a) for a in self.applied], "skipped": [{"seq": s, "why": w} for s, w in self.skipped],
            "conflicts": [vars(c) for c in self.conflicts], "stopped_at": self.stopped_at,
            "matches_best": self.matches_best, "differs_from_best": self.differs_from_best,
        }


def final_branch(tag: str) -> str:
    return f"{branch_name(tag)}-final"


def commit_message(exp: Experiment, metric: str, maximize: bool, holdout: str = "") -> str:
    """The description first (the subject), then what was measured."""
    subject = " ".join((exp.description or f"experiment {exp.seq}").split())
    body = str(exp.details.get("description_full") or "")  # the whole description, where the subject is clipped
    lines = [subject, "", *([body, ""] if body else [])]
    better = "higher" if maximize else "lower"
    est = keep_estimate(exp, maximize)
    if exp.metric is not None and est is not None and est.how != "screen":
        # the gain its confirmation measured, never its metric against a bar that may be stale
        lines.append(f"{metric}: {fixed(exp.metric)} ({better} is better); {estimate_words(est)}")
    elif exp.metric is not None and exp.best_before is not None:
        delta = exp.metric - exp.best_before
        pct = f", {100 * delta / abs(exp.best_before):+.2f}%" if exp.best_before else ""
        lines.append(f"{metric}: {fixed(exp.best_before)} -> {fixed(exp.metric)} (delta {fixed(delta, 6, '+')}{pct}; "
                     f"{better} is better; one run against the bar of its time, not confirmed)")
    elif exp.metric is not None:
        lines.append(f"{metric}: {fixed(exp.metric)}")
    if holdout and exp.holdout is not None:
        lines.append(f"{holdout} (held-out data): {fixed(exp.holdout)}")
    if exp.reason and exp.reason != "improved":
        lines.append(f"verdict: keep ({exp.reason})")
    lines += ["", f"autoresearch-seq: {exp.seq}", f"autoresearch-tag: {exp.tag}",
              f"autoresearch-experiment: {exp.commit_sha}"]
    return "\n".join(lines) + "\n"


class _TempIndex:
    """A throwaway index file: the final branch's trees are built here, never in the real one."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        fd, self.path = tempfile.mkstemp(prefix="autoresearch-final-index-")
        os.close(fd)
        os.unlink(self.path)
        self.env = {"GIT_INDEX_FILE": self.path}

    def git(self, *args: str, input: str | None = None) -> str:
        return self.ws.git(*args, env=self.env, input=input)

    def close(self) -> None:
        for path in (self.path, self.path + ".lock"):
            if os.path.exists(path):
                os.unlink(path)


def finalize(session: Session, tag: str | None = None, *, force: bool = False,
             skip_conflicts: bool = False) -> FinalizeResult:
    """Build autoresearch/<tag>-final from the start commit and the keeps of TAG."""
    ws = session.ws
    journal = session.journal
    tag = tag or session.tag
    if not tag:
        raise FinalizeError("no run tag: pass --tag, or start a run first")
    start = journal.get_meta(f"start:{tag}")
    if not start or not ws.rev(start):
        raise FinalizeError(f"the journal has no start commit for tag {tag!r} (meta start:{tag})")
    branch = final_branch(tag)
    if ws.branch_exists(branch) and not force:
        raise FinalizeError(f"the branch {branch} already exists: review it, delete it "
                            f"(git branch -D {branch}) or pass --force to rebuild it")
    if ws.current_branch() == branch:
        raise FinalizeError(f"{branch} is checked out: switch away from it before rebuilding it")
    config = session.config
    result = FinalizeResult(branch=branch, start=start, tip=start)
    keeps = [e for e in journal.experiments(tag) if e.status == "keep"]
    index = _TempIndex(ws)
    try:
        index.git("read-tree", start)
        for exp in keeps:
            commit = exp.commit_sha if exp.commit_sha and ws.rev(exp.commit_sha) else None
            if commit is None:
                result.skipped.append((exp.seq, "its commit is gone"))
                continue
            parent = exp.parent if exp.parent and ws.rev(exp.parent) else ws.rev(f"{commit}^")
            if parent is None or ws.tree_of(parent) == ws.tree_of(commit):
                result.skipped.append((exp.seq, "baseline (no change)" if exp.is_baseline else "no change"))
                continue
            patch = ws.git("diff", "--binary", "--full-index", "--no-color", "--no-ext-diff", parent, commit)
            try:
                index.git("apply", "--cached", "--3way", "--whitespace=nowarn", input=patch)
            except GitError as exc:
                unmerged = index.git("ls-files", "-u")
                paths = sorted({line.split("\t", 1)[1] for line in unmerged.splitlines() if "\t" in line})
                result.conflicts.append(Conflict(exp.seq, exp.description, paths, str(exc)[-2000:]))
                index.git("read-tree", result.tip)  # back to the last clean state
                if not skip_conflicts:
                    result.stopped_at = exp.seq
                    break
                continue
            tree = index.git("write-tree").strip()
            if tree == ws.tree_of(result.tip):
                result.skipped.append((exp.seq, "already applied (no change left)"))
                continue
            message = commit_message(exp, config.metric.name, config.maximize, config.metric.holdout)
            new = ws.git("commit-tree", tree, "-p", result.tip, input=message).strip()
            result.tip = new
            est = keep_estimate(exp, config.maximize)
            result.applied.append(Applied(exp.seq, new, commit, exp.description, exp.delta(),
                                          estimate_words(est) if est is not None else ""))
    finally:
        index.close()
    ws.git("update-ref", "-m", "autoresearch finalize", f"refs/heads/{branch}", result.tip)
    try:
        best = session.best_commit(tag)
    except Exception:  # noqa: BLE001 - the run branch may be gone; the comparison is only advisory
        best = None
    if best:
        changes = ws.changes(ws.tree_of(best), ws.tree_of(result.tip))
        result.differs_from_best = [c.path for c in changes]
        result.matches_best = not changes
    return result


__all__ = ["FinalizeError", "FinalizeResult", "commit_message", "final_branch", "finalize"]
