"""Reports: what a session found, for people. Read-only over the journal and git.

- `gains`: what a session gained, the raw figure beside the drift-aware one;
- `review`: the morning review, `show`, `diff`; `view`: what the live view shows; `live`: the
  live view of `run` and `watch`;
- `plot`, `html`: progress.png and report.html; `references`: the best's reference runs;
- `finalize`: the clean branch of kept changes.

May import: trial, verdict, harness, journal, config, git and the bottom modules.
"""
