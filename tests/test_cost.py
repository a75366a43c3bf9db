"""keras_attn.cost: FLOP counts against hand counts, the step-time method on known sleeps."""

import time

import keras
import pytest

from keras_attn.cost import forward_flops, step_function, step_times


def test_forward_flops_of_a_conv_and_a_dense_layer_match_a_hand_count():
    # Conv2D 3x3, 1 -> 4 channels, 8x8, same padding: 8*8*4 outputs x 9 multiply-adds = 2,304
    # MACs = 4,608 FLOPs, + 256 bias adds; Dense 256 -> 3: 768 MACs = 1,536 FLOPs + 3 bias adds.
    x = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same")(x)
    y = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    flops = forward_flops(keras.Model(x, y))
    assert flops.reason == "" and flops.total == 4608 + 256 + 1536 + 3


def test_ops_without_a_flop_statistic_are_listed_not_hidden():
    x = keras.Input((4, 4, 2))
    y = keras.layers.Activation("sigmoid")(keras.layers.Conv2D(2, 1)(x))
    flops = forward_flops(keras.Model(x, y))
    assert flops.total > 0 and "Sigmoid" in flops.uncounted
    # Conv2D and BiasAdd have a FLOP statistic: counted, so not listed.
    assert not {"Conv2D", "BiasAdd"} & set(flops.uncounted)


def test_step_times_ratio_of_known_durations():
    def sleeper(seconds):
        return lambda: time.sleep(seconds)

    timed = step_times({"ref": sleeper(0.01), "double": sleeper(0.02)}, "ref", n_steps=3,
                       rounds=2, warmup=1)
    assert timed["double"]["ratio"] == pytest.approx(2.0, rel=0.25)
    assert timed["ref"]["ratio"] == 1.0 and timed["ref"]["spread"] == 0.0
    low, high = timed["double"]["ci95"]
    assert low <= high and low < 2.5 and high > 1.6
    assert timed["ref"]["ci95"] == pytest.approx((1.0, 1.0))
    with pytest.raises(ValueError, match="'nope' is not one of ref"):
        step_times({"ref": sleeper(0)}, "nope")
    with pytest.raises(ValueError, match="'train' or 'inference'"):
        step_function(None, "predict", None)


def test_step_times_cpu_time_counts_work_not_waiting():
    # Twice the arithmetic costs twice the CPU time; a sleep of the reference's wall time costs
    # next to none: the CPU-time ratio tells work from waiting (e.g. for another process).
    def work(n):
        return lambda: sum(i * i for i in range(n))

    def sleep_like(fn):
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        return lambda: time.sleep(seconds)

    steps = {"ref": work(20_000), "double": work(40_000)}
    steps["sleeper"] = sleep_like(steps["ref"])
    timed = step_times(steps, "ref", n_steps=5, rounds=3, warmup=1)
    assert timed["double"]["cpu_ratio"] == pytest.approx(2.0, rel=0.3)
    low, high = timed["double"]["cpu_ci95"]
    assert low <= timed["double"]["cpu_ratio"] * 1.3 and high >= timed["double"]["cpu_ratio"] / 1.3
    assert timed["sleeper"]["cpu_ratio"] < 0.3
    assert timed["ref"]["cpu_ratio"] == 1.0 and timed["ref"]["cpu_seconds"] > 0


def test_pareto_front_of_made_up_rows():
    from search.costs import pareto_front

    # a dominates d (higher gain, lower cost); b and c tie exactly (both stay); e has no cost.
    front = pareto_front({"base": (0.0, 0.0), "a": (0.02, 10), "b": (0.01, 5), "c": (0.01, 5),
                          "d": (0.015, 12), "e": (0.05, None), "f": (-0.01, 0.0)})
    assert front == {"base": True, "a": True, "b": True, "c": True, "d": False, "e": None,
                     "f": False}
    # One row better and cheaper than all: the front is that row alone.
    assert pareto_front({"x": (0.03, 1.0), "y": (0.01, 1.2), "z": (0.0, 1.5)}) == {
        "x": True, "y": False, "z": False}


def test_max_cost_parsing_names_the_measures():
    from search.costs import parse_max_cost

    assert parse_max_cost("train_step=1.10") == ("train_step", 1.10)
    assert parse_max_cost("params_added=5000") == ("params_added", 5000.0)
    with pytest.raises(ValueError, match="params_added, flops_added, train_step, inference_step"):
        parse_max_cost("latency=3")
    with pytest.raises(ValueError, match="finite"):
        parse_max_cost("train_step=inf")


def test_best_under_a_cost_budget_skips_the_expensive_and_the_unmeasured():
    from search.report import best_and_baseline

    rows = [{"attention": "sb", "repeats": 2, "rank": 1, "train_step": 1.3},
            {"attention": "sa", "repeats": 2, "rank": 2, "train_step": None},
            {"attention": "simam", "repeats": 2, "rank": 3, "train_step": 1.05},
            {"attention": "none", "repeats": 2, "rank": 4, "train_step": 1.0}]
    assert best_and_baseline(rows)[0]["attention"] == "sb"
    assert best_and_baseline(rows, [("train_step", 1.1)])[0]["attention"] == "simam"
    assert best_and_baseline(rows, [("train_step", 1.01)])[0] is None
