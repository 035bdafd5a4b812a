"""`tune`: the offline default proposer. Optuna's TPE over the knobs of the editable files.

Each proposal rebuilds the study from the journal: every measured experiment of the tag is a
trial whose parameters are the knob values of its commit (read back from git) and whose value
is its metric (crashes, rejections and constraint violations count as the worst value seen).
So a restart continues the study instead of starting over, and the points proposed by any
other proposer count too. TPE's ask gives a full point; the proposal changes only one to
three of the knobs where that point differs from the current best, so each experiment reads
like `LEARNING_RATE 0.05 -> 0.08, STEPS 200 -> 350`. A point already measured is never
proposed again. Given the same journal and seed, the proposal is the same.

Knobs are module- and class-level constants (see knobs.py); `make_tune_proposer` lists them
when the loop starts and refuses to start without any, so a task with nothing to tune stops
before its first experiment with the listing's message instead of recording failures.

Parallel slots each get their own TuneProposer (one factory call per slot). They share one
in-flight registry per task folder: the point a slot proposed stays reserved until that slot
proposes again (its experiment ended) or `release()` is called, and running experiments'
commits in the journal count too, so two slots never measure the same point at once.

Every proposal appends its decision (trial number, the point asked, the change) to the
experiment's agent.log; a failure writes its reason there too.

Options ride on the agent string: `tune`, `tune:seed=3`, `tune:seed=3,max_changes=1,startup=5`.
"""

from __future__ import annotations

import math
import random
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from autoresearch.config.task import STATE_DIR, TaskConfig
from autoresearch.git.workspace import BRANCH_PREFIX, Workspace
from autoresearch.journal.records import Experiment
from autoresearch.journal.store import Journal
from autoresearch.proposers.base import Proposal, ProposeContext, ProposerError
from autoresearch.proposers.knobs import Knob, KnobError, KnobListing, list_files, list_knobs
from autoresearch.proposers.knobs_read import read_values
from autoresearch.proposers.knobs_write import format_value, set_knobs
from autoresearch.proposers.tune_space import decode, distribution, encode, normalize, quiet_optuna, sample
from autoresearch.trial.session import RunState

FIXED_SEED = 20240307  # mixed with the number of past trials, so every proposal has its own seed
STARTUP_TRIALS = 8  # random points (around best) before TPE models the history
MAX_CHANGES = 3  # knobs changed per proposal, at most
MAX_ASKS = 64  # points asked of TPE before falling back to random single-knob moves
FALLBACK_TRIES = 500
CHANGE_WEIGHTS = (0.5, 0.3, 0.2)  # chance of changing 1, 2, 3 knobs (when that many differ)
ABSENT = ("<absent>",)  # a knob missing from an old commit


@dataclass
class TuneOptions:
    seed: int = 0
    max_changes: int = MAX_CHANGES
    startup: int = STARTUP_TRIALS


def parse_options(agent: str) -> TuneOptions:
    """`tune` or `tune:key=value,...` with keys seed, max_changes, startup."""
    _, _, spec = agent.partition(":")
    options = TuneOptions()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in ("seed", "max_changes", "startup"):
            raise ProposerError("agent-error", f"tune: unknown option {item!r} in {agent!r} "
                                "(known: seed=N, max_changes=N, startup=N)")
        try:
            number = int(value)
        except ValueError:
            raise ProposerError("agent-error", f"tune: {key} must be an integer, got {value!r}") from None
        if key != "seed" and number < 1:
            raise ProposerError("agent-error", f"tune: {key} must be at least 1, got {number}")
        setattr(options, key, number)
    return options


# -- points in flight, shared by the proposers of one task -------------------------------------

Point = dict[tuple[str, str], Any]  # (path, qualified name) -> normalized value
_IN_FLIGHT_LOCK = threading.Lock()
_IN_FLIGHT: dict[str, dict[int, Point]] = {}  # task folder -> proposer id -> the point it proposed last


def _registry(root: Path) -> dict[int, Point]:
    return _IN_FLIGHT.setdefault(str(root.resolve()), {})


def _release(root: str, owner: int) -> None:
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.get(root, {}).pop(owner, None)


def in_flight(root: Path) -> list[Point]:
    """The points the task's proposers have proposed and not yet released."""
    with _IN_FLIGHT_LOCK:
        return list(_registry(root).values())


# -- the proposer ---------------------------------------------------------------------------------

@dataclass
class PastPoint:
    seq: int
    values: dict[str, Any]  # knob key -> value at that experiment's commit
    metric: float | None  # None: crashed, rejected or broke a constraint


@dataclass
class TuneProposer:
    writes_notes: ClassVar[bool] = False  # reads no brief: no notes.md for it
    config: TaskConfig
    options: TuneOptions = field(default_factory=TuneOptions)
    name: str = "tune"
    study: Any = None  # the study behind the last proposal (for inspection and tests)
    past: list[PastPoint] = field(default_factory=list)  # what it was built from
    finished: int = 0  # finished experiments of the tag at the last proposal (with or without a commit)
    running: list[dict[str, Any]] = field(default_factory=list)  # knob values of running experiments' commits
    _finalizer: Any = field(default=None, repr=False)
    _commit_values: dict[tuple[str, tuple[str, ...]], dict[tuple[str, str], Any]] = field(default_factory=dict,
                                                                                          repr=False)

    # -- knobs ------------------------------------------------------------------------------

    def discover(self, root: Path, files: list[str]) -> dict[str, Knob]:
        """Knob key -> knob over the editable Python files (key: the qualified name, e.g. `LR`
        or `SortedList.DEFAULT_LOAD_FACTOR`, or path:name when two files share a name)."""
        listing = list_files(root, files)
        if listing.errors:
            raise ProposerError("agent-error", listing.problem() or "tune: the knobs cannot be read")
        return _keyed(listing)

    def _values_at(self, ws: Workspace, commit: str, files: list[str]) -> dict[tuple[str, str], Any]:
        cache_key = (commit, tuple(files))
        if cache_key not in self._commit_values:
            values: dict[tuple[str, str], Any] = {}
            for path in files:
                if not path.endswith(".py"):
                    continue
                source = ws.show_file(commit, path)
                if source is None:
                    continue
                try:  # Python's parser, not libcst: a past commit's values only (knobs_read.py)
                    values.update({(path, name): v for name, v in read_values(source).items()})
                except (SyntaxError, ValueError):
                    continue
            self._commit_values[cache_key] = values
        return self._commit_values[cache_key]

    # -- history ----------------------------------------------------------------------------

    def _tag(self, ctx: ProposeContext) -> str:
        for exp in reversed(ctx.history):
            if exp.tag:
                return exp.tag
        branch = ctx.workspace.current_branch() or ""
        if branch.startswith(BRANCH_PREFIX) and not branch.endswith("-final"):
            return branch[len(BRANCH_PREFIX):]
        return RunState.load(self.config.root / STATE_DIR / "state.json").tag

    def _experiments(self, ctx: ProposeContext) -> list[Experiment]:
        state_dir = self.config.root / STATE_DIR
        if not (state_dir / "journal.db").exists():
            return list(ctx.history)
        tag = self._tag(ctx)
        with Journal(state_dir) as journal:
            return journal.experiments(tag or None)

    def history(self, ctx: ProposeContext, knobs: dict[str, Knob]) -> list[PastPoint]:
        """Every finished experiment of the tag that made a commit, with its knob values.

        Running experiments with a commit are not trials yet; their points go to `running`."""
        files = sorted({k.path for k in knobs.values()})
        points: list[PastPoint] = []
        experiments = self._experiments(ctx)
        finished = [e for e in experiments if e.status != "running"]
        self.finished = len(finished)
        self.running = []
        # the task's repository holds the experiments' commits (the agent's copy has its own)
        repo = Workspace(ctx.task_root) if ctx.task_root is not None else ctx.workspace
        for exp in experiments:
            if not exp.commit_sha:
                continue
            at = self._values_at(repo, exp.commit_sha, files)
            if not at:
                continue
            values = {key: at.get((k.path, k.qualname), ABSENT) for key, k in knobs.items()}
            if exp.status == "running":
                self.running.append(values)
                continue
            measured = exp.status in ("keep", "discard") and exp.metric is not None and math.isfinite(exp.metric)
            broke = exp.reason == "constraint" or bool(exp.details.get("constraints"))
            points.append(PastPoint(exp.seq, values, exp.metric if measured and not broke else None))
        return points

    def build_study(self, knobs: dict[str, Knob], past: list[PastPoint]) -> Any:
        """An in-memory TPE study holding one trial per past point."""
        import optuna

        tunable = {key: k for key, k in knobs.items() if k.tunable}
        direction = "maximize" if self.config.maximize else "minimize"
        good = [p.metric for p in past if p.metric is not None]
        worst = (min(good) if self.config.maximize else max(good)) if good else None
        with quiet_optuna():
            seed = self.options.seed * 1_000_003 + FIXED_SEED + max(len(past), self.finished)
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.options.startup)
            study = optuna.create_study(direction=direction, sampler=sampler)  # type: ignore[arg-type]
            for point in past:
                study.add_trial(self._trial(tunable, point, worst))
        return study

    @staticmethod
    def _trial(tunable: dict[str, Knob], point: PastPoint, worst: float | None) -> Any:
        """A finished trial for a past point: its metric, or the worst value seen when it failed."""
        from optuna.trial import TrialState, create_trial

        params, dists = {}, {}
        for key, knob in tunable.items():
            param = encode(knob.space, point.values.get(key, ABSENT))
            if param is not None:
                params[key], dists[key] = param, distribution(knob.space)
        value = point.metric if point.metric is not None else worst
        if value is None:
            trial = create_trial(state=TrialState.FAIL, params=params, distributions=dists)
        else:
            trial = create_trial(value=value, params=params, distributions=dists)
        trial.set_user_attr("seq", point.seq)
        return trial

    # -- choosing ---------------------------------------------------------------------------

    def choose(self, study: Any, knobs: dict[str, Knob], tried: set[tuple], rng: random.Random,
               log: list[str]) -> dict[str, Any]:
        """Knob key -> new value: a few of the knobs where TPE's point differs from best."""
        tunable = {key: k for key, k in knobs.items() if k.tunable}
        keys = sorted(knobs)
        best = {key: k.value for key, k in knobs.items()}
        dists = {key: distribution(k.space) for key, k in tunable.items()}

        def fresh(changes: dict[str, Any]) -> bool:
            point = {**best, **changes}
            return tuple(normalize(point[k]) for k in keys) not in tried

        for attempt in range(MAX_ASKS):
            with quiet_optuna():
                trial = study.ask(dists)
            point = {key: decode(tunable[key].space, trial.params[key]) for key in sorted(tunable)}
            differing = [key for key in sorted(tunable) if normalize(point[key]) != normalize(best[key])]
            if not differing:
                continue
            most = min(self.options.max_changes, len(differing))
            weights = [CHANGE_WEIGHTS[min(i, len(CHANGE_WEIGHTS) - 1)] for i in range(most)]
            size = rng.choices(range(1, most + 1), weights=weights)[0]
            subsets = [rng.sample(differing, size)] + [[key] for key in rng.sample(differing, len(differing))]
            for subset in subsets:
                changes = {key: point[key] for key in sorted(subset)}
                if fresh(changes):
                    log.append(f"asked point {attempt + 1}: " + ", ".join(f"{k}={point[k]!r}" for k in sorted(point)))
                    return changes
        for _ in range(FALLBACK_TRIES):
            key = rng.choice(sorted(tunable))
            value = sample(tunable[key].space, rng)
            if normalize(value) != normalize(best[key]) and fresh({key: value}):
                log.append(f"TPE kept asking for tried points; random move of {key}")
                return {key: value}
        raise ProposerError("agent-error", "tune: every point it tried near the best has been measured already; "
                            "widen the knobs' `# search:` spaces or switch to a model-driven agent")

    # -- points in flight -------------------------------------------------------------------

    def release(self) -> None:
        """Give back the point this proposer proposed last (its experiment ended)."""
        _release(str(self.config.root.resolve()), id(self))

    def _reserve(self, knobs: dict[str, Knob], changes: dict[str, Any]) -> None:
        """Record the point just chosen as in flight (the caller holds _IN_FLIGHT_LOCK)."""
        point = {(k.path, k.qualname): normalize(changes.get(key, k.value)) for key, k in knobs.items()}
        registry = _registry(self.config.root)
        if self._finalizer is None:  # the entry goes when this proposer does
            self._finalizer = weakref.finalize(self, _release, str(self.config.root.resolve()), id(self))
        registry[id(self)] = point

    def _busy(self, knobs: dict[str, Knob]) -> set[tuple]:
        """The points other proposers of this task are measuring now, as comparable tuples
        (the caller holds _IN_FLIGHT_LOCK)."""
        keys = sorted(knobs)
        with_paths = [(knobs[k].path, knobs[k].qualname) for k in keys]
        busy = {tuple(normalize(values.get(k, ABSENT)) for k in keys) for values in self.running}
        for owner, point in _registry(self.config.root).items():
            if owner != id(self):
                busy.add(tuple(point.get(kp, ABSENT) for kp in with_paths))
        return busy

    # -- the contract -----------------------------------------------------------------------

    def propose(self, ctx: ProposeContext) -> Proposal:
        """One proposal; every outcome, failures included, is written to ctx.log_path."""
        self.release()  # this proposer's previous experiment has ended: its point is a past trial now
        try:
            return self._propose(ctx)
        except ProposerError as err:
            _append_log(ctx.log_path, [f"tune failed ({err.reason}): {err}"])
            raise
        except Exception as exc:  # noqa: BLE001 - a bug here is one failed proposal, said in one line
            _append_log(ctx.log_path, ["tune failed:", traceback.format_exc().rstrip()])
            raise ProposerError("agent-error", one_line(f"tune: {type(exc).__name__}: {exc}")) from exc

    def _propose(self, ctx: ProposeContext) -> Proposal:
        started = time.monotonic()
        root = ctx.workspace.root
        files = ctx.editable_files
        listing = list_files(root, files)
        problem = listing.problem()
        if problem:
            raise ProposerError("agent-error", problem)
        knobs = _keyed(listing)
        log: list[str] = []
        with quiet_optuna():
            self.past = self.history(ctx, knobs)
            self.study = self.build_study(knobs, self.past)
            tried = {tuple(normalize(p.values[k]) for k in sorted(knobs)) for p in self.past}
            rng = random.Random(self.options.seed * 7919 + FIXED_SEED + max(len(self.past), self.finished))
            with _IN_FLIGHT_LOCK:  # choosing and reserving are one step, so two slots never pick one point
                busy = self._busy(knobs)
                changes = self.choose(self.study, knobs, tried | busy, rng, log)
                self._reserve(knobs, changes)
        description = self.apply(root, knobs, changes)
        log.insert(0, f"tune: {len(knobs)} knobs ({sum(k.tunable for k in knobs.values())} tunable), "
                      f"{len(self.past)} past trials, {len(busy)} in flight; this is trial {len(self.past) + 1}"
                      f" (seq {ctx.seq})")
        log.append(f"proposal: {description} ({time.monotonic() - started:.2f}s)")
        _append_log(ctx.log_path, log)
        return Proposal(description=description, model_driven=False)

    def apply(self, root: Path, knobs: dict[str, Knob], changes: dict[str, Any]) -> str:
        """Write the changes into the files; the description lists each as `NAME old -> new`."""
        by_file: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            by_file.setdefault(knobs[key].path, {})[knobs[key].qualname] = value
        parts = [f"{key} {' '.join(knobs[key].source.split())} -> {format_value(knobs[key], changes[key])}"
                 for key in sorted(changes)]
        updates: dict[str, str] = {}
        for path, values in by_file.items():
            file_knobs = [k for k in knobs.values() if k.path == path]
            try:
                updated = set_knobs(_read(root / path), file_knobs, values)
                check = read_values(updated)  # read back with Python's parser (knobs_read.py): fast
            except (KnobError, ValueError, OSError, SyntaxError) as exc:
                raise ProposerError("bad-edit", one_line(f"tune: could not edit {path}: {exc}")) from None
            for name, value in values.items():
                if normalize(check.get(name, ABSENT)) != normalize(value):
                    raise ProposerError("bad-edit", f"tune: writing {name} = {value!r} into {path} read back as "
                                        f"{check.get(name)!r}")
            updates[path] = updated
        for path, updated in updates.items():  # written only once every file's edit checked out
            with open(root / path, "w", encoding="utf-8", newline="") as fh:
                fh.write(updated)
        return ", ".join(parts)


def _keyed(listing: KnobListing) -> dict[str, Knob]:
    """Knob key -> knob: the qualified name, or path:name where two files use the same one."""
    counts: dict[str, int] = {}
    for knob in listing.knobs:
        counts[knob.qualname] = counts.get(knob.qualname, 0) + 1
    return {(k.qualname if counts[k.qualname] == 1 else f"{k.path}:{k.qualname}"): k for k in listing.knobs}


def one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(path: Path) -> str:
    """A file's text exactly as stored (no newline translation)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def _append_log(path: Path, lines: list[str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    except OSError:
        pass  # the log is a convenience; a proposal never fails for it


def check_knobs(config: TaskConfig) -> KnobListing:
    """The task's knobs, or ProposerError when tune would have nothing to search.

    Called when the loop builds its proposer, so `run --agent tune` stops before the baseline
    with the listing's message rather than recording one failed experiment after another."""
    listing = list_knobs(config)
    problem = listing.problem()
    if problem:
        raise ProposerError("no-knobs" if not listing.errors else "agent-error", problem)
    return listing


def make_tune_proposer(config: TaskConfig, agent_string: str = "tune") -> TuneProposer:
    """The registry's factory: `tune` or `tune:seed=N,max_changes=N,startup=N`. Checks for knobs."""
    options = parse_options(agent_string)
    check_knobs(config)
    return TuneProposer(config, options)
