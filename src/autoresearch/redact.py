"""Keep secrets out of everything autoresearch writes.

A run, an agent or a crash traceback can print an API key; whatever autoresearch then stores
(run logs, journal fields, the next agent's brief, which goes to a remote model, report.html)
would carry it further. So the values of secret-looking environment variables are replaced by
`[redacted:NAME]` before anything is written. Matching is by value, not by pattern: we know
the exact strings to hide, so there are no false alarms on random hex in a log, and a key that
is printed in a new place is still caught.

One compiled alternation of the escaped values, longest first (so a value that contains
another is replaced whole), scans a multi-megabyte log in milliseconds.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH(?!OR)", re.IGNORECASE)
MIN_LENGTH = 6  # shorter values ("1", "true", "none") would wreck a log and hide nothing


def secret_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """NAME -> value for every variable whose name looks secret (KEY, TOKEN, SECRET, PASSWORD,
    PASSWD, CREDENTIAL, AUTH; not AUTHOR) and whose value is at least MIN_LENGTH characters."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in sorted(source.items())
            if SECRET_NAME.search(name) and len(value.strip()) >= MIN_LENGTH}


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """TEXT with every occurrence of a secret's value replaced by `[redacted:NAME]`."""
    if not secrets or not text:
        return text
    pattern, names = _compiled(_key(secrets), binary=False)
    return pattern.sub(lambda m: f"[redacted:{names[m.group(0)]}]", text)


def redact_bytes(data: bytes, secrets: Mapping[str, str]) -> bytes:
    """The same on raw bytes (logs need not be UTF-8); values are matched as UTF-8."""
    if not secrets or not data:
        return data
    pattern, names = _compiled(_key(secrets), binary=True)
    return pattern.sub(lambda m: f"[redacted:{names[m.group(0)]}]".encode(), data)


def redact_file(path: Path, secrets: Mapping[str, str]) -> bool:
    """Redact a file in place. The file is replaced atomically (a reader sees the old or the
    new content, never a half-written one) and only when it held a secret. Returns whether it
    changed."""
    path = Path(path)
    data = path.read_bytes()
    cleaned = redact_bytes(data, secrets)
    if cleaned == data:
        return False
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(cleaned)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def _key(secrets: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(secrets.items()))


def _forms(value: str) -> list[str]:
    """The value as printed, and as it appears JSON-escaped (journal fields, results) or
    percent-encoded (a key in a URL's query string)."""
    return list(dict.fromkeys([value, json.dumps(value)[1:-1], urllib.parse.quote(value, safe="")]))


@functools.lru_cache(maxsize=8)
def _compiled(items: tuple[tuple[str, str], ...], binary: bool) -> tuple[re.Pattern, dict]:
    """One regex for all values, longest first; and value -> the first name that holds it."""
    names: dict = {}
    for name, value in items:
        if len(value) < MIN_LENGTH:
            continue
        for form in _forms(value):
            names.setdefault(form.encode() if binary else form, name)
    if not names:
        return re.compile(rb"(?!)" if binary else r"(?!)"), names
    ordered = sorted(names, key=len, reverse=True)
    return re.compile((b"|" if binary else "|").join(re.escape(v) for v in ordered)), names


_SESSION_SECRETS: dict[str, str] | None = None


def session_secrets() -> dict[str, str]:
    """This process's secret-looking variables, read once (every log, record and page that
    autoresearch writes is passed through `redact` with them)."""
    global _SESSION_SECRETS
    if _SESSION_SECRETS is None:
        _SESSION_SECRETS = secret_values()
    return _SESSION_SECRETS


def scrub(text: str) -> str:
    """`redact` with this process's secrets; the identity when there are none."""
    secrets = session_secrets()
    return redact(text, secrets) if secrets and text else text
