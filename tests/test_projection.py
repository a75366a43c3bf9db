"""search.projection by hand: a run's step time and overhead from the stored runs' timings, and
the seconds the rest of the job will take."""

from types import SimpleNamespace

import pytest

from search.projection import COST_SECONDS_PER_CONFIGURATION, Ahead, run_timing, seconds_left, \
    steps_per_epoch


def timed(step=None, wall=None, steps=None):
    timings = {"median_step_seconds": step, "wall_seconds": wall, "train_steps": steps}
    return SimpleNamespace(timings={k: v for k, v in timings.items() if v is not None})


def test_run_timing_is_the_median_step_and_the_median_overhead():
    records = [timed(0.1, 12.0, 100), timed(0.2, 25.0, 100), timed(0.3, 40.0, 100)]
    # Median step 0.2 s; overheads 12 - 20, 25 - 20, 40 - 20 = -8, 5, 20 s: median 5 s.
    step, overhead = run_timing(records)
    assert step == pytest.approx(0.2) and overhead == pytest.approx(5.0)


def test_run_timing_without_steps_or_walls():
    assert run_timing([]) is None
    assert run_timing([timed(None, 10.0, 5), timed(0.0, 10.0, 5)]) is None  # no step timed
    # No wall time: no overhead to tell.
    assert run_timing([timed(0.5)]) == (0.5, 0.0)
    # A run's overhead below its steps' time (a noisy median) is counted as none, not negative.
    assert run_timing([timed(0.5, 40.0, 100)]) == (0.5, 0.0)
    # Without its step count, a run's whole wall time is overhead; a run without a step time
    # still counts for the overhead (measured against the others' median step).
    assert run_timing([timed(0.5, 60.0, 100), timed(None, 7.0)]) == (0.5, pytest.approx(8.5))


def test_seconds_left_by_hand():
    ahead = Ahead(later_runs=2, final_steps=1000, test_runs=4, test_batches=30,
                  configurations=5)
    # A run: 0.2 s x 100 steps + 5 s = 25 s; (3 left + 2 later) x 25 = 125 s.
    # Tests: 4 x (30 batches x 0.2 / 3 + 1 s) = 12 s. Final: 1000 x 0.2 + 5 = 205 s.
    # Costs: 5 x 8 s = 40 s.
    assert COST_SECONDS_PER_CONFIGURATION == 8.0
    assert seconds_left((0.2, 5.0), 3, 100, ahead) == pytest.approx(125 + 12 + 205 + 40)
    # No retraining: no final steps and no overhead for it.
    no_final = Ahead(later_runs=2, test_runs=4, test_batches=30, configurations=5)
    assert seconds_left((0.2, 5.0), 3, 100, no_final) == pytest.approx(125 + 12 + 40)
    assert seconds_left((0.2, 5.0), 0, 100, Ahead()) == 0.0


@pytest.mark.parametrize("images, batch, steps", [(0, 64, 0), (None, 64, 0), (64, 64, 1),
                                                  (65, 64, 2), (10000, 128, 79)])
def test_steps_per_epoch_rounds_up(images, batch, steps):
    assert steps_per_epoch(images, batch) == steps
