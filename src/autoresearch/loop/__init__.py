"""The autonomous loop: proposals on 1..N slots, each decided by the trial lifecycle.

- `driver`: `run_loop` (the sequential loop is the one-slot case), the event loop over the slots;
- `experiment`: one slot's experiment as a generator (propose or replay, guard, runs, settle);
- `parallel`: a stale winner replayed onto a newer best;
- `policy`: when to stop (budget, target, plateau) and what the brief may say.

May import: executors, proposers, trial and everything below them.
"""

from autoresearch.loop.driver import Loop, LoopResult, run_loop

__all__ = ["Loop", "LoopResult", "run_loop"]
