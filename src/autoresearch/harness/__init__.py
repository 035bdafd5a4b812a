"""The harness: the only package that starts user processes.

- `process`: one phase of a task (setup, run, evaluate) as a process group with a budget, and
  the end of process groups (a run's, a leftover agent's);
- `split`: the evaluate phase as a scorer and its model processes, joined only by sockets;
- `output`: a run's capped log and the metric lines parsed from it;
- `env`: the environment a run gets (the task's contract) or a setup/agent inherits;
- `sandbox`: bubblewrap around a run or an agent (read-only code, hidden state, no network);
- `guard`: the lock on the harness files, and the check that a candidate left them alone.
- `imports`: the static check that the scorer imports no editable file.

May import: config, git, errors, redact.
"""
