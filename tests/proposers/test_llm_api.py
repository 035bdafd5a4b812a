"""The API proposer against a loopback server that speaks the real OpenAI and Anthropic wire
formats, on real `example` tasks made by the CLI, with the real SDKs and the real Experimenter."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("anthropic")

from conftest import make_task, set_knob
from fake_llm_server import FakeLLMServer

from autoresearch.config.task import TaskConfig, with_overrides
from autoresearch.proposers import ProposeContext, ProposerError
from autoresearch.proposers.brief import build_brief
from autoresearch.proposers.llm_api import (
    DUMMY_KEY,
    SYSTEM_PROMPT,
    ApiProposer,
    estimate_cost,
    make_api_proposer,
    price_for,
)
from autoresearch.trial.lifecycle import ProposalInfo, Trial, experiment
from autoresearch.trial.session import Session
from autoresearch.verdict import Verdict

KEY = "sk-test-SECRET-4242"
KEY_ENV = "AR_TEST_LLM_KEY"
STEPS_LINE = "STEPS = 200  # search: int(50, 2000)"
GOOD = ("DESCRIPTION: double the steps (the loss is still falling)\n\n"
        f"train.py\n<<<<<<< SEARCH\n{STEPS_LINE}\n=======\nSTEPS = 400  # search: int(50, 2000)\n>>>>>>> REPLACE\n")
MALFORMED = "I would increase the number of steps to 400, that should help."
OUTSIDE = ("DESCRIPTION: make validation easier\n\n"
           "prepare.py\n<<<<<<< SEARCH\nN_VAL = 256\n=======\nN_VAL = 8\n>>>>>>> REPLACE\n")


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One started, baselined `example` task for the tests that only propose (never run)."""
    return make_task(tmp_path_factory.mktemp("api"))


@pytest.fixture
def session(shared_task: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    monkeypatch.setenv(KEY_ENV, KEY)
    saved = {p: p.read_bytes() for p in shared_task.glob("*.py")}
    s = Session.open(shared_task)
    try:
        yield s
    finally:
        s.close()
        for path, data in saved.items():
            path.write_bytes(data)


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(api_key=KEY) as srv:
        yield srv


def api_config(session: Session, server: FakeLLMServer, provider: str = "openai", **agent: object) -> TaskConfig:
    base = server.openai_base_url if provider == "openai" else server.anthropic_base_url
    values = {"provider": provider, "base_url": base, "api_key_env": KEY_ENV, "model": "gpt-4o", **agent}
    return with_overrides(session.config, "agent", **values)


def proposer_for(config: TaskConfig, agent: str = "api") -> ApiProposer:
    proposer = make_api_proposer(config, agent)
    proposer.backoff_s = 0.01  # the real default waits seconds between retries
    return proposer


def context(session: Session, config: TaskConfig, *, fix=None, timeout: float = 60.0) -> ProposeContext:
    tag = session.require_tag()
    best_commit = session.best_commit(tag)
    history = session.journal.experiments(tag, limit=config.agent.history)
    seq = (history[-1].seq + 1) if history else 1
    run_dir = session.run_dir(seq)
    run_dir.mkdir(parents=True, exist_ok=True)
    brief = build_brief(config, (session.root / config.task.program).read_text(),
                        best=session.journal.best(tag), best_commit=best_commit, history=history,
                        files=config.editable_files(), fix=fix)
    (run_dir / "brief.md").write_text(brief)
    return ProposeContext(config=config, workspace=session.ws, brief=brief, brief_path=run_dir / "brief.md",
                          log_path=run_dir / "agent.log", seq=seq, best_commit=best_commit, best_metric=None,
                          history=history, fix=fix, timeout=timeout)


def train_py(session: Session) -> str:
    return (session.root / "train.py").read_text()


# -- OpenAI chat completions --------------------------------------------------------------------

def test_openai_edit_is_applied_and_the_experiment_keeps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         server: FakeLLMServer) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    root = make_task(tmp_path)
    with Session.open(root) as s:
        config = api_config(s, server, temperature=0.3, max_tokens=1234)
        server.queue(GOOD, usage=(1500, 120))
        ctx = context(s, config)
        proposal = proposer_for(config).propose(ctx)
        assert proposal.description == "double the steps (the loss is still falling)"
        assert (proposal.tokens_in, proposal.tokens_out) == (1500, 120)
        assert proposal.cost_usd == pytest.approx((1500 * 2.50 + 120 * 10.00) / 1e6)  # gpt-4o list price
        assert proposal.model_driven
        assert "STEPS = 400  # search: int(50, 2000)" in train_py(s)

        [request] = server.requests
        assert request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.body["model"] == "gpt-4o"
        assert request.body["temperature"] == 0.3 and request.body["max_tokens"] == 1234
        system, user = request.body["messages"]
        assert system == {"role": "system", "content": SYSTEM_PROMPT}
        assert "<<<<<<< SEARCH" in system["content"] and "DESCRIPTION:" in system["content"]
        assert user["role"] == "user"
        assert ctx.brief.strip() in user["content"]  # the whole brief
        assert STEPS_LINE in user["content"] and "def train()" in user["content"]  # the editable file
        assert "def val_loss" in user["content"]  # the read-only harness, for context

        log = ctx.log_path.read_text()
        assert "[user]" in log and "double the steps" in log and STEPS_LINE in log
        assert KEY not in log

        exp = experiment(s, proposal.description, info=ProposalInfo(
            proposer="api", tokens_in=proposal.tokens_in, tokens_out=proposal.tokens_out, cost_usd=proposal.cost_usd))
        assert exp.status == "keep", (exp.status, exp.reason)
        assert exp.metric is not None and exp.best_before is not None and exp.metric < exp.best_before
        stored = s.journal.get(exp.seq)
        assert stored is not None and (stored.tokens_in, stored.tokens_out) == (1500, 120)
        assert stored.cost_usd == pytest.approx(proposal.cost_usd)
        assert stored.description == proposal.description
        assert "double the steps" in (root / "results.tsv").read_text()


def test_whole_file_replacement(session: Session, server: FakeLLMServer) -> None:
    config = api_config(session, server)
    new = train_py(session).replace("MOMENTUM = 0.0", "MOMENTUM = 0.5").replace("DEGREE = 3", "DEGREE = 4")
    server.queue(f"DESCRIPTION: momentum and a higher degree\n\ntrain.py\n<<<<<<< FILE\n{new}>>>>>>> FILE\n")
    proposal = proposer_for(config).propose(context(session, config))
    assert proposal.description == "momentum and a higher degree"
    assert train_py(session) == new


def test_malformed_answer_is_retried_once_with_the_error(session: Session, server: FakeLLMServer) -> None:
    config = api_config(session, server)
    server.queue(MALFORMED, usage=(1000, 20))
    server.queue(GOOD, usage=(1100, 60))
    proposal = proposer_for(config).propose(context(session, config))
    assert "STEPS = 400" in train_py(session)
    assert len(server.requests) == 2
    retry = server.requests[1].body["messages"]
    assert retry[0]["role"] == "system" and retry[1] == server.requests[0].body["messages"][1]
    assert retry[2] == {"role": "assistant", "content": MALFORMED}
    assert retry[3]["role"] == "user" and "no edit blocks found" in retry[3]["content"]
    assert (proposal.tokens_in, proposal.tokens_out) == (2100, 80)  # both answers count


def test_malformed_twice_is_a_bad_edit_recorded_as_crash(session: Session, server: FakeLLMServer) -> None:
    s = session
    config = api_config(s, server)
    before = train_py(s)
    server.queue(MALFORMED)
    server.queue(GOOD.replace(STEPS_LINE, "STEPS = 999"))  # a SEARCH that matches nothing
    ctx = context(s, config)
    with pytest.raises(ProposerError) as info:
        proposer_for(config).propose(ctx)
    assert info.value.reason == "bad-edit"
    assert "does not match train.py" in str(info.value)
    assert info.value.tokens_in is not None  # type: ignore[attr-defined]  # spent tokens travel with the error
    assert len(server.requests) == 2
    assert train_py(s) == before
    # what the loop does with it: a crash with the reason, the tree left at best
    trial = Trial.begin(s, tag=s.require_tag(), parent=s.best_commit(), description="(api failed: bad-edit)",
                        info=ProposalInfo(proposer="api"))
    exp = trial.settle(Verdict("crash", info.value.reason))
    stored = s.journal.get(exp.seq)
    assert stored is not None and (stored.status, stored.reason) == ("crash", "bad-edit")
    assert "could not be applied" in ctx.log_path.read_text()


def test_edit_to_a_non_editable_file_is_a_bad_edit(session: Session, server: FakeLLMServer) -> None:
    config = api_config(session, server)
    prepare = (session.root / "prepare.py").read_bytes()
    server.queue(OUTSIDE)
    server.queue(OUTSIDE)
    with pytest.raises(ProposerError) as info:
        proposer_for(config).propose(context(session, config))
    assert info.value.reason == "bad-edit"
    assert "'prepare.py' is not an editable file" in str(info.value)
    assert "not an editable file" in server.requests[1].body["messages"][-1]["content"]
    assert (session.root / "prepare.py").read_bytes() == prepare


def test_http_500_is_retried_then_succeeds(session: Session, server: FakeLLMServer) -> None:
    config = api_config(session, server)
    server.queue_error(500, "the server had an error")
    server.queue_error(503, "overloaded")
    server.queue(GOOD)
    proposal = proposer_for(config).propose(context(session, config))
    assert len(server.requests) == 3
    assert server.requests[0].body == server.requests[2].body  # the same request, resent
    assert proposal.description.startswith("double the steps")
    assert "STEPS = 400" in train_py(session)


def test_persistent_server_errors_and_auth_errors_are_agent_errors(session: Session, server: FakeLLMServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = api_config(session, server)
    for _ in range(4):
        server.queue_error(502, "bad gateway")
    with pytest.raises(ProposerError) as info:
        proposer_for(config).propose(context(session, config))
    assert info.value.reason == "agent-error" and "502" in str(info.value)
    assert len(server.requests) == 4  # one request and three retries
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    with pytest.raises(ProposerError) as info:
        proposer_for(config).propose(context(session, config))
    assert info.value.reason == "agent-error" and "401" in str(info.value)
    assert len(server.requests) == 5  # an auth error is not retried


def test_a_slow_server_is_an_agent_timeout(session: Session, server: FakeLLMServer) -> None:
    config = api_config(session, server)
    server.queue(GOOD, delay=3.0)
    with pytest.raises(ProposerError) as info:
        proposer_for(config).propose(context(session, config, timeout=1.0))
    assert info.value.reason == "agent-timeout"
    assert "STEPS = 200" in train_py(session)


def test_reasoning_model_parameters_are_adapted(session: Session, server: FakeLLMServer) -> None:
    config = api_config(session, server, model="o3-mini")
    server.queue_error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                            "Use 'max_completion_tokens' instead.")
    server.queue(GOOD, usage=(100, 10))
    proposal = proposer_for(config).propose(context(session, config))
    first, second = (r.body for r in server.requests)
    assert "max_tokens" in first and "max_tokens" not in second
    assert second["max_completion_tokens"] == config.agent.max_tokens
    assert proposal.cost_usd == pytest.approx((100 * 1.10 + 10 * 4.40) / 1e6)


# -- tokens and cost ----------------------------------------------------------------------------

def test_server_reported_cost_wins_and_missing_usage_is_none(session: Session, server: FakeLLMServer) -> None:
    config = api_config(session, server, model="meta-llama/llama-3.1-8b-instruct")
    server.queue(GOOD, usage=(300, 30), cost=0.00042)
    proposal = proposer_for(config).propose(context(session, config))
    assert (proposal.tokens_in, proposal.tokens_out, proposal.cost_usd) == (300, 30, pytest.approx(0.00042))
    (session.root / "train.py").write_text(train_py(session).replace("STEPS = 400", "STEPS = 200"))
    server.queue(GOOD, omit_usage=True)
    proposal = proposer_for(config).propose(context(session, config))
    assert (proposal.tokens_in, proposal.tokens_out, proposal.cost_usd) == (None, None, None)


def test_price_table() -> None:
    assert price_for("gpt-4o-mini") == (0.15, 0.60)
    assert price_for("gpt-4o-2024-08-06") == (2.50, 10.00)  # a dated snapshot finds its family
    assert price_for("openai/gpt-4.1-mini") == (0.40, 1.60)  # a router prefix is ignored
    assert price_for("claude-sonnet-4-5-20250929") == (3.00, 15.00)
    assert price_for("claude-opus-4-5") == (5.00, 25.00)
    assert price_for("smollm2-135m-instruct") is None
    assert price_for("o3x") is None  # a prefix must end at a dash
    assert estimate_cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert estimate_cost("unknown-model", 10, 10) is None
    assert estimate_cost("gpt-4o", None, 10) is None


# -- Anthropic messages -------------------------------------------------------------------------

def test_anthropic_messages_wire_format(session: Session, server: FakeLLMServer) -> None:
    config = api_config(session, server, provider="anthropic", model="claude-haiku-4-5-20251001", max_tokens=2048)
    server.queue(MALFORMED, usage=(2000, 10))
    server.queue(GOOD, usage=(2100, 90))
    ctx = context(session, config)
    proposal = proposer_for(config).propose(ctx)
    assert "STEPS = 400" in train_py(session)
    assert [r.path for r in server.requests] == ["/v1/messages", "/v1/messages"]
    first, second = server.requests
    # Anthropic SDKs send the key as x-api-key (before 1.0) or as a Bearer token (since).
    assert first.headers.get("x-api-key") == KEY or first.headers.get("authorization") == f"Bearer {KEY}"
    assert first.headers.get("anthropic-version")
    assert first.body["model"] == "claude-haiku-4-5-20251001" and first.body["max_tokens"] == 2048
    assert first.body["system"] == SYSTEM_PROMPT  # the system prompt is a field, not a message
    [user] = first.body["messages"]
    assert user["role"] == "user" and ctx.brief.strip() in user["content"] and STEPS_LINE in user["content"]
    assert [m["role"] for m in second.body["messages"]] == ["user", "assistant", "user"]
    assert "no edit blocks found" in second.body["messages"][2]["content"]
    assert (proposal.tokens_in, proposal.tokens_out) == (4100, 100)
    assert proposal.cost_usd == pytest.approx((4100 * 1.0 + 100 * 5.0) / 1e6)


def test_anthropic_overloaded_is_retried(session: Session, server: FakeLLMServer) -> None:
    config = api_config(session, server, provider="anthropic", model="claude-sonnet-4-6")
    server.queue_error(529, "Overloaded")
    server.queue(GOOD)
    proposal = proposer_for(config).propose(context(session, config))
    assert len(server.requests) == 2 and proposal.description.startswith("double the steps")


# -- faults, in both wire formats ----------------------------------------------------------------
# The SDKs run with max_retries=0, so every retry here is the proposer's own (logged, backed off).

PROVIDERS = ["openai", "anthropic"]
MODELS = {"openai": "gpt-4o", "anthropic": "claude-haiku-4-5"}
EDITED = "STEPS = 400  # search: int(50, 2000)"


def fault_config(session: Session, server: FakeLLMServer, provider: str) -> TaskConfig:
    return api_config(session, server, provider=provider, model=MODELS[provider])


def task_files(session: Session) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(session.root.glob("*.py"))}


def assert_edited_once(session: Session, before: dict[str, bytes]) -> None:
    """train.py carries exactly the one edit of GOOD; no other task file changed."""
    after = task_files(session)
    assert after["train.py"].decode() == before["train.py"].decode().replace(STEPS_LINE, EDITED)
    assert {k: v for k, v in after.items() if k != "train.py"} == {k: v for k, v in before.items() if k != "train.py"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_http_500_then_success_counts_the_good_answer(session: Session, server: FakeLLMServer, provider: str) -> None:
    config = fault_config(session, server, provider)
    before = task_files(session)
    server.queue_error(500, "internal error, try again")
    server.queue(GOOD, usage=(1200, 80))
    ctx = context(session, config)
    proposal = proposer_for(config).propose(ctx)
    assert len(server.requests) == 2 and server.requests[0].body == server.requests[1].body
    assert proposal.description.startswith("double the steps")
    assert_edited_once(session, before)
    # the 500 carried no usage: what is recorded is the good answer's, and its price
    assert (proposal.tokens_in, proposal.tokens_out) == (1200, 80)
    assert proposal.cost_usd == pytest.approx(estimate_cost(MODELS[provider], 1200, 80))
    log = ctx.log_path.read_text()
    assert "HTTP 500" in log and "internal error, try again" in log and "retrying in" in log
    assert "applied answer 1" in log


@pytest.mark.parametrize("stage", ["request", "headers", "body"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_dropped_connection_then_success_applies_the_edit_once(session: Session, server: FakeLLMServer,
                                                               provider: str, stage: str) -> None:
    config = fault_config(session, server, provider)
    before = task_files(session)
    # the dropped answer is a different edit, so a half-read one would show in the file
    server.queue_drop(stage, GOOD.replace("STEPS = 400", "STEPS = 999"))
    server.queue(GOOD, usage=(1300, 70))
    ctx = context(session, config)
    proposal = proposer_for(config).propose(ctx)
    assert len(server.requests) == 2 and server.requests[0].body == server.requests[1].body
    assert proposal.description.startswith("double the steps")
    assert_edited_once(session, before)
    assert "999" not in train_py(session)
    assert (proposal.tokens_in, proposal.tokens_out) == (1300, 70)  # the cut answer's usage never arrived
    log = ctx.log_path.read_text()
    assert "APIConnectionError" in log and "request (attempt 2)" in log


@pytest.mark.parametrize("provider", PROVIDERS)
def test_only_server_errors_fail_cleanly_and_change_nothing(session: Session, server: FakeLLMServer,
                                                           provider: str) -> None:
    config = fault_config(session, server, provider)
    before = task_files(session)
    for _ in range(4):
        server.queue_error(500, "internal error, try again")
    with pytest.raises(ProposerError) as info:
        proposer_for(config).propose(context(session, config))
    assert info.value.reason == "agent-error"
    assert str(info.value) == f"{provider} API failed 4 times; last: HTTP 500: internal error, try again"
    assert len(server.requests) == 4  # one request and three retries, no more
    assert (info.value.tokens_in, info.value.tokens_out) == (None, None)  # type: ignore[attr-defined]
    assert task_files(session) == before


@pytest.mark.parametrize("provider", PROVIDERS)
def test_only_dropped_connections_fail_cleanly_and_change_nothing(session: Session, server: FakeLLMServer,
                                                                 provider: str) -> None:
    config = fault_config(session, server, provider)
    before = task_files(session)
    for _ in range(4):
        server.queue_drop("body", GOOD)
    with pytest.raises(ProposerError) as info:
        proposer_for(config).propose(context(session, config))
    assert info.value.reason == "agent-error"
    assert str(info.value).startswith(f"{provider} API failed 4 times; last: APIConnectionError")
    assert "peer closed connection" in str(info.value)  # the transport's reason, not just "Connection error."
    assert len(server.requests) == 4
    assert task_files(session) == before


# -- crash repair -------------------------------------------------------------------------------

def test_fix_request_carries_the_crash_log_and_the_crashed_change(session: Session, server: FakeLLMServer) -> None:
    s, root = session, session.root
    set_knob(root, "DEGREE", "9")  # prepare.py refuses degrees above 8: a crash
    crashed = experiment(s, "degree 9")
    assert crashed.status == "crash" and "DEGREE_MAX" in crashed.log_tail
    s.ws.git("read-tree", "-u", "--reset", crashed.commit_sha)  # as the loop does before a repair
    config = api_config(s, server)
    server.queue("DESCRIPTION: degree 4 instead of 9\n\ntrain.py\n<<<<<<< SEARCH\nDEGREE = 9  # search: int(1, 8)\n"
                 "=======\nDEGREE = 4  # search: int(1, 8)\n>>>>>>> REPLACE\n")
    ctx = context(s, config, fix=crashed)
    proposal = proposer_for(config).propose(ctx)
    prompt = server.requests[0].body["messages"][1]["content"]
    assert "crashed" in prompt and "DEGREE_MAX" in prompt  # the log tail, through the brief
    assert "-DEGREE = 3" in prompt and "+DEGREE = 9" in prompt  # the change that crashed
    assert "DEGREE = 4" in train_py(s)
    exp = experiment(s, proposal.description)
    assert exp.status == "discard" and exp.metric is not None  # it runs again (degree 4 is a bit worse than 3)


# -- configuration ------------------------------------------------------------------------------

def test_agent_string_picks_provider_and_model(session: Session, server: FakeLLMServer) -> None:
    config = api_config(session, server)
    p = make_api_proposer(config, "api:anthropic:claude-haiku-4-5")
    assert (p.provider, p.model) == ("anthropic", "claude-haiku-4-5")
    assert p.base_url == server.anthropic_base_url  # the OpenAI-style /v1 suffix is dropped for Anthropic
    p = make_api_proposer(config, "api:llama3:8b")
    assert (p.provider, p.model) == ("openai", "llama3:8b")
    p = make_api_proposer(with_overrides(config, "agent", model=""), "api")
    assert p.model == "gpt-4o-mini"


def test_keys_local_servers_and_missing_sdks(session: Session, server: FakeLLMServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    no_url = with_overrides(session.config, "agent", provider="openai", model="gpt-4o", base_url="")
    with pytest.raises(ProposerError) as info:
        make_api_proposer(no_url, "api")
    assert info.value.reason == "agent-error" and "OPENAI_API_KEY" in str(info.value)

    local = FakeLLMServer()  # a local server that wants no key
    with local:
        config = with_overrides(session.config, "agent", provider="openai", model="local", base_url=local.openai_base_url)
        assert make_api_proposer(config, "api").api_key == DUMMY_KEY
        local.queue(GOOD)
        proposer_for(config).propose(context(session, config))
        assert local.requests[0].headers["authorization"] == f"Bearer {DUMMY_KEY}"

    monkeypatch.setitem(sys.modules, "anthropic", None)  # as if the extra were not installed
    with pytest.raises(ProposerError) as info:
        make_api_proposer(api_config(session, server, provider="anthropic"), "api")
    assert info.value.reason == "not-installed" and 'pip install "autoresearch[api]"' in str(info.value)
