"""The task's configuration: autoresearch.toml read, checked and typed. May import: autoresearch.errors only.

`schema` declares the sections and keys (types, defaults, docs, rules), `validate` checks a
document against them, `task` finds, reads and caches the file, and `reference` renders the
schema as the configuration reference of the docs.
"""

from autoresearch.config.task import CONFIG_NAME, STATE_DIR, ConfigError, TaskConfig, find_root, load_config

__all__ = ["CONFIG_NAME", "STATE_DIR", "ConfigError", "TaskConfig", "find_root", "load_config"]
