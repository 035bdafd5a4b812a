"""Reports: what a session found, for people. Read-only over the journal and git (`finalize`
writes its own branch; `review --program --apply` writes program.md).

- `gains`: what a session gained, the raw figure beside the drift-aware one;
- `review`: the morning review, `show`, `diff`; `view`: what the live view shows; `live`: the
  live view of `run` and `watch`;
- `plot`, `html`: progress.png and report.html; `references`: the best's reference runs;
- `finalize`: the clean branch of kept changes;
- `program_review`: `review --program`, the next program.md drafted from the record.

May import: proposers (the research log, for `program_review`), trial, verdict, harness,
journal, config, git and the bottom modules.
"""
