"""ECA against a NumPy 1-D convolution over the pooled channels (Wang et al., CVPR 2020)."""


import numpy as np
import pytest
import tensorflow as tf

import keras

from _autodiff import gradients
from keras_attn import ECA, get_attention
from keras_attn.layers.eca import adaptive_kernel_size


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


def eca_reference(x, kernel):
    """Channels-last, float64: GAP over every spatial axis, zero-padded cross-correlation across
    channels, sigmoid, multiply."""
    x = np.asarray(x, np.float64)
    k = len(kernel)
    p = (k - 1) // 2
    axes = tuple(range(1, x.ndim - 1))
    y = x.mean(axis=axes)  # (B, C)
    c = y.shape[1]
    padded = np.pad(y, ((0, 0), (p, p)))
    conv = np.stack(
        [sum(kernel[j] * padded[:, i + j] for j in range(k)) for i in range(c)], axis=1
    )
    gate = _sigmoid(conv)
    return x * gate.reshape((gate.shape[0],) + (1,) * len(axes) + (c,))


def _input(shape=(2, 6, 6, 16), seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) + rng.normal(size=shape[-1]) * 2.0
    return (x * scale).astype("float32")


# ECA-Net Eq. 12, k = |log2(C) / gamma + b / gamma|_odd with gamma = 2, b = 1, worked by hand:
# C = 64: 3.5 -> 3; 128: 4.0 -> 5; 256: 4.5 -> 5; 512: 5.0 -> 5; 1024: 5.5 -> 5; 2048: 6.0 -> 7.
@pytest.mark.parametrize(
    "channels,k", [(64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)]
)
def test_adaptive_kernel_size(channels, k):
    assert adaptive_kernel_size(channels) == k
    layer = ECA()
    layer.build((None, 2, 2, channels))
    assert layer.effective_kernel_size == k
    assert layer.kernel.shape == (k,)
    assert layer.count_params() == k


# Other gamma, b, by hand: (gamma=1, b=0) C=8: 3 -> 3, C=16: 4 -> 5, C=1: 0 -> 1;
# (gamma=3, b=2) C=16: 2 -> 3, C=1280: (10.32 + 2) / 3 = 4.1 -> 5, C=2: 1 -> 1.
@pytest.mark.parametrize(
    "channels,gamma,b,k",
    [(8, 1, 0, 3), (16, 1, 0, 5), (1, 1, 0, 1), (16, 3, 2, 3), (1280, 3, 2, 5), (2, 3, 2, 1)],
)
def test_adaptive_kernel_size_other_gamma_b(channels, gamma, b, k):
    assert adaptive_kernel_size(channels, gamma, b) == k


def test_initial_kernel_like_torch_conv1d():
    layer = ECA(kernel_size=9)
    layer.build((None, 4, 4, 32))
    assert np.all(np.abs(np.asarray(layer.kernel)) <= 1 / 3)


@pytest.mark.parametrize(
    "channels,kernel_size", [(16, None), (16, 5), (4, 5), (3, 1), (32, 7)]
)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_reference(channels, kernel_size, data_format):
    x = _input((2, 6, 5, channels))
    layer = ECA(kernel_size=kernel_size, data_format=data_format)
    layer_x = x if data_format == "channels_last" else np.transpose(x, (0, 3, 1, 2))
    layer.build(layer_x.shape)
    kernel = np.random.default_rng(1).normal(size=layer.kernel.shape).astype("float32")
    layer.kernel.assign(kernel)
    y = np.asarray(layer(layer_x))
    if data_format == "channels_first":
        y = np.transpose(y, (0, 2, 3, 1))
    np.testing.assert_allclose(y, eca_reference(x, kernel.astype(np.float64)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 16, 8), (2, 3, 4, 4, 8)], ids=["1d", "3d"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_reference_other_ranks(shape, data_format):
    # 1-D and 3-D maps: GAP over every spatial axis, the same conv across channels.
    x = _input(shape)
    layer = ECA(kernel_size=3, data_format=data_format)
    layer_x = x if data_format == "channels_last" else np.moveaxis(x, -1, 1)
    layer.build(layer_x.shape)
    kernel = np.random.default_rng(1).normal(size=layer.kernel.shape).astype("float32")
    layer.kernel.assign(kernel)
    y = np.asarray(layer(layer_x))
    if data_format == "channels_first":
        y = np.moveaxis(y, 1, -1)
    np.testing.assert_allclose(y, eca_reference(x, kernel.astype(np.float64)), rtol=1e-5, atol=1e-5)


def test_kernel_direction_is_cross_correlation():
    # Kernel (0, 0, 1): channel c reads the pooled value of channel c + 1 (0 past the end).
    x = np.broadcast_to(np.arange(1, 5, dtype="float32"), (1, 2, 2, 4)).copy()
    layer = ECA(kernel_size=3)
    layer.build(x.shape)
    layer.kernel.assign(np.array([0.0, 0.0, 1.0], "float32"))
    gate = np.asarray(layer(x))[0, 0, 0] / x[0, 0, 0]
    np.testing.assert_allclose(gate, _sigmoid(np.array([2.0, 3.0, 4.0, 0.0])), rtol=1e-6)


def test_bad_arguments():
    for kernel_size in [2, 4, 0, -3]:
        with pytest.raises(ValueError, match=rf"`kernel_size` must be .*got {kernel_size}"):
            ECA(kernel_size=kernel_size)
    for kwargs, match in [
        ({"kernel_size": 3.0}, r"`kernel_size` must be an integer.*; got 3.0"),
        ({"kernel_size": "3"}, r"`kernel_size` must be an integer"),
        ({"gamma": 0}, r"`gamma` must be a number > 0.0; got 0"),
        ({"b": "one"}, r"`b` must be a number"),
        ({"data_format": "channels_middle"}, r"`data_format` must be one of"),
    ]:
        with pytest.raises(ValueError, match=match):
            ECA(**kwargs)


def test_not_4d_input():
    with pytest.raises(ValueError, match="4-D"):
        ECA()(np.zeros((2, 16), "float32"))


def test_registry_and_config():
    layer = get_attention("eca", kernel_size=5)
    assert isinstance(layer, ECA)
    config = layer.get_config()
    assert config["kernel_size"] == 5 and config["gamma"] == 2 and config["b"] == 1
    assert ECA.from_config(config).get_config() == config
    assert ECA().get_config()["kernel_size"] is None


def test_gradient_reaches_kernel():
    x = _input()
    layer = ECA()
    layer.build(x.shape)
    upstream = np.random.default_rng(2).normal(size=x.shape).astype("float32")
    (grad,) = gradients(lambda: keras.ops.sum(layer(x) * upstream), layer.trainable_variables)
    assert grad is not None and np.all(np.isfinite(grad)) and np.any(np.asarray(grad) != 0)


def test_mixed_precision_large_inputs(policy):
    compute = keras.mixed_precision.global_policy().compute_dtype
    x = np.clip(_input((2, 6, 6, 32), scale=1e3), -1e3, 1e3)
    layer = ECA()
    layer.build(x.shape)
    kernel = np.asarray(layer.kernel, np.float64)
    assert layer.kernel.dtype == "float32"
    y = layer(x)
    assert y.dtype == compute
    y = np.asarray(tf.cast(y, tf.float32))
    assert np.all(np.isfinite(y))
    x_seen = np.asarray(tf.cast(tf.cast(x, compute), tf.float32))
    err = np.abs(y - eca_reference(x_seen, kernel)) / (np.abs(x_seen) + 1.0)
    assert np.max(err) < {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2}[compute]
