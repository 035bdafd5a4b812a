"""The native experiment, without click: what `autoresearch experiment -m ...` runs.

An agent calls this hundreds of times a night, so everything it does not need stays unloaded
(click, rich, the loop, the report). `experiment.experiment_cmd` (the click face, for `--help`
and every other spelling) calls the same function.
"""

from __future__ import annotations

import signal
import sys

from ._common import exit_code_for, guarded, open_session, print_experiment, refuse_inside_proposal, warn_unsandboxed


@guarded
def native_experiment(description: str, as_json: bool) -> None:
    """Guard, commit, run, measure, decide, record; then keep or reset to best. Exits with the
    experiment's code (errors.py)."""
    from ..branch import repair
    from ..trial import experiment

    # SIGTERM is Ctrl-C, as for `run`: the run is stopped, the attempt recorded, the folder back
    # at best (an agent's tool timeout, or `autoresearch serve` passing on its caller's end).
    signal.signal(signal.SIGTERM, _interrupt)
    refuse_inside_proposal("experiment")
    with open_session() as s:
        s.acquire("experiment")
        warn_unsandboxed(s)
        repair(s)
        exp = experiment(s, description, refuse_no_change=True)
        print_experiment(exp, s.config.metric.name, as_json)
        sys.exit(exit_code_for(exp))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
