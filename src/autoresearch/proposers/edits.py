"""The edit format an API model answers in: parse it, validate it against the files, apply it.

The format (this docstring is its specification; `FORMAT_HELP` is the same text for the model):

    DESCRIPTION: one line saying what the change tries

    train.py
    <<<<<<< SEARCH
    LEARNING_RATE = 0.05
    =======
    LEARNING_RATE = 0.08
    >>>>>>> REPLACE

- The first line is ``DESCRIPTION: ...``; it becomes the commit message (clipped to one line).
- Each edit is a block. The line right before ``<<<<<<< SEARCH`` names the file (a path
  relative to the task folder; Markdown decoration such as backticks, ``**`` or ``###``
  around it is tolerated, and code fence lines between the name and the block are skipped).
- SEARCH holds whole lines copied from the current file; they must occur exactly once.
  Matching is exact, except that whitespace at line ends is ignored. REPLACE holds the new
  lines (empty: delete them). Blocks apply in order, each to the result of the ones before.
- A whole file may be rewritten with ``<<<<<<< FILE`` ... ``>>>>>>> FILE`` (the new content in
  between), only for files up to `WHOLE_FILE_MAX_CHARS` characters.
- Only existing editable files may be targeted: no new, deleted or renamed files.
- Text outside the blocks is ignored, so the model may explain itself briefly.

Applying is all or nothing: every block is checked against the current files in memory first
(any problem raises `EditError` naming the file and the block, and nothing is written); then
each changed file is written to a temporary file beside it and all of them are moved into
place with `os.replace`.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

WHOLE_FILE_MAX_CHARS = 12_000
DESCRIPTION_MAX_CHARS = 200

_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FILE_OPEN = re.compile(r"^\s*<{5,9}\s*FILE\s*$")
_FILE_CLOSE = re.compile(r"^\s*>{5,9}\s*FILE\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_DESCRIPTION = re.compile(r"^\s*[*_`#>\s]*DESCRIPTION[*_`]*\s*:\s*(.*)$", re.IGNORECASE)

FORMAT_HELP = f"""\
Answer in exactly this format:

DESCRIPTION: <one line: what you changed and why, e.g. "raise LR to 0.08 (loss still falling)">

<path of an editable file>
<<<<<<< SEARCH
<whole lines copied exactly from the current file>
=======
<the lines that replace them>
>>>>>>> REPLACE

Rules:
- The file path goes alone on the line right before `<<<<<<< SEARCH`.
- SEARCH must copy whole lines of the current file exactly (indentation included) and must
  match exactly one place; include a few surrounding lines when a line is not unique.
- Keep SEARCH short: only the lines you change plus the context needed to make them unique.
- Use several blocks for several places; they apply in order. An empty REPLACE deletes lines.
- For a small file (up to {WHOLE_FILE_MAX_CHARS} characters) you may instead write the whole new file:
<path of an editable file>
<<<<<<< FILE
<the complete new content of the file>
>>>>>>> FILE
- Edit only the editable files. Do not create, delete or rename files.
"""


class EditError(ValueError):
    """An answer that cannot be applied; the message says which file and block, and why."""


@dataclass(frozen=True)
class EditBlock:
    path: str
    search: list[str] | None  # None: a whole-file block
    replace: list[str]
    index: int  # 1-based position in the answer, for error messages
    line: int  # 1-based line of the opening marker in the answer

    @property
    def whole_file(self) -> bool:
        return self.search is None

    def label(self) -> str:
        kind = "FILE" if self.whole_file else "SEARCH/REPLACE"
        return f"block {self.index} ({kind} for {self.path or '?'}, answer line {self.line})"


@dataclass(frozen=True)
class ParsedAnswer:
    description: str
    blocks: list[EditBlock]


def _clean_path(line: str) -> str:
    text = line.strip()
    for prefix in ("file:", "path:", "filename:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
    text = text.strip(" \t`*#:'\"")
    while text.startswith("./"):
        text = text[2:]
    return text


def clip_description(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= DESCRIPTION_MAX_CHARS else line[: DESCRIPTION_MAX_CHARS - 1] + "…"


def parse_answer(text: str) -> ParsedAnswer:
    """Split an answer into its description and edit blocks; raises EditError when malformed."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    description = ""
    blocks: list[EditBlock] = []
    outside: list[str] = []  # lines seen outside blocks since the last block (for the path)
    i = 0
    while i < len(lines):
        line = lines[i]
        if _SEARCH.match(line) or _FILE_OPEN.match(line):
            whole = bool(_FILE_OPEN.match(line))
            start = i + 1
            path = ""
            for previous in reversed(outside):
                if previous.strip() and not _FENCE.match(previous):
                    path = _clean_path(previous)
                    break
            index = len(blocks) + 1
            if not path:
                raise EditError(f"block {index} (answer line {start}): no file path on the line before the "
                                f"`{line.strip()}` marker")
            i += 1
            if whole:
                body: list[str] = []
                while i < len(lines) and not _FILE_CLOSE.match(lines[i]):
                    if _FILE_OPEN.match(lines[i]) or _SEARCH.match(lines[i]):
                        raise EditError(f"block {index} (FILE for {path}, answer line {start}): a new block opens at "
                                        f"answer line {i + 1} before `>>>>>>> FILE` closed this one")
                    body.append(lines[i])
                    i += 1
                if i >= len(lines):
                    raise EditError(f"block {index} (FILE for {path}, answer line {start}): `>>>>>>> FILE` is missing "
                                    "(was the answer cut off?)")
                if len(body) >= 2 and _FENCE.match(body[0]) and _FENCE.match(body[-1]):
                    body = body[1:-1]  # the content wrapped in a code fence inside the block
                blocks.append(EditBlock(path, None, body, index, start))
            else:
                search: list[str] = []
                while i < len(lines) and not _DIVIDER.match(lines[i]):
                    if _REPLACE.match(lines[i]) or _SEARCH.match(lines[i]):
                        raise EditError(f"block {index} (SEARCH/REPLACE for {path}, answer line {start}): expected "
                                        f"`=======` before answer line {i + 1} ({lines[i].strip()!r})")
                    search.append(lines[i])
                    i += 1
                if i >= len(lines):
                    raise EditError(f"block {index} (SEARCH/REPLACE for {path}, answer line {start}): `=======` is "
                                    "missing (was the answer cut off?)")
                i += 1
                replace: list[str] = []
                while i < len(lines) and not _REPLACE.match(lines[i]):
                    if _SEARCH.match(lines[i]) or _FILE_OPEN.match(lines[i]):
                        raise EditError(f"block {index} (SEARCH/REPLACE for {path}, answer line {start}): a new block "
                                        f"opens at answer line {i + 1} before `>>>>>>> REPLACE` closed this one")
                    if _DIVIDER.match(lines[i]):
                        raise EditError(f"block {index} (SEARCH/REPLACE for {path}, answer line {start}): a second "
                                        f"`=======` at answer line {i + 1}")
                    replace.append(lines[i])
                    i += 1
                if i >= len(lines):
                    raise EditError(f"block {index} (SEARCH/REPLACE for {path}, answer line {start}): "
                                    "`>>>>>>> REPLACE` is missing (was the answer cut off?)")
                blocks.append(EditBlock(path, search, replace, index, start))
            outside = []
            i += 1
            continue
        if _DIVIDER.match(line) or _REPLACE.match(line) or _FILE_CLOSE.match(line):
            raise EditError(f"answer line {i + 1}: `{line.strip()}` outside a block (each block starts with "
                            "`<<<<<<< SEARCH` or `<<<<<<< FILE`)")
        match = _DESCRIPTION.match(line)
        if match and not description:
            description = clip_description(match.group(1).strip().strip("*_`"))
        else:
            outside.append(line)
        i += 1
    if not blocks:
        raise EditError("no edit blocks found: the answer must contain at least one `<<<<<<< SEARCH` ... "
                        "`>>>>>>> REPLACE` block (or a `<<<<<<< FILE` ... `>>>>>>> FILE` block)")
    return ParsedAnswer(description, blocks)


def _find(lines: list[str], search: list[str], loose: bool) -> list[int]:
    """Start indexes where SEARCH matches whole lines of LINES (line ends already stripped)."""
    def norm(s: str) -> str:
        return s.rstrip() if loose else s

    want = [norm(s) for s in search]
    have = [norm(s) for s in lines]
    n = len(want)
    first = want[0]
    return [k for k in range(len(have) - n + 1) if have[k] == first and have[k:k + n] == want]


def _split(content: str) -> tuple[list[str], str, bool]:
    """Lines without their ends, the newline style, and whether the text ends with a newline."""
    newline = "\r\n" if "\r\n" in content else "\n"
    ends = content.endswith(("\n", "\r"))
    body = content.replace("\r\n", "\n")
    lines = body.split("\n")
    if ends:
        lines.pop()
    return lines, newline, ends


def _join(lines: list[str], newline: str, ends: bool) -> str:
    if not lines:
        return ""
    return newline.join(lines) + (newline if ends else "")


def _preview(lines: list[str], limit: int = 3) -> str:
    shown = " | ".join(line.strip() for line in lines[:limit])
    return shown[:160] + (" | …" if len(lines) > limit else "")


def apply_to_text(content: str, block: EditBlock) -> str:
    """The file content after one block; raises EditError naming the file and the block."""
    if block.whole_file:
        if len(content) > WHOLE_FILE_MAX_CHARS:
            raise EditError(f"{block.label()}: {block.path} has {len(content)} characters; a whole-file rewrite is "
                            f"only allowed up to {WHOLE_FILE_MAX_CHARS}: use SEARCH/REPLACE blocks")
        if not "".join(block.replace).strip():
            raise EditError(f"{block.label()}: the new content is empty (deleting files is not allowed)")
        _, newline, _ = _split(content)
        return _join(block.replace, newline, True)
    assert block.search is not None
    if not "".join(block.search).strip():
        raise EditError(f"{block.label()}: SEARCH is empty; copy the lines to change from {block.path} "
                        "(or use a FILE block to rewrite a small file)")
    lines, newline, ends = _split(content)
    hits = _find(lines, block.search, loose=False) or _find(lines, block.search, loose=True)
    if not hits:
        raise EditError(f"{block.label()}: SEARCH does not match {block.path} (starts with: "
                        f"{_preview(block.search)!r}); copy whole lines exactly as they are in the current file")
    if len(hits) > 1:
        where = ", ".join(str(h + 1) for h in hits[:5])
        raise EditError(f"{block.label()}: SEARCH matches {len(hits)} places in {block.path} (lines {where}); "
                        "include more surrounding lines so it matches exactly one")
    k = hits[0]
    new_lines = lines[:k] + list(block.replace) + lines[k + len(block.search):]
    return _join(new_lines, newline, ends)


def plan_edits(root: Path, blocks: list[EditBlock], editable: list[str]) -> dict[str, str]:
    """Validate every block against the files under ROOT; the new content of each changed file.

    Nothing is written. EDITABLE is the list of relative paths that may be changed.
    """
    allowed = set(editable)
    current: dict[str, str] = {}
    for block in blocks:
        if block.path not in allowed:
            raise EditError(f"{block.label()}: {block.path!r} is not an editable file (editable: "
                            f"{', '.join(sorted(allowed)) or 'none'}); edits to other files are not allowed")
        if block.path not in current:
            path = root / block.path
            if not path.is_file():
                raise EditError(f"{block.label()}: {block.path} does not exist (new files are not allowed)")
            try:
                current[block.path] = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                raise EditError(f"{block.label()}: {block.path} is not UTF-8 text and cannot be edited") from None
        current[block.path] = apply_to_text(current[block.path], block)
    return current


def write_atomically(root: Path, contents: dict[str, str]) -> list[str]:
    """Write every file through a temporary file beside it, then move them all into place.

    Returns the paths whose content changed. If any temporary file cannot be written, none of
    the files is touched and every temporary file is removed.
    """
    staged: list[tuple[str, Path]] = []
    changed: list[str] = []
    try:
        for rel, text in contents.items():
            target = root / rel
            data = text.encode("utf-8")
            if target.read_bytes() == data:
                continue
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            staged.append((rel, Path(tmp_name)))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp_name, target.stat().st_mode & 0o7777)
        for rel, tmp in staged:
            os.replace(tmp, root / rel)
            changed.append(rel)
    finally:
        for _, tmp in staged:
            if tmp.exists():
                tmp.unlink()
    return changed


def apply_answer(root: Path, text: str, editable: list[str]) -> tuple[ParsedAnswer, list[str]]:
    """Parse TEXT, validate all its blocks, then apply them atomically.

    Returns the parsed answer and the files that changed; raises EditError (nothing written).
    """
    parsed = parse_answer(text)
    contents = plan_edits(root, parsed.blocks, editable)
    return parsed, write_atomically(root, contents)
