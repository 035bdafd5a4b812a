"""The journal: every experiment and run, in SQLite (`store`), and results.tsv drawn from it
(`results`). The only package that writes either.

May import: config, git, errors, redact.
"""

from autoresearch.journal.store import Experiment, Journal, NoiseRecord

__all__ = ["Experiment", "Journal", "NoiseRecord"]
