"""One plugin mechanism for every kind of part: Python entry points.

Built-ins are registered in autoresearch's own `pyproject.toml` exactly as a plugin registers
its kinds in its own, under the group `autoresearch.proposers` or `autoresearch.executors`.
A plugin cannot silently shadow a built-in: two packages that register one name is an error
that names both, raised when that name is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autoresearch.errors import ConfigError

if TYPE_CHECKING:
    from importlib import metadata

PROPOSERS = "autoresearch.proposers"
EXECUTORS = "autoresearch.executors"


def _entries(group: str) -> dict[str, list["metadata.EntryPoint"]]:
    from importlib import metadata  # 40 ms: only when a kind is looked up

    found: dict[str, list[metadata.EntryPoint]] = {}
    seen: set[tuple[str, str]] = set()
    for ep in metadata.entry_points(group=group):
        key = (ep.name, ep.value)
        if key in seen:  # the same distribution seen twice on sys.path (an editable install)
            continue
        seen.add(key)
        found.setdefault(ep.name, []).append(ep)
    return found


def kinds(group: str) -> list[str]:
    return sorted(_entries(group))


def load(group: str, name: str, what: str, noun: str = "kind") -> Any:
    """The object registered as NAME in GROUP. WHAT names the setting for the error message."""
    entries = _entries(group).get(name, [])
    if not entries:
        raise ConfigError(f"{what}: unknown {noun} {name!r}; known: {', '.join(kinds(group)) or '(none installed)'}")
    if len(entries) > 1:
        owners = ", ".join(f"{ep.value} ({ep.dist.name if ep.dist else '?'})" for ep in entries)
        raise ConfigError(f"{what}: {name!r} is registered by more than one package ({owners}); "
                          "uninstall one of them, or register the plugin under another name")
    return entries[0].load()
