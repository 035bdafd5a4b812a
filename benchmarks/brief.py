"""The brief's size against the length of the history, and the loop's own overhead per
experiment with the `example` task and the built-in `tune` proposer.

Part 1, size: `proposers.brief.build_brief` with a realistic synthetic history of HISTORIES
experiments (the research log built from all of them, the notes at their 4,000-character cap) (tune-style and model-style descriptions, keeps, discards, crashes, rejections)
for the program.md of each template in TEMPLATES, in three situations: the last experiment
went fine, the last one crashed (the brief then carries its log tail), and a fix request.
Printed: characters, approximate tokens (chars / 4; also tiktoken's count when its encoding
file is already cached, since fetching one needs the network), and the time to build it.
The brief is bounded by design: the rows should not change between 100 and 1,000.

Part 2, loop overhead: `autoresearch run --agent tune --max-experiments LOOP_EXPERIMENTS -q` on
a fresh `example` task, then per experiment from the journal:
  record   = finished_at - started_at  (what the journal row spans: the `running` record, the
             scratch copy of the best, history and brief, propose, collect, guard, commit,
             the export of the commit, run, verdict, settle)
  propose  = propose_seconds            (tune: rebuild the optuna study, ask, edit train.py)
  run      = run_seconds                (the harness's runs (run and evaluate phases), sandbox included)
  in-record overhead = record - propose - run
  between  = next started_at - finished_at (stop checks, the event queue, the next slot start)
  cycle    = next started_at - started_at  (one experiment, all in)
Medians are printed for the first and the second half of the run as well, so growth with the
history shows. The loop's overhead is `in-record overhead + between`.

Run: .venv/bin/python benchmarks/brief.py   (about a minute on 2 cores)
     .venv/bin/python benchmarks/brief.py --quick   (fewer rows and experiments: a check that it runs)
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from autoresearch.config.task import find_root, load_config  # noqa: E402
from autoresearch.harness.sandbox import bwrap_works  # noqa: E402
from autoresearch.journal.records import Experiment  # noqa: E402
from autoresearch.proposers.brief import Limits, build_brief  # noqa: E402
from autoresearch.proposers.digest import research_digest  # noqa: E402

# -- knobs ----------------------------------------------------------------------------------------
HISTORIES = [10, 100, 1000, 10000]  # experiments of history given to build_brief (and its research log)
TEMPLATES = ["example", "tinylm"]  # whose program.md and config the brief is built from
CHARS_PER_TOKEN = 4.0  # the usual rule of thumb for English and code
TIKTOKEN_ENCODING = "cl100k_base"  # counted only when its file is already in tiktoken's cache
BUILD_REPEATS = 20  # builds timed per row
LOOP_EXPERIMENTS = 30  # experiments after the baseline in the loop part
LOOP_SANDBOX = "auto"  # [sandbox] kind of the loop's task ("auto": bwrap where it works)
SEED = 0
NOTES = ("- lr above 0.004 diverges with depth 8\n" * 120)[:4000]  # the agent's notes at their cap
CLI = [sys.executable, "-m", "autoresearch"]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cli_env(pycache: Path) -> dict[str, str]:
    """Cached bytecode, as an installed package has (this checkout may set
    PYTHONDONTWRITEBYTECODE, which would make every start recompile optuna and friends)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"`autoresearch {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


# -- part 1: the brief's size ---------------------------------------------------------------------

KNOBS = ["DEGREE", "LEARNING_RATE", "STEPS", "MOMENTUM", "WEIGHT_DECAY", "WARMUP_RATIO", "DEPTH", "BATCH_SIZE"]
IDEAS = [
    "switch the MLP activation from GELU to squared ReLU and retune the learning rate for the new scale",
    "add rotary embeddings to the attention and drop the learned positional table",
    "halve the warmup and use a cosine decay to 10% of the peak learning rate",
    "increase depth by two layers while narrowing the model dim to keep the parameter count",
    "use QK-norm in attention so a larger learning rate stays stable",
    "tie the input and output embeddings",
    "replace AdamW with Muon for the matrix parameters, keep AdamW for embeddings and norms",
]
CRASH_LOG = "\n".join(
    [f"step {i:05d} | loss {3.2 - i * 0.01:.4f} | lr 0.0040 | dt 412ms | tok/sec 318,211" for i in range(40)]
    + ["Traceback (most recent call last):", '  File "train.py", line 212, in <module>',
       "    logits = model(x)", '  File "train.py", line 140, in forward',
       "    att = (q @ k.transpose(-2, -1)) * self.scale",
       "RuntimeError: The size of tensor a (64) must match the size of tensor b (128) at non-singleton dimension 3"])


def synthetic_history(n: int, rng: random.Random) -> list[Experiment]:
    """N finished experiments as a long night leaves them: a keep now and then, mostly discards,
    some crashes (with log tails) and rejections, descriptions from tune and from a model."""
    history, best, t = [], 1.10, time.time() - 600.0 * n
    for seq in range(1, n + 1):
        roll = rng.random()
        if seq == 1:
            description = "baseline"
        elif roll < 0.5:
            knobs = rng.sample(KNOBS, rng.randint(1, 3))
            description = ", ".join(f"{k} {rng.uniform(0, 1):.4g} -> {rng.uniform(0, 1):.4g}" for k in knobs)
        else:
            description = rng.choice(IDEAS)
        exp = Experiment(seq=seq, tag="night", status="discard", started_at=t, description=description,
                         proposer="tune" if roll < 0.5 else "claude",
                         commit_sha=hashlib.sha1(str(seq).encode()).hexdigest(),
                         best_before=best if seq > 1 else None, finished_at=t + 330.0, run_seconds=300.0,
                         propose_seconds=25.0)
        kind = rng.random()
        if seq == 1 or kind < 0.15:
            exp.metric = best - (rng.uniform(0.0005, 0.01) if seq > 1 else 0.0)
            exp.status, exp.reason, exp.is_baseline = "keep", "improved", seq == 1
            best = exp.metric
        elif kind < 0.25:
            exp.status, exp.reason, exp.log_tail = "crash", "exit-1", CRASH_LOG
        elif kind < 0.28:
            exp.status, exp.reason = "rejected", "out-of-scope"
        else:
            exp.metric, exp.reason = best + rng.uniform(0.0, 0.02), "not-better"
        exp.metrics = {"val_bpb": exp.metric} if exp.metric is not None else {}
        history.append(exp)
        t += 600.0
    return history


REGIONS = ["train.py:MLP.forward", "train.py:CausalSelfAttention.forward", "train.py:lr_schedule",
           "train.py:GPT.__init__", "train.py:CausalSelfAttention.__init__", "train.py:GPT.forward",
           "train.py:build_optimizer"]


def synthetic_changes(history: list[Experiment]) -> dict[int, dict]:
    """What each experiment changed, as the loop records it (`details.changed`): tune's
    descriptions name knob moves; each model idea edits one code region."""
    changes: dict[int, dict] = {}
    for e in history:
        knobs, regions = {}, []
        if e.description in IDEAS:
            regions = [REGIONS[IDEAS.index(e.description) % len(REGIONS)]]
        elif "->" in e.description:
            for part in e.description.split(", "):
                name, old, _, new = part.split()
                knobs[name] = [float(old), float(new)]
        changes[e.seq] = {"knobs": knobs, "regions": regions}
    return changes


def offline_tiktoken():  # noqa: ANN201 - a counting function, or None
    """tiktoken's encoder when its file is in the local cache; a named encoding otherwise needs
    the network (blocked here), so without the cache only chars / 4 is printed."""
    try:
        import tiktoken
    except ImportError:
        return None
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") \
        or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    url = f"https://openaipublic.blob.core.windows.net/encodings/{TIKTOKEN_ENCODING}.tiktoken"
    if not os.path.exists(os.path.join(cache, hashlib.sha1(url.encode()).hexdigest())):
        return None
    try:
        encoding = tiktoken.get_encoding(TIKTOKEN_ENCODING)
    except Exception:  # noqa: BLE001 - a broken cache means no count, not a failed benchmark
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def brief_sizes(work: Path, env: dict[str, str]) -> None:
    count_tokens = offline_tiktoken()
    token_note = (f"tiktoken {TIKTOKEN_ENCODING}" if count_tokens else
                  f"tiktoken: no cached {TIKTOKEN_ENCODING} file (fetching it needs the network), so chars/4 only")
    print(f"== brief size ({token_note}; history table rows come from [agent] history)")
    print(f"{'template':9s} {'history':>7s}  {'situation':12s} {'chars':>7s} {'~tokens':>8s} "
          f"{'tiktoken':>8s} {'build ms':>8s}")
    rows = {}
    for template in TEMPLATES:
        root = work / f"brief-{template}"
        try:
            cli(["init", str(root), "--template", template], work, env)
        except SystemExit as exc:
            print(f"{template:9s} (skipped: {str(exc).splitlines()[0]})")
            continue
        config = load_config(find_root(root))
        program = (root / config.task.program).read_text()
        files = config.editable_files()
        for n in HISTORIES:
            history = synthetic_history(n, random.Random(SEED))
            best = [e for e in history if e.status == "keep"][-1]
            ok_history = history[:-1] + [e for e in history if e.status == "discard"][-1:]
            crash = dataclasses.replace(history[-1], status="crash", reason="exit-1", metric=None, metrics={},
                                        log_tail=CRASH_LOG)
            situations = {
                "last ok": (ok_history, None),
                "last crashed": (history[:-1] + [crash], None),
                "fix request": (history[:-1] + [crash], crash),
            }
            changes = synthetic_changes(history)
            for name, (hist, fix) in situations.items():
                def build() -> str:
                    # the whole history goes to the digest; the table shows its last [agent] history rows
                    digest = research_digest(hist, changes, metric=config.metric.name, maximize=config.maximize,
                                             noise=0.002, best=best)
                    return build_brief(config, program, best=best, best_commit=best.commit_sha, history=hist,
                                       files=files, limits=Limits(experiments_left=40, hours_left=7.5), fix=fix,
                                       digest=digest, notes=NOTES, notes_file="notes.md")
                times = []
                for _ in range(BUILD_REPEATS):
                    t = time.perf_counter()
                    text = build()
                    times.append(time.perf_counter() - t)
                tokens = f"{count_tokens(text):8d}" if count_tokens else f"{'-':>8s}"
                rows[(template, n, name)] = len(text)
                print(f"{template:9s} {n:7d}  {name:12s} {len(text):7d} {len(text) / CHARS_PER_TOKEN:8.0f} "
                      f"{tokens} {med(times) * 1000:8.2f}")
        sections = {"program.md": len(program), "history table": 0}
        digest = research_digest(ok_history, synthetic_changes(ok_history), metric=config.metric.name,
                                 maximize=config.maximize, noise=0.002, best=best)
        text = build_brief(config, program, best=best, best_commit=best.commit_sha, history=ok_history, files=files,
                           digest=digest, notes=NOTES, notes_file="notes.md")
        table = text.split("## Recent experiments", 1)[1].split("\n## ", 1)[0]
        sections["history table"] = len(table)
        sections["research log"] = len(digest)
        sections["notes"] = len(NOTES)
        sections["rules, state, rest"] = len(text) - sum(sections.values())
        print(f"{'':9s} the {HISTORIES[-1]}-experiment `last ok` brief holds: "
              + ", ".join(f"{k} {v}" for k, v in sections.items()))
    for template in TEMPLATES:
        a, b = rows.get((template, HISTORIES[-2], "last ok")), rows.get((template, HISTORIES[-1], "last ok"))
        if a and b:  # the research log fills up to its cap by about 1,000 experiments; then it stays
            print(f"{template}: {HISTORIES[-2]} -> {HISTORIES[-1]} experiments changes the brief by {b - a:+d} chars "
                  f"({'bounded' if abs(b - a) < 600 else 'GROWS with the history'})")


# -- part 2: the loop's overhead ------------------------------------------------------------------

def loop_overhead(work: Path, env: dict[str, str]) -> None:
    root = work / "loop-example"
    cli(["init", str(root), "--template", "example"], work, env)
    if LOOP_SANDBOX != "auto":
        with open(root / "autoresearch.toml", "a") as fh:
            fh.write(f'\n[sandbox]\nkind = "{LOOP_SANDBOX}"\n')
        subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qam",
                        "bench: sandbox"], cwd=root, check=True)
        cli(["lock"], root, env)
    sandbox = "bwrap" if LOOP_SANDBOX != "none" and bwrap_works() else "none"
    print()
    print(f"== loop overhead: `autoresearch run --agent tune --max-experiments {LOOP_EXPERIMENTS} -q` on a fresh "
          f"example task (sandbox {sandbox})")
    t, began = time.perf_counter(), time.time()
    proc = cli(["run", "--agent", "tune", "--max-experiments", str(LOOP_EXPERIMENTS), "-q"], root, env)
    wall, ended = time.perf_counter() - t, time.time()
    last = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("stopped")]
    print(f"wall {wall:.1f} s; {last[0] if last else '(no stop line)'}")

    db = sqlite3.connect(root / ".autoresearch" / "journal.db")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT seq, status, reason, is_baseline, started_at, finished_at, "
                                        "propose_seconds, run_seconds FROM experiments ORDER BY seq")]
    db.close()
    exps = [r for r in rows if not r["is_baseline"] and r["finished_at"]]
    base = next((r for r in rows if r["is_baseline"]), None)
    statuses = {}
    for r in exps:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    print("verdicts: " + " ".join(f"{k}={v}" for k, v in sorted(statuses.items())))

    def per(r: dict, nxt: dict | None) -> dict[str, float | None]:
        record = r["finished_at"] - r["started_at"]
        propose, run = r["propose_seconds"] or 0.0, r["run_seconds"] or 0.0
        return {"record": record, "propose": propose, "run": run, "in-record overhead": record - propose - run,
                "between": (nxt["started_at"] - r["finished_at"]) if nxt else None,
                "cycle": (nxt["started_at"] - r["started_at"]) if nxt else None}

    values = [per(r, exps[i + 1] if i + 1 < len(exps) else None) for i, r in enumerate(exps)]
    half = len(values) // 2
    print(f"{'per experiment (ms, median)':28s} {'all':>8s} {'1st half':>9s} {'2nd half':>9s}")
    for key in ("cycle", "propose", "run", "record", "in-record overhead", "between"):
        def m(vs: list[dict]) -> float:
            return med([v[key] for v in vs if v[key] is not None]) * 1000

        print(f"  {key:26s} {m(values):8.1f} {m(values[:half]):9.1f} {m(values[half:]):9.1f}")
    overhead = [v["in-record overhead"] + v["between"] for v in values if v["between"] is not None]
    cycles = [v["cycle"] for v in values if v["cycle"] is not None]
    print(f"  {'loop overhead (in-record + between)':26s} {med(overhead) * 1000:8.1f}   "
          f"= {med(overhead) / med(cycles) * 100:.0f} % of a cycle")
    if base is not None and exps:
        print(f"outside the experiments: {base['started_at'] - began:.1f} s before the baseline (python start, "
              f"imports, reconcile, branch, setup); baseline record {base['finished_at'] - base['started_at']:.1f} s; "
              f"{ended - exps[-1]['finished_at']:.1f} s after the last experiment (progress.png, report.html, exit)")


# -- main ---------------------------------------------------------------------------------------------

def main() -> None:
    global HISTORIES, TEMPLATES, BUILD_REPEATS, LOOP_EXPERIMENTS
    if "--quick" in sys.argv:
        HISTORIES, TEMPLATES, BUILD_REPEATS, LOOP_EXPERIMENTS = [10, 100, 1000], ["example"], 5, 8
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="autoresearch-brief-"))
    env = cli_env(work / "pycache")
    env["AUTORESEARCH_CACHE"] = str(work / "cache")
    os.environ["AUTORESEARCH_CACHE"] = env["AUTORESEARCH_CACHE"]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}")
    try:
        brief_sizes(work, env)
        loop_overhead(work, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ndone in {time.time() - started:.0f} s (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
