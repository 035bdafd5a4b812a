"""What a coding-agent CLI's failure means, in one line with the way out.

Each CLI's parser (`agent_clis`) takes the failure from its structured output (Codex's
``turn.failed``, Gemini's JSON ``error``, Claude Code's ``is_error`` result, opencode's
``error`` event, aider's authentication line) and the HTTP status it names. This module turns
that into the reason the journal and the terminal show: an invalid key becomes
``invalid API key for codex (HTTP 401): check CODEX_API_KEY``, whatever the CLI's exit status
(aider exits 0 on a bad key), and anything else the CLI's own message on one line, never a
stack frame or a JSON blob.
"""

from __future__ import annotations

import json
import re

REASON_MAX_CHARS = 300

# Where each CLI takes its key from: what the user should check after a 401.
KEY_HINTS = {
    "claude": "check ANTHROPIC_API_KEY (or log in again: run `claude`, then /login)",
    "codex": "check CODEX_API_KEY (`codex exec` reads no OPENAI_API_KEY; or the env_key of your "
             "[model_providers] entry in ~/.codex/config.toml)",
    "gemini": "check GEMINI_API_KEY (and security.auth.selectedType = \"gemini-api-key\" in ~/.gemini/settings.json)",
    "opencode": "check the provider's apiKey in opencode.json (or `opencode auth login`)",
    "aider": "check {var} (or --api-key in [agent] extra_args)",
}
# litellm's exception names (aider's messages) and the variable each provider's key is read from.
LITELLM_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
                "vertexai": "GOOGLE_APPLICATION_CREDENTIALS", "openrouter": "OPENROUTER_API_KEY",
                "deepseek": "DEEPSEEK_API_KEY", "groq": "GROQ_API_KEY", "mistral": "MISTRAL_API_KEY",
                "azure": "AZURE_API_KEY"}

_STATUS = re.compile(r"(?:\bstatus(?: code)?|\bcode|\bHTTP)\W{0,3}([45]\d\d)\b|\b([45]\d\d) (?:Unauthorized|Forbidden)",
                     re.IGNORECASE)
_AUTH = re.compile(r"unauthori[sz]ed|authentication[_ ]?error|invalid[ _-]?(?:x-)?api[ _-]?key|api key not valid|"
                   r"incorrect api key|not able to authenticate|invalid authentication|UNAUTHENTICATED|"
                   r"Please run /login", re.IGNORECASE)


def http_status(text: str) -> int | None:
    """The HTTP error status a message names (`unexpected status 401`, `"code":401`)."""
    match = _STATUS.search(text)
    if not match:
        return None
    return int(match.group(1) or match.group(2))


def is_auth(status: int | None, message: str) -> bool:
    """Whether a failure is the provider refusing the credentials."""
    return status in (401, 403) or bool(_AUTH.search(message))


def one_line(text: str, limit: int = REASON_MAX_CHARS) -> str:
    """TEXT on one line: a JSON error body reduced to its message, whitespace collapsed, clipped."""
    text = inner_message(text)
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def inner_message(text: str) -> str:
    """The message inside a JSON error body (`{"error": {"message": ...}}`), or TEXT itself."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return text
    try:
        value = json.loads(stripped)
    except ValueError:
        return text
    for _ in range(3):
        if isinstance(value, dict) and isinstance(value.get("error"), (dict, str)):
            value = value["error"]
        elif isinstance(value, dict) and isinstance(value.get("message"), str):
            return value["message"]
        else:
            break
    return value if isinstance(value, str) else text


def auth_reason(cli: str, status: int | None, output: str = "") -> str:
    """`invalid API key for CLI (HTTP 401): check VAR`: the one line for a refused key."""
    hint = KEY_HINTS.get(cli, "check the API key the agent uses")
    if "{var}" in hint:
        hint = hint.format(var=litellm_key(output))
    where = f" (HTTP {status})" if status else ""
    return f"invalid API key for {cli}{where}: {hint}"


def litellm_key(output: str) -> str:
    """The variable aider read its key from, named by litellm's exception (`OpenAIException`)."""
    match = re.search(r"\b(\w+?)Exception\b", output)
    provider = match.group(1).lower() if match else ""
    return LITELLM_KEYS.get(provider, "the API key of your model's provider (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...)")
