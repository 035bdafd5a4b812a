"""The research log of one run tag, read from the task: its records, each one's change (read
from git once, then kept in the record's `details.changed`), and the noise the effects are
judged against. Used by the loop's brief, `review --log` and `review --program`."""

from __future__ import annotations

from autoresearch import verdict as V
from autoresearch.journal.records import Experiment
from autoresearch.proposers.changes import change_of
from autoresearch.proposers.digest import DIGEST_MAX_CHARS, research_digest
from autoresearch.trial.session import Session


def changes_of(session: Session, experiments: list[Experiment]) -> dict[int, dict]:
    """Seq -> change of each settled experiment; a record without one gets it (once)."""
    s = session
    changes: dict[int, dict] = {}
    for e in experiments:
        if e.status == "running":  # not in the log until it is settled
            continue
        changes[e.seq] = change_of(e, s.ws)
        if "changed" not in e.details and e.commit_sha:
            e.details["changed"] = changes[e.seq]
            s.journal.update(e)
    return changes


def noise_sd(session: Session, tag: str) -> float:
    """The run-to-run sd: `noise`'s record, else what replicate runs tell; 0 when unknown."""
    record = session.journal.latest_noise(tag)
    return (record.std if record else V.pooled_sd(session.journal.replicates(tag))) or 0.0


def research_log(session: Session, tag: str, title: str = "", max_chars: int = DIGEST_MAX_CHARS) -> str:
    """TAG's research log as the brief shows it ("" before the first tried change)."""
    s = session
    experiments = s.journal.experiments(tag)
    return research_digest(experiments, changes_of(s, experiments), metric=s.config.metric.name,
                           maximize=s.config.maximize, noise=noise_sd(s, tag), best=s.journal.best(tag),
                           title=title, max_chars=max_chars)
