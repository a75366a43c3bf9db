"""SimAM against the paper's closed form (Yang et al., ICML 2021, Eq. 5-6)."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras_attn import SimAM, get_attention

from _autodiff import input_gradient


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


def simam_reference(x, e_lambda=1e-4):
    """Channels-last, float64: n = prod(spatial) - 1, d = (x - mean)^2, v = sum(d)/n,
    x * sigmoid(d/(4(v+l)) + .5), the statistics over all spatial axes (1, ..., ndim - 2)."""
    x = np.asarray(x, np.float64)
    axes = tuple(range(1, x.ndim - 1))
    n = int(np.prod([x.shape[a] for a in axes])) - 1
    d = (x - x.mean(axis=axes, keepdims=True)) ** 2
    v = d.sum(axis=axes, keepdims=True) / n
    return x * _sigmoid(d / (4.0 * (v + e_lambda)) + 0.5)


def _input(shape=(2, 8, 8, 16), seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) + rng.normal(size=shape[-1])
    return (x * scale).astype("float32")


@pytest.mark.parametrize("e_lambda", [1e-4, 0.5])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_paper_formula(e_lambda, data_format):
    x = _input()
    layer = SimAM(e_lambda=e_lambda, data_format=data_format)
    if data_format == "channels_last":
        y = np.asarray(layer(x))
    else:
        y = np.transpose(np.asarray(layer(np.transpose(x, (0, 3, 1, 2)))), (0, 2, 3, 1))
    np.testing.assert_allclose(y, simam_reference(x, e_lambda), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 16, 8), (2, 3, 4, 4, 8)], ids=["1d", "3d"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_paper_formula_other_ranks(shape, data_format):
    # 1-D and 3-D maps: mean and variance over every spatial axis, n = prod(spatial) - 1.
    x = _input(shape)
    layer = SimAM(e_lambda=0.5, data_format=data_format)
    if data_format == "channels_last":
        y = np.asarray(layer(x))
    else:
        y = np.moveaxis(np.asarray(layer(np.moveaxis(x, -1, 1))), 1, -1)
    np.testing.assert_allclose(y, simam_reference(x, 0.5), rtol=1e-5, atol=1e-5)


def test_single_step_1d_map_is_finite():
    x = _input((2, 1, 16))
    np.testing.assert_allclose(np.asarray(SimAM()(x)), x * _sigmoid(0.5), rtol=1e-6)


def test_non_square_map():
    x = _input((3, 5, 2, 4))
    np.testing.assert_allclose(np.asarray(SimAM()(x)), simam_reference(x), rtol=1e-5, atol=1e-5)


def test_one_by_one_map_is_finite():
    # n = H*W - 1 = 0: the official code divides by zero; every d is 0 so the gate is sigmoid(.5).
    x = _input((2, 1, 1, 16))
    y = np.asarray(SimAM()(x))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, x * _sigmoid(0.5), rtol=1e-6)


def test_constant_map_with_zero_lambda_is_finite():
    x = np.full((1, 4, 4, 3), 7.0, "float32")
    y = np.asarray(SimAM(e_lambda=0.0)(x))
    np.testing.assert_allclose(y, x * _sigmoid(0.5), rtol=1e-6)


def test_no_variables():
    layer = SimAM()
    layer(_input())
    assert layer.weights == [] and layer.count_params() == 0


def test_bad_e_lambda():
    for e_lambda in [-1e-4, -1]:
        with pytest.raises(ValueError, match=r"`e_lambda` must be a number >= 0.0; got -"):
            SimAM(e_lambda=e_lambda)
    for e_lambda in ["small", None, True]:
        with pytest.raises(ValueError, match=r"`e_lambda` must be a number"):
            SimAM(e_lambda=e_lambda)


def test_bad_input_rank():
    # 3-D, 4-D and 5-D inputs are valid (1-D, 2-D, 3-D maps); the message names the rank.
    with pytest.raises(ValueError, match="3-D, 4-D or 5-D input.*got a 6-D input"):
        SimAM()(np.zeros((2, 2, 8, 8, 4, 3), "float32"))


def test_registry_and_config():
    layer = get_attention("simam", e_lambda=0.01, data_format="channels_first")
    assert isinstance(layer, SimAM)
    config = layer.get_config()
    assert config["e_lambda"] == 0.01 and config["data_format"] == "channels_first"
    assert SimAM.from_config(config).get_config() == config


def test_mixed_precision_large_inputs(policy):
    compute = keras.mixed_precision.global_policy().compute_dtype
    x = np.clip(_input(scale=1e3), -1e3, 1e3)
    x[..., 3] = 1e3  # constant channel: v = 0
    x[:, 0, 0, 4] = 1e3  # one outlier: (x - mean)^2 ~ 1e6 overflows float16 if formed
    y = SimAM()(x)
    assert y.dtype == compute
    y = np.asarray(tf.cast(y, tf.float32))
    assert np.all(np.isfinite(y))
    x_seen = np.asarray(tf.cast(tf.cast(x, compute), tf.float32))
    err = np.abs(y - simam_reference(x_seen)) / (np.abs(x_seen) + 1.0)
    assert np.max(err) < {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2}[compute], np.max(err)


def _simam_autodiff(x, e_lambda, axes):
    """The paper's Eq. 5-6 written plainly in keras.ops, for its automatic gradient."""
    hw = 1
    for a in axes:
        hw *= x.shape[a]
    n = max(hw - 1, 1)
    d = keras.ops.square(x - keras.ops.mean(x, axis=axes, keepdims=True))
    v = keras.ops.sum(d, axis=axes, keepdims=True) / n
    return x * keras.ops.sigmoid(d / (4.0 * (v + e_lambda)) + 0.5)


@pytest.mark.parametrize(
    "shape", [(2, 8, 8, 16), (2, 5, 3, 4), (3, 1, 1, 8), (2, 12, 6), (2, 3, 4, 2, 6)]
)
@pytest.mark.parametrize("e_lambda", [1e-4, 0.5])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_closed_form_gradient_equals_automatic_differentiation(shape, e_lambda, data_format):
    # The layer's backward is written by hand (keras.ops.custom_gradient): it must be the
    # gradient of Eq. 5-6, through the channel mean and variance too, at every rank.
    x = _input(shape, scale=3.0)
    rank = len(shape)
    if data_format == "channels_first":
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    axes = tuple(range(1, rank - 1)) if data_format == "channels_last" else tuple(range(2, rank))
    upstream = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    layer = SimAM(e_lambda=e_lambda, data_format=data_format)
    got = input_gradient(layer, x, upstream)
    want = input_gradient(lambda t: _simam_autodiff(t, e_lambda, axes), x, upstream)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * (1 + np.max(np.abs(want))))


def test_closed_form_gradient_on_a_constant_channel_and_zero_lambda():
    # v = 0 and lambda = 0: the scale is floored, every z is 0, and the gradient is g * sigmoid(.5)
    # on that channel (the autodiff of the unfloored formula would be NaN there).
    x = _input((2, 4, 4, 3))
    x[:, :, :, 1] = 2.5
    upstream = np.random.default_rng(2).normal(size=x.shape).astype("float32")
    got = input_gradient(SimAM(e_lambda=0.0), x, upstream)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[..., 1], upstream[..., 1] / (1 + np.exp(-0.5)), rtol=1e-5)


def test_closed_form_gradient_under_mixed_float16(policy):
    # Inputs up to 1e3: d^2 would overflow float16; the hand-written backward squares z instead.
    x = np.clip(_input((2, 6, 6, 8), scale=1e3), -1e3, 1e3)
    upstream = np.random.default_rng(3).normal(size=x.shape).astype("float32")
    got = input_gradient(SimAM(), x, upstream)
    keras.mixed_precision.set_global_policy("float32")
    want = input_gradient(SimAM(), x, upstream)
    assert np.all(np.isfinite(got))
    tol = {"float32": 1e-6, "mixed_float16": 2e-2, "mixed_bfloat16": 1e-1}[policy]
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * (1 + np.max(np.abs(want))))


def test_non_finite_e_lambda_rejected():
    for e_lambda in [float("inf"), float("nan"), np.float32("inf")]:
        with pytest.raises(ValueError, match=r"`e_lambda` must be a finite number >= 0.0; got"):
            SimAM(e_lambda=e_lambda)
    with pytest.raises(ValueError, match=r"got inf\.$"):
        SimAM(e_lambda=float("inf"))
