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


def test_step_times_ratio_of_known_durations():
    def sleeper(seconds):
        return lambda: time.sleep(seconds)

    timed = step_times({"ref": sleeper(0.01), "double": sleeper(0.02)}, "ref", n_steps=3,
                       rounds=2, warmup=1)
    assert timed["double"]["ratio"] == pytest.approx(2.0, rel=0.25)
    assert timed["ref"]["ratio"] == 1.0 and timed["ref"]["spread"] == 0.0
    with pytest.raises(ValueError, match="'nope' is not one of ref"):
        step_times({"ref": sleeper(0)}, "nope")
    with pytest.raises(ValueError, match="'train' or 'inference'"):
        step_function(None, "predict", None)
