"""The harness: the only package that starts user processes.

- `process`: one phase of a task (setup, run, evaluate) as a process group with a budget, its
  output parsed for metrics, its environment the task's contract;
- `sandbox`: bubblewrap around a run or an agent (read-only code, hidden state, no network);
- `guard`: the lock on the harness files, and the check that a candidate left them alone.

May import: config, git, errors, redact.
"""
