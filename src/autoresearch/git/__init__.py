"""Git access: the only package that runs git.

`Workspace` runs git for everything the rest of the package needs of a repository (snapshots
of the task folder, candidate commits, refs, notes, exports); `replay` carries a change onto a
newer best; `_parse` reads what git prints. Git itself writes every object, ref and index.

May import: `autoresearch.errors` only.
"""

from autoresearch.git._parse import Change
from autoresearch.git.replay import replay_tree
from autoresearch.git.workspace import (
                                        BRANCH_PREFIX,
                                        FALLBACK_IDENTITY,
                                        NOTES_REF,
                                        REF_PREFIX,
                                        STATE_FOLDER,
                                        GitError,
                                        Workspace,
                                        branch_name,
                                        clear_dir,
                                        experiment_ref,
                                        matches_any,
)

__all__ = ["BRANCH_PREFIX", "FALLBACK_IDENTITY", "NOTES_REF", "REF_PREFIX", "STATE_FOLDER", "Change", "GitError",
           "Workspace", "branch_name", "clear_dir", "experiment_ref", "matches_any", "replay_tree"]
