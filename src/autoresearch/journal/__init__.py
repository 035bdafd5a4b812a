"""The journal: every experiment and run, in SQLite (`store`: the queries; `schema`: the file, its
schema and write transactions; `records`: the experiment and noise records and their rows), and
results.tsv drawn from it (`results`). The only package that writes either.

May import: config, git, errors, redact.
"""

from autoresearch.journal.records import Experiment, NoiseRecord
from autoresearch.journal.store import Journal

__all__ = ["Experiment", "Journal", "NoiseRecord"]
