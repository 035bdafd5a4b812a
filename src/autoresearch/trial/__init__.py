"""The experiment lifecycle: one candidate from the journal's `running` record to its verdict
and the folder back at best. `lifecycle`'s docstring is the map.

- `session`: the open task (config, journal, workspace, lock, the command's lock file);
- `lifecycle`: `Trial` (begin, commit, run, settle), `experiment`, `baseline`, `measure_noise`;
- `measure`: one measurement of a commit (run phase, evaluate phase) in a fresh export;
- `branch`: the run branch, epochs, the folder reset to best, `repair` after a kill;
- `reference`: the best's reference runs, re-measured when they drift;
- `notes`: the record kept beside each commit, and the journal rebuilt from those notes;
- `scratch`: the copies of the task folder that agents work in.

May import: verdict, harness, journal, config, git, errors, redact.
"""
