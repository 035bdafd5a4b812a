"""Where the pinned coding-agent CLIs live: read by scripts/install.sh and the contract tests.

The versions come from tests/agent_versions.toml; ``AUTORESEARCH_AGENT_VERSIONS`` ("codex=0.172.0
claude=2.1.200", spaces or commas) overrides some of them, so a newer release can be checked
against the contract without editing the file. Each CLI gets its own folder,
``<cache>/<cli>-<version>``, so versions never mix and a bump is a fresh install.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PIN_FILE = Path(__file__).with_name("agent_versions.toml")


@dataclass(frozen=True)
class Pin:
    cli: str
    registry: str  # npm | pypi
    package: str
    version: str

    @property
    def folder(self) -> Path:
        return cache_dir() / f"{self.cli}-{self.version}"

    @property
    def executable(self) -> Path:
        if self.registry == "npm":
            return self.folder / "node_modules" / ".bin" / self.cli
        return self.folder / "venv" / "bin" / self.cli

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}" if self.registry == "npm" else f"{self.package}=={self.version}"


def cache_dir() -> Path:
    return Path(os.environ.get("AUTORESEARCH_AGENTS_DIR") or Path.home() / ".cache" / "autoresearch-agents")


def overrides(text: str | None = None) -> dict[str, str]:
    text = os.environ.get("AUTORESEARCH_AGENT_VERSIONS", "") if text is None else text
    out = {}
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        cli, sep, version = item.partition("=")
        if not sep or not version:
            raise SystemExit(f"AUTORESEARCH_AGENT_VERSIONS: {item!r} is not cli=version (e.g. codex=0.172.0)")
        out[cli.strip()] = version.strip()
    return out


def pins() -> dict[str, Pin]:
    data = tomllib.loads(PIN_FILE.read_text())
    wanted = overrides()
    unknown = set(wanted) - set(data)
    if unknown:
        raise SystemExit(f"AUTORESEARCH_AGENT_VERSIONS names {', '.join(sorted(unknown))}; known: {', '.join(data)}")
    return {cli: Pin(cli, d["registry"], d["package"], wanted.get(cli, d["version"])) for cli, d in data.items()}


if __name__ == "__main__":  # for scripts/install.sh: one "cli registry spec folder" line per CLI
    for pin in pins().values():
        if len(sys.argv) < 2 or pin.cli in sys.argv[1:]:
            print(pin.cli, pin.registry, pin.spec, pin.folder)
