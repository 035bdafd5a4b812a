"""git's own formats, read in Python: refs and loose commits from a repository's files, and the
raw diff and patch text git prints. workspace.py is the only caller.

Why: a native experiment is a dozen short git processes, each ~1.5-2 ms on a 2-core machine,
and the hand loop it is measured against has two (issue 13). Reading a ref or a commit's tree
from `.git` costs ~0.1 ms. These readers answer only where the answer is certain and git's own:
a plain `.git` folder, no environment variable that moves the repository, its objects or its
refs, no reftable, no replace refs, SHA-1 object names, and objects stored loose, each checked
against its name (the hash of what was read). Anything else is None, and the caller asks git.
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .workspace import Change

# Variables under which `.git` is not (or not only) where the refs and objects are, or refs
# are read through a namespace or replaced: git is asked then.
_MOVERS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
           "GIT_NAMESPACE", "GIT_REPLACE_REF_BASE", "GIT_NO_REPLACE_OBJECTS")
_HEX40 = re.compile(r"[0-9a-f]{40}")


def plain_git_dir(root: Path) -> Path | None:
    """ROOT/.git when refs and objects can be read from its files as git would; else None."""
    if any(name in os.environ for name in _MOVERS):
        return None
    git_dir = root / ".git"
    if not git_dir.is_dir() or (git_dir / "reftable").exists():
        return None
    try:
        with os.scandir(git_dir / "refs" / "replace") as entries:
            if any(entries):
                return None
    except OSError:
        pass  # no replace refs folder: the usual case
    packed = _packed_refs(git_dir)
    if packed is None or any(name.startswith("refs/replace/") for name in packed):
        return None
    return git_dir


def _packed_refs(git_dir: Path) -> dict[str, str] | None:
    """refname -> sha from packed-refs ({} when there is none); None when it cannot be read."""
    try:
        text = (git_dir / "packed-refs").read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError):
        return None
    refs = {}
    for line in text.splitlines():
        sha, _, name = line.partition(" ")
        if name and _HEX40.fullmatch(sha):
            refs[name] = sha
    return refs


def read_ref(git_dir: Path, name: str) -> str | None:
    """The object a full refname (or HEAD) points at; None when git must say (a missing ref, a
    symref other than HEAD's, anything unexpected)."""
    if name == "HEAD":
        try:
            text = (git_dir / "HEAD").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        if not text.startswith("ref: "):
            return text[:-1] if text.endswith("\n") and _HEX40.fullmatch(text[:-1]) else None
        name = text[5:].strip()
    if not name.startswith("refs/") or ".." in name.split("/") or "\\" in name:
        return None
    try:
        text = (git_dir / name).read_text(encoding="utf-8")
    except FileNotFoundError:
        packed = _packed_refs(git_dir)
        return packed.get(name) if packed else None
    except (OSError, UnicodeDecodeError):
        return None
    return text[:-1] if text.endswith("\n") and _HEX40.fullmatch(text[:-1]) else None


def loose_object(git_dir: Path, sha: str, kind: bytes) -> bytes | None:
    """The content of object SHA when it is a loose object of type KIND (b"commit", b"blob")
    whose bytes hash to its name; None otherwise (packed, missing, another type, corrupt)."""
    if not _HEX40.fullmatch(sha):
        return None
    try:
        data = zlib.decompress((git_dir / "objects" / sha[:2] / sha[2:]).read_bytes())
    except (OSError, zlib.error):
        return None
    if hashlib.sha1(data).hexdigest() != sha:  # noqa: S324 - git's object name, not a security hash
        return None
    header, _, body = data.partition(b"\0")
    return body if header.startswith(kind + b" ") else None


def commit_tree(git_dir: Path, sha: str) -> str | None:
    """The tree of commit SHA when it is a loose object whose content hashes to its name."""
    body = loose_object(git_dir, sha, b"commit")
    if body is None or not body.startswith(b"tree ") or body[45:46] != b"\n":
        return None
    tree = body[5:45].decode("ascii", "replace")
    return tree if _HEX40.fullmatch(tree) else None


def resolve(git_dir: Path, names: list[str]) -> dict[str, str] | None:
    """For each of NAMES (a full refname, HEAD or a 40-hex commit, optionally with `^{tree}`):
    the commit, or for `X^{tree}` its tree, read from GIT_DIR (one plain_git_dir accepted).
    None unless every one is answered from files."""
    answers: dict[str, str] = {}
    for name in names:
        tree = name.endswith("^{tree}")
        base = name[:-7] if tree else name
        sha = base if _HEX40.fullmatch(base) else read_ref(git_dir, base)
        if sha is None:
            return None
        its_tree = commit_tree(git_dir, sha)  # also proves SHA is a commit, as `^{commit}` asks
        if its_tree is None:
            return None
        answers[name] = its_tree if tree else sha
    return answers


# -- what git prints -------------------------------------------------------------------------

def raw_changes(parts: list[str]) -> "tuple[list[Change], list[str]]":
    """`diff-tree -z --raw` fields (meta, path pairs) up to the empty field that ends them: the
    changes, and the fields after (a patch, when one was asked for)."""
    from .workspace import Change

    changes: list[Change] = []
    i = 0
    while i + 1 < len(parts) and parts[i].startswith(":"):
        fields = parts[i][1:].split()
        changes.append(Change(status=fields[4][0], path=parts[i + 1], new_mode=fields[1]))
        i += 2
    return changes, parts[i + 1:] if i < len(parts) and parts[i] == "" else parts[i:]


_HUNK = re.compile(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def nonblank_lines(data: bytes) -> int:
    """Lines as git splits them (on newlines) that hold more than whitespace: over whole files,
    the same count patch_lines_delta takes from a patch."""
    return sum(1 for line in data.decode("utf-8", "replace").split("\n") if line.strip())


def patch_lines_delta(patch: str) -> int:
    """Non-blank `+` lines minus non-blank `-` lines of a patch. Each hunk's header says how many
    lines it holds, so a removed line reading `--- x` is never taken for a file header; a
    submodule's section (mode 160000) counts nothing. Unchanged lines cancel, so over a whole
    patch this is the non-blank lines of the new files minus those of the old ones."""
    delta = 0
    lines = patch.split("\n")
    i, submodule = 0, False
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("diff --git "):
            submodule = False
        elif line.startswith(("index ", "new file mode ", "deleted file mode ")) and line.endswith(" 160000"):
            submodule = True
        elif line.startswith("@@ "):
            m = _HUNK.match(line)
            if m is None:
                continue
            old = 1 if m.group(1) is None else int(m.group(1))
            new = 1 if m.group(2) is None else int(m.group(2))
            while (old > 0 or new > 0) and i < len(lines):
                body = lines[i]
                i += 1
                sign = body[:1]
                if sign == "\\":  # "\ No newline at end of file"
                    continue
                if sign in ("-", " "):
                    old -= 1
                if sign in ("+", " "):
                    new -= 1
                if not submodule and sign in ("+", "-") and body[1:].strip():
                    delta += 1 if sign == "+" else -1
    return delta
