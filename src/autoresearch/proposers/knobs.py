"""Knobs: the constants of the editable Python files that `tune` may change, found and edited.

Real projects keep their knobs in two places: module constants (`LEARNING_RATE = 0.05`) and
class attributes (`class SortedList: DEFAULT_LOAD_FACTOR = 1000`). So a knob is

- a module-level or class-level ``NAME = <literal>`` (or ``NAME: type = <literal>``) whose
  name is UPPER_CASE, or
- any single-name assignment of a literal, at module, class or function level, that carries
  a trailing ``# search: ...`` comment (the comment is the opt-in, whatever the name's case).

A literal is a number, a string, a boolean, None or a tuple of those; constant arithmetic
such as ``2**19`` or ``8 * 1024`` counts as a number. A name assigned more than once in its
scope, declared ``global`` elsewhere, or computed from other names is not a knob: the listing
(`list_knobs`, `autoresearch knobs`) says which assignments were skipped and why.

The ``# search:`` comment grammar and the default spaces live in `spaces`; writing new values
back into a file, in `knobs_write`. Files are parsed with libcst, a concrete syntax tree, so an
edit changes the value's characters and nothing else: formatting, comments and blank lines
stay byte for byte.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from autoresearch.config.task import TaskConfig
from autoresearch.proposers.assignments import Scope, count_assignments
from autoresearch.proposers.spaces import SEARCH_COMMENT, NotLiteral, Space, default_space, literal_value, parse_search

KNOB_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


class KnobError(ValueError):
    """A file that cannot be parsed, or a malformed ``# search:`` comment. Names file and line."""


@dataclass(frozen=True)
class Knob:
    name: str  # the assigned name
    path: str  # the file, relative to the task root
    line: int  # 1-based, for messages
    value: Any
    source: str  # the value as written, e.g. "2**19"
    space: Space
    stmt_path: tuple[int, ...]  # statement indices from the module body down through class/def bodies
    small_index: int  # position within a `A = 1; B = 2` line
    scope: str = ""  # "" at module level, else the enclosing classes/functions: "SortedList", "main()"

    @property
    def qualname(self) -> str:
        """The name tune and the listing use: `LR`, `SortedList.DEFAULT_LOAD_FACTOR`, `main().lr`."""
        return f"{self.scope}.{self.name}" if self.scope else self.name

    @property
    def tunable(self) -> bool:
        return self.space.tunable


@dataclass(frozen=True)
class Skipped:
    """An assignment that looks like a knob but is not one, or a file that was not searched."""

    path: str
    line: int  # 0: the whole file
    name: str
    reason: str
    error: bool = False  # a mistake to fix (bad `# search:` comment, unparsable file), not a choice

    def describe(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where} {self.name}: {self.reason}" if self.name else f"{where}: {self.reason}"


# -- discovery ------------------------------------------------------------------------------------

class _SearchComments(cst.CSTVisitor):
    """Every simple statement line whose trailing comment is a `# search:` comment."""

    def __init__(self) -> None:
        self.lines: list[cst.SimpleStatementLine] = []

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        comment = node.trailing_whitespace.comment
        if comment is not None and SEARCH_COMMENT.search(comment.value):
            self.lines.append(node)


@dataclass
class Scan:
    """What one file holds: its knobs, what was skipped, and knobs whose comment is wrong."""

    knobs: list[Knob] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[tuple[Knob, Skipped]] = field(default_factory=list)  # (the knob on its default space, why)


@functools.lru_cache(maxsize=32)
def parse_module(source: str, path: str = "<string>") -> cst.Module:
    """SOURCE as libcst's tree (immutable, so one parse serves the listing and the edit of the
    same content; a parse of a 300-line file takes 0.2-0.5 s)."""
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise KnobError(f"{path}:{exc.raw_line}: cannot parse: {exc.message}") from None


class _Scanner:
    def __init__(self, source: str, path: str) -> None:
        self.path = path
        self.module = parse_module(source, path)
        self.positions = MetadataWrapper(self.module, unsafe_skip_copy=True).resolve(PositionProvider)
        self.scan = Scan()
        self.seen_lines: set[int] = set()

    def line(self, node: cst.CSTNode) -> int:
        return self.positions[node].start.line

    def skip(self, node: cst.CSTNode, name: str, reason: str) -> None:
        line = self.line(node)
        self.seen_lines.add(line)
        self.scan.skipped.append(Skipped(self.path, line, name, reason))

    def run(self) -> Scan:
        module_counter = count_assignments(self.module)
        self.walk(self.module.body, (), Scope("module", "", module_counter, module_counter.declared))
        comments = _SearchComments()
        self.module.visit(comments)
        for stmt in comments.lines:  # `# search:` comments on statements tune cannot edit
            if self.line(stmt) not in self.seen_lines:
                self.skip(stmt, "", "a `# search:` comment on a statement that is not `NAME = <literal>` directly "
                                    "in a module, class or function body (e.g. inside an if/for/with block)")
        order = lambda item: item.line  # noqa: E731
        self.scan.knobs.sort(key=order)
        self.scan.skipped.sort(key=order)
        return self.scan

    def walk(self, body: Sequence[cst.BaseStatement], at: tuple[int, ...], scope: Scope) -> None:
        for i, stmt in enumerate(body):
            if isinstance(stmt, (cst.ClassDef, cst.FunctionDef)) and isinstance(stmt.body, cst.IndentedBlock):
                is_class = isinstance(stmt, cst.ClassDef)
                name = stmt.name.value + ("" if is_class else "()")
                counter = count_assignments(stmt.body)
                self.walk(stmt.body.body, at + (i,),
                          Scope("class" if is_class else "function", f"{scope.name}.{name}".lstrip("."), counter,
                                 set() if is_class else counter.declared))
            elif isinstance(stmt, cst.SimpleStatementLine):
                comment = stmt.trailing_whitespace.comment
                search = SEARCH_COMMENT.search(comment.value) if comment is not None else None
                for j, small in enumerate(stmt.body):
                    self.assignment(small, at + (i,), j, scope, search if len(stmt.body) == 1 else None)

    def assignment(self, small: cst.BaseSmallStatement, at: tuple[int, ...], j: int, scope: Scope,
                   search: re.Match[str] | None) -> None:
        if isinstance(small, cst.Assign):
            targets = [t.target for t in small.targets]
        elif isinstance(small, cst.AnnAssign) and small.value is not None:
            targets = [small.target]
        else:
            return
        names = [n for t in targets for n in _names_in(t)]
        upper = [n for n in names if KNOB_NAME.match(n)]
        if search is None and not (upper and scope.kind in ("module", "class")):
            return  # an UPPER_CASE local (`B, T, C = x.size()`) is no knob unless a comment says so
        label = upper[0] if upper else (names[0] if names else module_code(self.module, targets[0]))
        if len(targets) != 1:
            self.skip(small, label, "a chained assignment (A = B = ...): give each name its own line")
            return
        target = targets[0]
        if not isinstance(target, cst.Name):
            what = "unpacks several names" if isinstance(target, (cst.Tuple, cst.List)) else "assigns an attribute or item"
            self.skip(small, label, f"{what}; tune edits `NAME = <literal>`")
            return
        name = target.value
        count = scope.counter.count.get(name, 0)
        where = scope.name or "the module"
        if count != 1:
            self.skip(small, name, f"assigned {count} times in {where} (a knob is set once)")
            return
        if name in scope.declared:
            self.skip(small, name, "declared `global`/`nonlocal` in a function, so it changes at run time")
            return
        assert small.value is not None
        code = module_code(self.module, small.value)
        try:
            value = literal_value(code)
        except NotLiteral:
            shown = " ".join(code.split())
            self.skip(small, name, f"not a literal: `{shown[:60]}{'...' if len(shown) > 60 else ''}` "
                                   "(numbers, strings, booleans, None, tuples and constant arithmetic are)")
            return
        line = self.line(small)
        self.seen_lines.add(line)
        knob = Knob(name=name, path=self.path, line=line, value=value, source=code.strip(),
                    space=default_space(value, code), stmt_path=at, small_index=j, scope=scope.name)
        if search is not None:
            try:
                knob = Knob(**{**knob.__dict__, "space": parse_search(search.group(1), value)})
            except ValueError as exc:
                why = f"bad `# search:` comment {search.group(1)!r}: {exc}"
                self.scan.errors.append((knob, Skipped(self.path, line, knob.qualname, why, error=True)))
                return
        self.scan.knobs.append(knob)


def _names_in(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _names_in(e.value)]
    if isinstance(target, cst.StarredElement):
        return _names_in(target.value)
    return []


def module_code(module: cst.Module, node: cst.CSTNode) -> str:
    return module.code_for_node(node)


@functools.lru_cache(maxsize=32)
def _scan_once(source: str, path: str) -> Scan:
    return _Scanner(source, path).run()


def scan_source(source: str, path: str = "<string>") -> Scan:
    """The knobs of one Python file, what was skipped and why, and the malformed comments.

    Parsed once per content and path: tune lists the best's files at every proposal, and they
    change only on a keep (a libcst parse of a 300-line file takes 0.3-1.5 s). The lists are
    fresh copies; their knobs and skipped entries are frozen."""
    scan = _scan_once(source, path)
    return Scan(list(scan.knobs), list(scan.skipped), list(scan.errors))


def find_knobs(source: str, path: str = "<string>", strict: bool = True) -> list[Knob]:
    """The knobs of one Python file, in file order.

    With strict=False a malformed `# search:` comment falls back to the default space instead
    of raising (used to read the values of old commits).
    """
    scan = scan_source(source, path)
    if scan.errors:
        if strict:
            why = scan.errors[0][1]
            raise KnobError(f"{why.path}:{why.line}: {why.name}: {why.reason}")
        return sorted(scan.knobs + [knob for knob, _ in scan.errors], key=lambda k: k.line)
    return scan.knobs


def knob_values(source: str, path: str = "<string>") -> dict[str, Any]:
    """Qualified name -> value of the knobs of a file (lenient: for reading old commits)."""
    return {k.qualname: k.value for k in find_knobs(source, path, strict=False)}


# -- the listing of a task ------------------------------------------------------------------------

@dataclass
class KnobListing:
    """Every knob of a task's editable files, and what was skipped and why."""

    files: list[str]  # the editable files, relative to the task root
    knobs: list[Knob] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def tunable(self) -> list[Knob]:
        return [k for k in self.knobs if k.tunable]

    @property
    def errors(self) -> list[Skipped]:
        return [s for s in self.skipped if s.error]

    def problem(self) -> str | None:
        """One line saying why tune cannot run on these files, or None when it can."""
        if self.errors:
            first = self.errors[0].describe()
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            return f"tune: {first}{more}; see `autoresearch knobs`"
        if not self.knobs:
            skipped = [s for s in self.skipped if s.line]
            why = ("; skipped: " + "; ".join(s.describe() for s in skipped[:4])
                   + (f"; and {len(skipped) - 4} more" if len(skipped) > 4 else "")) if skipped else ""
            return (f"tune: no knobs found in the editable files ({', '.join(self.files) or 'none'}): it tunes "
                    "module- and class-level UPPER_CASE constants holding numbers, strings, booleans or tuples, "
                    "and any `NAME = <literal>` with a `# search:` comment, e.g. "
                    f"`LEARNING_RATE = 0.05  # search: float log 0.001..0.5`{why}; see `autoresearch knobs`")
        if not self.tunable:
            names = ", ".join(k.qualname for k in self.knobs)
            return (f"tune: the knobs {names} all have a fixed space (strings, tuples, zero and negative numbers "
                    "need a `# search:` comment, e.g. `# search: [\"a\", \"b\"]` or `# search: float -1..0`); "
                    "see `autoresearch knobs`")
        return None

    def lines(self) -> list[str]:
        """One line per knob: `file:line NAME = value  space`."""
        return [f"{k.path}:{k.line} {k.qualname} = {' '.join(k.source.split())}  {k.space.describe()}"
                + ("" if k.space.explicit else "  (default)") for k in self.knobs]

    def skipped_lines(self, verbose: bool = False) -> list[str]:
        """What was skipped: each entry (VERBOSE), or one line counting them by reason; the
        mistakes to fix (a bad `# search:` comment, an unparsable file) are always listed."""
        if verbose:
            return ["skipped:", *(f"  {s.describe()}" for s in self.skipped)] if self.skipped else []
        choices = [s for s in self.skipped if not s.error]
        out = []
        if choices:
            kinds: dict[str, int] = {}
            for s in choices:
                kind = re.sub(r"\d+", "N", s.reason.split(":", 1)[0].split(" (", 1)[0])
                kinds[kind] = kinds.get(kind, 0) + 1
            counted = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
            out.append(f"skipped {len(choices)}: {counted} (--verbose lists them)")
        return out + [f"error: {s.describe()}" for s in self.skipped if s.error]

    def to_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            return list(value) if isinstance(value, tuple) else value

        return {
            "files": self.files,
            "knobs": [{"path": k.path, "line": k.line, "scope": k.scope or "module", "name": k.name,
                       "qualname": k.qualname, "value": plain(k.value), "source": k.source,
                       "space": {"kind": k.space.kind, "low": k.space.low, "high": k.space.high,
                                 "log": k.space.log, "choices": [plain(c) for c in k.space.choices],
                                 "explicit": k.space.explicit, "text": k.space.describe()},
                       "tunable": k.tunable} for k in self.knobs],
            "skipped": [{"path": s.path, "line": s.line, "name": s.name, "reason": s.reason, "error": s.error}
                        for s in self.skipped],
            "problem": self.problem(),
        }


def list_files(root: Path, files: Sequence[str]) -> KnobListing:
    """The listing of FILES (relative to ROOT). Never raises: problems become skipped entries."""
    listing = KnobListing(files=list(files))
    for path in files:
        if not path.endswith(".py"):
            listing.skipped.append(Skipped(path, 0, "", "not a Python file"))
            continue
        try:
            with open(root / path, encoding="utf-8", newline="") as fh:
                source = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            listing.skipped.append(Skipped(path, 0, "", f"cannot read: {exc}", error=True))
            continue
        try:
            scan = scan_source(source, path)
        except KnobError as exc:  # "path:line: cannot parse: ..."
            where = re.match(rf"{re.escape(path)}:(\d+): (.*)$", str(exc), re.S)
            line, why = (int(where.group(1)), where.group(2)) if where else (0, str(exc))
            listing.skipped.append(Skipped(path, line, "", why, error=True))
            continue
        listing.knobs += scan.knobs
        listing.skipped += scan.skipped + [why for _, why in scan.errors]
    return listing


def list_knobs(config: TaskConfig, root: Path | None = None) -> KnobListing:
    """Every knob of the task's editable files under ROOT (default: the task folder)."""
    root = root or config.root
    return list_files(root, config.editable_files(root))
