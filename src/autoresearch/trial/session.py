"""An opened task: its config, work tree, journal and run state, and the one-at-a-time lock.

The run state (`.autoresearch/state.json`) names the current tag and remembers the untracked
files that were in the folder before `start`, so they are never mistaken for an agent's change.
The best commit of each tag lives in the journal's meta table (`best:<tag>`): the branch tip
can be a candidate under test, the recorded best never is.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.config.task import STATE_DIR, TaskConfig, find_root, load_config
from autoresearch.errors import StateError
from autoresearch.git.workspace import LOCK_REF, Workspace, branch_name
from autoresearch.harness.guard import Lock, forged_entries, lock_path, parse_lock, put_lock, read_lock, write_lock
from autoresearch.journal import last_words
from autoresearch.journal.store import Journal

SessionError = StateError  # the old name, kept for the modules that raise it


class Busy(SessionError):
    pass


@dataclass
class RunState:
    tag: str = ""
    preexisting: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "RunState":
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text())
            return cls(tag=str(data.get("tag", "")), preexisting=[str(p) for p in data.get("preexisting", [])])
        except (ValueError, AttributeError, TypeError, OSError) as exc:
            raise StateError(f"{path}: cannot be read ({exc}); it only lists untracked files that were there "
                             f"before `start`: remove it (`rm {path}`) and run the command again") from None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"tag": self.tag, "preexisting": self.preexisting}, indent=2))
        os.replace(tmp, path)


def default_tag() -> str:
    return dt.date.today().strftime("%b%d").lower()


class Session:
    def __init__(self, config: TaskConfig) -> None:
        self.config = config
        self.root = config.root
        self.state_dir = self.root / STATE_DIR
        self.state_dir.mkdir(exist_ok=True)
        self.ws = Workspace(self.root)
        self.journal = Journal(self.state_dir)
        if self.journal.is_empty() and self.journal.get_meta("seq_floor") is None:
            # A new (or lost and recreated) journal next to existing refs: never reuse their seqs.
            seqs = [int(r.rsplit("/", 1)[1]) for r in self.ws.refs("refs/autoresearch/") if r.rsplit("/", 1)[1].isdigit() and "/rescue/" not in r] \
                if (self.root / ".git").exists() else []
            self.journal.set_meta("seq_floor", str(max(seqs, default=0)))
        self.state_path = self.state_dir / "state.json"
        self.state = RunState.load(self.state_path)
        self._lock_fh: object | None = None
        self._known_commits: set[str] = set()
        self._anchored_text = ""

    @classmethod
    def open(cls, start: Path | str = ".") -> "Session":
        return cls(load_config(find_root(start)))

    def close(self) -> None:
        self.release()
        self.journal.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tag, branch, best ------------------------------------------------------------------

    @property
    def tag(self) -> str:
        """The current run: the checked-out `autoresearch/<tag>` branch, nothing else."""
        branch = self.ws.current_branch() or ""
        if branch.startswith("autoresearch/") and not branch.endswith("-final"):
            return branch[len("autoresearch/"):]
        return ""

    @property
    def branch(self) -> str:
        return branch_name(self.tag)

    def require_tag(self, native: bool = False) -> str:
        """The current run's tag. NATIVE (an experiment by the agent in the folder): when the
        agent switched branches, the run this folder last worked on (`start` records it), and
        the experiment puts the run branch back."""
        tag = self.tag or (self.state.tag if native else "")
        if tag:
            self.prime(tag)
        if not tag or not self.ws.branch_exists(branch_name(tag)):
            raise SessionError("not on a run branch: `git checkout autoresearch/<tag>` to continue a run, or "
                               "`autoresearch start` (or `autoresearch run`, which starts one)")
        return tag

    def prime(self, tag: str) -> None:
        """Look up, in one git process, what a command on TAG asks next: the branch, the
        recorded best and its tree, HEAD (each would be a git process of its own)."""
        best = self.journal.get_meta(f"best:{tag}") or ""
        self.ws.resolve(f"refs/heads/{branch_name(tag)}", best, f"{best}^{{tree}}" if best else "", "HEAD")

    def best_commit(self, tag: str | None = None) -> str:
        tag = tag or self.require_tag()
        recorded = self.journal.get_meta(f"best:{tag}")
        if recorded and (recorded in self._known_commits or self.ws.rev(recorded)):
            self._known_commits.add(recorded)  # a commit, once seen, stays (refs keep it)
            return recorded
        tip = self.ws.rev(f"refs/heads/{branch_name(tag)}")
        if not tip:
            raise SessionError(f"the branch {branch_name(tag)} is gone")
        return tip

    def set_best(self, tag: str, commit: str) -> None:
        self.journal.set_meta(f"best:{tag}", commit)

    def lock(self) -> Lock:
        lock = read_lock(self.root)
        if lock is None:
            raise SessionError("the harness is not locked: run `autoresearch lock`")
        return lock

    def write_lock(self) -> Lock:
        """Lock the harness, its text anchored in git first (`refs/autoresearch-lock`)."""
        return write_lock(self.config, anchor=lambda text: self.ws.anchor(LOCK_REF, text))

    def anchored_lock(self) -> Lock | None:
        """The lock autoresearch last wrote, from git; None when nothing (readable) anchors it."""
        self._anchored_text = self.ws.anchored(LOCK_REF) or ""
        try:
            return parse_lock(self._anchored_text) if self._anchored_text else None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # not a lock: nothing to compare with

    def lock_forgery(self, restore: bool = True) -> str:
        """'' when lock.json is the one autoresearch last wrote (or nothing anchors it). Else
        what was forged, naming the lock file and its changed entries; RESTORE puts the file
        back from its anchor in git (the loop goes on without a person)."""
        anchored = self.anchored_lock()
        if anchored is None:
            return ""
        anchored_text = self._anchored_text
        path = lock_path(self.root)
        try:
            text = path.read_text()
        except OSError:
            text = ""
        if text == anchored_text:
            return ""
        try:
            entries = forged_entries(anchored, parse_lock(text))
        except (ValueError, KeyError, TypeError, AttributeError):
            entries = ["(the whole file)"]
        if not entries:
            return ""  # the same lock, written differently
        if restore:
            put_lock(self.root, anchored_text)
        return (f"{path.relative_to(self.root)} was changed outside autoresearch (its entries for "
                f"{', '.join(entries)}), not the files it names"
                + ("; put back from git" if restore else "; the next experiment puts it back from git"))

    def save_state(self) -> None:
        self.state.save(self.state_path)

    # -- one experiment at a time -----------------------------------------------------------

    def acquire(self, what: str) -> None:
        """Take the task's lock; a second `experiment` or `run` in the same task is refused."""
        if self._lock_fh is not None:
            return
        path = self.state_dir / "busy.lock"
        fh = open(path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise Busy(f"this task is busy ({holder}); wait for it or stop it (`autoresearch stop`)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{what} pid {os.getpid()}")
        fh.flush()
        self._lock_fh = fh
        last_words.reserve(self.state_dir)  # room for a cause, while there is room

    def is_busy(self) -> bool:
        """Whether some process (this one included) holds the task's lock."""
        if self._lock_fh is not None:
            return True
        path = self.state_dir / "busy.lock"
        if not path.exists():
            return False
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return False

    def release(self) -> None:
        if self._lock_fh is not None:
            fh = self._lock_fh
            self._lock_fh = None
            fh.close()  # type: ignore[attr-defined]

    def run_dir(self, seq: int) -> Path:
        return self.state_dir / "runs" / str(seq)

    def results_path(self) -> Path:
        return self.root / "results.tsv"
