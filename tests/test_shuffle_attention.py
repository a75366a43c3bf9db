"""ShuffleAttention against a literal NumPy port of the official SA-Net ``sa_layer``."""

import numpy as np
import pytest
import tensorflow as tf

import keras

from _autodiff import gradients, input_gradient
from keras_attn import ShuffleAttention, get_attention
from keras_attn.layers.shuffle_attention import valid_groups


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


def sa_reference(
    x,
    groups,
    cw=None,
    cb=None,
    sw=None,
    sb=None,
    gamma=None,
    beta=None,
    eps=1e-5,
    use_norm=True,
    shuffle=True,
    transform="affine",
):
    """The official forward pass on an NCHW array, step by step, in float64.

    Also takes channels-first 1-D ``(B, C, L)`` and 3-D ``(B, C, D, H, W)`` arrays: the
    statistics are then over every spatial axis (the official code is 2-D only).

    ``transform="conv"`` takes ``cw``/``sw`` as (K, K) kernels (in -> out) applied to the K
    channels of each group; ``"none"`` ignores the four weight/bias arguments.
    """
    x = np.asarray(x, np.float64)
    b, c, *sp = x.shape
    axes = tuple(range(2, 2 + len(sp)))
    xr = x.reshape(b * groups, -1, *sp)
    x_0, x_1 = np.split(xr, 2, axis=1)

    def vec(v):  # (K,) -> broadcast against (N, K, *spatial)
        return v.reshape((1, -1) + (1,) * len(sp))

    def fc(t, weight, bias):
        if transform == "none":
            return t
        if transform == "affine":
            return vec(weight) * t + vec(bias)
        return np.einsum("nk...,kj->nj...", t, weight) + vec(bias)

    xn = x_0.mean(axis=axes, keepdims=True)
    xn = x_0 * _sigmoid(fc(xn, cw, cb))

    if use_norm:  # GroupNorm(K, K): one channel per group, biased variance
        mu = x_1.mean(axis=axes, keepdims=True)
        var = x_1.var(axis=axes, keepdims=True)
        xs = (x_1 - mu) / np.sqrt(var + eps)
        xs = vec(gamma) * xs + vec(beta)
    else:
        xs = x_1
    xs = x_1 * _sigmoid(fc(xs, sw, sb))

    out = np.concatenate([xn, xs], axis=1).reshape(b, -1, *sp)
    if shuffle:
        out = np.swapaxes(out.reshape(b, 2, -1, *sp), 1, 2).reshape(b, -1, *sp)
    return out


def sa_reference_ops(x, layer):
    """The official forward pass (as ``sa_reference``) in keras.ops on the layer's own variables,
    written from the official code, not from the layer's paths: its automatic derivative is the
    reference for the layer's closed-form gradient. ``x`` in the layer's data format."""
    ops = keras.ops
    channels_first = layer.data_format == "channels_first"
    t = ops.convert_to_tensor(x) if channels_first else ops.moveaxis(x, -1, 1)  # (B, C, *sp)
    b, c, *sp = t.shape
    k = c // (2 * layer.groups)
    axes = tuple(range(2, 2 + len(sp)))
    xr = ops.reshape(t, (b * layer.groups, 2 * k, *sp))
    x_0, x_1 = xr[:, :k], xr[:, k:]

    def vec(v):
        return ops.reshape(v, (1, k) + (1,) * len(sp))

    def fc(v, weight, bias):
        return v if layer.transform == "none" else vec(weight) * v + vec(bias)

    xn = x_0 * ops.sigmoid(fc(ops.mean(x_0, axis=axes, keepdims=True),
                              layer.channel_weight, layer.channel_bias))
    mu = ops.mean(x_1, axis=axes, keepdims=True)
    var = ops.mean(ops.square(x_1 - mu), axis=axes, keepdims=True)
    xs = vec(layer.norm_gamma) * (x_1 - mu) / ops.sqrt(var + layer.epsilon) + vec(layer.norm_beta)
    xs = x_1 * ops.sigmoid(fc(xs, layer.spatial_weight, layer.spatial_bias))
    out = ops.reshape(ops.concatenate([xn, xs], axis=1), (b, 2, c // 2, *sp))
    out = ops.reshape(ops.swapaxes(out, 1, 2), (b, c, *sp))  # the channel shuffle
    return out if channels_first else ops.moveaxis(out, 1, -1)


def _nhwc(a):
    return np.transpose(a, (0, 2, 3, 1))


def _nchw(a):
    return np.transpose(a, (0, 3, 1, 2))


def _shuffle_nhwc(a):
    n, h, w, c = a.shape
    return a.reshape(n, h, w, 2, c // 2).transpose(0, 1, 2, 4, 3).reshape(a.shape)


def _input(shape=(2, 8, 8, 32), seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    # A per-channel offset so that means are not ~0 and the two branches really differ.
    x = rng.normal(size=shape) + rng.normal(size=shape[-1]) * 2.0
    return (x * scale).astype("float32")


def _randomise(layer, seed=1):
    """Assign random, non-initial values to every variable; return them by name (float64)."""
    rng = np.random.default_rng(seed)
    values = {}
    for name in (
        "channel_weight",
        "channel_bias",
        "spatial_weight",
        "spatial_bias",
        "norm_gamma",
        "norm_beta",
    ):
        var = getattr(layer, name)
        if var is None:
            values[name] = None
            continue
        value = rng.normal(size=var.shape).astype("float32")
        var.assign(value)
        values[name] = value.astype(np.float64)
    return values


def _ref_kwargs(values):
    return dict(
        cw=values["channel_weight"],
        cb=values["channel_bias"],
        sw=values["spatial_weight"],
        sb=values["spatial_bias"],
        gamma=values["norm_gamma"],
        beta=values["norm_beta"],
    )


def _ablation_id(kwargs):
    return ",".join(f"{k}={v}" for k, v in kwargs.items()) or "default"


ABLATIONS = [
    {},
    {"use_norm": False},
    {"shuffle": False},
    {"transform": "none"},
    {"transform": "conv"},
    {"transform": "conv", "use_norm": False},
    {"transform": "none", "use_norm": False, "shuffle": False},
]


@pytest.mark.parametrize("kwargs", ABLATIONS, ids=_ablation_id)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_matches_official_code_with_random_variables(kwargs, data_format):
    groups = 4
    x = _input()  # NHWC, C = 32, K = 4
    layer = ShuffleAttention(groups=groups, data_format=data_format, **kwargs)
    layer_input = x if data_format == "channels_last" else _nchw(x)
    layer.build(layer_input.shape)
    values = _randomise(layer)
    y = np.asarray(layer(layer_input))
    ref = sa_reference(_nchw(x), groups, **_ref_kwargs(values), **kwargs)
    if data_format == "channels_last":
        ref = _nhwc(ref)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", ABLATIONS, ids=_ablation_id)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("shape", [(2, 16, 32), (2, 3, 4, 4, 32)], ids=["1d", "3d"])
def test_matches_official_code_other_ranks(shape, kwargs, data_format):
    # 1-D and 3-D maps: the official forward pass with statistics over every spatial axis.
    groups = 4
    x = _input(shape)  # channels last, C = 32, K = 4
    x_first = np.moveaxis(x, -1, 1)
    layer = ShuffleAttention(groups=groups, data_format=data_format, **kwargs)
    layer_input = x if data_format == "channels_last" else x_first
    layer.build(layer_input.shape)
    values = _randomise(layer)
    y = np.asarray(layer(layer_input))
    ref = sa_reference(x_first, groups, **_ref_kwargs(values), **kwargs)
    if data_format == "channels_last":
        ref = np.moveaxis(ref, 1, -1)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_initial_values_and_initial_output():
    layer = ShuffleAttention(groups=4)
    x = _input()
    y = np.asarray(layer(x))
    expected = {
        "channel_weight": 0.0,
        "channel_bias": 1.0,
        "spatial_weight": 0.0,
        "spatial_bias": 1.0,
        "norm_gamma": 1.0,
        "norm_beta": 0.0,
    }
    for name, value in expected.items():
        var = getattr(layer, name)
        assert var.shape == (4,)
        assert var.path.endswith(name)
        np.testing.assert_array_equal(np.asarray(var), np.full((4,), value, np.float32))
    # Initially both branches gate with sigmoid(0 * s + 1): the output is the shuffled input
    # times sigmoid(1).
    zeros, ones = np.zeros(4), np.ones(4)
    ref = sa_reference(
        _nchw(x), 4, cw=zeros, cb=ones, sw=zeros, sb=ones, gamma=ones, beta=zeros
    )
    np.testing.assert_allclose(y, _nhwc(ref), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y, _shuffle_nhwc(x) * _sigmoid(1.0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "channels,groups,params", [(64, 8, 24), (32, 4, 24), (256, 64, 12), (2048, 64, 96)]
)
def test_parameter_count_is_3c_over_g(channels, groups, params):
    layer = ShuffleAttention(groups=groups)
    layer.build((None, 4, 4, channels))
    assert params == 3 * channels // groups
    assert layer.count_params() == params
    assert len(layer.trainable_variables) == 6
    assert all(v.shape == (channels // (2 * groups),) for v in layer.weights)


def test_resnet50_total_matches_official_708():
    # The 16 bottleneck outputs of ResNet-50 with G = 64 (the paper claims "300").
    total = 0
    for channels, blocks in [(256, 3), (512, 4), (1024, 6), (2048, 3)]:
        layer = ShuffleAttention(groups=64)
        layer.build((None, 2, 2, channels))
        total += blocks * layer.count_params()
    assert total == 708


@pytest.mark.parametrize(
    "kwargs,params,names",
    [
        (
            {"use_norm": False},
            16,
            {"channel_weight", "channel_bias", "spatial_weight", "spatial_bias"},
        ),
        ({"transform": "none"}, 8, {"norm_gamma", "norm_beta"}),
        ({"transform": "none", "use_norm": False}, 0, set()),
        ({"transform": "conv"}, 2 * (16 + 4) + 8, None),
        ({"shuffle": False}, 24, None),
    ],
)
def test_ablation_variables(kwargs, params, names):
    layer = ShuffleAttention(groups=4, **kwargs)
    layer.build((None, 8, 8, 32))
    assert layer.count_params() == params
    if names is not None:
        assert {v.path.split("/")[-1] for v in layer.weights} == names
    if kwargs.get("transform") == "conv":
        assert layer.channel_weight.shape == (4, 4)
        assert layer.spatial_weight.shape == (4, 4)
        np.testing.assert_array_equal(np.asarray(layer.spatial_weight), np.zeros((4, 4)))


def test_shuffle_permutation_on_known_input():
    c = 16
    layer = ShuffleAttention(groups=2, transform="none", use_norm=False)
    # With transform none and no norm the spatial gate is sigmoid(x); make every gate sigmoid
    # of a known value instead by a constant map per channel: value = channel index + 1.
    x = np.broadcast_to(np.arange(1, c + 1, dtype="float32"), (1, 3, 3, c)).copy()
    y = np.asarray(layer(x))[0, 0, 0]
    src = np.array([j * (c // 2) + i for i in range(c // 2) for j in range(2)])
    values = src + 1.0
    np.testing.assert_allclose(y, values * _sigmoid(values), rtol=1e-6)
    for i in range(c // 2):
        for j in range(2):
            assert src[2 * i + j] == j * c // 2 + i


def test_shuffle_false_keeps_channel_order():
    c = 16
    layer = ShuffleAttention(groups=2, transform="none", use_norm=False, shuffle=False)
    x = np.broadcast_to(np.arange(1, c + 1, dtype="float32"), (1, 3, 3, c)).copy()
    y = np.asarray(layer(x))[0, 0, 0]
    np.testing.assert_allclose(y, x[0, 0, 0] * _sigmoid(x[0, 0, 0]), rtol=1e-6)


def test_conv_with_diagonal_kernels_equals_affine():
    x = _input()
    affine = ShuffleAttention(groups=4)
    conv = ShuffleAttention(groups=4, transform="conv")
    affine.build(x.shape)
    conv.build(x.shape)
    values = _randomise(affine)
    conv.channel_weight.assign(np.diag(values["channel_weight"]))
    conv.spatial_weight.assign(np.diag(values["spatial_weight"]))
    for name in ("channel_bias", "spatial_bias", "norm_gamma", "norm_beta"):
        getattr(conv, name).assign(values[name])
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(affine(x)), rtol=1e-5, atol=1e-5)


def test_conv_kernel_orientation_is_in_by_out_as_a_keras_1x1_conv():
    # The paper gives no code for its "1x1 Conv" ablation; the (K, K) kernel here is a Keras
    # Conv kernel's [in, out] (out_j = b_j + sum_i s_i W[i, j]; PyTorch's Conv2d weight would be
    # W.T). A kernel with one off-diagonal entry tells the two apart.
    x = _input((1, 4, 4, 4))  # groups=1, K=2: channels 0-1 the channel branch, 2-3 spatial
    layer = ShuffleAttention(groups=1, transform="conv", shuffle=False)
    layer.build(x.shape)
    w = np.array([[0.0, 3.0], [0.0, 0.0]], "float32")  # input channel 0 -> output channel 1
    layer.channel_weight.assign(w)
    layer.channel_bias.assign(np.array([0.5, -0.5], "float32"))
    y = np.asarray(layer(x))
    s = x[..., :2].mean(axis=(1, 2))  # GAP of the channel branch, (1, 2)
    conv = keras.layers.Conv2D(2, 1)
    conv.build((None, 1, 1, 2))
    conv.set_weights([w[None, None], np.array([0.5, -0.5], "float32")])
    gate = _sigmoid(np.asarray(conv(s[:, None, None, :]))[:, 0, 0])  # (1, 2)
    np.testing.assert_allclose(gate, _sigmoid(np.array([[0.5, 3.0 * s[0, 0] - 0.5]])), rtol=1e-6)
    np.testing.assert_allclose(y[..., :2], x[..., :2] * gate[:, None, None, :], rtol=1e-5,
                               atol=1e-6)


def test_dynamic_spatial_and_batch_dimensions():
    inp = keras.Input((None, None, 32))
    model = keras.Model(inp, ShuffleAttention(groups=4)(inp))
    first_inp = keras.Input((32, None, None))
    fused_first, conv_first = [
        keras.Model(
            first_inp, ShuffleAttention(groups=4, data_format="channels_first", **kw)(first_inp)
        )
        for kw in ({}, {"transform": "conv"})
    ]
    for shape in [(1, 5, 7, 32), (3, 2, 2, 32)]:
        x = _input(shape)
        y = np.asarray(model(x))
        assert y.shape == shape
        y_first = np.asarray(fused_first(_nchw(x)))
        np.testing.assert_allclose(_nhwc(y_first), y, atol=1e-5)
        assert conv_first(_nchw(x)).shape == _nchw(x).shape


@pytest.mark.parametrize("n_spatial", [1, 3], ids=["1d", "3d"])
def test_dynamic_spatial_and_batch_dimensions_other_ranks(n_spatial):
    # Unknown sizes on every spatial axis, for the fused and the conv path in both layouts.
    models = {}
    for data_format in ("channels_last", "channels_first"):
        spec = (None,) * n_spatial + (32,)
        if data_format == "channels_first":
            spec = (32,) + (None,) * n_spatial
        for transform in ("affine", "conv"):
            inp = keras.Input(spec)
            layer = ShuffleAttention(groups=4, transform=transform, data_format=data_format)
            models[data_format, transform] = keras.Model(inp, layer(inp))
    shapes = [(1, 5, 32), (3, 2, 32)] if n_spatial == 1 else [(1, 2, 3, 5, 32), (2, 1, 2, 2, 32)]
    for shape in shapes:
        x = _input(shape)
        for transform in ("affine", "conv"):
            y = np.asarray(models["channels_last", transform](x))
            assert y.shape == shape
            y_first = np.asarray(models["channels_first", transform](np.moveaxis(x, -1, 1)))
            np.testing.assert_allclose(np.moveaxis(y_first, 1, -1), y, atol=1e-5)


def test_registry_name():
    layer = get_attention("sa", groups=8)
    assert isinstance(layer, ShuffleAttention) and layer.groups == 8


def test_bad_groups_at_construction():
    for groups in [0, -2, 2.5, "4", None, True]:
        with pytest.raises(ValueError, match=r"`groups` must be"):
            ShuffleAttention(groups=groups)


def test_groups_not_dividing_channels_at_build():
    layer = ShuffleAttention(groups=4)
    with pytest.raises(ValueError, match=r"C=36 must be divisible by 2\*groups = 8") as info:
        layer.build((None, 8, 8, 36))
    msg = str(info.value)
    assert "`groups`=4" in msg and "1, 2, 3, 6, 9, 18" in msg
    with pytest.raises(ValueError, match="C=15.*even"):
        ShuffleAttention(groups=1)(np.zeros((1, 2, 2, 15), "float32"))
    assert valid_groups(36) == [1, 2, 3, 6, 9, 18]


def test_bad_arguments():
    for kwargs, match in [
        ({"transform": "mlp"}, r"`transform` must be one of 'affine', 'none', 'conv'; got 'mlp'"),
        ({"use_norm": "yes"}, r"`use_norm` must be True or False; got 'yes'"),
        ({"shuffle": 1}, r"`shuffle` must be True or False; got 1"),
        ({"epsilon": 0.0}, r"`epsilon` must be a number > 0.0; got 0.0"),
        ({"data_format": "NCHW"}, r"`data_format` must be one of"),
    ]:
        with pytest.raises(ValueError, match=match):
            ShuffleAttention(**kwargs)


def test_bad_input_rank():
    with pytest.raises(ValueError, match="3-D, 4-D or 5-D input.*got a 2-D input"):
        ShuffleAttention(groups=4)(np.zeros((2, 32), "float32"))


@pytest.mark.parametrize("kwargs", ABLATIONS[:6], ids=_ablation_id)
def test_mixed_precision_large_inputs(policy, kwargs):
    compute = keras.mixed_precision.global_policy().compute_dtype
    x = _input(scale=1e3)  # |x| up to ~1e4 with the channel offsets
    x = np.clip(x, -1e3, 1e3)
    # Two nearly constant channels with a large mean: A * x and A * mean would overflow
    # float16 if they were formed separately.
    x[..., 5] = 1e3
    x[..., 21] = -1e3 + 1e-3 * _input(seed=3)[..., 0]
    layer = ShuffleAttention(groups=4, **kwargs)
    layer.build(x.shape)
    values = _randomise(layer, seed=2)
    y = layer(x)
    assert y.dtype == compute
    y = np.asarray(tf.cast(y, tf.float32))
    assert np.all(np.isfinite(y))
    # The reference sees the input as the layer does, rounded to the compute dtype.
    x_seen = np.asarray(tf.cast(tf.cast(x, compute), tf.float32))
    ref = _nhwc(sa_reference(_nchw(x_seen), 4, **_ref_kwargs(values), **kwargs))
    tol = {"float32": 1e-3, "float16": 2e-3, "bfloat16": 1e-2}[compute]
    if kwargs.get("transform") == "conv" and compute == "float32":
        # Channel 21's mean (1e3) is 1e6 times its spread: its float32 mean is only good to ~6%
        # of the spread, and the 1x1 conv spreads that into the other channels of its group
        # (measured max 7.7e-3). The per-channel affine paths keep it in channel 21 (< 1e-3).
        tol = 1e-2
    magnitude = np.abs(x_seen)
    if kwargs.get("shuffle", True):
        magnitude = _shuffle_nhwc(magnitude)
    err = np.abs(y - ref) / (magnitude + 1.0)  # ~ the error of the gate
    assert np.max(err) < tol, np.max(err)


def test_gradients_reach_every_variable():
    x = _input()
    for kwargs in ({}, {"transform": "conv"}):
        layer = ShuffleAttention(groups=4, **kwargs)
        layer.build(x.shape)
        _randomise(layer)
        upstream = np.random.default_rng(5).normal(size=x.shape).astype("float32")
        grads = gradients(lambda: keras.ops.sum(layer(x) * upstream), layer.trainable_variables)
        assert len(grads) == 6
        for var, grad in zip(layer.trainable_variables, grads):
            assert grad is not None, var.path
            assert np.all(np.isfinite(grad)) and np.any(np.asarray(grad) != 0), var.path


def test_config_round_trip_of_ablations():
    kwargs = {"transform": "conv", "use_norm": False, "shuffle": False, "epsilon": 1e-3}
    layer = ShuffleAttention(groups=4, data_format="channels_first", **kwargs)
    config = layer.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    clone = ShuffleAttention.from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize("shape", [(2, 8, 8, 32), (2, 10, 32), (2, 3, 4, 2, 32)])
@pytest.mark.parametrize("transform", ["affine", "none"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_closed_form_gradient_equals_automatic_differentiation(shape, transform, data_format):
    # The default path's backward is written by hand (keras.ops.custom_gradient); the reference
    # is automatic differentiation of the official forward pass written in keras.ops
    # (sa_reference_ops), not another path of the layer.
    x = _input(shape, scale=2.0)
    if data_format == "channels_first":
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    layer = ShuffleAttention(groups=4, transform=transform, data_format=data_format)
    layer.build(x.shape)
    if transform == "affine":
        _randomise(layer)
    upstream = np.random.default_rng(4).normal(size=x.shape).astype("float32")

    def loss(path):
        return lambda: keras.ops.sum(layer._channel_shuffle(path(x)) * upstream)

    # The same function forward (use_norm=True, the default), then the same derivatives.
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(sa_reference_ops(x, layer)),
                               rtol=1e-5, atol=1e-5)
    variables = layer.trainable_variables
    got = gradients(loss(layer._call_normalised), variables)
    want = gradients(lambda: keras.ops.sum(sa_reference_ops(x, layer) * upstream), variables)
    assert len(got) == (6 if transform == "affine" else 2)
    for var, g, w in zip(variables, got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * (1 + np.max(np.abs(w))),
                                   err_msg=var.path)
    got_x = input_gradient(lambda t: layer._channel_shuffle(layer._call_normalised(t)), x,
                           upstream)
    want_x = input_gradient(lambda t: sa_reference_ops(t, layer), x, upstream)
    np.testing.assert_allclose(got_x, want_x, rtol=0, atol=1e-4 * (1 + np.max(np.abs(want_x))))


@pytest.mark.parametrize("pure", ["float16", "bfloat16"])
@pytest.mark.parametrize("kwargs", ABLATIONS, ids=_ablation_id)
def test_pure_low_precision_policy(pure, kwargs):
    # dtype="float16"/"bfloat16" (variables in that dtype too, not mixed precision): the
    # closed-form path once multiplied the float16 coefficients by the float32 statistics.
    x = _input(shape=(2, 4, 4, 16))
    ref_layer = ShuffleAttention(groups=2, **kwargs)
    ref_layer.build(x.shape)
    _randomise(ref_layer, seed=2)
    ref = np.asarray(ref_layer(x))
    layer = ShuffleAttention(groups=2, dtype=pure, **kwargs)
    layer.build(x.shape)
    layer.set_weights(ref_layer.get_weights())
    y = layer(x)
    assert y.dtype == pure
    y = np.asarray(tf.cast(y, tf.float32))
    assert np.all(np.isfinite(y))
    tol = {"float16": 1e-2, "bfloat16": 6e-2}[pure]
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol * np.abs(ref).max())
    upstream = np.random.default_rng(3).normal(size=x.shape).astype("float32")

    def loss():
        return keras.ops.sum(keras.ops.cast(layer(x), "float32") * upstream)

    for var, grad in zip(layer.trainable_variables, gradients(loss, layer.trainable_variables)):
        assert grad.dtype == pure, var.path
        assert np.all(np.isfinite(grad.astype("float32"))), var.path
    dx = input_gradient(layer, x, upstream)
    dx_ref = input_gradient(ref_layer, x, upstream)
    np.testing.assert_allclose(dx, dx_ref, rtol=4 * tol, atol=4 * tol * np.abs(dx_ref).max())


def test_pure_float16_global_policy():
    keras.config.set_dtype_policy("float16")
    y = ShuffleAttention(groups=4)(_input())
    assert y.dtype == "float16"
    assert np.all(np.isfinite(np.asarray(y)))
