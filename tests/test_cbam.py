"""CBAM: NumPy reference (direct conv loop), layouts, precision, serialization, errors."""

import itertools

import numpy as np
import pytest

import keras

from _autodiff import gradients

from keras_attn import CBAM, get_attention


def _sigmoid(v):
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def conv_same(m, kernel):
    """'same' k (x k (x k)) convolution of a channels-last 1-D, 2-D or 3-D map, one output
    channel, by a direct loop over the kernel offsets."""
    k = kernel.shape[0]
    pad = k // 2
    spatial = m.shape[1:-1]
    mp = np.pad(m, ((0, 0),) + ((pad, pad),) * len(spatial) + ((0, 0),))
    out = np.zeros(m.shape[:-1])
    for offset in itertools.product(range(k), repeat=len(spatial)):
        window = (slice(None),) + tuple(slice(o, o + n) for o, n in zip(offset, spatial))
        out += np.einsum("...c,c->...", mp[window], kernel[offset][:, 0])
    return out[..., None]


def cbam_reference(x, weights, eps=1e-5, channels_first=False):
    """Official-code CBAM on a channels-last copy; weights as ``layer.get_weights()``."""
    w1, b1, w2, b2, kernel, gamma, beta, mean, var = weights
    if channels_first:
        x = np.moveaxis(x, 1, -1)
    axes = tuple(range(1, x.ndim - 1))  # every spatial axis (1-D, 2-D or 3-D maps)
    mlp = lambda v: np.maximum(v @ w1 + b1, 0.0) @ w2 + b2  # noqa: E731
    mc = _sigmoid(mlp(x.mean(axis=axes)) + mlp(x.max(axis=axes)))
    x1 = x * mc.reshape((mc.shape[0],) + (1,) * len(axes) + (mc.shape[1],))
    compressed = np.stack([x1.max(axis=-1), x1.mean(axis=-1)], axis=-1)
    z = conv_same(compressed, kernel)
    ms = _sigmoid((z - mean) / np.sqrt(var + eps) * gamma + beta)
    y = x1 * ms
    return np.moveaxis(y, -1, 1) if channels_first else y


def _randomise(layer, seed=1):
    rng = np.random.default_rng(seed)
    new = [rng.normal(0.0, 0.5, w.shape).astype("float32") for w in layer.get_weights()]
    new[-1] = np.abs(new[-1]) + 0.5  # moving variance > 0
    layer.set_weights(new)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kernel_size", [7, 3])
def test_matches_numpy_reference(data_format, kernel_size):
    rng = np.random.default_rng(0)
    shape = (2, 8, 8, 32) if data_format == "channels_last" else (2, 32, 8, 8)
    x = rng.normal(size=shape).astype("float32")
    layer = CBAM(reduction=4, kernel_size=kernel_size, data_format=data_format)
    layer.build(shape)
    _randomise(layer)
    y = keras.ops.convert_to_numpy(layer(x, training=False))
    ref = cbam_reference(x, layer.get_weights(), channels_first=data_format == "channels_first")
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "shape,kernel_size",
    [((2, 16, 32), 7), ((2, 16, 32), 3), ((2, 3, 4, 4, 32), 3), ((2, 3, 4, 4, 32), 7)],
    ids=["1d-k7", "1d-k3", "3d-k3", "3d-k7"],
)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_numpy_reference_other_ranks(shape, kernel_size, data_format):
    # 1-D maps: Conv1D of kernel k on the (max, mean) map; 3-D maps: Conv3D of k x k x k.
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    if data_format == "channels_first":
        x = np.moveaxis(x, -1, 1)
    layer = CBAM(reduction=4, kernel_size=kernel_size, data_format=data_format)
    layer.build(x.shape)
    n_spatial = len(shape) - 2
    assert layer.spatial_conv.kernel.shape == (kernel_size,) * n_spatial + (2, 1)
    _randomise(layer)
    y = keras.ops.convert_to_numpy(layer(x, training=False))
    ref = cbam_reference(x, layer.get_weights(), channels_first=data_format == "channels_first")
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_parameter_count_other_ranks():
    mlp = 64 * 4 + 4 + 4 * 64 + 64
    for shape, conv in [((None, 8, 64), 7 * 2), ((None, 4, 4, 4, 64), 7 * 7 * 7 * 2)]:
        layer = CBAM()
        layer.build(shape)
        assert layer.count_params() == mlp + conv + 4


def test_training_mode_uses_batch_statistics():
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 16)).astype("float32")
    layer = CBAM(reduction=4)
    layer.build(x.shape)
    _randomise(layer)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    w = layer.get_weights()
    # Reference with the batch mean / biased variance of the conv output in place of moving stats.
    w1, b1, w2, b2, kernel, gamma, beta = w[:7]
    mlp = lambda v: np.maximum(v @ w1 + b1, 0.0) @ w2 + b2  # noqa: E731
    x1 = x * _sigmoid(mlp(x.mean(axis=(1, 2))) + mlp(x.max(axis=(1, 2))))[:, None, None, :]
    z = conv_same(np.stack([x1.max(-1), x1.mean(-1)], -1), kernel)
    ms = _sigmoid((z - z.mean()) / np.sqrt(z.var() + 1e-5) * gamma + beta)
    np.testing.assert_allclose(y, x1 * ms, rtol=1e-4, atol=1e-5)


def test_parameter_count():
    layer = CBAM()  # r = 16, k = 7
    layer.build((None, 8, 8, 64))
    hidden = 4
    mlp = 64 * hidden + hidden + hidden * 64 + 64
    assert layer.count_params() == mlp + 7 * 7 * 2 + 4  # + BN gamma, beta, moving mean, var
    assert sum(np.prod(w.shape) for w in layer.trainable_weights) == mlp + 98 + 2


def test_registry_name():
    assert isinstance(get_attention("cbam", kernel_size=3), CBAM)


def test_mixed_precision(policy):
    rng = np.random.default_rng(0)
    x = (rng.uniform(-1.0, 1.0, size=(2, 8, 8, 64)) * 1e3).astype("float32")
    layer = CBAM(reduction=4)
    for training in (True, False):
        y = layer(x, training=training)
        assert y.dtype == keras.mixed_precision.global_policy().compute_dtype
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))))
    # Near a saturated sigmoid at 1e3 a half-precision rounding of the conv input moves the gate
    # visibly, so the value check uses unit-scale inputs.
    x = rng.normal(size=(2, 8, 8, 64)).astype("float32")
    y = keras.ops.convert_to_numpy(keras.ops.cast(layer(x, training=False), "float32"))
    tol = {"float32": 1e-5, "mixed_float16": 1e-2, "mixed_bfloat16": 5e-2}[policy]
    np.testing.assert_allclose(y, cbam_reference(x, layer.get_weights()), rtol=tol, atol=tol)


def test_gradients_reach_every_variable():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    layer = CBAM(reduction=4)
    layer.build(x.shape)
    grads = gradients(
        lambda: keras.ops.sum(keras.ops.square(layer(x, training=True))),
        layer.trainable_variables,
    )
    assert len(grads) == 7
    assert all(g is not None and np.any(g != 0) for g in grads)


def test_config_round_trip_and_save_load(tmp_path):
    layer = CBAM(reduction=4, kernel_size=5, data_format="channels_first")
    assert CBAM.from_config(layer.get_config()).get_config() == layer.get_config()

    inputs = keras.Input((8, 8, 16))
    model = keras.Model(inputs, CBAM(reduction=4)(inputs))
    _randomise(model.layers[1])
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    model.save(tmp_path / "cbam.keras")
    loaded = keras.saving.load_model(tmp_path / "cbam.keras", safe_mode=True)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"reduction": 0}, "reduction.*>= 1.*0"),
        ({"reduction": -4}, "reduction.*-4"),
        ({"kernel_size": 4}, "kernel_size.*odd.*4"),
        ({"kernel_size": 0}, "kernel_size.*0"),
        ({"data_format": "NHWC"}, "data_format"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        CBAM(**kwargs)


def test_bad_input_rank():
    with pytest.raises(ValueError, match="3-D, 4-D or 5-D input.*got a 6-D input"):
        CBAM()(np.zeros((2, 2, 8, 8, 8, 4), "float32"))
