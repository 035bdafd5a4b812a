"""A snapshot's git index, used without git: its entries read, its tree written, its diff
against another index, its files exported. snapshot.py is the caller.

Why: after `git add -A` into the snapshot's temporary index, a native experiment used to start
two more git processes on exactly what that index holds: `write-tree` (its tree) and a
`checkout` of the new commit into the run's export. On a 2-core machine each is ~2-3 ms, and the
hand loop the experiment is measured against is ~65 ms in all (issue 13). Both are done here
from the index file in well under a millisecond for a task's few files.

Where the answer is git's own, or nothing:
- the index is read only when its checksum holds and it holds plain entries (versions 2-4; no
  conflict stages, no skip-worktree or intent-to-add entries, no sparse directories, not split);
- trees are git's canonical encoding (modes as git writes them, names in git's order, folders
  sorted as `name/`), each written as a loose object under its hash, as `write-tree` would;
  tests compare the result with `git write-tree` and run `git fsck --strict`;
- an exported file is written from bytes whose blob id is the one the index names (read from
  the work tree, where `add` just found them): a file changed since, or one git stores through
  a filter or line-ending conversion, does not match, and the caller exports with git instead.
Anything else is None or False, and the caller asks git.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

# Modes an index entry may have here, as git writes them in a tree.
_MODES = {0o100644: b"100644", 0o100755: b"100755", 0o120000: b"120000", 0o160000: b"160000"}
# Beyond these, a Python copy is no longer the cheap way: git exports the tree itself.
MAX_EXPORT_ENTRIES = 2000
MAX_EXPORT_BYTES = 64 << 20


@dataclass(frozen=True)
class Entry:
    path: bytes
    mode: int
    sha: bytes  # 20 bytes
    size: int  # as stat saw it when the entry was written (a hint, not a check)


def read_index(path: str | Path) -> list[Entry] | None:
    """The entries of a git index file, or None when it is not one this reads exactly."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if len(data) < 32 or data[:4] != b"DIRC" or hashlib.sha1(data[:-20]).digest() != data[-20:]:  # noqa: S324
        return None  # not an index, a torn one, or one without its checksum (index.skipHash)
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3, 4):
        return None
    end = len(data) - 20
    pos, previous, entries = 12, b"", []
    try:
        for _ in range(count):
            mode, = struct.unpack(">I", data[pos + 24:pos + 28])
            size, = struct.unpack(">I", data[pos + 36:pos + 40])
            sha = data[pos + 40:pos + 60]
            flags, = struct.unpack(">H", data[pos + 60:pos + 62])
            name = pos + 62
            if flags & 0x4000:  # extended flags (skip-worktree, intent-to-add): git's rules, not ours
                if version < 3 or data[name:name + 2] != b"\0\0":
                    return None
                name += 2
            if flags & 0x3000 or mode not in _MODES:  # a conflict stage; a sparse directory
                return None
            if version == 4:  # the path: what to drop from the previous one, then the rest
                strip, name = _varint(data, name)
                stop = data.index(b"\0", name)
                if strip > len(previous):
                    return None
                path_bytes = previous[:len(previous) - strip] + data[name:stop]
                pos = stop + 1
            else:
                stop = data.index(b"\0", name)
                path_bytes = data[name:stop]
                pos += ((name - pos) + len(path_bytes) + 8) & ~7  # NUL-padded to 8 bytes
            if pos > end:
                return None
            previous = path_bytes
            entries.append(Entry(path_bytes, mode, sha, size))
        while pos + 8 <= end:  # extensions: a split index or a sparse one is not all here
            signature = data[pos:pos + 4]
            length, = struct.unpack(">I", data[pos + 4:pos + 8])
            if signature in (b"link", b"sdir"):
                return None
            pos += 8 + length
    except (struct.error, ValueError, IndexError):
        return None
    return entries if pos == end else None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """git's offset varint (index v4): 7 bits a byte, each continuation adding one."""
    byte = data[pos]
    pos += 1
    value = byte & 0x7F
    while byte & 0x80:
        byte = data[pos]
        pos += 1
        value = ((value + 1) << 7) | (byte & 0x7F)
    return value, pos


def write_tree(git_dir: Path | None, entries: list[Entry]) -> str | None:
    """Write the trees of ENTRIES into GIT_DIR's objects (with GIT_DIR None, only compute them);
    the root tree's id (None when two entries collide, a file where a folder is, which a valid
    index never holds)."""
    root: dict = {}
    for entry in entries:
        *folders, leaf = entry.path.split(b"/")
        node = root
        for folder in folders:
            node = node.setdefault(folder, {})
            if not isinstance(node, dict):
                return None
        if leaf in node:
            return None
        node[leaf] = entry

    def tree(node: dict) -> bytes:
        items = []
        for name, value in node.items():
            if isinstance(value, dict):
                items.append((name + b"/", b"40000 " + name + b"\0" + tree(value)))
            else:
                items.append((name, _MODES[value.mode] + b" " + name + b"\0" + value.sha))
        items.sort(key=lambda item: item[0])  # git's order: a folder sorts as `name/`
        content = b"".join(body for _, body in items)
        if git_dir is None:
            return hashlib.sha1(b"tree %d\0" % len(content) + content).digest()  # noqa: S324
        return write_object(git_dir, b"tree", content)

    return tree(root).hex()


def writes_like_git(git_dir: Path) -> bool:
    """Whether loose objects written here as git writes them by default are what this
    repository wants: not when its config asks for shared permissions, fsync, another hash or
    compression, or includes other files (which could)."""
    try:
        config = (git_dir / "config").read_text(encoding="utf-8", errors="replace").lower()
    except OSError:
        return False
    return not any(word in config for word in ("sharedrepository", "fsync", "include", "objectformat", "compression"))


def write_object(git_dir: Path, kind: bytes, content: bytes) -> bytes:
    """Store one object as git does a loose one (zlib, read-only, under its SHA-1, written to a
    temporary file and linked into place); its 20-byte id."""
    raw = kind + b" " + str(len(content)).encode() + b"\0" + content
    sha = hashlib.sha1(raw).digest()  # noqa: S324 - git's object name
    hex_sha = sha.hex()
    folder = git_dir / "objects" / hex_sha[:2]
    path = folder / hex_sha[2:]
    if path.exists():
        os.utime(path)  # as git freshens it: a `gc` running now must not prune it as old
        return sha
    folder.mkdir(exist_ok=True)
    tmp = folder / f"tmp_obj_{os.getpid()}_{os.urandom(4).hex()}"  # the name `git prune` cleans up
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        _write_all(fd, zlib.compress(raw, 1))
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:  # written meanwhile by someone else: the same bytes
        pass
    finally:
        os.unlink(tmp)
    return sha


def diff(old: list[Entry], new: list[Entry]) -> list[tuple[str, Entry | None, Entry | None]]:
    """What `git diff-tree -r --no-renames` lists between the trees of two indexes: per path, in
    git's order, A (added), D (deleted), T (a file became a link or a submodule, or back) or M."""
    before = {e.path: e for e in old}
    after = {e.path: e for e in new}
    out: list[tuple[str, Entry | None, Entry | None]] = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a is None:
            out.append(("A", None, b))
        elif b is None:
            out.append(("D", a, None))
        elif a.mode >> 12 != b.mode >> 12:
            out.append(("T", a, b))
        elif a.mode != b.mode or a.sha != b.sha:
            out.append(("M", a, b))
    return out


def blob_id(data: bytes) -> bytes:
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).digest()  # noqa: S324


def export(root: Path, entries: list[Entry], dest: Path) -> bool:
    """Write ENTRIES' files, read from the work tree ROOT, into the empty folder DEST, each
    checked against its blob id first. False (DEST then half written) as soon as one does not
    match or cannot be read, or when the tree is past what this is for."""
    if len(entries) > MAX_EXPORT_ENTRIES or sum(e.size for e in entries) > MAX_EXPORT_BYTES:
        return False
    made: set[bytes] = set()
    base, out = os.fsencode(root), os.fsencode(dest)
    try:
        for entry in entries:
            src, dst = os.path.join(base, entry.path), os.path.join(out, entry.path)
            parent = os.path.dirname(dst)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            if entry.mode == 0o160000:  # a submodule: git checks it out as an empty folder
                os.mkdir(dst)
                continue
            if entry.mode == 0o120000:
                target = os.readlink(src)
                if blob_id(target) != entry.sha:
                    return False
                os.symlink(target, dst)
                continue
            data = _read(src)
            if blob_id(data) != entry.sha:
                return False
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777 if entry.mode == 0o100755 else 0o666)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
    except OSError:
        return False
    return True


def _read(path: bytes) -> bytes:
    """A regular file's bytes. What replaced it since is not read: a symlink is not followed,
    a FIFO is not waited on (O_NONBLOCK), anything but a regular file is an error."""
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(f"{os.fsdecode(path)}: not a regular file")
        return fh.read()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
