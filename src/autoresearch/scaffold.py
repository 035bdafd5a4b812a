"""`init`: a task folder from a template, or autoresearch added to a user's existing project.

Nothing that is already there is overwritten or deleted: a template file that would replace a
different file of the user's is a conflict, reported before anything is written.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from autoresearch.config.task import CONFIG_NAME, TaskConfig, load_config, parse_config, tomllib
from autoresearch.errors import AutoresearchError
from autoresearch.git.workspace import LOCK_REF, Workspace
from autoresearch.harness.env import base_env
from autoresearch.harness.guard import write_lock
from autoresearch.harness.imports import scorer_reaches_editable
from autoresearch.harness.process import run_command
from autoresearch.proposers.brief import NATIVE_BEGIN, NATIVE_END

GITIGNORE_LINES = [".autoresearch/", "results.tsv", "progress.png", "report.html", "__pycache__/", "*.pyc"]
SKIP_NAMES = {"__pycache__", ".pytest_cache"}


class ScaffoldError(AutoresearchError):
    pass


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    description: str
    path: Path


def templates_dir() -> Path:
    return Path(str(resources.files("autoresearch") / "templates"))


def list_templates() -> list[TemplateInfo]:
    found = []
    for folder in sorted(templates_dir().iterdir()):
        config = folder / CONFIG_NAME
        if not config.is_file():
            continue
        data = tomllib.loads(config.read_text(encoding="utf-8"))
        found.append(TemplateInfo(folder.name, data.get("task", {}).get("description", ""), folder))
    return found


def _template_files(src: Path) -> list[Path]:
    files = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in SKIP_NAMES for part in rel.parts) or path.suffix == ".pyc" or not path.is_file():
            continue
        files.append(rel)
    return files


def _ensure_ignored(ws: Workspace, root: Path, existing_repo: bool) -> list[str]:
    """Ignore autoresearch's own files. In a repository that existed before, use
    .git/info/exclude so the user's .gitignore is left alone; returns files to commit."""
    if existing_repo:
        exclude = ws.common_dir() / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        have = exclude.read_text().splitlines() if exclude.exists() else []
        missing = [line for line in GITIGNORE_LINES if line not in have]
        if missing:
            with open(exclude, "a") as fh:
                fh.write(("\n" if have and have[-1] else "") + "\n".join(missing) + "\n")
        return []
    gitignore = root / ".gitignore"
    have = gitignore.read_text().splitlines() if gitignore.exists() else []
    missing = [line for line in GITIGNORE_LINES if line not in have]
    if missing:
        with open(gitignore, "a") as fh:
            fh.write(("\n" if have and have[-1] else "") + "\n".join(missing) + "\n")
    return [".gitignore"]


def _open_repo(root: Path) -> tuple[Workspace, bool]:
    ws = Workspace(root)
    if ws.inside_repo() and not ws.is_repo():
        top = ws.git("rev-parse", "--show-toplevel").strip()
        raise ScaffoldError(f"{root} is inside the git repository {top}; a task folder must be the root of its "
                            f"repository (run init in {top}, or in a folder outside it)")
    existing = ws.is_repo()
    return ws, existing


def init_from_template(root: Path, template: str, budget: float | None = None) -> list[str]:
    """Copy a template into ROOT, make it a repository with a first commit, and lock it. BUDGET:
    another `[budget] seconds` written into the copy's config before that commit (the
    quickstart's shorter runs), so every later command measures as its first one did."""
    names = {t.name: t for t in list_templates()}
    if template not in names:
        raise ScaffoldError(f"unknown template {template!r}; available: {', '.join(sorted(names))}")
    src = names[template].path
    root.mkdir(parents=True, exist_ok=True)
    ws, existing = _open_repo(root)
    files = _template_files(src)
    conflicts = [str(rel) for rel in files
                 if (root / rel).exists() and (root / rel).read_bytes() != (src / rel).read_bytes()]
    if conflicts:
        raise ScaffoldError(f"{root} already has different versions of {', '.join(conflicts)}; nothing was "
                            "written (init into an empty folder, or move those files away)")
    written = []
    for rel in files:
        dest = root / rel
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dest)
        written.append(str(rel))
    if budget is not None and CONFIG_NAME in written:
        path = root / CONFIG_NAME
        path.write_text(with_budget(path.read_text(), budget))
    config = load_config(root)
    if not existing:
        ws.init()
    to_commit = sorted(set(written + [str(r) for r in files]) | set(_ensure_ignored(ws, root, existing)))
    if not existing and not ws.has_commits():
        ws.commit_all(f"autoresearch: task from template {template}")
    else:
        ws.commit_paths(to_commit, f"autoresearch: add task from template {template}")
    write_lock(config, anchor=lambda text: ws.anchor(LOCK_REF, text))
    return written


def with_budget(text: str, seconds: float) -> str:
    """TEXT (an autoresearch.toml) with `[budget] seconds` set to SECONDS, the old value named in a
    comment; the rest of the file as it was."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == "[budget]"), None)
    if start is None:
        return text.rstrip("\n") + f"\n\n[budget]\nseconds = {seconds:g}\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for i in range(start + 1, end):
        match = re.match(r"\s*seconds\s*=\s*([^#\s]+)", lines[i])
        if match:
            lines[i] = f"seconds = {seconds:g}  # the quickstart's budget (the template's own: {match.group(1)})\n"
            return "".join(lines)
    lines.insert(start + 1, f"seconds = {seconds:g}\n")
    return "".join(lines)


# program.md for `init` without a template. The loop protocol is for an agent that drives the
# loop itself; the markers around it keep it out of the brief that `autoresearch run` gives its
# agents (see proposers/brief.py), so neither reader gets instructions meant for the other.
PROGRAM_TEMPLATE = """# {name}: {goal} {metric}

You are an autonomous researcher working on this project. Each experiment is one idea: change
the editable files, measure, keep what improves `{metric}` ({direction}), discard the rest.

## Files
- Editable (the only files you change): {editable}
- Read-only harness (read for context, never edit; changes are detected and rejected): {readonly}
- The experiment command is `{run}`; it gets {budget:g} seconds (`AUTORESEARCH_BUDGET_S`) and prints `{metric}: <value>`.

{native_begin}
## The loop
1. Read `results.tsv` (or `autoresearch results`) to see what was tried and what is best.
2. Change the editable files with one clear idea.
3. Run `autoresearch experiment -m "<what you tried, in a few words>"`. It commits, runs under the
   budget, measures, and keeps the change or resets to the best version. It prints the verdict and
   the log path; if the run crashed, read the end of the log (`tail -n 50 <log>`) and fix or move on.
4. Repeat. Never stop and never ask whether to continue: the human may be asleep.
{native_end}

## Rules
- Edit only the editable files. Do not add, delete or rename files.
- Never write results.tsv rows yourself and never pipe runs through `tee`: the tool records everything.
- Do not commit, reset or switch branches yourself; autoresearch does that.
- Simpler is better: a small gain that adds a lot of complexity is rarely worth it.
"""


def render_config(name: str, editable: list[str], readonly: list[str], run: str, metric: str, goal: str,
                  budget: float, evaluate: str = "", confirm: str = "", why: str = "") -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(_toml_str(i) for i in items) + "]"

    lines = [
        "[task]",
        f"name = {_toml_str(name)}",
        f"editable = {toml_list(editable)}",
        f"readonly = {toml_list(readonly)}",
        f"run = {_toml_str(run)}",
    ]
    if evaluate:
        lines.append(f"evaluate = {_toml_str(evaluate)}")
    lines += ["", "[metric]", f"name = {_toml_str(metric)}", f"goal = {_toml_str(goal)}", "",
              "[budget]", f"seconds = {budget:g}", ""]
    if confirm:
        lines += ["[verdict]", *([f"# {why}"] if why else []), f"confirm = {_toml_str(confirm)}", ""]
    return "\n".join(lines)


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# A metric named like a timing follows the machine's load: confirm apparent wins (issue 23).
TIMED = re.compile(r"time|second|(^|_)(s|ms|us|ns)$|latency|duration|elapsed|throughput|per_s|speed|qps|rps",
                   re.IGNORECASE)


def choose_confirm(metric: str, values: list[float]) -> tuple[str, str]:
    """The honest [verdict] confirm for METRIC, from its name and the check runs' VALUES (one run
    with seed 0, then one with seed 1 unless the name already says it is timed): a timed or
    noisy metric gets sequential confirmation; only a metric that gave the same number twice is
    decided on its screen alone. Returns (confirm, why)."""
    if TIMED.search(metric):
        return "sequential", f"{metric} is a timing: it follows the machine's load, so apparent wins are confirmed"
    if len(values) >= 2 and values[0] != values[1]:
        return "sequential", (f"two check runs gave {values[0]:g} and {values[1]:g}: a noisy metric, so apparent wins "
                              "are confirmed")
    return "none", "two check runs gave the same number: a deterministic metric is decided on its screen alone"


def init_from_flags(root: Path, *, editable: list[str], readonly: list[str], run: str, metric: str,
                    goal: str, budget: float, evaluate: str = "", name: str = "", commit: bool = False,
                    confirm: str = "auto", on_message: Callable[[str], None] = lambda text: None) -> float:
    """Add autoresearch to an existing project: write the config and program.md, run the command
    once to check that it prints the metric, commit those two files, lock. Returns the metric.

    Every run uses a clean export of a commit, so a file the task needs (read-only, editable, or
    named by the run, evaluate or setup command) that git does not track would be missing from
    it: refused, naming the files, unless COMMIT, which commits them with the config.

    CONFIRM ("auto" or a [verdict] confirm value): with "auto", choose_confirm picks it (one more
    check run, with another seed, unless the metric's name says it is a timing); ON_MESSAGE is
    told the choice and why."""
    root = root.resolve()
    ws, existing = _open_repo(root)
    config_path = root / CONFIG_NAME
    program_path = root / "program.md"
    for path in (config_path, program_path):
        if path.exists():
            raise ScaffoldError(f"{path} already exists; nothing was written (remove it or edit it by hand)")
    name = name or root.name
    text = render_config(name, editable, readonly, run, metric, goal, budget, evaluate)
    config = parse_config(tomllib.loads(text), config_path, root)  # validates globs before writing
    if not existing:
        ws.init()
    untracked = untracked_task_files(ws, config) if existing and ws.has_commits() else []
    if untracked and not commit:
        listed = " ".join(shlex.quote(p) for p in untracked)
        raise ScaffoldError(f"git does not track {', '.join(untracked)}, which the task needs; every run uses a "
                            "clean export of a commit, where they would be missing. Commit them (git add "
                            f"{listed} && git commit), or run init again with --commit to commit them with "
                            "the config; nothing was written")
    program = PROGRAM_TEMPLATE.format(
        name=name, goal=goal, metric=metric, direction="lower is better" if goal == "minimize" else "higher is better",
        editable=", ".join(f"`{e}`" for e in config.editable_files()) or "(none)",
        readonly=", ".join(f"`{r}`" for r in config.readonly_files()) or "(none)", run=run, budget=budget,
        native_begin=NATIVE_BEGIN, native_end=NATIVE_END)
    value = check_metric(config)
    if confirm == "auto":
        values = [value] if TIMED.search(metric) else [value, check_metric(config, seed=1)]
        confirm, why = choose_confirm(metric, values)
    else:
        why = "chosen with --confirm"
    text = render_config(name, editable, readonly, run, metric, goal, budget, evaluate, confirm, why)
    on_message(f'[verdict] confirm = "{confirm}": {why}')
    config_path.write_text(text, encoding="utf-8")
    program_path.write_text(program, encoding="utf-8")
    extra = _ensure_ignored(ws, root, existing)
    if not ws.has_commits():
        ws.commit_all("autoresearch: add task")
    else:
        ws.commit_paths([CONFIG_NAME, "program.md", *extra, *untracked], "autoresearch: add task config")
    write_lock(load_config(root), anchor=lambda text: ws.anchor(LOCK_REF, text))
    return value


def untracked_task_files(ws: Workspace, config: TaskConfig) -> list[str]:
    """The read-only and editable files, and the files the run, evaluate and setup commands
    name, that exist in the folder but that git does not track."""
    root = config.root
    named: set[str] = set()
    for command in (config.task.run, config.task.evaluate, config.task.setup):
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
        for word in words:
            path = (root / word) if not os.path.isabs(word) else Path(word)
            if path.is_file() and root in path.resolve().parents:
                named.add(str(path.resolve().relative_to(root)))
    wanted = sorted(set(config.readonly_files()) | set(config.editable_files()) | named)
    tracked = ws.tracked(wanted)
    return [p for p in wanted if p not in tracked]


def scorer_warnings(root: Path) -> list[str]:
    """What `init` from flags warns about: a scorer that imports (or is) an editable file."""
    return scorer_reaches_editable(load_config(root.resolve()))


def check_metric(config, seed: int = 0) -> float:  # noqa: ANN001 - a TaskConfig
    """Run the task's commands once in place (with SEED); the metric must appear. Raises ScaffoldError."""
    with tempfile.TemporaryDirectory(prefix="autoresearch-check-") as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        env = base_env({"AUTORESEARCH_BUDGET_S": f"{config.budget.seconds:g}", "AUTORESEARCH_SEQ": "0",
                        "AUTORESEARCH_SEED": str(seed), "AUTORESEARCH_OUT": str(out), "AUTORESEARCH_PHASE": "run"})
        log = Path(tmp) / "check.log"
        result = run_command(config.task.run, cwd=config.root, env=env, timeout=config.budget.hard_timeout,
                             log_path=log)
        metrics = result.metrics
        if result.ok and config.task.evaluate:
            result = run_command(config.task.evaluate, cwd=config.root, env={**env, "AUTORESEARCH_PHASE": "evaluate"},
                                 timeout=config.budget.hard_evaluate_timeout, log_path=log)
            metrics = result.metrics
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        if not result.ok:
            raise ScaffoldError(f"the check run of {shlex.quote(config.task.run)} failed ({result.failure_reason()}); "
                                f"nothing was written. Its output ends:\n{tail}")
        if config.metric.name not in metrics:
            raise ScaffoldError(f"the check run did not print a line `{config.metric.name}: <number>`; nothing was "
                                f"written. Its output ends:\n{tail}")
        return metrics[config.metric.name]



# Python modules each template's harness imports, and the extra that installs them.
TEMPLATE_NEEDS = {"tinylm": ["torch", "numpy", "rustbpe", "tiktoken", "pyarrow"],
                  "nanochat": ["torch", "numpy", "rustbpe", "tiktoken", "pyarrow", "requests"]}


def missing_extras(template: str) -> list[str]:
    """The modules TEMPLATE needs that are not installed (empty when all are)."""
    import importlib.util

    return [m for m in TEMPLATE_NEEDS.get(template, []) if importlib.util.find_spec(m) is None]
