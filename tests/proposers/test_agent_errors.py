"""Each released CLI's answer to an invalid key (recorded from the real binaries against
tests/model_server.py: outputs/<cli>-401.log) becomes one line naming the key to check, and
other failures become the CLI's own message on one line, never a stack frame or a JSON blob."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoresearch.proposers.agent_clis import CODING_AGENTS, parse_claude, parse_codex, parse_gemini, parse_opencode
from autoresearch.proposers.agent_errors import auth_reason, http_status, one_line

OUTPUTS = Path(__file__).parent / "outputs"
KEY_VARIABLE = {"claude": "ANTHROPIC_API_KEY", "codex": "CODEX_API_KEY", "gemini": "GEMINI_API_KEY",
                "opencode": "apiKey", "aider": "OPENAI_API_KEY"}


@pytest.mark.parametrize("cli", list(CODING_AGENTS))
def test_a_401_is_an_auth_failure_with_the_key_to_check(cli):
    output = (OUTPUTS / f"{cli}-401.log").read_text()
    out = CODING_AGENTS[cli].parse(output)
    assert out.auth, out
    reason = auth_reason(cli, out.status, output)
    assert reason.startswith(f"invalid API key for {cli}")
    assert KEY_VARIABLE[cli] in reason
    if cli != "aider":  # aider prints litellm's message, which names no status
        assert "(HTTP 401)" in reason
    assert "\n" not in out.error and "at throwErrorIfNotOK" not in out.error and '{"error"' not in out.error


def test_gemini_error_is_its_message_not_the_stack():
    out = parse_gemini((OUTPUTS / "gemini-401.log").read_text())
    assert out.error == "Gemini CLI error: API key not valid. Please pass a valid API key."
    assert out.status == 401


def test_codex_reason_is_the_failed_turn_not_the_first_event():
    out = parse_codex((OUTPUTS / "codex-401.log").read_text())
    assert out.error.startswith("Codex turn failed: unexpected status 401 Unauthorized: Incorrect API key")


def test_a_server_error_is_not_an_auth_failure():
    codex = parse_codex(json.dumps({"type": "turn.failed", "error": {"message": "unexpected status 500 Internal "
                                                                                 "Server Error: boom"}}))
    assert codex.error and not codex.auth and codex.status == 500
    opencode = parse_opencode(json.dumps({"type": "error", "error": {"name": "APIError", "data": {
        "message": "Rate limit reached", "statusCode": 429}}}))
    assert opencode.status == 429 and not opencode.auth


def test_claude_failure_keeps_its_usage():
    out = parse_claude(json.dumps({"type": "result", "subtype": "error_during_execution", "is_error": True,
                                   "api_error_status": 401, "result": "Invalid API key", "total_cost_usd": 0.0306,
                                   "usage": {"input_tokens": 900, "output_tokens": 40}}))
    assert out.auth and out.cost_usd == 0.0306 and (out.tokens_in, out.tokens_out) == (900, 40)


def test_one_line_reduces_json_and_clips():
    assert one_line('{"error": {"code": 401, "message": "bad key"}}') == "bad key"
    assert one_line("a\n  b\tc") == "a b c"
    assert len(one_line("x" * 1000)) == 300
    assert http_status("unexpected status 403 Forbidden") == 403
    assert http_status("no number here") is None


def test_gemini_exit_41_names_the_settings_key():
    out = parse_gemini(json.dumps({"session_id": "x", "error": {"type": "Error", "message":
                                                                "Invalid auth method selected.", "code": 41}}))
    assert "security.auth.selectedType" in out.error and out.status is None and not out.auth


def test_claude_error_with_subtype_success_reads_as_an_error():
    out = parse_claude((OUTPUTS / "claude-401.log").read_text())
    assert out.error == "Claude Code reported an error: Invalid API key · Fix external API key"
