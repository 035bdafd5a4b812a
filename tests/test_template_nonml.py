"""The non-ML templates: compress (deterministic), fastfunc (noisy timing), sqlquery (SQLite).

Each template is copied to a tmp folder and its `run` command is started the way autoresearch
starts it (through the shell, `python` resolving to this interpreter, the AUTORESEARCH_*
variables set). The tests check that a baseline prints a finite metric, and that every harness
catches what it promises to catch: wrong answers, and candidates that try to skip the work.
"""

from __future__ import annotations

import lzma
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ar

import autoresearch
from autoresearch.config.task import load_config
from autoresearch.harness.output import parse_metrics
from autoresearch.proposers.knobs import find_knobs

TEMPLATES = Path(autoresearch.__file__).parent / "templates"
NONML = ["compress", "fastfunc", "sqlquery"]


@dataclass
class Outcome:
    returncode: int
    output: str
    metrics: dict[str, float]


def copy_template(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(TEMPLATES / name, root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def run_task(root: Path, budget: float | None = None, seed: int = 0) -> Outcome:
    """The task's run command, as the orchestrator runs it; metrics parsed by the real parser."""
    config = load_config(root)
    out = root.parent / f"out-{root.name}"
    out.mkdir(exist_ok=True)
    env = {**os.environ,
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
           "AUTORESEARCH_BUDGET_S": f"{budget if budget is not None else config.budget.seconds:g}",
           "AUTORESEARCH_SEQ": "1", "AUTORESEARCH_SEED": str(seed), "AUTORESEARCH_OUT": str(out),
           "AUTORESEARCH_PHASE": "run"}
    proc = subprocess.run(["/bin/sh", "-c", config.task.run], cwd=root, env=env, capture_output=True,
                          timeout=config.budget.hard_timeout)
    output = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    metrics, _ = parse_metrics(proc.stdout.splitlines(keepends=True))
    return Outcome(proc.returncode, output, metrics)


def assert_ok(outcome: Outcome, metric: str) -> float:
    assert outcome.returncode == 0, outcome.output[-3000:]
    assert metric in outcome.metrics, outcome.output[-3000:]
    value = outcome.metrics[metric]
    assert math.isfinite(value) and value > 0
    return value


def assert_fails(outcome: Outcome, metric: str, message: str) -> None:
    assert outcome.returncode != 0, outcome.output[-3000:]
    assert metric not in outcome.metrics
    assert message in outcome.output, outcome.output[-3000:]


# -- all three --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NONML)
def test_config_program_and_knobs(name: str) -> None:
    config = load_config(TEMPLATES / name)
    assert config.task.name == name and config.task.description
    assert config.editable_files() and config.readonly_files()
    assert config.budget.seconds <= 30  # the issue: each experiment under 30 s on a CPU
    program = (TEMPLATES / name / "program.md").read_text()
    for rule in ("autoresearch experiment -m", "tee", "results.tsv", "Never stop", "never ask",
                 config.metric.name, *config.editable_files()):
        assert rule in program, rule
    for path in config.editable_files():
        if path.endswith(".py"):
            knobs = find_knobs((TEMPLATES / name / path).read_text(), path)
            assert knobs and all(k.space.explicit for k in knobs)  # every knob has a `# search:` comment


# -- compress -----------------------------------------------------------------------------------------

def test_compress_is_deterministic_and_a_knob_moves_it(tmp_path: Path) -> None:
    root = copy_template("compress", tmp_path)
    first = run_task(root)
    value = assert_ok(first, "bits_per_byte")
    assert 1.5 < value < 3.0
    assert first.metrics["code_bytes"] > 0
    assert first.metrics["data_bits_per_byte"] < value  # the code is charged on top of the data
    assert run_task(root).metrics["bits_per_byte"] == value  # same file, same number
    source = root / "compressor.py"
    source.write_text(source.read_text().replace("LEVEL = 6 ", "LEVEL = 1 "))
    faster = assert_ok(run_task(root), "bits_per_byte")
    assert faster > value  # less effort, bigger output: the knob matters


def test_compress_broken_round_trip_fails(tmp_path: Path) -> None:
    root = copy_template("compress", tmp_path)
    source = root / "compressor.py"
    source.write_text(source.read_text().replace("return zlib.decompress(blob, -WINDOW_BITS)",
                                                 "return zlib.decompress(blob, -WINDOW_BITS)[:-1]"))
    assert_fails(run_task(root), "bits_per_byte", "round trip failed")


CORPUS_FILE = Path(sysconfig.get_paths()["stdlib"]) / "argparse.py"
COMPRESS_CHEATS = {
    # The decompressor "restores" files by reading them from the standard library.
    "read-the-corpus": f'''
def compress(data):
    return data[:64]
def decompress(blob):
    with open({str(CORPUS_FILE)!r}, "rb") as fh:
        return fh.read()
''',
    # The compressor stashes the data in a file for the decompressor to pick up.
    "stash-in-a-file": '''
def compress(data):
    open("/tmp/compress-stash-%d" % len(data), "wb").write(data)
    return len(data).to_bytes(4, "big")
def decompress(blob):
    return open("/tmp/compress-stash-%d" % int.from_bytes(blob, "big"), "rb").read()
''',
    # Reaching the real import machinery past the allowed list still fails at the audit hook.
    "import-past-the-list": '''
import zlib
def compress(data):
    return zlib.compress(data)
def decompress(blob):
    print.__self__.__import__("json")
    return zlib.decompress(blob)
''',
}


@pytest.mark.parametrize("cheat", sorted(COMPRESS_CHEATS))
def test_compress_sandbox_stops_cheats(tmp_path: Path, cheat: str) -> None:
    root = copy_template("compress", tmp_path)
    (root / "compressor.py").write_text(COMPRESS_CHEATS[cheat])
    outcome = run_task(root)
    assert_fails(outcome, "bits_per_byte", "compress sandbox:")
    assert "reject: sandbox-violation" in outcome.output


def test_compress_embedding_the_corpus_buys_nothing(tmp_path: Path) -> None:
    """A compressor that carries the corpus in its source pays for it as code."""
    root = copy_template("compress", tmp_path)
    harness_globals: dict = {"__name__": "harness"}
    exec(compile((root / "harness.py").read_text(), "harness.py", "exec"), harness_globals)
    files = [data for _, data in harness_globals["corpus"]()]
    (root / "compressor.py").write_text(f"FILES = {files!r}\n" + '''
def compress(data):
    return bytes([FILES.index(data)])
def decompress(blob):
    return FILES[blob[0]]
''')
    outcome = run_task(root)
    value = assert_ok(outcome, "bits_per_byte")
    assert outcome.metrics["compressed_bytes"] == len(files)  # one byte per file ...
    xz_rate = 8 * len(lzma.compress(b"".join(files), preset=9 | lzma.PRESET_EXTREME)) / sum(map(len, files))
    assert value >= xz_rate > 1.5  # ... and no better than xz on the whole corpus, which lzma may do honestly


@pytest.mark.slow
def test_compress_through_the_cli(tmp_path: Path) -> None:
    """init, start, baseline, then a knob change kept by `autoresearch experiment`."""
    root = tmp_path / "c"
    ar(tmp_path, "init", str(root), "--template", "compress")
    ar(root, "start", "--tag", "t")
    baseline = ar(root, "baseline").stdout
    assert re.search(r"keep: bits_per_byte 2\.\d+", baseline), baseline
    source = root / "compressor.py"
    source.write_text(source.read_text().replace("LEVEL = 6 ", "LEVEL = 9 "))
    result = ar(root, "experiment", "-m", "level 9").stdout
    assert result.startswith("keep: bits_per_byte"), result


# -- fastfunc -----------------------------------------------------------------------------------------

MYERS = '''
def edit_distance(a, b):
    """Levenshtein distance, bit-parallel (Myers 1999, Hyyro's formulation), big ints as bit vectors."""
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    masks = {}
    for i, c in enumerate(b):
        masks[c] = masks.get(c, 0) | (1 << i)
    full, top = (1 << m) - 1, 1 << (m - 1)
    pv, mv, score = full, 0, m
    for c in a:
        eq = masks.get(c, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | ~(xh | pv)
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = (ph << 1) | 1
        mh <<= 1
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv & full
    return score
'''


@pytest.mark.slow
def test_fastfunc_baseline_and_a_real_speedup(tmp_path: Path) -> None:
    root = copy_template("fastfunc", tmp_path)
    baseline = run_task(root)
    slow = assert_ok(baseline, "seconds")
    assert "correctness: " in baseline.output
    (root / "solution.py").write_text(MYERS)
    fast = assert_ok(run_task(root, seed=1), "seconds")
    assert fast < slow / 3  # about 30x on an idle machine; generous for a loaded one


FASTFUNC_WRONG = {
    # Off by one on non-ASCII text: the edge cases and random cases catch it.
    "non-ascii": "from bench import reference\n"
                 "def edit_distance(a, b):\n"
                 "    return reference(a, b) + any(ord(c) > 127 for c in a + b)\n",
    # Right type matters: 3.0 is not 3.
    "float": "from bench import reference\n"
             "def edit_distance(a, b):\n"
             "    return float(reference(a, b))\n",
    # Right on everything short, wrong on long inputs: only the check of the timed answers sees it.
    "long-inputs": "from bench import reference\n"
                   "def edit_distance(a, b):\n"
                   "    return 0 if len(a) > 240 else reference(a, b)\n",
}


@pytest.mark.parametrize("case", sorted(FASTFUNC_WRONG))
def test_fastfunc_wrong_answers_fail(tmp_path: Path, case: str) -> None:
    root = copy_template("fastfunc", tmp_path)
    (root / "solution.py").write_text(FASTFUNC_WRONG[case])
    outcome = run_task(root)
    assert_fails(outcome, "seconds", "wrong answer on " + ("the timed batch" if case == "long-inputs" else "a correctness case"))


FASTFUNC_CHEATS = {
    "write-a-cache": "def edit_distance(a, b):\n"
                     "    open('/tmp/fastfunc-cache', 'a').write(a + b)\n"
                     "    return 0\n",
    "foreign-packages": "import sys\n"
                        f"sys.path.append({sysconfig.get_paths()['purelib']!r})\n"
                        "import click\n"
                        "def edit_distance(a, b):\n"
                        "    return 0\n",
    "signal-the-parent": "import os\n"
                         "def edit_distance(a, b):\n"
                         "    os.kill(os.getppid(), 19)\n",
}


@pytest.mark.parametrize("cheat", sorted(FASTFUNC_CHEATS))
def test_fastfunc_sandbox_stops_cheats(tmp_path: Path, cheat: str) -> None:
    root = copy_template("fastfunc", tmp_path)
    (root / "solution.py").write_text(FASTFUNC_CHEATS[cheat])
    outcome = run_task(root)
    assert_fails(outcome, "seconds", "fastfunc sandbox:")
    assert "reject: sandbox-violation" in outcome.output


def test_fastfunc_too_slow_is_stopped(tmp_path: Path) -> None:
    root = copy_template("fastfunc", tmp_path)
    (root / "solution.py").write_text("def edit_distance(a, b):\n    while True:\n        pass\n")
    assert_fails(run_task(root, budget=1), "seconds", "did not answer within")


# -- sqlquery -----------------------------------------------------------------------------------------

FAST_INDEXES = """
CREATE INDEX customers_tier ON customers(tier, id, country);
CREATE INDEX orders_customer ON orders(customer_id, status, day);
CREATE INDEX items_order ON order_items(order_id, product_id, quantity, unit_price_cents);
ANALYZE;
"""
FAST_QUERY = """
WITH spend AS (
    SELECT c.id AS customer_id, c.country, SUM(i.quantity * i.unit_price_cents) AS spend_cents,
           COUNT(DISTINCT o.id) AS orders
    FROM customers c INDEXED BY customers_tier
    CROSS JOIN orders o INDEXED BY orders_customer
    CROSS JOIN order_items i INDEXED BY items_order
    CROSS JOIN products p
    WHERE c.tier = 'gold' AND o.customer_id = c.id AND o.status = 'shipped' AND o.day BETWEEN 400 AND 579
      AND i.order_id = o.id AND p.id = i.product_id AND p.category IN ('books', 'games')
    GROUP BY c.id
), ranked AS (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY country ORDER BY spend_cents DESC, customer_id) AS rn FROM spend
)
SELECT r.country, r.customer_id, c.name, r.spend_cents, r.orders
FROM ranked r JOIN customers c ON c.id = r.customer_id WHERE rn = 1
"""


@pytest.mark.slow
def test_sqlquery_baseline_and_indexes_help(tmp_path: Path) -> None:
    root = copy_template("sqlquery", tmp_path)
    baseline = run_task(root)
    slow = assert_ok(baseline, "query_ms")
    assert "check: passed" in baseline.output
    (root / "schema_extra.sql").write_text(FAST_INDEXES)
    (root / "query.sql").write_text(FAST_QUERY)
    tuned = run_task(root)
    fast = assert_ok(tuned, "query_ms")
    assert tuned.metrics["index_ms"] > 0
    assert fast < slow / 2  # about 10x on an idle machine
    assert not list((tmp_path / "out-sqlquery").iterdir())  # the database is gone after the run


def test_sqlquery_wrong_rows_fail(tmp_path: Path) -> None:
    root = copy_template("sqlquery", tmp_path)
    query = root / "query.sql"
    # Same numbers as floats: a different answer (types are part of the rows).
    query.write_text(query.read_text().replace("s.spend_cents, s.orders\nFROM spend s", "s.spend_cents * 1.0, s.orders\nFROM spend s"))
    assert "* 1.0" in query.read_text()
    assert_fails(run_task(root), "query_ms", "expected rows missing")


def test_sqlquery_literal_answer_fails(tmp_path: Path) -> None:
    """The data are new every run, so an answer written into the query cannot be right."""
    root = copy_template("sqlquery", tmp_path)
    (root / "query.sql").write_text("SELECT 'US', 1, 'Kalo Mira', 12345, 2")
    assert_fails(run_task(root), "query_ms", "expected rows missing")


@pytest.mark.parametrize("script, query, message", [
    ("CREATE TABLE answer AS SELECT 1 AS x;", None, "schema_extra.sql may only CREATE INDEX"),
    ("CREATE INDEX o ON orders(day); CREATE VIEW v AS SELECT * FROM orders;", None, "schema_extra.sql may only CREATE INDEX"),
    ("CREATE TRIGGER t AFTER INSERT ON orders BEGIN SELECT 1; END;", None, "schema_extra.sql may only CREATE INDEX"),
    ("PRAGMA cache_size = 100000;", None, "schema_extra.sql may only CREATE INDEX"),
    ("", "DELETE FROM orders", "query.sql may only read"),
    ("", "SELECT 1; SELECT 2", "query.sql failed"),
])
def test_sqlquery_editable_files_are_confined(tmp_path: Path, script: str, query: str | None, message: str) -> None:
    root = copy_template("sqlquery", tmp_path)
    (root / "schema_extra.sql").write_text(script)
    if query is not None:
        (root / "query.sql").write_text(query)
    assert_fails(run_task(root), "query_ms", message)
