"""The run branch's lifecycle: start, relock (epochs), the task folder, and repair.

A run is a tag: the branch `autoresearch/<tag>`, its experiment refs
`refs/autoresearch/<tag>/<seq>`, and the journal's rows and best pointer for that tag. The
current tag is the checked-out `autoresearch/<tag>` branch, nothing else: no command moves the
best of a tag that is not checked out.

No command here destroys work it did not make: before the task folder is reset, whatever is on
disk that no ref holds is committed under `refs/autoresearch/<tag>/rescue/<n>` (see
`show_best`), and `autoresearch rescue` lists those refs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

from autoresearch.errors import StateError
from autoresearch.git.workspace import REF_PREFIX, GitError, branch_name, experiment_ref
from autoresearch.harness.guard import Lock, read_lock, verify
from autoresearch.harness.output import tail_lines
from autoresearch.harness.process import kill_group
from autoresearch.journal import last_words
from autoresearch.journal.records import Experiment
from autoresearch.journal.results import sync_tsv
from autoresearch.trial.notes import ensure_journal, flush_notes, tag_state_note, write_note
from autoresearch.trial.session import Session


def default_tag() -> str:
    return dt.date.today().strftime("%b%d").lower()


# -- start --------------------------------------------------------------------------------------

def start(session: Session, tag: str | None = None) -> str:
    """Create the run branch autoresearch/<tag> at HEAD and switch to it.

    A harness, config or program.md edited since the last lock is committed on the new branch
    and locked for it: that is how a new tag gets a new harness, in one step."""
    ws = session.ws
    tag = tag or free_tag(session)
    if not ws.has_commits():
        raise StateError("the repository has no commit yet: run `autoresearch init` first")
    if ws.branch_exists(branch_name(tag)):
        raise StateError(f"the branch {branch_name(tag)} already exists: pick a new tag (--tag) or "
                         f"`git checkout {branch_name(tag)}` to continue it")
    lock = read_lock(session.root)
    harness = set(session.config.harness_files())
    dirty = ws.dirty()
    others = [p for p in dirty if p not in harness]
    if others:
        raise StateError(f"uncommitted changes in {', '.join(others[:5])}: commit or stash them first, so the "
                         "baseline measures a known commit")
    head = ws.head() or ""
    ws.create_branch(branch_name(tag), head)
    ws.switch(branch_name(tag))
    changed = [p for p in dirty if p in harness]
    if changed:
        head = ws.commit_paths(changed, f"autoresearch: harness for {tag} ({', '.join(changed)})")
    if changed or lock is None or verify(lock, session.root) or session.anchored_lock() is None:
        session.write_lock()
    session.state.preexisting = ws.untracked()
    session.state.tag = tag
    session.save_state()
    session.set_best(tag, head)
    session.journal.set_metas({f"start:{tag}": head,  # the untracked files found: never guarded
                               f"preexisting:{tag}": json.dumps(session.state.preexisting)})
    sync_tsv(session.journal, session.results_path(), tag, session.config.metric.name, session.config.resource.scale)
    return tag


def free_tag(session: Session) -> str:
    """Today's tag, or today's with a suffix when that branch exists."""
    tag, suffix = default_tag(), 1
    while session.ws.branch_exists(branch_name(tag)):
        suffix += 1
        tag = f"{default_tag()}-{suffix}"
    return tag


# -- relock and epochs ----------------------------------------------------------------------------

def relock(session: Session, force: bool = False) -> Lock:
    """`lock`: hash the harness again.

    On a run branch, an edited program.md (the human's lever) is committed and becomes part of
    best, so agents see it. A changed harness or config on a branch with experiments makes
    old metrics incomparable: it needs FORCE, and then starts a new *epoch*: the change is
    committed on the branch, the event is journaled, and the next experiment is a baseline
    that re-measures the best under the new harness; nothing before the break is compared
    with anything after it. Off a run branch, lock only writes the lock: no tag's best moves."""
    s = session
    s.lock_forgery()  # a lock.json the agent wrote is put back first: it is no harness change
    try:
        old = read_lock(s.root)
    except StateError:
        old = None  # unreadable: the harness is compared with the committed best instead
        if s.tag and s.ws.branch_exists(branch_name(s.tag)):
            files = s.config.harness_files()
            if s.ws.git("diff", "--name-only", s.best_commit(s.tag), "--", *files).strip():
                raise StateError("the lock file was unreadable and the harness differs from the best commit: "
                                 "restore it (`git checkout -- <file>`) before locking again") from None
    changed = verify(old, s.root) if old else []
    ensure_journal(s)  # a lost journal: its history decides whether this is a new epoch
    program = s.config.task.program
    harness_changed = [c for c in changed if not c.startswith(program + ":")]
    tag = s.tag
    on_branch = bool(tag) and s.ws.branch_exists(branch_name(tag))
    has_history = on_branch and bool(s.journal.experiments(tag, limit=1))
    if harness_changed and has_history and not force:
        raise StateError(f"the harness changed ({'; '.join(harness_changed)}) on a branch with experiments, so old "
                         "metrics would not compare: start a new tag with it (`autoresearch start --tag NEW`, "
                         "which commits and locks the new harness there), or `autoresearch lock --force` to "
                         "start a new epoch on this branch (the best is re-measured first)")
    s.acquire("lock")
    if on_branch:
        edited = [c.split(":")[0] for c in changed if c.endswith(": changed")]
        if edited:
            best = s.best_commit(tag)
            s.ws.sync_branch(branch_name(tag), best)  # commit on top of best, not of a candidate
            commit = s.ws.commit_paths(edited, f"autoresearch: lock ({', '.join(edited)} changed)")
            if harness_changed and has_history:
                new_epoch(s, tag, commit, [c for c in harness_changed])
            else:
                s.set_best(tag, commit)
    return s.write_lock()


def new_epoch(session: Session, tag: str, commit: str, why: list[str]) -> int:
    """Start epoch N+1 at COMMIT: no keep of an earlier epoch is compared with it again."""
    j = session.journal
    epoch = current_epoch(session, tag) + 1
    events = json.loads(j.get_meta(f"epochs:{tag}", "[]") or "[]")
    events.append({"epoch": epoch, "commit": commit, "after_seq": j.next_seq() - 1, "at": time.time(),
                   "changed": why})
    j.set_meta(f"epochs:{tag}", json.dumps(events))
    j.set_meta(f"epoch:{tag}", str(epoch))
    j.set_meta(f"epoch_start:{tag}", str(j.next_seq() - 1))
    session.set_best(tag, commit)
    session.ws.add_note(commit, tag_state_note(session, tag))  # the break is in git as well
    return epoch


def current_epoch(session: Session, tag: str) -> int:
    return int(session.journal.get_meta(f"epoch:{tag}", "0") or 0)


def epochs(session: Session, tag: str) -> list[dict]:
    return json.loads(session.journal.get_meta(f"epochs:{tag}", "[]") or "[]")


# -- the task folder ------------------------------------------------------------------------------

def show_best(session: Session, tag: str, expected: set[str], quarantine: "Path",
              best_tree: str | None = None, adds: dict[str, list[str]] | None = None) -> str | None:
    """Make the task folder show the best of TAG, on its branch, without losing anything.

    What is on disk is compared with best's tree and with EXPECTED (trees some ref already
    holds: the candidate just measured, the previous best). Anything else — a hand edit, a
    file made meanwhile — is first committed as a rescue ref. Returns that ref, if any.
    ADDS: for a tree of EXPECTED, the paths it has and best has not (they become untracked
    files when the folder goes back to best, and are quarantined)."""
    s = session
    ws = s.ws
    best = s.best_commit(tag)
    on_disk = ws.snapshot(best, exclude=s.state.preexisting)
    best_tree = best_tree or ws.tree_of(best)
    rescued = None
    if on_disk != best_tree and on_disk not in expected:
        rescued = ws.rescue(tag, on_disk, best, f"uncommitted work found before resetting to best ({quarantine.name})")
    if on_disk == best_tree:
        ws.sync_branch(branch_name(tag), best)
    else:
        ws.restore(branch_name(tag), best, s.state.preexisting, quarantine, untracked=(adds or {}).get(on_disk))
    return rescued


def refuse_stale_index(session: Session) -> None:
    """A `.git/index.lock` that stays would fail the folder's reset after the verdict: refuse
    before anything is recorded. A git at work (an editor's, say) lets go within moments."""
    stale = session.ws.index_lock()
    for _ in range(20):
        if stale is None:
            return
        time.sleep(0.1)
        stale = session.ws.index_lock()
    raise StateError(f"{stale} exists: another git command is at work, or one was killed and left it. If no git "
                     f"is running, remove it (`rm {stale}`) and run the command again; nothing was recorded")


def rescues(session: Session, tag: str) -> dict[str, str]:
    return session.ws.refs(f"{REF_PREFIX}{tag}/rescue/")


# -- repair -------------------------------------------------------------------------------------

def repair(session: Session, include_own: bool = False) -> list[int]:
    """Roll forward or back from whatever a kill left, on every start. Call with the task lock.

    - a `running` record: its leftover processes are killed, its commit gets its ref if the kill
      came between the two, and it is closed as `crash: interrupted` (INCLUDE_OWN: this
      process's own records too, after an interrupt between two steps);
    - the branch is put at the recorded best (a kill between the journal and the branch);
    - results.tsv is regenerated if its content is not what the journal says.
    Files in the task folder are left as they are (the native agent's edit stays on disk, and
    is in its experiment's ref as well); it never discards a commit it can name."""
    s = session
    ensure_journal(s)  # a lost journal comes back from git before anything is compared with it
    repaired = []
    words = last_words.read(s.state_dir)  # what a command that died of a full disk could still say
    for exp in s.journal.running():
        if exp.pid == os.getpid() and not include_own:
            continue
        kill_group(exp.details.get("run_pgid"))
        kill_group(exp.details.get("agent_pgid"))
        if exp.commit_sha and s.ws.rev(exp.commit_sha) and not s.ws.rev(f"refs/autoresearch/{exp.tag}/{exp.seq}"):
            s.ws.update_ref(f"refs/autoresearch/{exp.tag}/{exp.seq}", exp.commit_sha)
        if words is not None and words.pid == exp.pid and words.at >= exp.started_at:
            exp.details["cause"], exp.details["cause_message"] = words.cause, words.message
        close_interrupted(s, exp)
        repaired.append(exp.seq)
    if words is not None:
        last_words.clear(s.state_dir)  # said once: a later death leaves its own
    flush_notes(s)  # a kill between the settle and its note
    tag = s.tag
    if tag:
        s.prime(tag)
    if tag and s.ws.branch_exists(branch_name(tag)):
        best = s.best_commit(tag)
        tip = s.ws.rev(f"refs/heads/{branch_name(tag)}")
        if tip and tip != best and s.ws.is_ancestor(tip, best):
            # A kill between the settle transaction and the branch move: roll forward. (A tip
            # that is not behind best is someone's commit, the native agent's say: the next
            # experiment measures it as a change; nothing here drops it.)
            s.ws.update_ref(f"refs/heads/{branch_name(tag)}", best)
            if s.ws.current_branch() == branch_name(tag):
                s.ws.git("read-tree", best)  # index follows; the files stay as they were
        sync_tsv(s.journal, s.results_path(), tag, s.config.metric.name, s.config.resource.scale)
    return repaired


def interrupted(session: Session) -> list[Experiment]:
    """`running` records whose command is gone (killed): what the next command closes. A
    read-only command says so instead of showing them as running."""
    running = session.journal.running()
    if not running:
        return []
    busy = session.is_busy()
    return [e for e in running if not busy or not _alive(e.pid)]


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def interrupted_words(exp: Experiment) -> str:
    """How an interrupted experiment ended, in words: "lost to the full disk" when its command
    said so in its last words (`journal.last_words`), else "interrupted"."""
    return "lost to the full disk" if exp.details.get("cause") == "disk-full" else "interrupted"


def close_interrupted(session: Session, exp: Experiment) -> None:
    exp.status, exp.reason = "crash", "interrupted"
    exp.finished_at = time.time()  # run_pgid stays: the record says which group was killed
    exp.log_tail = tail_lines(Path(exp.log_path)) if exp.log_path else ""
    ws = session.ws
    ref = experiment_ref(exp.tag, exp.seq)
    if not exp.commit_sha and exp.parent and not ws.rev(ref) and ws.rev(exp.parent):
        # interrupted before its candidate was committed (an agent still at work, say): its ref
        # names a commit of the parent's tree, so that its record is in git like every other
        how = interrupted_words(exp)
        try:
            ws.update_ref(ref, ws.commit_tree(ws.tree_of(exp.parent), exp.parent,
                                              f"({how} before its candidate was committed)\n\n"
                                              f"autoresearch-seq: {exp.seq}\nautoresearch-tag: {exp.tag}\n"))
            exp.details["ref_holds"] = f"the parent's tree ({how} before the candidate was committed)"
        except GitError:  # the record is closed all the same; only a lost journal would miss it
            pass
    session.journal.settle(exp, None)
    write_note(session, exp)
