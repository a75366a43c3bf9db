"""How long the rest of a search will take, from the runs it has timed so far.

The ``[plan]`` line projects the whole job, not only the current stage: the runs left in this
stage, the runs the later stages may train, the final stage (the test evaluations and the kept
model's retraining on the whole training split) and the costs. Every part is counted in training
steps and timed by the runs this process has trained (their median step time and their
overhead per run: building, tracing, validating, saving), so a slower attention or a loaded
machine moves the projection as it moves the runs.

Pure: no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

#: Seconds the costs stage takes per configuration (a build, a FLOP count and a few timed steps;
#: 40 s for 5 configurations in the default run).
COST_SECONDS_PER_CONFIGURATION = 8.0


@dataclasses.dataclass(frozen=True)
class Ahead:
    """What the search has still to do after the current stage (set by the pipeline).

    Attributes:
        later_runs: runs the later stages may train (an upper bound: some will be reused).
        final_steps: training steps of the kept model's retraining (0: none).
        test_runs: search runs the final stage evaluates on the test split.
        test_batches: batches of one test evaluation.
        configurations: configurations whose cost will be measured.
        started: ``time.time()`` when the search started (for the total).
    """

    later_runs: int = 0
    final_steps: int = 0
    test_runs: int = 0
    test_batches: int = 0
    configurations: int = 0
    started: float | None = None


def run_timing(records):
    """``(seconds per step, overhead seconds per run)`` of ``records`` (stored runs with
    timings), or None without one; the overhead is a run's wall time beyond its steps."""
    steps = [r.timings.get("median_step_seconds") for r in records]
    steps = [s for s in steps if s]
    if not steps:
        return None
    step = statistics.median(steps)
    overheads = [r.timings["wall_seconds"] - step * (r.timings.get("train_steps") or 0)
                 for r in records if r.timings.get("wall_seconds") is not None]
    return step, max(0.0, statistics.median(overheads)) if overheads else 0.0


def seconds_left(timing, runs_left, steps_per_run, ahead):
    """The projected seconds to the end of the job.

    Args:
        timing: :func:`run_timing`'s ``(step seconds, overhead per run)``.
        runs_left: runs left in the current stage.
        steps_per_run: training steps of one search run.
        ahead: an :class:`Ahead`.
    """
    step, overhead = timing
    run = step * steps_per_run + overhead
    # An evaluation batch costs about a third of a training step (forward only, no update).
    test = ahead.test_runs * (ahead.test_batches * step / 3.0 + 1.0)
    final = ahead.final_steps * step + (overhead if ahead.final_steps else 0.0)
    costs = ahead.configurations * COST_SECONDS_PER_CONFIGURATION
    return (runs_left + ahead.later_runs) * run + test + final + costs


def steps_per_epoch(images, batch_size):
    return math.ceil(images / batch_size) if images else 0
