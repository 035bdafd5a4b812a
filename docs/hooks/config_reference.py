"""MkDocs hook: the configuration reference, rendered from the config schema at build time.

mkdocs.yml lists this file under `hooks:`. A page holding the marker below gets it replaced
by `autoresearch.config.reference.markdown()`, so the page shows what the code checks.
"""

from __future__ import annotations

from typing import Any

from autoresearch.config import reference

MARKER = "<!-- config-reference -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker with the generated reference; other pages pass through unchanged."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference.markdown())
