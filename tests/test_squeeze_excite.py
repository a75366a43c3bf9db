"""SqueezeExcite: NumPy reference, parameters, layouts, precision, serialization, errors."""

import numpy as np
import pytest

import keras

from _autodiff import gradients

from keras_attn import SqueezeExcite, get_attention


def _sigmoid(v):
    return 0.5 * (1.0 + np.tanh(0.5 * v))  # overflow-free logistic


def se_reference(x, weights, channels_first=False):
    """SE from the formula on a channels-last copy; weights = [W1, b1, W2, b2]."""
    w1, b1, w2, b2 = weights
    if channels_first:
        x = np.moveaxis(x, 1, -1)
    axes = tuple(range(1, x.ndim - 1))  # every spatial axis (1-D, 2-D or 3-D maps)
    g = x.mean(axis=axes)
    s = _sigmoid(np.maximum(g @ w1 + b1, 0.0) @ w2 + b2)
    y = x * s.reshape((s.shape[0],) + (1,) * len(axes) + (s.shape[1],))
    return np.moveaxis(y, -1, 1) if channels_first else y


def _randomise(layer, seed=1):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0.0, 0.5, w.shape).astype("float32") for w in layer.weights])


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_numpy_reference(data_format):
    rng = np.random.default_rng(0)
    shape = (2, 8, 8, 32) if data_format == "channels_last" else (2, 32, 8, 8)
    x = rng.normal(size=shape).astype("float32")
    layer = SqueezeExcite(reduction=4, data_format=data_format)
    layer.build(shape)
    _randomise(layer)
    y = keras.ops.convert_to_numpy(layer(x))
    ref = se_reference(x, layer.get_weights(), channels_first=data_format == "channels_first")
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 16, 32), (2, 3, 4, 4, 32)], ids=["1d", "3d"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_numpy_reference_other_ranks(shape, data_format):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    if data_format == "channels_first":
        x = np.moveaxis(x, -1, 1)
    layer = SqueezeExcite(reduction=4, data_format=data_format)
    layer.build(x.shape)
    _randomise(layer)
    y = keras.ops.convert_to_numpy(layer(x))
    ref = se_reference(x, layer.get_weights(), channels_first=data_format == "channels_first")
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_parameter_count_and_variables():
    layer = SqueezeExcite()  # r = 16
    layer.build((None, 8, 8, 64))
    hidden = 64 // 16
    assert layer.count_params() == 64 * hidden + hidden + hidden * 64 + 64
    assert [tuple(w.shape) for w in layer.weights] == [(64, 4), (4,), (4, 64), (64,)]
    small = SqueezeExcite(reduction=16)
    small.build((None, 4, 4, 8))  # C < r still gets one hidden unit
    assert small.squeeze.units == 1


def test_registry_name():
    layer = get_attention("se", reduction=8)
    assert isinstance(layer, SqueezeExcite) and layer.reduction == 8


def test_mixed_precision(policy):
    rng = np.random.default_rng(0)
    x = (rng.uniform(-1.0, 1.0, size=(2, 8, 8, 32)) * 1e3).astype("float32")
    layer = SqueezeExcite(reduction=4)
    y = layer(x)
    assert y.dtype == layer.compute_dtype == keras.mixed_precision.global_policy().compute_dtype
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))))
    x = rng.normal(size=(2, 8, 8, 32)).astype("float32")
    y = keras.ops.convert_to_numpy(keras.ops.cast(layer(x), "float32"))
    tol = {"float32": 1e-5, "mixed_float16": 1e-2, "mixed_bfloat16": 5e-2}[policy]
    np.testing.assert_allclose(y, se_reference(x, layer.get_weights()), rtol=tol, atol=tol)


def test_gradients_reach_every_variable():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    layer = SqueezeExcite(reduction=4)
    layer.build(x.shape)
    grads = gradients(lambda: keras.ops.sum(keras.ops.square(layer(x))), layer.trainable_variables)
    assert len(grads) == 4
    assert all(g is not None and np.any(g != 0) for g in grads)


def test_config_round_trip():
    layer = SqueezeExcite(reduction=8, data_format="channels_first", name="se_x")
    clone = SqueezeExcite.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.reduction == 8 and clone.data_format == "channels_first"


def test_keras_save_load(tmp_path):
    inputs = keras.Input((8, 8, 16))
    model = keras.Model(inputs, SqueezeExcite(reduction=4)(inputs))
    _randomise(model.layers[1])
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    path = tmp_path / "se.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize("bad", [0, -2, 2.5, "4", True])
def test_bad_reduction(bad):
    with pytest.raises(ValueError, match="reduction"):
        SqueezeExcite(reduction=bad)


def test_bad_data_format_and_rank():
    with pytest.raises(ValueError, match="data_format.*channels_last.*'nchw'"):
        SqueezeExcite(data_format="nchw")
    with pytest.raises(ValueError, match="3-D, 4-D or 5-D input.*got a 6-D input"):
        SqueezeExcite()(np.zeros((2, 1, 2, 2, 8, 16), "float32"))
