"""Invariants every registered attention layer must satisfy, parametrised over the registry.

A newly registered layer is covered automatically. Per-layer arguments needed for the small test
inputs go in ``KWARGS``. Connected (DCA) layers return ``(y, state)``; the checks use ``y``, and
gradients are taken through a second layer that receives the first one's state.
"""

import inspect

import numpy as np
import pytest

import keras
import keras_attn
from keras_attn.registry import get_attention_class, is_connected

from _autodiff import gradients, input_gradient

CHANNELS = 32
SHAPE = (2, 8, 8, CHANNELS)
# The other ranks: 1-D (batch, steps, C) and 3-D (batch, depth, height, width, C) maps.
RANK_SHAPES = {3: (2, 16, CHANNELS), 5: (2, 3, 4, 4, CHANNELS)}
RANKS = sorted(RANK_SHAPES)
SHAPES_BY_RANK = {**RANK_SHAPES, 4: SHAPE}

# Arguments the defaults cannot take at 32 channels (SA's 64 groups need C % 128 == 0).
KWARGS = {
    "sa": {"groups": 4},
}

NAMES = keras_attn.available_attentions()

# Layers without a single variable by design, from their papers (not from the code): SimAM is
# "parameter-free" (Yang et al., ICML 2021: title, Eq. 5). Every other layer must have trainable
# variables, and these must have none.
PARAMETER_FREE = {"simam"}


def _make(attention, **overrides):
    # Through the class, not get_attention: its first parameter is also called `name`.
    return get_attention_class(attention)(**{**KWARGS.get(attention, {}), **overrides})


def _input(shape=SHAPE, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) + rng.normal(size=shape[-1])
    return (x * scale).astype("float32")


def _first(out, name):
    """The feature-map output: ``y`` of a connected layer's ``(y, state)``."""
    if is_connected(name):
        assert isinstance(out, (tuple, list)) and len(out) == 2, type(out)
        return out[0]
    return out


def _perturb(layer, seed=1):
    """Set every trainable variable to fixed random values so outputs depend on all of them.

    The values come from NumPy, not from the variables' initial values: those differ by backend
    (each has its own random generator), and on some draws a ReLU unit is dead for the test input.
    """
    rng = np.random.default_rng(seed)
    for var in layer.trainable_variables:
        var.assign((0.5 * rng.normal(size=var.shape) + 0.1).astype("float32"))


def _np(t):
    """A layer output as NumPy on any backend (float16 kept)."""
    return keras.ops.convert_to_numpy(t)


def _nchw(a):
    return np.transpose(a, (0, 3, 1, 2))


def test_registry_has_the_designed_layers():
    # DESIGN.md's names; more may be registered.
    designed = {"sa", "simam", "sb", "se", "cbam", "eca", "dca_se", "dca_cbam", "dca_sb"}
    assert designed <= set(NAMES), sorted(designed - set(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_registration_and_constructor_arguments(name):
    cls = get_attention_class(name)
    assert cls.attention_name == name
    assert keras.saving.get_registered_name(cls) == f"keras_attn>{cls.__name__}"
    assert getattr(keras_attn, cls.__name__) is cls
    assert isinstance(keras_attn.get_attention(name, **KWARGS.get(name, {})), cls)
    # Every argument keyword with a default, **kwargs last (passed to Layer).
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    names = [p.name for p in params]
    assert "data_format" in names
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        assert p.kind is not inspect.Parameter.VAR_POSITIONAL, p.name
        assert p.default is not inspect.Parameter.empty, f"{name}: {p.name} has no default"
    assert params[-1].kind is inspect.Parameter.VAR_KEYWORD, "**kwargs must reach Layer"
    # One attribute per argument, and get_config lists them all.
    layer = cls()
    config = layer.get_config()
    for p in params[:-1]:
        assert hasattr(layer, p.name), f"{name}: no attribute {p.name}"
        assert p.name in config, f"{name}: {p.name} missing from get_config()"
    assert layer.data_format == "channels_last"


@pytest.mark.parametrize("rank", [3, 4, 5])
@pytest.mark.parametrize("name", NAMES)
def test_channels_first_equals_channels_last(name, rank):
    x = _input(SHAPES_BY_RANK[rank])
    x_first = np.moveaxis(x, -1, 1)
    last = _make(name)
    last(x)
    _perturb(last)
    y_last = _np(_first(last(x), name))
    first = _make(name, data_format="channels_first")
    first(x_first)
    first.set_weights(last.get_weights())
    y_first = _np(_first(first(x_first), name))
    assert y_first.shape == x_first.shape
    np.testing.assert_allclose(np.moveaxis(y_first, 1, -1), y_last, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_and_finite_under_policy_for_large_inputs(name, policy):
    compute = keras.mixed_precision.global_policy().compute_dtype
    layer = _make(name)
    assert layer.compute_dtype == compute
    x = np.clip(_input(scale=1e3), -1e3, 1e3)
    x[..., 1] = 1e3  # a constant channel: zero variance
    out = layer(x)
    y = _first(out, name)
    assert keras.backend.standardize_dtype(y.dtype) == compute, f"{name}: {y.dtype} under {policy}"
    assert np.all(np.isfinite(_np(y)))
    if is_connected(name):
        for t in keras.tree.flatten(out[1]):
            assert np.all(np.isfinite(_np(t)))
    for var in layer.weights:
        assert var.dtype == "float32", f"{name}: {var.path} is {var.dtype}"


@pytest.mark.parametrize("name", NAMES)
def test_get_config_from_config_round_trip(name):
    layer = _make(name, data_format="channels_first", name=f"my_{name}")
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert clone.name == f"my_{name}"
    x = _nchw(_input())
    layer(x)
    _perturb(layer)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(
        _np(_first(clone(x), name)), _np(_first(layer(x), name))
    )


@pytest.mark.parametrize("rank", [3, 4, 5])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_trainable_variable(name, rank):
    shape = SHAPES_BY_RANK[rank]
    x = _input(shape)
    upstream = np.random.default_rng(3).normal(size=shape).astype("float32")
    # Two hidden ReLU units (C=32, r=16) can both be dead on a draw, which zeroes the gradient
    # of everything before them: r=4.
    kwargs = {"reduction": 4} if name in ("se", "cbam", "dca_se", "dca_cbam") else {}
    layer = _make(name, **kwargs)
    if is_connected(name):
        # Connection weights only act on a previous state: differentiate the second layer.
        head = _make(name, **kwargs)
        y0, state = head(x)
        layer([y0, state])
    else:
        layer(x)
    _perturb(layer)

    def loss():
        if is_connected(name):
            y0, state = head(x, training=True)
            y, _ = layer([y0, state], training=True)
        else:
            y = layer(x, training=True)
        return keras.ops.sum(keras.ops.cast(y, "float32") * keras.ops.convert_to_tensor(upstream))

    variables = layer.trainable_variables
    if name in PARAMETER_FREE:
        # Nothing to train: no variable at all, and the gradient flows through to the input.
        assert not layer.weights, [v.path for v in layer.weights]
        dx = input_gradient(lambda t: layer(t, training=True), x, upstream)
        assert np.all(np.isfinite(dx)) and np.any(dx != 0), f"{name}: no input gradient"
        return
    assert variables, f"{name} has no trainable variable (parameter-free? see PARAMETER_FREE)"
    grads = gradients(loss, variables)
    for var, grad in zip(variables, grads):
        assert grad is not None, f"{name}: no gradient for {var.path}"
        grad = np.asarray(grad)
        assert np.all(np.isfinite(grad)), f"{name}: non-finite gradient for {var.path}"
        # A variable that receives an all-zero gradient on a generic input is not being trained.
        assert np.any(grad != 0), f"{name}: all-zero gradient for {var.path}"


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_rank_and_data_format(name):
    # 3-D, 4-D and 5-D inputs are valid; 2-D and 6-D are not, and the message names the rank
    # and the valid forms.
    for shape in [(2, CHANNELS), (2, 2, 2, 2, 2, CHANNELS)]:
        for data_format in ("channels_last", "channels_first"):
            with pytest.raises(ValueError, match=rf"got a {len(shape)}-D input") as info:
                _make(name, data_format=data_format)(np.zeros(shape, "float32"))
            message = str(info.value)
            assert "3-D, 4-D or 5-D" in message, message
            for form in (
                "(batch, steps, channels)",
                "(batch, height, width, channels)",
                "(batch, depth, height, width, channels)",
            ):
                assert form in message, message
    with pytest.raises(ValueError, match=r"`data_format` must be one of .*got 'NHWC'"):
        _make(name, data_format="NHWC")


# ---- 1-D (rank 3) and 3-D (rank 5) feature maps --------------------------------------------



def _to_first(a):
    return np.moveaxis(a, -1, 1)


@pytest.mark.parametrize("rank", [3, 4, 5])
@pytest.mark.parametrize("name", NAMES)
def test_output_shape_and_compute_output_shape(name, rank):
    shape = SHAPES_BY_RANK[rank]
    for data_format, s in (("channels_last", shape), ("channels_first", _to_first_shape(shape))):
        layer = _make(name, data_format=data_format)
        y = _first(layer(_input(s)), name)
        assert tuple(y.shape) == s
        out_shape = layer.compute_output_shape((None,) + s[1:])
        if is_connected(name) and isinstance(out_shape[0], (tuple, list)):
            out_shape = out_shape[0]
        assert tuple(out_shape) == (None,) + s[1:]
    sym = _first(_make(name)(keras.Input(shape[1:])), name)
    assert tuple(sym.shape) == (None,) + shape[1:]


def _to_first_shape(shape):
    return (shape[0], shape[-1]) + tuple(shape[1:-1])


@pytest.mark.parametrize("rank", [3, 4, 5])
@pytest.mark.parametrize("name", NAMES)
def test_keras_file_round_trip_safe_mode(name, rank, tmp_path):
    shape = SHAPES_BY_RANK[rank]
    inp = keras.Input(shape[1:])
    y = _first(_make(name)(inp), name)
    # A trailing pointwise head (Dense on the channel axis, at every rank) makes the layer an
    # inner node, as in a backbone.
    out = keras.layers.Dense(4, name="head")(y)
    model = keras.Model(inp, out)
    _perturb(model.get_layer(index=1))
    x = _input(shape)
    expected = _np(model(x))
    path = tmp_path / f"{name}_{rank}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.layers[1]) is get_attention_class(name)
    np.testing.assert_array_equal(_np(loaded(x)), expected)


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("name", NAMES)
def test_other_rank_finite_under_mixed_float16(name, rank):
    keras.mixed_precision.set_global_policy("mixed_float16")
    layer = _make(name)
    assert layer.compute_dtype == "float16"
    x = np.clip(_input(RANK_SHAPES[rank], scale=1e3), -1e3, 1e3)
    x[..., 1] = 1e3  # a constant channel: zero variance
    out = layer(x)
    y = _first(out, name)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert np.all(np.isfinite(_np(y)))
    if is_connected(name):
        for t in keras.tree.flatten(out[1]):
            assert np.all(np.isfinite(_np(t)))
        # and a connected second layer on that state
        y2, state2 = _make(name)([y, out[1]])
        for t in [y2] + keras.tree.flatten(state2):
            assert np.all(np.isfinite(_np(t)))
    for var in layer.weights:
        assert var.dtype == "float32", f"{name}: {var.path} is {var.dtype}"


# ---- Edge cases at the API boundary -------------------------------------------------------


@pytest.mark.parametrize("pure", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_pure_low_precision_policy_forward_and_gradient(name, pure):
    # Variables in float16/bfloat16 too (not mixed precision): the statistics may be float32
    # internally, but nothing may mix the two dtypes, and the output is in the compute dtype.
    keras.config.set_dtype_policy(pure)
    shape = (2, 4, 4, CHANNELS)
    x = _input(shape)
    kwargs = {"reduction": 4} if name in ("se", "cbam", "dca_se", "dca_cbam") else {}
    layer = _make(name, **kwargs)
    assert layer.compute_dtype == pure and layer.variable_dtype == pure
    head = None
    if is_connected(name):
        head = _make(name, **kwargs)

    def forward(x, training=False):
        if head is None:
            return layer(x, training=training)
        y0, state = head(x, training=training)
        return layer([y0, state], training=training)

    out = forward(x)
    y = _first(out, name)
    assert keras.backend.standardize_dtype(y.dtype) == pure, f"{name}: {y.dtype}"
    assert tuple(y.shape) == shape
    assert np.all(np.isfinite(_np(y).astype("float32")))
    if is_connected(name):
        for t in keras.tree.flatten(out[1]):
            assert keras.backend.standardize_dtype(t.dtype) == pure
    upstream = keras.ops.convert_to_tensor(
        np.random.default_rng(3).normal(size=shape).astype("float32")
    )

    def loss():
        y = _first(forward(x, training=True), name)
        return keras.ops.sum(keras.ops.cast(y, "float32") * upstream)

    variables = layer.trainable_variables
    for var, grad in zip(variables, gradients(loss, variables)):
        assert grad is not None, f"{name}: no gradient for {var.path}"
        assert np.all(np.isfinite(np.asarray(grad, "float32"))), f"{name}: {var.path}"
    dx = input_gradient(lambda t: _first(forward(t, training=True), name), x, upstream)
    assert dx.shape == shape
    assert np.all(np.isfinite(dx.astype("float32")))


def _numeric_arguments(cls):
    """Constructor arguments whose default is a number (not a bool)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return [
        p.name for p in params
        if isinstance(p.default, (int, float)) and not isinstance(p.default, bool)
    ]


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_numeric_arguments_rejected_at_construction(name):
    cls = get_attention_class(name)
    arguments = _numeric_arguments(cls)
    assert arguments, name
    for argument in arguments:
        for value in (float("inf"), float("-inf"), float("nan")):
            with pytest.raises(ValueError, match=rf"`{argument}` must be .*; got {value!r}\."):
                _make(name, **{argument: value})


@pytest.mark.parametrize("name", NAMES)
def test_integer_and_boolean_inputs_rejected(name):
    # One behaviour for every layer (AttentionLayer.__call__): a ValueError naming the dtype and
    # saying to cast, eagerly and symbolically, for `x` and for a DCA state alike.
    for dtype in ("int32", "uint8", "bool"):
        with pytest.raises(ValueError, match=rf"got an input of dtype '{dtype}'\. Cast it"):
            _make(name)(np.ones(SHAPE, dtype))
        with pytest.raises(ValueError, match=rf"dtype '{dtype}'.*keras\.ops\.cast"):
            _make(name)(keras.Input(SHAPE[1:], dtype=dtype))
    if is_connected(name):
        y, state = _make(name)(_input())
        bad = keras.tree.map_structure(lambda t: keras.ops.cast(t, "int32"), state)
        with pytest.raises(ValueError, match=r"input 1 \(zero-based, of the list\) of dtype"):
            _make(name)([y, bad])
    # float64 is cast to the compute dtype as usual.
    y = _first(_make(name)(_input().astype("float64")), name)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("rank", [3, 4, 5])
@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(name, rank, data_format):
    shape = (0,) + SHAPES_BY_RANK[rank][1:]
    if data_format == "channels_first":
        shape = _to_first_shape(shape)
    x = np.zeros(shape, "float32")
    for training in (False, True):
        out = _make(name, data_format=data_format)(x, training=training)
        y = _first(out, name)
        assert tuple(y.shape) == shape
        if is_connected(name):
            y2, state2 = _make(name, data_format=data_format)([y, out[1]], training=training)
            assert tuple(y2.shape) == shape
            for t in keras.tree.flatten(state2):
                assert t.shape[0] == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("name", NAMES)
def test_non_finite_inputs_go_where_the_docstring_says(name, bad):
    """Issue 29, case 16: no layer checks its input for NaN or Inf. Each says where one goes: within
    its own sample, or, in training mode, through a BatchNormalization to the whole batch and its
    moving statistics. That sentence is checked against what the layer does."""
    doc = " ".join(get_attention_class(name).__doc__.split())
    mixes = "in training mode" in doc and "mixes the batch" in doc
    assert mixes or "within its own sample, in training and in inference mode" in doc, doc
    layer = _make(name)
    x = _input((4, 8, 8, CHANNELS))
    clean = x.copy()
    x[1, 2, 3, 4] = bad

    def non_finite(inputs, training):
        y = _np(_first(layer(inputs, training=training), name))
        return [i for i in range(len(y)) if not np.isfinite(y[i]).all()]

    assert non_finite(x, training=False) == [1]
    assert non_finite(x, training=True) == ([0, 1, 2, 3] if mixes else [1])
    # Afterwards, a clean batch in inference mode: NaN throughout where the moving statistics
    # took the NaN in.
    assert non_finite(clean, training=False) == ([0, 1, 2, 3] if mixes else [])
