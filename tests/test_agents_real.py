"""Contract tests: the released coding-agent CLIs, driven by `autoresearch run`, against a model
server on 127.0.0.1 (tests/model_server.py).

Versions are pinned in tests/agent_versions.toml and installed by scripts/install.sh into
~/.cache/autoresearch-agents/ (outside the repo). A CLI that is not installed there is skipped
with the reason. Each test runs `autoresearch run --agent <cli> --max-experiments 1` on a copy
of one example task and checks what a user would: the commit holds exactly the scripted edit,
the brief asks for one change (not for running experiments), the journal has the CLI's usage,
agent.log has its output, nothing else changed. A second test per CLI makes the server fail
once (HTTP 500, or a dropped stream) and checks that the verdict follows what the CLI did after
its retry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REAL_HOME = Path.home()  # read before any test moves HOME

sys.path.insert(0, str(Path(__file__).parent))
import agent_pins  # noqa: E402 - found through the path set just above
import model_server  # noqa: E402

from autoresearch.journal.records import Experiment  # noqa: E402
from autoresearch.trial.session import Session  # noqa: E402

pytestmark = pytest.mark.slow

PINS = agent_pins.pins()
CLI = [sys.executable, "-c", "import sys; from autoresearch.cli import main; sys.argv[0] = 'autoresearch'; main()"]
# What each CLI's own output looks like in agent.log.
LOG_MARK = {"claude": '"type":"result"', "codex": '"type":"turn.completed"', "gemini": '"stats"',
            "opencode": '"type":"step_finish"', "aider": "Applied edit to train.py"}
# Which fault each CLI gets: the ones seen to matter (Codex's reconnect was recorded as a failure).
FAULT = {"claude": "500", "codex": "drop", "gemini": "500", "opencode": "500", "aider": "500"}
# aider: a price for the server's model, so the exact (unrounded) cost can be checked: 1000 tokens
# in at 1e-5 and 50 out at 4e-5 is $0.012, which aider prints as $0.01.
AIDER_PRICES = {"input_cost_per_token": 1e-5, "output_cost_per_token": 4e-5, "litellm_provider": "openai",
                "mode": "chat", "max_input_tokens": 128000, "max_tokens": 4096}


def installed(cli: str) -> Path:
    pin = PINS[cli]
    if not pin.executable.exists():
        pytest.skip(f"{pin.spec} is not installed in {pin.folder}: run scripts/install.sh (needs the "
                    f"{pin.registry} registry)")
    return pin.executable


def autoresearch(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def server():
    srv = model_server.ModelServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def base_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("agents")
    autoresearch("init", "task", "--template", "example", cwd=base)
    autoresearch("start", "--tag", "t", cwd=base / "task")
    autoresearch("baseline", cwd=base / "task")
    return base / "task"


def run_agent(cli: str, server: model_server.ModelServer, base_task: Path, tmp_path: Path,
              extra_env: dict[str, str] | None = None, experiments: int = 1, revoke_after: int | None = None,
              configure: Callable[[dict[str, str]], None] | None = None,
              agent: Callable[[], str] | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    executable = installed(cli)
    task = tmp_path / "task"
    shutil.copytree(base_task, task, symlinks=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / cli).symlink_to(executable)
    home = tmp_path / "home"
    home.mkdir()
    if cli == "aider":  # its price list, as if fetched today (it would try GitHub otherwise)
        cache = home / ".aider" / "caches"
        cache.mkdir(parents=True)
        (cache / "model_prices_and_context_window.json").write_text(
            json.dumps({"openai/test-model": AIDER_PRICES, "test-model": AIDER_PRICES}))
    env = model_server.client_env(cli, server.url, home, dict(os.environ))
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    env.update(extra_env or {})
    if configure is not None:
        configure(env)
    # the agents' private homes: outside /tmp, where Codex refuses to set up its tools
    env["AUTORESEARCH_AGENT_HOMES"] = str(REAL_HOME / ".cache" / "autoresearch-agents" / "agent-homes")
    ENVS[task] = env
    return start_run(cli, server, task, env, experiments, revoke_after, agent() if agent else None), task


ENVS: dict[Path, dict[str, str]] = {}  # each test task's environment, for a second run in it


def start_run(cli: str, server: model_server.ModelServer, task: Path, env: dict[str, str], experiments: int = 1,
              revoke_after: int | None = None, agent: str | None = None) -> subprocess.CompletedProcess:
    # the agent works in its scratch copy of the task (the task folder is read-only to it)
    server.reset(task / ".autoresearch" / "slots" / "0" / "scratch")
    server.revoke_after = revoke_after
    return autoresearch("run", "--agent", agent or model_server.AGENT_ARG[cli], "--max-experiments", str(experiments),
                        "--quiet", cwd=task, env=env, check=False, timeout=300)


def last_experiment(task: Path) -> Experiment:
    with Session.open(task) as session:
        return session.journal.experiments(session.require_tag())[-1]


def assert_contract(cli: str, proc: subprocess.CompletedProcess, task: Path, server: model_server.ModelServer,
                    base_task: Path) -> Experiment:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exp = last_experiment(task)
    log = (task / ".autoresearch" / "runs" / str(exp.seq) / "agent.log").read_text()
    assert exp.status == "keep", (exp.status, exp.reason, log[-3000:])
    assert exp.description == model_server.SUMMARY
    # the experiment commit holds exactly the scripted edit, and nothing else changed
    diff = git(task, "diff", "--unified=0", "HEAD~1", "HEAD")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["-MOMENTUM = 0.0  # search: float(0.0, 0.95)", "+MOMENTUM = 0.9  # search: float(0.0, 0.95)"]
    assert git(task, "diff", "--name-only", "HEAD~1", "HEAD").split() == ["train.py"]
    assert git(task, "rev-parse", "HEAD~1") == git(base_task, "rev-parse", "HEAD")
    assert git(task, "status", "--porcelain") == ""  # no droppings in the work tree
    # the brief the model received asks for one change, not for running experiments
    prompts = server.prompts()
    assert "# Your task for this experiment" in prompts
    for phrase in ("Run `autoresearch experiment", "## The loop", "Never stop", "Repeat."):
        assert phrase not in prompts, phrase
    # usage as the CLI reported it; agent.log holds the CLI's output
    total_in, total_out = server.reported_usage()
    assert exp.tokens_in and exp.tokens_in % model_server.USAGE_IN == 0 and exp.tokens_in <= total_in
    assert exp.tokens_out and exp.tokens_out % model_server.USAGE_OUT == 0 and exp.tokens_out <= total_out
    assert LOG_MARK[cli] in log
    return exp


@pytest.mark.parametrize("cli", list(PINS))
def test_cli_edits_end_to_end(cli, server, base_task, tmp_path):
    proc, task = run_agent(cli, server, base_task, tmp_path)
    exp = assert_contract(cli, proc, task, server, base_task)
    if cli == "claude":  # modelUsage: every request, side requests included
        assert (exp.tokens_in, exp.tokens_out) == server.reported_usage()
        assert exp.cost_usd and exp.cost_usd > 0
    elif cli == "aider":
        assert exp.cost_usd == pytest.approx(0.012)  # exact, not the printed $0.01
    else:
        assert exp.cost_usd is None  # Codex and Gemini report none; opencode's 0 is "no price"


@pytest.mark.parametrize("cli", list(PINS))
def test_cli_retries_a_server_fault(cli, server, base_task, tmp_path):
    installed(cli)
    fault = FAULT[cli]
    server.faults = []
    original_reset = server.reset

    def reset_then_fault(root: Path) -> None:
        original_reset(root)
        server.fail_next(fault)

    server.reset = reset_then_fault  # type: ignore[method-assign]
    try:
        proc, task = run_agent(cli, server, base_task, tmp_path)
    finally:
        server.reset = original_reset  # type: ignore[method-assign]
    faulted = [r for r in server.main_records() if r.fault]
    assert [r.fault for r in faulted] == [fault]
    assert server.main_records()[-1].fault == ""  # the CLI came back after the fault
    exp = assert_contract(cli, proc, task, server, base_task)
    if cli == "codex":  # it printed an error event, retried, and completed: a keep, not agent-error
        log = (task / ".autoresearch" / "runs" / str(exp.seq) / "agent.log").read_text()
        assert '"type":"error"' in log and "Reconnecting" in log


def test_claude_permission_flags_follow_the_uid(server, base_task, tmp_path):
    """As root Claude Code refuses its permission bypass: autoresearch passes acceptEdits and
    an allow-list instead, unless IS_SANDBOX=1 says the machine is disposable."""
    installed("claude")
    root = os.geteuid() == 0
    proc, task = run_agent("claude", server, base_task, tmp_path, extra_env={"IS_SANDBOX": "1"} if root else None)
    exp = assert_contract("claude", proc, task, server, base_task)
    command = (task / ".autoresearch" / "runs" / str(exp.seq) / "agent.log").read_text().splitlines()[0]
    assert "--dangerously-skip-permissions" in command and "--permission-mode" not in command


# Where each CLI reads its key, and the variable the one-line reason must name.
KEY_VARIABLE = {"claude": "ANTHROPIC_API_KEY", "codex": "CODEX_API_KEY", "gemini": "GEMINI_API_KEY",
                "opencode": "apiKey", "aider": "OPENAI_API_KEY"}
# Claude Code retries a 401 ten times (about three minutes) before it gives up: fewer here.
FEW_RETRIES = {"CLAUDE_CODE_MAX_RETRIES": "1"}


def wrong_key(env: dict[str, str]) -> None:
    """The key each CLI sends, replaced by one the server refuses."""
    for name in ("ANTHROPIC_API_KEY", "CODEX_API_KEY", "GEMINI_API_KEY", "OPENAI_API_KEY"):
        if name in env:
            env[name] = "sk-wrong"
    if "OPENCODE_CONFIG" in env:
        config = Path(env["OPENCODE_CONFIG"])
        config.write_text(config.read_text().replace(model_server.TEST_KEY, "sk-wrong"))


@pytest.mark.parametrize("cli", list(PINS))
def test_cli_bad_key_is_one_line_and_stops_the_loop(cli, server, base_task, tmp_path):
    """A refused key: `agent-error: auth` with one line naming the key to check, whatever the CLI's
    exit status (aider exits 0), and the loop stops after it instead of retrying the night away."""
    installed(cli)
    proc, task = run_agent(cli, server, base_task, tmp_path, extra_env=FEW_RETRIES, experiments=3,
                           configure=wrong_key)
    assert server.denied() >= 1
    assert proc.returncode == 1, proc.stdout + proc.stderr
    exp = last_experiment(task)
    assert (exp.status, exp.reason, exp.details.get("failure")) == ("crash", "agent-error", "auth")
    line = exp.details["message"].splitlines()[0]
    assert line.startswith(f"invalid API key for {cli}") and KEY_VARIABLE[cli] in line, line
    stopped = [x for x in proc.stdout.splitlines() if x.startswith("stopped:")]
    assert stopped and "the agent cannot authenticate: invalid API key for" in stopped[0], proc.stdout
    with Session.open(task) as session:  # the baseline and this one attempt: no second try
        assert [e.seq for e in session.journal.experiments(session.require_tag()) if not e.is_baseline] == [exp.seq]


@pytest.mark.parametrize("cli", list(PINS))
def test_cli_usage_of_a_failed_attempt_is_recorded(cli, server, base_task, tmp_path):
    """The key stops working after the first answer (the file read): what that answer cost is
    still recorded where the CLI reports it. Codex reports usage only with a completed turn and
    Gemini none beside its error; aider sends no tools, so its one request is answered."""
    installed(cli)
    if cli == "aider":
        pytest.skip("aider makes one request per proposal: there is no second one to refuse")
    proc, task = run_agent(cli, server, base_task, tmp_path, extra_env=FEW_RETRIES, revoke_after=1)
    exp = last_experiment(task)
    assert (exp.status, exp.details.get("failure")) == ("crash", "auth"), (exp.status, exp.reason, exp.details)
    print(cli, exp.tokens_in, exp.tokens_out, exp.cost_usd)
    if cli in ("claude", "opencode"):
        assert exp.tokens_in and exp.tokens_in % model_server.USAGE_IN == 0
        assert exp.tokens_out and exp.tokens_out % model_server.USAGE_OUT == 0
    if cli == "claude":
        assert exp.cost_usd and exp.cost_usd > 0


def key_in_config(cli: str, env: dict[str, str], key: str) -> None:
    """Move the key from the environment into the CLI's own config file under HOME (the copy
    the agent's private HOME is seeded from), holding KEY."""
    home = Path(env["HOME"])
    if cli == "claude":  # apiKeyHelper: a command whose output is the key (documented setting)
        env.pop("ANTHROPIC_API_KEY", None)
        path = home / ".claude" / "settings.json"
        text = json.dumps({"apiKeyHelper": f"echo {key}"})
    elif cli == "codex":  # the provider's own token instead of env_key
        env.pop("CODEX_API_KEY", None)
        path = Path(env["CODEX_HOME"]) / "config.toml"
        text = path.read_text().replace('env_key = "CODEX_API_KEY"', 'experimental_bearer_token = ""')
        text = re.sub(r'experimental_bearer_token = "[^"]*"', f'experimental_bearer_token = "{key}"', text)
    elif cli == "gemini":  # Gemini CLI reads ~/.gemini/.env
        env.pop("GEMINI_API_KEY", None)
        path = home / ".gemini" / ".env"
        text = f"GEMINI_API_KEY={key}\n"
    elif cli == "opencode":  # the global config instead of OPENCODE_CONFIG
        path = home / ".config" / "opencode" / "opencode.json"
        source = Path(env.pop("OPENCODE_CONFIG", str(path)))
        text = re.sub(r'"apiKey": "[^"]*"', f'"apiKey": "{key}"', source.read_text())
    else:  # aider: ~/.aider.conf.yml
        env.pop("OPENAI_API_KEY", None)
        path = home / ".aider.conf.yml"
        text = f"openai-api-key: {key}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("cli", list(PINS))
def test_cli_config_fixed_between_experiments_reaches_the_second(cli, server, base_task, tmp_path):
    """A wrong key in the CLI's own config file fails the first experiment; the user fixes the
    file; the next experiment uses the fixed copy (the agent's HOME is re-seeded from it)."""
    installed(cli)
    proc, task = run_agent(cli, server, base_task, tmp_path, extra_env=FEW_RETRIES,
                           configure=lambda env: key_in_config(cli, env, "sk-wrong"))
    first = last_experiment(task)
    assert (first.status, first.details.get("failure")) == ("crash", "auth"), (first.reason, first.details)
    env = ENVS[task]
    key_in_config(cli, env, model_server.TEST_KEY)
    proc = start_run(cli, server, task, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    second = last_experiment(task)
    assert second.seq == first.seq + 1 and second.status == "keep", (second.reason, second.details)


def test_max_cost_stops_the_loop_at_the_reported_cost(server, base_task, tmp_path):
    """aider reports $0.012 per answer (the price set for the server's model): with
    `[agent] max_cost = 0.01` the loop stops after the first proposal although three were
    allowed, and `run`'s last line and `status` show the night's totals."""
    installed("aider")

    def cap(env: dict[str, str]) -> None:
        config = tmp_path / "task" / "autoresearch.toml"
        text = config.read_text()
        text = text.replace("[agent]\n", "[agent]\nmax_cost = 0.01\n") if "[agent]\n" in text else \
            text + "\n[agent]\nmax_cost = 0.01\n"
        config.write_text(text)

    proc, task = run_agent("aider", server, base_task, tmp_path, experiments=3, configure=cap)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exp = last_experiment(task)
    assert exp.cost_usd == pytest.approx(0.012)
    with Session.open(task) as session:
        assert len([e for e in session.journal.experiments(session.require_tag()) if not e.is_baseline]) == 1
    last = proc.stdout.strip().splitlines()
    stopped = next(line for line in last if line.startswith("stopped:"))
    assert "reached [agent] max_cost $0.01" in stopped and "agent: 1 proposal, 1,000 tokens in / 50 out, $0.012" \
        in stopped, stopped
    status = autoresearch("status", cwd=task, env=ENVS[task]).stdout
    assert "agent    1 proposal, 1,000 tokens in / 50 out, $0.012" in status, status


# -- the documented custom-endpoint recipes, as written ------------------------------------------

GUIDE = Path(__file__).parent.parent / "docs" / "guides" / "agents.md"
DOC_URL, DOC_KEY = "http://127.0.0.1:8080", "sk-your-key"
ENDPOINT_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CODEX_API_KEY", "GEMINI_API_KEY",
                      "GOOGLE_GEMINI_BASE_URL", "OPENAI_API_KEY", "OPENAI_API_BASE", "OPENCODE_CONFIG")


def recipe(cli: str) -> tuple[dict[str, str], dict[str, str], str]:
    """The guide's recipe for CLI: (files by ~/path, exported variables, the --agent value)."""
    text = GUIDE.read_text()
    start = text.index(f"<!-- recipe:{cli} -->")
    end = min(i for i in (text.find("<!-- recipe:", start + 1), text.find("<!-- /recipes -->", start)) if i > 0)
    part = text[start:end]
    files = {m.group(1): m.group(2) for m in re.finditer(r"In `(~/[^`]+)`:\n\n```\w+\n(.*?)```", part, re.S)}
    shell = re.search(r"```bash\n(.*?)```", part, re.S)
    assert shell, f"no shell block in the {cli} recipe"
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", shell.group(1), re.M))
    agent = re.search(r"autoresearch run --agent (\S+)", shell.group(1))
    assert agent, f"no `autoresearch run --agent` in the {cli} recipe"
    return files, exports, agent.group(1)


def follow_recipe(cli: str, server: model_server.ModelServer, env: dict[str, str]) -> str:
    """Point CLI at the server as the guide says, nothing more; returns the --agent value."""
    files, exports, agent = recipe(cli)
    for name in ENDPOINT_VARIABLES:  # what the harness's own setup put there goes
        env.pop(name, None)
    home = Path(env["HOME"])
    for path, text in files.items():
        rel = path.removeprefix("~/")
        # Codex's folder lives outside /tmp in these tests (CODEX_HOME), where it can set up its tools
        target = Path(env["CODEX_HOME"]) / rel.removeprefix(".codex/") if rel.startswith(".codex/") else home / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace(DOC_URL, server.url))
    env.update({k: v.replace(DOC_URL, server.url).replace(DOC_KEY, model_server.TEST_KEY) for k, v in exports.items()})
    return agent


@pytest.mark.parametrize("cli", list(PINS))
def test_cli_documented_endpoint_recipe_works_as_written(cli, server, base_task, tmp_path):
    installed(cli)
    agents: list[str] = []
    proc, task = run_agent(cli, server, base_task, tmp_path,
                           configure=lambda env: agents.append(follow_recipe(cli, server, env)),
                           agent=lambda: agents[0])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exp = last_experiment(task)
    assert exp.status == "keep", (exp.reason, exp.details)
