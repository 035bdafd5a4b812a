"""Redaction: the values of secret-looking variables never survive into what autoresearch writes."""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from pathlib import Path

from autoresearch.harness.process import run_command
from autoresearch.redact import redact, redact_bytes, redact_file, secret_values

ENVIRON = {
    "OPENAI_API_KEY": "sk-proj-abc123def456",
    "GITHUB_TOKEN": "ghp_0123456789",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCY",
    "DB_PASSWORD": "hunter2hunter2",
    "MYSQL_PASSWD": "p4ssw0rd!",
    "GOOGLE_APPLICATION_CREDENTIALS": "/home/u/creds.json",
    "HF_AUTH": "hf_zzzzzzzz",
    "lower_api_key": "lowercase-secret",
    "SHORT_TOKEN": "abc",          # too short to redact safely
    "GIT_AUTHOR_NAME": "Jane Doe",  # AUTHOR is not AUTH
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/u",
}


def test_secret_values_picks_secret_names_only() -> None:
    secrets = secret_values(ENVIRON)
    assert set(secrets) == {"OPENAI_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD",
                            "MYSQL_PASSWD", "GOOGLE_APPLICATION_CREDENTIALS", "HF_AUTH", "lower_api_key"}
    assert secrets["OPENAI_API_KEY"] == "sk-proj-abc123def456"


def test_redact_replaces_every_occurrence_and_nothing_else() -> None:
    secrets = secret_values(ENVIRON)
    text = ("Traceback: openai.AuthenticationError: bad key sk-proj-abc123def456 (again: sk-proj-abc123def456)\n"
            "aws=wJalrXUtnFEMI/K7MDENG+bPxRfiCY author=Jane Doe path=/usr/bin:/bin token=abc\n")
    out = redact(text, secrets)
    assert "sk-proj-abc123def456" not in out and "wJalrXUtnFEMI" not in out
    assert out.count("[redacted:OPENAI_API_KEY]") == 2 and "[redacted:AWS_SECRET_ACCESS_KEY]" in out
    assert "author=Jane Doe path=/usr/bin:/bin token=abc" in out
    assert out.startswith("Traceback: openai.AuthenticationError: bad key ")
    assert redact("nothing secret here", secrets) == "nothing secret here"


def test_a_value_that_contains_another_is_replaced_whole() -> None:
    secrets = {"SHORT_KEY": "abcdef", "LONG_KEY": "abcdef-123456"}
    assert redact("x abcdef-123456 y abcdef z", secrets) == "x [redacted:LONG_KEY] y [redacted:SHORT_KEY] z"


def test_regex_characters_in_a_value_are_literal() -> None:
    secrets = {"API_KEY": "a.b*c+d?(e)"}
    assert redact("a.b*c+d?(e) aXbbbc", secrets) == "[redacted:API_KEY] aXbbbc"


def test_escaped_forms_of_a_value_are_caught() -> None:
    """A key with characters that JSON escapes or a URL encodes is still found in those forms."""
    value = 'ab"cd\\ef/gh+ij=='
    secrets = {"SERVICE_TOKEN": value}
    text = f'raw {value} json {{"k": {json.dumps(value)}}} url https://x/?key={urllib.parse.quote(value, safe="")}'
    out = redact(text, secrets)
    assert out == 'raw [redacted:SERVICE_TOKEN] json {"k": "[redacted:SERVICE_TOKEN]"} url https://x/?key=[redacted:SERVICE_TOKEN]'


def test_redact_bytes_keeps_bytes_that_are_not_utf8() -> None:
    data = b"\xff\xfe binary sk-proj-abc123def456 \x80\n"
    assert redact_bytes(data, secret_values(ENVIRON)) == b"\xff\xfe binary [redacted:OPENAI_API_KEY] \x80\n"


def test_redact_file_rewrites_in_place_and_leaves_clean_files_alone(tmp_path: Path) -> None:
    secrets = secret_values(ENVIRON)
    dirty, clean = tmp_path / "run.log", tmp_path / "other.log"
    dirty.write_bytes(b"line\n" * 100_000 + b"key=ghp_0123456789\n" + b"\xc3\x28 tail\n")
    dirty.chmod(0o640)
    clean.write_text("nothing to hide\n")
    inode = clean.stat().st_ino
    assert redact_file(dirty, secrets) is True
    assert redact_file(clean, secrets) is False
    data = dirty.read_bytes()
    assert b"ghp_0123456789" not in data and data.endswith(b"key=[redacted:GITHUB_TOKEN]\n\xc3\x28 tail\n")
    assert dirty.stat().st_mode & 0o777 == 0o640
    assert clean.stat().st_ino == inode  # not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.log", "run.log"]  # no temp file left


def test_a_crashing_run_that_prints_a_key_leaves_a_clean_log(tmp_path: Path, monkeypatch) -> None:
    """End to end with a real process: the run (given the key on purpose) dumps it in a
    traceback; after redact_file the log holds the name, not the value."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-9f8e7d6c5b4a")
    code = "import os; raise SystemExit('auth failed with ' + os.environ['OPENAI_API_KEY'])"
    log = tmp_path / "run.log"
    result = run_command(f"{sys.executable} -c \"{code}\"", cwd=tmp_path, env=dict(os.environ), timeout=60,
                         log_path=log)
    assert result.exit_code == 1 and "sk-live-9f8e7d6c5b4a" in log.read_text()
    redact_file(log, secret_values())
    assert "sk-live-9f8e7d6c5b4a" not in log.read_text() and "[redacted:OPENAI_API_KEY]" in log.read_text()


def test_redact_on_a_big_log_with_many_secrets() -> None:
    """One pass over a 4 MB log with 200 secrets (speed is in benchmarks/export.py)."""
    secrets = {f"K{i}_TOKEN": f"value-{i:04d}-xyz" for i in range(200)}
    text = ("ordinary log line with numbers 0123456789\n" * 100_000) + "value-0199-xyz\n"
    out = redact(text, secrets)
    assert out.endswith("[redacted:K199_TOKEN]\n") and out.count("[redacted:") == 1
