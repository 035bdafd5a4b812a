"""Read-only harness of the `compress` task: the corpus, the round trip, and bits per byte.

The metric, `bits_per_byte`, is what it costs to ship the corpus together with the program
that unpacks it, in the spirit of the Hutter prize:

    bits_per_byte = 8 * (sum of compressed sizes + size of the decompressor) / corpus size

where the size of the decompressor is the xz -9e size of compressor.py with its comments
removed. Counting the code closes the oldest loophole of a fixed corpus: a compressor that
embeds the corpus in its own source pays for it at xz's rate, so it does no better than
compressing the whole corpus with lzma, which compressor.py may do honestly. Comments are
free; they cannot carry data, as the children only ever see the comment-free source.

The candidate never runs in this process. compressor.py is executed in two fresh, sandboxed
child processes (`python -I -S harness.py --child ...`):
  1. the compress child gets the source and the files, and returns one blob per file;
  2. the decompress child gets the source and only the blobs, in reverse order, and must
     return the files byte for byte. It is never given the corpus or where it lives.
Before running any candidate code, a child imports the modules compressor.py may use
(ALLOWED_MODULES), checks that no corpus module came with them, then installs an audit hook
(PEP 578) that refuses every file open, every further import, processes, sockets, ctypes and
filesystem changes. So the decompressor cannot read the corpus from disk (the corpus is the
Python standard library, present on the machine), cannot read a copy the compressor stashed,
and cannot talk to anything: what comes out must come from the blob and the counted code.

Everything is deterministic: the same compressor.py gives the same number on the same Python
(the corpus is the stdlib of the interpreter that runs this file, so compare numbers on one
machine). Timing is reported but does not count, except that compress plus decompress must
finish within AUTORESEARCH_BUDGET_S.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import lzma
import os
import resource
import struct
import subprocess
import sys
import sysconfig
import time
import tokenize
from pathlib import Path

# The corpus: CPython standard-library modules, real text (code, docstrings, comments) found on
# every Python installation, so the task needs no download. None of them is imported by a child.
CORPUS = ["argparse.py", "difflib.py", "fractions.py", "calendar.py", "textwrap.py",
          "shlex.py", "csv.py", "queue.py", "sched.py", "colorsys.py"]

# The only modules compressor.py may import (the sandbox loads them up front; any other import fails).
ALLOWED_MODULES = ["array", "bisect", "bz2", "collections", "functools", "heapq", "io", "itertools",
                   "lzma", "math", "operator", "re", "struct", "zlib"]

# Audit events a child refuses once candidate code may run: any file open or new import, and
# every way to reach the world outside the process (processes, sockets, ctypes, the filesystem).
DENIED_EVENTS = ("open", "import")
DENIED_PREFIXES = ("os.", "subprocess.", "socket.", "ctypes.", "shutil.", "tempfile.", "mmap.",
                   "resource.", "sqlite3.", "urllib.", "http.", "ftplib.", "smtplib.", "webbrowser.",
                   "pty.", "fcntl.", "msvcrt.", "winreg.", "_winapi.")

MEMORY_LIMIT_BYTES = 4 * 1024**3  # address space of each child: a runaway model fails, the machine lives
BUDGET_S = float(os.environ.get("AUTORESEARCH_BUDGET_S", "20"))  # compress + decompress, wall clock
EDITABLE = "compressor.py"


# -- the corpus and the code size -----------------------------------------------------------------

def corpus() -> list[tuple[str, bytes]]:
    """(name, contents) of each corpus file, read from this interpreter's standard library."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for name in CORPUS:
        path = stdlib / name
        if not path.is_file():
            sys.exit(f"harness: corpus file {path} is missing from this Python installation")
        files.append((name, path.read_bytes()))
    return files


def strip_comments(source: str) -> str:
    """The source without its comments. Line numbers stay the same, so tracebacks still point
    at the right line of compressor.py; strings (docstrings included) stay, as they are data."""
    lines = source.splitlines(keepends=True)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            line = lines[row - 1]
            ending = line[len(line.rstrip("\r\n")):]
            lines[row - 1] = line[:col].rstrip() + ending
    return "".join(lines)


def code_size(stripped: str) -> int:
    """Bytes charged for the decompressor: xz -9e of the comment-free source."""
    return len(lzma.compress(stripped.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))


# -- the wire format between this process and a child -----------------------------------------------

def pack(items: list[bytes]) -> bytes:
    parts = [struct.pack(">I", len(items))]
    for item in items:
        parts.append(struct.pack(">Q", len(item)))
        parts.append(item)
    return b"".join(parts)


def unpack(data: bytes) -> list[bytes]:
    """Strict inverse of pack: anything malformed or trailing raises ValueError."""
    if len(data) < 4:
        raise ValueError("truncated header")
    (count,) = struct.unpack_from(">I", data, 0)
    pos, items = 4, []
    for _ in range(count):
        if pos + 8 > len(data):
            raise ValueError("truncated length")
        (size,) = struct.unpack_from(">Q", data, pos)
        pos += 8
        if pos + size > len(data):
            raise ValueError("truncated item")
        items.append(data[pos:pos + size])
        pos += size
    if pos != len(data):
        raise ValueError("trailing bytes")
    return items


# -- the sandboxed child -------------------------------------------------------------------------------

def _refuse(event: str, args: tuple) -> None:
    if event in DENIED_EVENTS or event.startswith(DENIED_PREFIXES):
        raise PermissionError(f"compress sandbox: {event!r} is not allowed (compressor.py gets its input "
                              f"as an argument and may import only: {', '.join(ALLOWED_MODULES)})")


def _guarded_import(name: str, globals=None, locals=None, fromlist=(), level: int = 0):  # noqa: A002
    """compressor.py's __import__: the allowed modules only, with a message that says so."""
    if level != 0 or name.partition(".")[0] not in ALLOWED_MODULES:
        raise ImportError(f"compress sandbox: compressor.py may import only {', '.join(ALLOWED_MODULES)}; not {name!r}")
    return builtins.__import__(name, globals, locals, fromlist, level)


def child_main(mode: str) -> None:
    """Run compress or decompress of the candidate over the items the parent sends on stdin."""
    import importlib
    import types

    channel = os.fdopen(os.dup(1), "wb")  # the private way back to the parent ...
    os.dup2(2, 1)  # ... while the candidate's prints land on stderr, in the log
    items = unpack(sys.stdin.buffer.read())
    source = items.pop(0).decode("utf-8")
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ValueError, OSError):
        pass  # some systems (macOS) refuse an address-space limit; the time budget still holds
    for name in ALLOWED_MODULES:
        importlib.import_module(name)
    loaded = [name for name in CORPUS if name[:-3].replace("/", ".") in sys.modules]
    if loaded:
        sys.exit(f"harness: corpus modules {loaded} are loaded in the sandbox; the corpus would leak")
    sys.addaudithook(_refuse)
    module = types.ModuleType("compressor")
    module.__file__ = EDITABLE
    module.__builtins__ = {**builtins.__dict__, "__import__": _guarded_import}
    sys.modules["compressor"] = module
    exec(compile(source, EDITABLE, "exec"), module.__dict__)
    del source
    function = getattr(module, mode)
    results = []
    for item in items:
        out = function(item)
        if not isinstance(out, (bytes, bytearray)):
            raise TypeError(f"{mode}() must return bytes, got {type(out).__name__}")
        results.append(bytes(out))
    channel.write(pack(results))
    channel.flush()


def run_child(mode: str, source: str, items: list[bytes], timeout: float) -> tuple[list[bytes], float]:
    """Start a fresh sandboxed child, feed it, and return its results and its wall time."""
    argv = [sys.executable, "-I", "-S", str(Path(__file__).resolve()), "--child", mode]
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, input=pack([source.encode("utf-8"), *items]), capture_output=True,
                              timeout=max(timeout, 0.1), cwd="/", env={"PATH": os.environ.get("PATH", "")})
    except subprocess.TimeoutExpired:
        sys.exit(f"harness: {mode} did not finish within the budget of {BUDGET_S:g}s (compress + decompress)")
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode("utf-8", "replace")[-4000:])
        if b"compress sandbox:" in proc.stderr:
            print("reject: sandbox-violation")
        sys.exit(f"harness: {mode} failed (exit {proc.returncode})")
    if proc.stderr:
        sys.stderr.write(proc.stderr.decode("utf-8", "replace")[-2000:])
    try:
        results = unpack(proc.stdout)
    except ValueError as exc:
        sys.exit(f"harness: {mode} answered garbage ({exc}); is something writing to file descriptor 1?")
    if len(results) != len(items):
        sys.exit(f"harness: {mode} returned {len(results)} items for {len(items)}")
    return results, seconds


# -- the measurement -----------------------------------------------------------------------------------

def main() -> None:
    files = corpus()
    names = [name for name, _ in files]
    originals = [data for _, data in files]
    raw_bytes = sum(len(d) for d in originals)
    digest = hashlib.sha256(b"".join(originals)).hexdigest()[:16]
    print(f"corpus = {len(files)} stdlib files of Python {sys.version.split()[0]}, {raw_bytes} bytes, sha256 {digest}")

    try:
        source = strip_comments(Path(EDITABLE).read_text(encoding="utf-8"))
    except (SyntaxError, tokenize.TokenError, UnicodeDecodeError) as exc:
        sys.exit(f"harness: {EDITABLE} does not parse: {exc}")
    code_bytes = code_size(source)

    blobs, compress_s = run_child("compress", source, originals, BUDGET_S)
    # Reverse order, so that a decompressor cannot lean on the call order compress saw.
    restored, decompress_s = run_child("decompress", source, blobs[::-1], BUDGET_S - compress_s)
    restored = restored[::-1]
    for name, original, blob, back in zip(names, originals, blobs, restored):
        if back != original:
            where = next((i for i, (a, b) in enumerate(zip(back, original)) if a != b), min(len(back), len(original)))
            sys.exit(f"harness: round trip failed for {name}: {len(original)} bytes in, {len(back)} out, "
                     f"first difference at byte {where}")
        print(f"  {name:<14} {len(original):>7} -> {len(blob):>6} bytes  {8 * len(blob) / len(original):.3f} bits/byte")

    compressed = sum(len(b) for b in blobs)
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the larger child, in MiB
    print(f"raw_bytes: {raw_bytes}")
    print(f"compressed_bytes: {compressed}")
    print(f"code_bytes: {code_bytes}")
    print(f"data_bits_per_byte: {8 * compressed / raw_bytes:.6f}")
    print(f"compress_seconds: {compress_s:.3f}")
    print(f"decompress_seconds: {decompress_s:.3f}")
    print(f"peak_rss_mb: {rss_mb:.1f}")
    print(f"bits_per_byte: {8 * (compressed + code_bytes) / raw_bytes:.6f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(sys.argv[2])
    else:
        main()
