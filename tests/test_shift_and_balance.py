"""ShiftAndBalance: NumPy reference, both call forms, gates, identity, precision, serialization."""

import numpy as np
import pytest

import keras

from _autodiff import gradients

from keras_attn import ShiftAndBalance, get_attention

EPS = 1e-5


def _gate(a, gate):
    if gate == "tanh":
        return np.tanh(a)
    if gate == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * a))
    if gate == "softmax":
        e = np.exp(a - a.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if gate == "relu":
        return np.maximum(a, 0.0)
    return a


def sb_weights(layer):
    """The branch's arrays by name, from the sublayers."""
    g1, b1, m1, v1 = layer.bn1.get_weights()
    g2, b2, m2, v2 = layer.bn2.get_weights()
    return {
        "w1": layer.fc1.get_weights()[0], "bn1": (g1, b1, m1, v1),
        "w2": layer.fc2.get_weights()[0], "bn2": (g2, b2, m2, v2),
        "cf": (None if layer.control_factor is None
               else keras.ops.convert_to_numpy(layer.control_factor)),
    }


def _bn(v, params, training):
    gamma, beta, mean, var = params
    if training:
        mean, var = v.mean(axis=0), v.var(axis=0)
    return (v - mean) / np.sqrt(var + EPS) * gamma + beta


def branch_reference(g, w, gate, training=False):
    h = np.maximum(_bn(g @ w["w1"], w["bn1"], training), 0.0)
    return _gate(_bn(h @ w["w2"], w["bn2"], training), gate)


def sb_reference(source, trunk, w, gate, training=False, channels_first=False):
    """SB on channels-last copies of 1-D, 2-D or 3-D maps: GAP over every spatial axis."""
    if channels_first:
        source, trunk = np.moveaxis(source, 1, -1), np.moveaxis(trunk, 1, -1)
    axes = tuple(range(1, source.ndim - 1))
    a = branch_reference(source.mean(axis=axes), w, gate, training)
    shift = w["cf"] * a
    y = trunk + shift.reshape((shift.shape[0],) + (1,) * len(axes) + (shift.shape[1],))
    return np.moveaxis(y, -1, 1) if channels_first else y


def _randomise(layer, seed=1):
    rng = np.random.default_rng(seed)
    new = []
    for v in layer.weights:
        value = rng.normal(0.0, 0.5, v.shape).astype("float32")
        if "moving_variance" in v.path:
            value = np.abs(value) + 0.5
        new.append(value)
    layer.set_weights(new)


@pytest.mark.parametrize("gate", ["tanh", "sigmoid", "softmax", "relu", "none"])
def test_block_form_matches_reference(gate):
    t = np.random.default_rng(0).normal(size=(2, 8, 8, 24)).astype("float32")
    layer = ShiftAndBalance(gate=gate, hidden_ratio=0.5)
    layer.build(t.shape)
    _randomise(layer)
    y = keras.ops.convert_to_numpy(layer(t, training=False))
    np.testing.assert_allclose(y, sb_reference(t, t, sb_weights(layer), gate), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_layer_form_reads_x(data_format):
    """``sb([x, t])``: the branch reads x (other channels and resolution), the shift lands on t."""
    rng = np.random.default_rng(0)
    if data_format == "channels_last":
        x, t = rng.normal(size=(2, 8, 8, 16)), rng.normal(size=(2, 4, 4, 32))
    else:
        x, t = rng.normal(size=(2, 16, 8, 8)), rng.normal(size=(2, 32, 4, 4))
    x, t = x.astype("float32"), t.astype("float32")
    layer = ShiftAndBalance(data_format=data_format)
    layer.build([x.shape, t.shape])
    assert layer.fc1.kernel.shape == (16, 32) and layer.control_factor.shape == (32,)
    _randomise(layer)
    y = keras.ops.convert_to_numpy(layer([x, t], training=False))
    assert y.shape == t.shape
    channels_first = data_format == "channels_first"
    ref = sb_reference(x, t, sb_weights(layer), "tanh", channels_first=channels_first)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize(
    "x_shape,t_shape",
    [((2, 16, 8), (2, 8, 16)), ((2, 4, 4, 4, 8), (2, 3, 2, 2, 16))],
    ids=["1d", "3d"],
)
def test_both_forms_match_reference_other_ranks(x_shape, t_shape, data_format):
    # 1-D and 3-D maps: the branch pools every spatial axis; block form and layer form.
    rng = np.random.default_rng(0)
    x = rng.normal(size=x_shape).astype("float32")
    t = rng.normal(size=t_shape).astype("float32")
    if data_format == "channels_first":
        x, t = np.moveaxis(x, -1, 1), np.moveaxis(t, -1, 1)
    channels_first = data_format == "channels_first"
    layer = ShiftAndBalance(data_format=data_format)
    layer.build([x.shape, t.shape])
    _randomise(layer)
    y = keras.ops.convert_to_numpy(layer([x, t], training=False))
    assert y.shape == t.shape
    ref = sb_reference(x, t, sb_weights(layer), "tanh", channels_first=channels_first)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    block = ShiftAndBalance(gate="sigmoid", hidden_ratio=0.5, data_format=data_format)
    block.build(t.shape)
    _randomise(block)
    y = keras.ops.convert_to_numpy(block(t, training=False))
    ref = sb_reference(t, t, sb_weights(block), "sigmoid", channels_first=channels_first)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_training_mode_batch_statistics():
    t = np.random.default_rng(0).normal(size=(4, 6, 6, 16)).astype("float32")
    layer = ShiftAndBalance(gate="sigmoid")
    layer.build(t.shape)
    _randomise(layer)
    y = keras.ops.convert_to_numpy(layer(t, training=True))
    ref = sb_reference(t, t, sb_weights(layer), "sigmoid", training=True)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_zero_control_factor_is_identity(training):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 8)).astype("float32")
    t = (rng.normal(size=(2, 4, 4, 16)) * 100).astype("float32")
    for layer, inputs in ((ShiftAndBalance(lambda_init=0.0), t),
                          (ShiftAndBalance(lambda_init=0.0, dropout=0.5), [x, t])):
        y = keras.ops.convert_to_numpy(layer(inputs, training=training))
        np.testing.assert_array_equal(y, t)


def test_defaults_hidden_width_and_parameters():
    layer = ShiftAndBalance()
    layer.build((None, 8, 8, 12))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.control_factor), 0.1)
    assert layer.fc1.units == 12  # hidden_ratio = 1
    # control_factor + fc1 + bn1 (4) + fc2 + bn2 (4); Dense without bias.
    assert layer.count_params() == 12 + 144 + 4 * 12 + 144 + 4 * 12
    depthwise = ShiftAndBalance(hidden_ratio=1 / 6)
    depthwise.build((None, 8, 8, 32))
    assert depthwise.fc1.units == round(32 / 6) == 5
    tiny = ShiftAndBalance(hidden_ratio=0.01)
    tiny.build((None, 4, 4, 8))
    assert tiny.fc1.units == 1
    assert isinstance(get_attention("sb", gate="relu"), ShiftAndBalance)


def test_softmax_gate_sums_to_one_per_sample():
    layer = ShiftAndBalance(gate="softmax", lambda_init=1.0)
    t = np.zeros((2, 4, 4, 8), "float32")
    y = keras.ops.convert_to_numpy(layer(t, training=False))
    np.testing.assert_allclose(y.sum(axis=-1)[:, 0, 0], 1.0, rtol=1e-5)


def test_mixed_precision(policy):
    rng = np.random.default_rng(0)
    x = (rng.uniform(-1, 1, size=(2, 8, 8, 16)) * 1e3).astype("float32")
    t = (rng.uniform(-1, 1, size=(2, 4, 4, 32)) * 1e3).astype("float32")
    layer = ShiftAndBalance()
    for training in (True, False):
        y = layer([x, t], training=training)
        assert y.dtype == keras.mixed_precision.global_policy().compute_dtype
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))))
    x = rng.normal(size=x.shape).astype("float32")
    t = rng.normal(size=t.shape).astype("float32")
    y = keras.ops.convert_to_numpy(keras.ops.cast(layer([x, t], training=False), "float32"))
    tol = {"float32": 1e-5, "mixed_float16": 1e-2, "mixed_bfloat16": 5e-2}[policy]
    np.testing.assert_allclose(y, sb_reference(x, t, sb_weights(layer), "tanh"), rtol=tol, atol=tol)


def test_gradients_reach_every_variable():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 8)).astype("float32")
    t = rng.normal(size=(2, 4, 4, 16)).astype("float32")
    layer = ShiftAndBalance(dropout=0.1)
    layer.build([x.shape, t.shape])
    weight = np.arange(16.0, dtype="float32")
    grads = gradients(
        lambda: keras.ops.sum(keras.ops.square(layer([x, t], training=True)) * weight),
        layer.trainable_variables,
    )
    assert len(grads) == 7  # control_factor, fc1, bn1 gamma/beta, fc2, bn2 gamma/beta
    assert all(g is not None and np.any(g != 0) for g in grads)


def test_config_round_trip_and_save_load(tmp_path):
    layer = ShiftAndBalance(hidden_ratio=0.25, gate="softmax", lambda_init=0.3, dropout=0.2,
                            data_format="channels_first")
    assert ShiftAndBalance.from_config(layer.get_config()).get_config() == layer.get_config()

    x_in = keras.Input((8, 8, 8))
    t = keras.layers.Conv2D(16, 3, strides=2, padding="same")(x_in)
    sb = ShiftAndBalance(gate="sigmoid")
    model = keras.Model(x_in, sb([x_in, t]))
    _randomise(sb)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 8)).astype("float32")
    model.save(tmp_path / "sb.keras")
    loaded = keras.saving.load_model(tmp_path / "sb.keras", safe_mode=True)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"gate": "gelu"}, "gate.*'tanh'.*'none'.*'gelu'"),
        ({"hidden_ratio": 0}, "hidden_ratio.*> 0"),
        ({"hidden_ratio": -1.0}, "hidden_ratio.*-1"),
        ({"dropout": 1.0}, r"dropout.*\[0, 1\).*1.0"),
        ({"dropout": -0.1}, "dropout"),
        ({"lambda_init": "big"}, "lambda_init"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ShiftAndBalance(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="3-D, 4-D or 5-D input.*got a 2-D input"):
        ShiftAndBalance()(np.zeros((2, 16), "float32"))
    with pytest.raises(ValueError, match="5-D branch input `x`.*got a 2-D branch input"):
        ShiftAndBalance()([np.zeros((2, 16), "float32"), np.zeros((2, 4, 4, 8), "float32")])
    t = np.zeros((2, 4, 4, 8), "float32")
    with pytest.raises(ValueError, match="3 inputs"):
        ShiftAndBalance()([t, t, t])
    with pytest.raises(ValueError, match=r"`x` and the trunk `t` .* same rank"):
        ShiftAndBalance()([np.zeros((2, 16, 8), "float32"), t])


# -- the SB paper's layer-wise SE (fusion="multiply") and the hidden width multiplier ----------


def test_multiply_fusion_is_the_papers_layerwise_se():
    """SB Tables 2, 5, 7 "SE" rows: t * sigmoid(branch(GAP(x))), the branch shared with SB."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 8, 8, 12)).astype("float32")
    t = rng.normal(size=(3, 4, 4, 20)).astype("float32")
    layer = ShiftAndBalance(fusion="multiply")
    layer([x, t])
    _randomise(layer)
    w = sb_weights(layer)
    assert layer.gate == "sigmoid" and w["cf"] is None
    a = branch_reference(x.mean(axis=(1, 2)), w, "sigmoid")
    ref = t * a[:, None, None, :]
    y = keras.ops.convert_to_numpy(layer([x, t], training=False))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("multiplier", [1, 2, 3, 4])
def test_hidden_multiplier_scales_the_branch_width(multiplier):
    # C_in = 24, C_out = 36, hidden_ratio 1/6 (after a depthwise conv): hidden = 6 * multiplier.
    layer = ShiftAndBalance(hidden_ratio=1 / 6, hidden_multiplier=multiplier)
    layer([np.zeros((1, 4, 4, 24), "float32"), np.zeros((1, 4, 4, 36), "float32")])
    hidden = 6 * multiplier
    assert layer.fc1.kernel.shape == (24, hidden) and layer.fc2.kernel.shape == (hidden, 36)
    # fc1 + bn1 (gamma, beta, moving mean, variance) + fc2 + bn2 + control factor, by hand.
    expected = 24 * hidden + 4 * hidden + hidden * 36 + 4 * 36 + 36
    assert layer.count_params() == expected


def test_multiply_has_no_control_factor_and_configs_round_trip():
    shape = (1, 4, 4, 16)
    add, mul = ShiftAndBalance(), ShiftAndBalance(fusion="multiply", hidden_multiplier=2.0)
    add.build(shape)
    mul.build(shape)
    two = ShiftAndBalance(hidden_multiplier=2.0)
    two.build(shape)
    assert two.count_params() - mul.count_params() == 16  # exactly the control factor
    for layer in (add, mul):
        config = layer.get_config()
        again = ShiftAndBalance.from_config(config)
        assert again.get_config() == config
    assert mul.get_config()["fusion"] == "multiply" and mul.get_config()["gate"] == "sigmoid"
    assert add.get_config()["gate"] == "tanh"


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"hidden_multiplier": 0}, "hidden_multiplier.*> 0"),
        ({"hidden_multiplier": -1}, "hidden_multiplier.*> 0"),
        ({"hidden_multiplier": "x"}, "hidden_multiplier.*a number"),
        ({"fusion": "bogus"}, "fusion.*'add', 'multiply'.*'bogus'"),
        ({"fusion": "multiply", "gate": "tanh"}, "fusion='multiply'.*sigmoid.*'tanh'"),
    ],
)
def test_bad_fusion_and_multiplier(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ShiftAndBalance(**kwargs)


@pytest.mark.parametrize("argument", ["lambda_init", "hidden_ratio", "hidden_multiplier"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_arguments_rejected_at_construction(argument, value):
    # lambda_init=inf made every output inf; hidden_ratio=inf failed at build (OverflowError).
    with pytest.raises(ValueError, match=rf"`{argument}` must be a finite number.*; got {value}\."):
        ShiftAndBalance(**{argument: value})


def test_huge_hidden_ratio_rejected_at_construction():
    # An int beyond float range would overflow in float() at build.
    with pytest.raises(ValueError, match=r"`hidden_ratio` must be a finite number > 0.0"):
        ShiftAndBalance(hidden_ratio=10**400)
