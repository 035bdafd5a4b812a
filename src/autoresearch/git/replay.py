"""A candidate's change replayed onto a newer best: what parallel slots do with a stale winner.

A slot's candidate was proposed against the best of its time; when another slot's keep moved the
best meanwhile, the candidate's own change (its commit against its parent) is applied to the new
best and measured again (parallel.py). Conflicting changes are not replayed.
"""

from __future__ import annotations

import os
import tempfile

from autoresearch.git.workspace import GitError, Workspace


def replay_tree(ws: Workspace, commit: str, onto: str) -> str | None:
    """The tree of ONTO plus the change COMMIT made to its parent, or None when it conflicts.

    A three-way merge with the merge base as ancestor (git merge-tree, git >= 2.38); older gits
    apply the diff as a patch instead. Changes on the same or adjacent lines conflict, as in git.
    """
    out = ws.git("merge-tree", "--write-tree", "--no-messages", onto, commit, check=False).split()
    if len(out) == 1 and len(out[0]) >= 40:
        return out[0]
    if out:  # a tree with conflict markers, then the conflicted paths
        return None
    return replay_tree_by_patch(ws, commit, onto)


def replay_tree_by_patch(ws: Workspace, commit: str, onto: str) -> str | None:
    """The same as replay_tree through `git diff | git apply --cached --3way` in a scratch
    index (gits too old for --3way with --cached apply the plain patch, which is stricter)."""
    patch = ws.git("diff", "--binary", "--full-index", f"{commit}~1", commit)
    if not patch.strip():
        return ws.tree_of(onto)
    fd, index = tempfile.mkstemp(prefix="autoresearch-replay-index-")
    os.close(fd)
    env = {"GIT_INDEX_FILE": index}
    try:
        for mode in (["--3way"], []):
            os.unlink(index)
            ws.git("read-tree", onto, env=env)
            try:
                ws.git("apply", "--cached", *mode, "--whitespace=nowarn", env=env, input=patch)
            except GitError:
                continue
            return ws.git("write-tree", env=env).strip()
        return None
    finally:
        if os.path.exists(index):
            os.unlink(index)
