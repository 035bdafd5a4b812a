"""Parsers of what git prints: `diff-tree --raw -z` listings and patches. No git runs here."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    """One path that differs between two trees."""

    status: str  # A added, M modified, D deleted, T type changed (e.g. a file became a symlink)
    path: str
    new_mode: str = ""

    @property
    def is_symlink(self) -> bool:
        return self.new_mode == "120000"


def raw_changes(parts: list[str]) -> tuple[list[Change], list[str]]:
    """`diff-tree -z --raw` fields (meta, path pairs) up to the empty field that ends them: the
    changes, and the fields after (a patch, when one was asked for)."""
    changes: list[Change] = []
    i = 0
    while i + 1 < len(parts) and parts[i].startswith(":"):
        fields = parts[i][1:].split()
        changes.append(Change(status=fields[4][0], path=parts[i + 1], new_mode=fields[1]))
        i += 2
    return changes, parts[i + 1:] if i < len(parts) and parts[i] == "" else parts[i:]


_HUNK = re.compile(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


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
