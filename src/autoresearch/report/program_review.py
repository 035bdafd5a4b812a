"""`review --program`: the next program.md, drafted from the record.

The morning review is where a person adds hints to program.md and rules out dead ends. This
drafts that part from the run's research log (`proposers.digest`): ideas that failed again and
again, directions that keep winning, knobs whose every move stayed within the noise. The draft
is a section appended to program.md (`## Lessons from run <tag>`; drafting again for the same
tag replaces it), shown as a unified diff that `git apply` takes, or written with `--apply`.
Nothing else in program.md is touched. The person edits, then starts a new tag
(`autoresearch start --tag NEW`), which commits and locks the new program.md; the new run's
brief still carries the old run's research log and notes.
"""

from __future__ import annotations

import difflib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.journal.records import Experiment
from autoresearch.proposers.digest import Group, group_experiments, is_dead_end
from autoresearch.proposers.research_log import changes_of, noise_sd
from autoresearch.trial.session import Session

MIN_FAILURES = 3  # tries of a group, never kept, before it is a rule
MIN_MOVES = 3  # measured moves of a knob, all within the noise, before it "never mattered"
MAX_ITEMS = 8  # lines per part
EXAMPLES = 2  # descriptions quoted per failed idea


@dataclass
class Lessons:
    failed: list[str] = field(default_factory=list)
    winning: list[str] = field(default_factory=list)
    flat: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.failed or self.winning or self.flat)


def _quote(exp: Experiment) -> str:
    text = " ".join(exp.description.split())
    return f'"{text[:90]}{"…" if len(text) > 90 else ""}" (#{exp.seq})'


def _effect(value: float) -> str:
    return f"{value:+.4g}"


def lessons(experiments: list[Experiment], changes: dict[int, dict], *, maximize: bool, noise: float) -> Lessons:
    """What the record says, in three parts (each at most MAX_ITEMS lines)."""
    groups = group_experiments(experiments, changes, maximize)
    out = Lessons()
    ordered = sorted(groups.values(), key=lambda g: (-len(g.tries), g.key))
    for g in ordered:
        if len(g.tries) >= MIN_FAILURES and is_dead_end(g, noise):
            best = g.best()
            effect = f"; best effect {_effect(best[0])}" if best else ""
            examples = ", ".join(_quote(e) for e in g.tries[:EXAMPLES])
            out.failed.append(f"- {g.key}: tried {len(g.tries)} times, never kept{effect}. E.g. {examples}.")
    for g in sorted(groups.values(), key=lambda g: (-g.count("keep"), g.key)):
        keeps = [e for e in g.tries if e.status == "keep"]
        if len(keeps) >= 2 or (keeps and g.tries[-1] is keeps[-1] and len(g.tries) >= 2):
            gained = sum(v for v, seq in g.effects if seq in {e.seq for e in keeps})
            out.winning.append(f"- {g.key}: {len(keeps)} of {len(g.tries)} tries kept (together {_effect(gained)}); "
                               f"latest keep {_quote(keeps[-1])}.")
    if noise > 0:
        out.flat = _never_mattered(groups, noise)
    out.failed, out.winning = out.failed[:MAX_ITEMS], out.winning[:MAX_ITEMS]
    return out


def _never_mattered(groups: dict[str, Group], noise: float) -> list[str]:
    """Knobs moved at least MIN_MOVES times (up and down together), never kept, every measured
    effect within the noise."""
    by_knob: dict[str, list[Group]] = {}
    for key, g in groups.items():
        if key.endswith((" up", " down")):
            by_knob.setdefault(key.rsplit(" ", 1)[0], []).append(g)
    flat = []
    for knob, gs in sorted(by_knob.items()):
        effects = [v for g in gs for v, _ in g.effects]
        if len(effects) >= MIN_MOVES and not any(g.count("keep") for g in gs) and \
                all(abs(v) <= noise for v in effects):
            flat.append(f"- {knob}: {len(effects)} moves, the largest effect {max(abs(v) for v in effects):.3g} "
                        f"against a noise sd of {noise:.3g}.")
    return flat[:MAX_ITEMS]


def heading(tag: str) -> str:
    return f"## Lessons from run `{tag}`"


def section(tag: str, found: Lessons, when: float | None = None) -> str:
    day = time.strftime("%Y-%m-%d", time.gmtime(when if when is not None else time.time()))
    lines = [heading(tag), "", f"Drafted by `autoresearch review --program` on {day} from the run's record; "
             "edit freely.", ""]
    if found.failed:
        lines += ["Ideas that failed again and again (do not try them again):", *found.failed, ""]
    if found.winning:
        lines += ["Directions that keep winning (push further along them):", *found.winning, ""]
    if found.flat:
        lines += ["Knobs that never mattered (every move within the noise: leave them):", *found.flat, ""]
    return "\n".join(lines).rstrip() + "\n"


def with_lessons(program: str, tag: str, text: str) -> str:
    """PROGRAM with TEXT as its lessons section for TAG (an earlier draft for TAG is replaced)."""
    pattern = re.compile(rf"^{re.escape(heading(tag))}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(program):
        return pattern.sub(lambda _: text + "\n", program, count=1).rstrip() + "\n"
    base = program.rstrip()
    return (base + "\n\n" if base else "") + text


def unified(old: str, new: str, path: str) -> str:
    """A patch `git apply` takes from the task folder (a/ and b/ prefixes)."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{path}", tofile=f"b/{path}")
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


@dataclass
class Draft:
    path: str  # program.md, relative to the task folder
    old: str
    new: str
    lessons: Lessons

    @property
    def diff(self) -> str:
        return unified(self.old, self.new, self.path)


def draft_program(session: Session, tag: str) -> Draft:
    """The task's program.md with the lessons of TAG's record added (nothing is written)."""
    s = session
    experiments = s.journal.experiments(tag)
    found = lessons(experiments, changes_of(s, experiments), maximize=s.config.maximize, noise=noise_sd(s, tag))
    path = s.config.task.program
    try:
        old = (s.root / path).read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    new = with_lessons(old, tag, section(tag, found)) if found else old
    return Draft(path, old, new, found)


def write_program(path: Path, text: str) -> None:
    """Replace program.md (beside itself, then renamed over: a kill leaves the old or the new)."""
    tmp = path.with_name(path.name + ".autoresearch-tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
