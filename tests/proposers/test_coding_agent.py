"""Coding-agent proposers against fake CLIs that accept only the real flags.

The fakes (tests/fake_agents) are put on PATH under the real names in a per-test bin folder;
they parse their CLI's flags strictly (a wrong invocation exits 2), check that they run in
the task folder with the brief as prompt, edit train.py as FAKE_AGENT_BEHAVIOR says, and
print their CLI's real output shape. Each proposal then goes through the real Experimenter.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch.config.task import with_overrides
from autoresearch.proposers import coding_agent
from autoresearch.proposers.base import ProposeContext, ProposerError
from autoresearch.proposers.brief import build_brief
from autoresearch.proposers.coding_agent import (
    CODING_AGENTS,
    make_coding_agent,
    parse_aider,
    parse_claude,
    parse_codex,
    parse_gemini,
    summary_line,
)
from autoresearch.trial.lifecycle import ProposalInfo, experiment
from autoresearch.trial.session import Session

FAKES = Path(__file__).parents[1] / "fake_agents"
sys.path.insert(0, str(FAKES))
import fakelib  # noqa: E402 - found through the path set just above

CLI = [sys.executable, "-c", "import sys; from autoresearch.cli import main; sys.argv[0] = 'autoresearch'; main()"]


def autoresearch(*args: str, cwd: Path) -> str:
    proc = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def template_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One example task with a baseline, made with the CLI; each test works on a copy."""
    base = tmp_path_factory.mktemp("template")
    autoresearch("init", "task", "--template", "example", cwd=base)
    # These tests drive each CLI's wiring (flags, output parsing, usage) with fakes that report
    # to a file under /tmp; the agent sandbox (which hides /tmp) is attacked in test_sealed.py
    # and test_sandbox.py, and the released CLIs run inside it in test_agents_real.py.
    config = base / "task" / "autoresearch.toml"
    config.write_text(config.read_text().replace("[agent]", '[sandbox]\nkind = "none"\n\n[agent]'))
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "no sandbox"],
                   cwd=base / "task", check=True)
    autoresearch("lock", cwd=base / "task")
    autoresearch("start", "--tag", "t", cwd=base / "task")
    autoresearch("baseline", cwd=base / "task")
    return base / "task"


@pytest.fixture
def task(tmp_path: Path, template_task: Path) -> Path:
    dest = tmp_path / "task"
    shutil.copytree(template_task, dest, symlinks=True)
    return dest


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """install(*names): put those fakes first on PATH. Defaults: improve, not root."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shutil.copy(FAKES / "fakelib.py", bindir / "fakelib.py")
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("FAKE_AGENT_RECORD", str(tmp_path / "record.json"))
    monkeypatch.setenv("FAKE_AGENT_BEHAVIOR", "improve")
    monkeypatch.setenv("FAKE_AGENT_UID", "1000")
    monkeypatch.delenv("IS_SANDBOX", raising=False)
    monkeypatch.delenv("CLAUDE_CODE_BUBBLEWRAP", raising=False)
    monkeypatch.setattr(coding_agent, "running_as_root", lambda: False)

    def install(*names: str) -> Path:
        for name in names:
            target = bindir / name
            shutil.copy(FAKES / name, target)
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return bindir

    return install


def alive(pid: int) -> bool:
    """Running (a zombie left to an init that does not reap counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


def recorded(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "record.json").read_text())


def make_context(session: Session, timeout: float = 60.0) -> ProposeContext:
    config = session.config
    tag = session.require_tag()
    best = session.journal.best(tag)
    history = session.journal.experiments(tag)
    seq = session.journal.next_seq()
    files = config.editable_files(session.root)
    program = (session.root / config.task.program).read_text()
    brief = build_brief(config, program, best=best, best_commit=session.best_commit(tag), history=history,
                        files=files)
    run_dir = session.run_dir(seq)
    run_dir.mkdir(parents=True, exist_ok=True)
    brief_path = run_dir / "brief.md"
    brief_path.write_text(brief)
    return ProposeContext(config=config, workspace=session.ws, brief=brief, brief_path=brief_path,
                          log_path=run_dir / "agent.log", seq=seq, best_commit=session.best_commit(tag),
                          best_metric=best.metric if best else None, history=history, timeout=timeout)


def run_experiment(session: Session, proposer, proposal):
    info = ProposalInfo(proposer=proposer.name, tokens_in=proposal.tokens_in, tokens_out=proposal.tokens_out,
                        cost_usd=proposal.cost_usd)
    return experiment(session, proposal.description, info=info)


# (agent, model, extra_args, tokens_in, tokens_out, cost) as each fake reports them
IMPROVE_CASES = [
    ("claude", "claude-sonnet-4-5", ["--max-turns", "30"], 1200 + 300 + 4500 + 400, 640 + 30, 0.0421),
    ("codex", "gpt-5-codex", ["--color", "never"], 8000, 900, None),
    ("aider", "sonnet", ["--map-tokens", "0"], 2300, 150, 0.008123),
    ("gemini", "gemini-2.5-flash", ["--debug"], 24939, 220 + 154, None),
    ("opencode", "anthropic/claude-sonnet-4-5", ["--agent", "build"], 1000 + 3000 + 500 + 400 + 4000, 350, 0.02),
]

EXPECTED_FLAGS = {
    "claude": ["-p", "--output-format", "json", "--dangerously-skip-permissions"],
    "codex": ["exec", "--sandbox", "workspace-write", "--skip-git-repo-check", "--json", "-"],
    "aider": ["--message-file", "--yes-always", "--no-git", "--no-auto-commits", "--no-gitignore", "--analytics-log",
              "train.py"],
    "gemini": ["--yolo", "--skip-trust", "--output-format", "json", "--prompt"],
    "opencode": ["run", "--format", "json"],
}


@pytest.mark.parametrize("agent,model,extra,tokens_in,tokens_out,cost", IMPROVE_CASES,
                         ids=[c[0] for c in IMPROVE_CASES])
def test_each_cli_improves_the_knob(agent, model, extra, tokens_in, tokens_out, cost, task, fakes, tmp_path,
                                    capfd):
    fakes(agent)
    with Session.open(task) as session:
        config = with_overrides(session.config, "agent", extra_args=extra)
        proposer = make_coding_agent(config, f"{agent}:{model}")
        ctx = make_context(session)
        proposal = proposer.propose(ctx)
        assert proposal.description == fakelib.SUMMARY
        assert (proposal.tokens_in, proposal.tokens_out) == (tokens_in, tokens_out)
        assert proposal.cost_usd == (pytest.approx(cost) if cost is not None else None)
        rec = recorded(tmp_path)
        assert Path(rec["cwd"]).resolve() == task.resolve()
        assert rec["prompt"].count(fakelib.BRIEF_MARKER) == 1
        assert rec["env"]["AUTORESEARCH_PHASE"] == "propose"
        assert rec["env"]["AUTORESEARCH_PROPOSING"] == "1"  # autoresearch experiment/run refuse to start
        assert rec["env"]["AUTORESEARCH_SEQ"] == str(ctx.seq)
        argv = rec["argv"]
        for flag in EXPECTED_FLAGS[agent]:
            assert any(a == flag for a in argv), (flag, argv)
        assert argv[argv.index(model) - 1] in ("--model", "-m")
        i = argv.index(extra[0])
        assert argv[i:i + len(extra)] == extra
        assert "MOMENTUM = 0.9" in (task / "train.py").read_text()
        # untracked droppings of the CLI (aider's tags cache) are moved out of the work tree
        assert not [p for p in session.ws.untracked() if p.startswith(".aider")]
        exp = run_experiment(session, proposer, proposal)
        assert exp.status == "keep", (exp.status, exp.reason, exp.details)
        assert exp.metric < exp.best_before
        assert exp.description == fakelib.SUMMARY
        assert exp.tokens_in == tokens_in and exp.proposer == f"{agent}:{model}"
    log = ctx.log_path.read_text()
    assert "MOMENTUM" in log or fakelib.SUMMARY in log
    out, err = capfd.readouterr()
    assert fakelib.SUMMARY not in out + err  # the agent's output went to agent.log only
    if agent == "aider":
        assert (ctx.log_path.parent / "agent-files" / ".aider.tags.cache.v4" / "cache.db").exists()
        assert (ctx.log_path.parent / "aider.chat.history.md").exists()


def test_broken_code_crashes_the_experiment(task, fakes, monkeypatch):
    fakes("claude")
    monkeypatch.setenv("FAKE_AGENT_BEHAVIOR", "break")
    with Session.open(task) as session:
        proposer = make_coding_agent(session.config, "claude")
        proposal = proposer.propose(make_context(session))
        exp = run_experiment(session, proposer, proposal)
        assert (exp.status, exp.reason) == ("crash", "exit-1")
        assert "fake agent broke it" in exp.log_tail
    assert "fake agent broke it" not in (task / "train.py").read_text()  # reset to best


def test_harness_edit_is_rejected(task, fakes, monkeypatch):
    fakes("codex")
    monkeypatch.setenv("FAKE_AGENT_BEHAVIOR", "harness")
    with Session.open(task) as session:
        proposer = make_coding_agent(session.config, "codex")
        proposal = proposer.propose(make_context(session))
        exp = run_experiment(session, proposer, proposal)
        assert (exp.status, exp.reason) == ("rejected", "harness-modified")
    assert "fake agent was here" not in (task / "prepare.py").read_text()


def test_hanging_agent_times_out_quickly(task, fakes, monkeypatch, tmp_path):
    fakes("gemini")
    monkeypatch.setenv("FAKE_AGENT_BEHAVIOR", "hang")
    with Session.open(task) as session:
        proposer = make_coding_agent(session.config, "gemini")
        ctx = make_context(session, timeout=1.0)
        start = time.monotonic()
        with pytest.raises(ProposerError) as err:
            proposer.propose(ctx)
        assert err.value.reason == "agent-timeout"
        assert time.monotonic() - start < 8
        assert "thinking..." in str(err.value)  # the tail of the agent log
    assert not alive(recorded(tmp_path)["pid"])


def test_no_change_becomes_no_change_crash(task, fakes, monkeypatch):
    fakes("opencode")
    monkeypatch.setenv("FAKE_AGENT_BEHAVIOR", "nochange")
    with Session.open(task) as session:
        proposer = make_coding_agent(session.config, "opencode")
        proposal = proposer.propose(make_context(session))
        assert proposal.description.startswith("I looked at the code")
        exp = run_experiment(session, proposer, proposal)
        assert (exp.status, exp.reason) == ("crash", "no-change")


def test_claude_as_root_uses_accept_edits_not_the_bypass(task, fakes, monkeypatch, tmp_path):
    fakes("claude")
    monkeypatch.setattr(coding_agent, "running_as_root", lambda: True)
    monkeypatch.setenv("FAKE_AGENT_UID", "0")
    with Session.open(task) as session:
        proposer = make_coding_agent(session.config, "claude")
        proposal = proposer.propose(make_context(session))
        argv = recorded(tmp_path)["argv"]
        assert "--dangerously-skip-permissions" not in argv
        assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
        assert "Edit" in argv[argv.index("--allowedTools") + 1]
        assert run_experiment(session, proposer, proposal).status == "keep"


def test_claude_as_root_keeps_the_bypass_when_the_user_declares_a_sandbox(task, fakes, monkeypatch, tmp_path):
    fakes("claude")
    monkeypatch.setattr(coding_agent, "running_as_root", lambda: True)
    monkeypatch.setenv("FAKE_AGENT_UID", "0")
    monkeypatch.setenv("IS_SANDBOX", "1")
    with Session.open(task) as session:
        make_coding_agent(session.config, "claude").propose(make_context(session))
    rec = recorded(tmp_path)
    assert "--dangerously-skip-permissions" in rec["argv"] and "--permission-mode" not in rec["argv"]
    assert rec["env"]["IS_SANDBOX"] == "1"


def test_claude_root_refusal_is_explained(task, fakes, monkeypatch):
    """The real refusal (bypass forced back through extra_args, as root, no sandbox declared)."""
    fakes("claude")
    monkeypatch.setattr(coding_agent, "running_as_root", lambda: True)
    monkeypatch.setenv("FAKE_AGENT_UID", "0")
    with Session.open(task) as session:
        config = with_overrides(session.config, "agent", extra_args=["--dangerously-skip-permissions"])
        with pytest.raises(ProposerError) as err:
            make_coding_agent(config, "claude").propose(make_context(session))
    assert err.value.reason == "agent-error"
    assert "root" in str(err.value) and "IS_SANDBOX=1" in str(err.value) and "non-root" in str(err.value)
    assert "MOMENTUM = 0.0" in (task / "train.py").read_text()


@pytest.mark.parametrize("agent", list(CODING_AGENTS))
def test_missing_cli_says_how_to_install_it(agent, task, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setattr(sys, "executable", str(empty / "python"))  # base_env puts its folder first
    monkeypatch.setenv("PATH", str(empty))
    with Session.open(task) as session:
        with pytest.raises(ProposerError) as err:
            make_coding_agent(session.config, agent)
    assert err.value.reason == "not-installed"
    assert CODING_AGENTS[agent].install in str(err.value)
    assert f"`{CODING_AGENTS[agent].executable}`" in str(err.value)


def test_cli_removed_after_start_is_not_installed_at_propose(task, fakes):
    bindir = fakes("codex")
    with Session.open(task) as session:
        proposer = make_coding_agent(session.config, "codex")
        (bindir / "codex").unlink()
        with pytest.raises(ProposerError) as err:
            proposer.propose(make_context(session))
    assert err.value.reason == "not-installed" and "npm install -g @openai/codex" in str(err.value)


def test_command_placeholders_reach_the_program(task, fakes, tmp_path):
    fakes("fake_command_agent")
    template = ("command:fake_command_agent --brief-file {brief_file} --brief {brief} --model {model} --seq {seq} "
                "--log {log} --best {best} --metric {metric} --goal {goal} --fix {fix} {files}")
    with Session.open(task) as session:
        config = with_overrides(session.config, "agent", model="local model", extra_args=["--extra", "x y"])
        proposer = make_coding_agent(config, template)
        ctx = make_context(session)
        assert "'" in ctx.brief or '"' in ctx.brief or "`" in ctx.brief  # quoting is really exercised
        proposal = proposer.propose(ctx)
        rec = recorded(tmp_path)
        assert rec["brief_arg"] == ctx.brief and rec["stdin"] == ctx.brief and rec["prompt"] == ctx.brief
        assert (rec["model"], rec["seq"], rec["log"]) == ("local model", ctx.seq, str(ctx.log_path))
        assert float(rec["best"]) == pytest.approx(ctx.best_metric)
        assert (rec["metric"], rec["goal"], rec["fix"], rec["files"]) == ("val_loss", "minimize", "0", ["train.py"])
        assert rec["extra"] == ["x y"]
        assert rec["env"]["AUTORESEARCH_BRIEF_FILE"] == str(ctx.brief_path)
        assert proposal.description == fakelib.SUMMARY  # from its `summary:` line
        assert proposal.tokens_in is None and proposal.cost_usd is None
        exp = run_experiment(session, proposer, proposal)
        assert exp.status == "keep" and exp.proposer == "command"


def test_command_failure_carries_the_log_tail(task):
    with Session.open(task) as session:
        proposer = make_coding_agent(session.config, "command:sh -c 'echo boom-from-agent; exit 3'")
        with pytest.raises(ProposerError) as err:
            proposer.propose(make_context(session))
    assert err.value.reason == "agent-error"
    assert "status 3" in str(err.value) and "boom-from-agent" in str(err.value)


def test_command_mistakes_are_caught_before_running(task):
    with Session.open(task) as session:
        config = session.config
        with pytest.raises(ProposerError) as err:
            make_coding_agent(config, "command:./agent.sh {brieffile}")
        assert err.value.reason == "agent-error" and "{brief_file}" in str(err.value)
        with pytest.raises(ProposerError) as err:
            make_coding_agent(config, "command:")
        assert "placeholders" in str(err.value)
        with pytest.raises(ProposerError) as err:
            make_coding_agent(config, "command:./no-such-agent.sh {brief_file}")
        assert err.value.reason == "not-installed"
        with pytest.raises(ProposerError) as err:
            make_coding_agent(config, "command:no-such-agent-xyz {brief_file}")
        assert err.value.reason == "not-installed"
        with pytest.raises(ProposerError) as err:
            make_coding_agent(config, "cursor")
        assert "known" in str(err.value)


def test_registry_finds_the_coding_agents(task, fakes):
    fakes("claude")
    from autoresearch.proposers import available_kinds, get_proposer
    with Session.open(task) as session:
        assert {"claude", "codex", "aider", "gemini", "opencode", "command"} <= set(available_kinds())
        proposer = get_proposer(session.config, "claude:opus")
    assert proposer.name == "claude:opus" and proposer.model == "opus"


# -- output parsing -----------------------------------------------------------------------------

def test_parsers_read_errors_and_usage():
    err = parse_claude('noise\n{"type":"result","subtype":"error_max_turns","is_error":true,"result":"",'
                       '"total_cost_usd":0.5,"usage":{"input_tokens":10,"output_tokens":2}}\n')
    assert "error_max_turns" in err.error and err.cost_usd == 0.5 and err.tokens_in == 10
    assert parse_claude("not json at all").error
    codex = parse_codex('{"type":"turn.completed","usage":{"input_tokens":5,"cached_input_tokens":1,'
                        '"output_tokens":2}}\n{"type":"turn.completed","usage":{"input_tokens":7,"output_tokens":3}}\n'
                        '{"type":"turn.failed","error":{"message":"rate limited"}}\n')
    assert (codex.tokens_in, codex.tokens_out) == (12, 5) and "rate limited" in codex.error
    gemini = parse_gemini('Loaded cached credentials.\n{\n  "response": "",\n  "error": {"type": "ApiError", '
                          '"message": "quota exceeded"}\n}\n')
    assert "quota exceeded" in gemini.error
    aider = parse_aider("Tokens: 12,345 sent, 1.2M received. Cost: $1.25 message, $2.50 session.\nDone.\n")
    assert (aider.tokens_in, aider.tokens_out, aider.cost_usd) == (12345, 1_200_000, 2.5)


def test_summary_line_picks_the_summary_and_clips_it():
    assert summary_line("I did things.\n\n**Summary:** Use cosine LR decay\n\nLet me know!") == "Use cosine LR decay"
    assert summary_line("Done.\n- Lower WEIGHT_DECAY to 1e-4\n") == "Lower WEIGHT_DECAY to 1e-4"
    long = summary_line("x" * 200)
    assert len(long) == 72 and long.endswith("…")
    assert summary_line("```\ncode\n```\n") == "code"
    assert summary_line("") == ""


def test_silent_agent_gets_a_generic_description(task):
    with Session.open(task) as session:
        proposer = make_coding_agent(session.config, "command:sed -i 's/^STEPS = 200/STEPS = 400/' {files}")
        proposal = proposer.propose(make_context(session))
    assert proposal.description == "command: edit train.py (no summary given)"
    assert "STEPS = 400" in (task / "train.py").read_text()


# -- regressions from driving the released CLIs (issue 15) ---------------------------------------

def test_codex_reconnect_then_completed_turn_is_not_an_error():
    events = ('{"type":"thread.started","thread_id":"t"}\n{"type":"turn.started"}\n'
              '{"type":"error","message":"Reconnecting... 1/5"}\n'
              '{"type":"item.completed","item":{"id":"i","type":"agent_message","text":"summary: x"}}\n'
              '{"type":"turn.completed","usage":{"input_tokens":9,"output_tokens":4}}\n')
    out = parse_codex(events)
    assert out.error == "" and (out.tokens_in, out.tokens_out) == (9, 4) and out.text == "summary: x"
    dropped = parse_codex('{"type":"turn.started"}\n{"type":"error","message":"stream disconnected"}\n')
    assert "stream disconnected" in dropped.error  # no completed turn after it: fatal
    failed = parse_codex('{"type":"error","message":"Reconnecting... 1/5"}\n{"type":"turn.completed","usage":{}}\n'
                         '{"type":"turn.failed","error":{"message":"quota"}}\n')
    assert "quota" in failed.error


def test_claude_usage_counts_side_requests_from_model_usage():
    result = {"type": "result", "subtype": "success", "result": "ok", "total_cost_usd": 0.5,
              "usage": {"input_tokens": 10, "output_tokens": 2},
              "modelUsage": {"a": {"inputTokens": 10, "outputTokens": 2, "cacheReadInputTokens": 5},
                             "b": {"inputTokens": 7, "outputTokens": 1}}}
    out = parse_claude(json.dumps(result))
    assert (out.tokens_in, out.tokens_out, out.cost_usd) == (22, 3, 0.5)
    del result["modelUsage"]
    assert parse_claude(json.dumps(result)).tokens_in == 10  # older CLIs: usage only


def test_opencode_zero_cost_is_unknown_not_free():
    from autoresearch.proposers.coding_agent import parse_opencode
    step = {"type": "step_finish", "part": {"tokens": {"input": 5, "output": 1, "cache": {"read": 0}}, "cost": 0}}
    out = parse_opencode(json.dumps(step))
    assert out.tokens_in == 5 and out.cost_usd is None
    step["part"]["cost"] = 0.25
    assert parse_opencode(json.dumps(step)).cost_usd == 0.25


def test_aider_usage_survives_a_stray_search_marker():
    output = ("train.py\n<<<<<<< SEARCH\nMOMENTUM = 0.0\n"  # the model never closed its block
              "Tokens: 1.0k sent, 50 received. Cost: $0.01 message, $0.01 session.\n"
              "Tokens: 2.0k sent, 60 received. Cost: $0.01 message, $0.02 session.\n")
    out = parse_aider(output)
    assert (out.tokens_in, out.tokens_out, out.cost_usd) == (3000, 110, 0.02)


def test_aider_exact_cost_comes_from_its_event_log(tmp_path):
    from autoresearch.proposers.coding_agent import AIDER_EVENTS, aider_events_usage
    rounded = parse_aider("Tokens: 1.0k sent, 50 received. Cost: $0.01 message, $0.01 session.\n")
    assert rounded.cost_usd == 0.01
    (tmp_path / AIDER_EVENTS).write_text(
        '{"event": "launched", "properties": {}}\n'
        '{"event": "message_send", "properties": {"prompt_tokens": 1000, "completion_tokens": 50, "total_cost": 0.012}}\n')
    exact = aider_events_usage(rounded, tmp_path)
    assert (exact.tokens_in, exact.tokens_out, exact.cost_usd) == (1000, 50, 0.012)
    (tmp_path / AIDER_EVENTS).write_text(
        '{"event": "message_send", "properties": {"prompt_tokens": 1, "completion_tokens": 1, "total_cost": 0}}\n')
    assert aider_events_usage(parse_aider(""), tmp_path).cost_usd is None  # unpriced model: unknown


def test_gemini_without_skip_trust_exits_55(task, fakes, monkeypatch):
    """The fake behaves like Gemini CLI 0.61 in an untrusted folder; the built command passes."""
    bindir = fakes("gemini")
    proc = subprocess.run([str(bindir / "gemini"), "--yolo", "--prompt", "x"], cwd=task, input="",
                          capture_output=True, text=True)
    assert proc.returncode == 55 and "not trusted" in proc.stderr
    with Session.open(task) as session:
        proposal = make_coding_agent(session.config, "gemini").propose(make_context(session))
    assert proposal.description == fakelib.SUMMARY


@pytest.mark.parametrize("template", ["example", "tinylm", "nanochat", "compress", "fastfunc", "sqlquery"])
def test_brief_carries_guidance_but_not_the_native_loop(template, task):
    from autoresearch.scaffold import templates_dir
    program = (templates_dir() / template / "program.md").read_text()
    assert "autoresearch experiment" in program  # native mode still has its protocol
    with Session.open(task) as session:
        brief = build_brief(session.config, program, best=None, best_commit="abc1234", history=[],
                            files=["train.py"])
    guidance = brief.split("## program.md", 1)[1]
    assert "## Rules" in guidance and "## The loop" not in guidance
    for phrase in ("`autoresearch experiment", "Repeat", "Never stop", "never stop", "native-loop"):
        assert phrase not in guidance, phrase
    assert "Do not run the experiment yourself" in brief


def test_brief_strips_the_loop_from_a_program_md_without_markers(task):
    program = ("# mine\n\nTry bigger batches.\n\n## The loop\n1. Run `autoresearch experiment -m x`.\n"
               "2. Repeat forever.\n\n## Rules\n- Edit only train.py.\n- Never stop to ask.\n")
    with Session.open(task) as session:
        brief = build_brief(session.config, program, best=None, best_commit="abc1234", history=[], files=["train.py"])
    guidance = brief.split("## program.md", 1)[1]
    assert "Try bigger batches." in guidance and "- Edit only train.py." in guidance
    assert "autoresearch experiment" not in guidance and "Repeat" not in guidance and "Never stop" not in guidance


def test_init_program_md_has_both_parts(tmp_path):
    from autoresearch.proposers.brief import NATIVE_BEGIN, NATIVE_END, research_guidance
    from autoresearch.scaffold import init_from_flags
    project = tmp_path / "proj"
    project.mkdir()
    (project / "work.py").write_text("print('score: 1.0')\n")
    init_from_flags(project, editable=["work.py"], readonly=[], run="python work.py", metric="score",
                    goal="maximize", budget=5)
    program = (project / "program.md").read_text()
    assert NATIVE_BEGIN in program and NATIVE_END in program and "autoresearch experiment" in program
    assert "autoresearch experiment" not in research_guidance(program)
    assert "`work.py`" in research_guidance(program)


def test_refusal_inside_a_proposal_step():
    from autoresearch.proposers.guard_env import InsideProposalError, refuse_inside_proposal
    refuse_inside_proposal("experiment", env={})
    refuse_inside_proposal("experiment", env={"AUTORESEARCH_PROPOSING": "0"})
    with pytest.raises(InsideProposalError) as err:
        refuse_inside_proposal("experiment", env={"AUTORESEARCH_PROPOSING": "1"})
    message = str(err.value)
    assert "`autoresearch experiment` is not available inside a proposal step" in message
    assert "summary" in message and "Traceback" not in message
