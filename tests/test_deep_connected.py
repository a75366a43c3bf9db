"""DCA connected layers: connection functions, size matching, host equivalence, chains, errors."""

import itertools
import math
import os

import numpy as np
import pytest

import keras

import keras_attn
from _autodiff import gradients

from keras_attn import (
    CBAM,
    DCACBAM,
    DCASqueezeExcite,
    DCAShiftAndBalance,
    ShiftAndBalance,
    SqueezeExcite,
    get_attention,
)
from keras_attn.layers.dca_official import load_official_dca_weights
from keras_attn.layers.deep_connected import adaptive_bins, connect, match_spatial
from keras_attn.registry import is_connected
from test_cbam import conv_same  # the same direct-loop reference

EPS_BN = 1e-5


# -- NumPy references ---------------------------------------------------------------------------


def _sigmoid(v):
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def connect_ref(g, p, alpha, connection):
    """dcanet.txt Eq. 4-6, written from the paper (float64), not from the code."""
    g, q = np.asarray(g, np.float64), alpha * np.asarray(p, np.float64)
    if connection == "direct":  # Eq. 4
        return g + q
    if connection == "weighted":
        same_sign = g * q >= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            paper = g / (g + q) * g + q / (g + q) * q  # Eq. 5
        paper = np.where(g + q == 0, 0.0, paper)
        # The documented departure where the signs differ, Eq. 5's weights on magnitudes,
        # (|G| G + |q| q) / (|G| + |q|): with G > 0 > q that is (G^2 - q^2) / (G - q) = G + q
        # (and the same with G < 0 < q), so the reference there is the plain sum.
        return np.where(same_sign, paper, g + q)
    eg, eq = np.exp(-g), np.exp(-q)  # Eq. 6
    return eg / (eg + eq) * g + eq / (eg + eq) * q


def test_connection_functions_on_hand_computed_scalars():
    # (G, alpha*P) -> f, worked out by hand from dcanet.txt Eq. 4-6 and the documented departure.
    cases = {
        "direct": [(3.0, -1.0, 2.0), (0.5, 0.25, 0.75)],  # Eq. 4: G + q
        # Eq. 5, (G^2 + q^2) / (G + q): 1, 3 -> 10/4; -2, -2 -> 8/-4; 0, 5 -> 25/5. Signs that
        # differ (the departure): G + q, 3, -1 -> 2; -0.5, 2 -> 1.5.
        "weighted": [(1.0, 3.0, 2.5), (-2.0, -2.0, -2.0), (0.0, 5.0, 5.0), (3.0, -1.0, 2.0),
                     (-0.5, 2.0, 1.5)],
        # Eq. 6: 1, 0 -> e^-1 / (e^-1 + 1) = 1 / (1 + e); 2, 2 -> 2; 0, 0 -> 0.
        "softmax": [(1.0, 0.0, 1.0 / (1.0 + np.e)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0)],
    }
    for connection, rows in cases.items():
        g, q, expected = (np.array(c, "float32") for c in zip(*rows))
        got = keras.ops.convert_to_numpy(connect(g, q, 1.0, connection))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, err_msg=connection)
        # alpha scales the previous map before f: alpha = 2 on q/2 is the same case.
        got = keras.ops.convert_to_numpy(connect(g, q / 2, 2.0, connection))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, err_msg=connection)


def dense_ref(v, layer):
    w = layer.get_weights()
    out = v @ w[0] + (w[1] if len(w) > 1 else 0.0)
    return np.maximum(out, 0.0) if layer.activation.__name__ == "relu" else out


def match_ref(p, layer):
    if getattr(layer, "match_fc", None) is not None:
        return dense_ref(p, layer.match_fc)
    if getattr(layer, "match_fc1", None) is not None:
        return dense_ref(dense_ref(p, layer.match_fc1), layer.match_fc2)
    return p


def adaptive_pool_ref(m, out_hw, mode):
    """PyTorch adaptive pooling of a channels-last 1-D, 2-D or 3-D map, box by box."""
    reduce = np.mean if mode == "avg" else np.max
    in_sizes, out_sizes = m.shape[1:-1], tuple(out_hw)
    bins = [
        [(int(np.floor(i * n / o)), int(np.ceil((i + 1) * n / o))) for i in range(o)]
        for n, o in zip(in_sizes, out_sizes)
    ]
    out = np.zeros((m.shape[0],) + out_sizes + (m.shape[-1],))
    axes = tuple(range(1, 1 + len(out_sizes)))
    for idx in itertools.product(*(range(o) for o in out_sizes)):
        box = tuple(slice(*bins[a][i]) for a, i in enumerate(idx))
        out[(slice(None),) + idx] = reduce(m[(slice(None),) + box], axis=axes)
    return out


def _spatial_axes(x):
    return tuple(range(1, x.ndim - 1))


def _per_channel(v, x):
    """A (batch, C) array shaped to broadcast against the channels-last map ``x``."""
    return v.reshape((v.shape[0],) + (1,) * (x.ndim - 2) + (v.shape[-1],))


def _alpha(layer, name="alpha"):
    return float(keras.ops.convert_to_numpy(getattr(layer, name)))


def _randomise(layer, seed=1, scale=0.5):
    rng = np.random.default_rng(seed)
    new = []
    for v in layer.weights:
        value = rng.normal(0.0, scale, v.shape).astype("float32")
        if "moving_variance" in v.path:
            value = np.abs(value) + 0.5
        new.append(value)
    layer.set_weights(new)


def _t(a):
    return keras.ops.convert_to_tensor(a)


def _np(t):
    return keras.ops.convert_to_numpy(keras.ops.cast(t, "float32"))


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# -- connection functions and matching helpers --------------------------------------------------


def test_connection_functions_match_numpy():
    g, p = _rand(4, 16, seed=1) * 3, _rand(4, 16, seed=2) * 3
    for connection in ("direct", "weighted", "softmax"):
        out = _np(connect(_t(g), _t(p), 0.7, connection))
        np.testing.assert_allclose(out, connect_ref(g, p, 0.7, connection), rtol=1e-5, atol=1e-6)


def test_weighted_connection_is_the_papers_ratio_on_positive_terms():
    g, p = np.abs(_rand(3, 8, seed=3)) + 0.1, np.abs(_rand(3, 8, seed=4)) + 0.1
    out = _np(connect(_t(g), _t(p), 2.0, "weighted"))
    q = 2.0 * p
    np.testing.assert_allclose(out, (g * g + q * q) / (g + q), rtol=1e-5)


def test_softmax_connection_favours_the_smaller_term_as_eq6():
    # G = 0.5, aT = 1.5: (e^-0.5 0.5 + e^-1.5 1.5) / (e^-0.5 + e^-1.5) = 0.7689...
    out = _np(connect(_t(np.array([[0.5]], "float32")), _t(np.array([[1.5]], "float32")), 1.0,
                      "softmax"))
    expected = (np.exp(-0.5) * 0.5 + np.exp(-1.5) * 1.5) / (np.exp(-0.5) + np.exp(-1.5))
    np.testing.assert_allclose(out, [[expected]], rtol=1e-6)
    assert abs(expected - 0.769) < 1e-3


def test_softmax_connection_is_stable_for_large_values():
    g = np.array([[1e3, -1e3, 0.0]], "float32")
    p = np.array([[-1e3, 1e3, 0.0]], "float32")
    out = _np(connect(_t(g), _t(p), 1.0, "softmax"))
    np.testing.assert_allclose(out, [[-1e3, -1e3, 0.0]])


def test_weighted_connection_in_both_sign_regions():
    g, p = _rand(64, 32, seed=5) * 2, _rand(64, 32, seed=6) * 2
    out = _np(connect(_t(g), _t(p), 0.5, "weighted")).astype(np.float64)
    q = 0.5 * p.astype(np.float64)
    same = g * q > 0
    assert same.any() and (~same).any()
    # Same signs (both negative too): exactly Eq. 5.
    np.testing.assert_allclose(out[same], ((g * g + q * q) / (g + q))[same], rtol=1e-4, atol=1e-6)
    # Mixed signs: the departure stays a convex combination, where Eq. 5 is unbounded.
    lo, hi = np.minimum(g, q), np.maximum(g, q)
    assert np.all(out >= lo - 1e-5) and np.all(out <= hi + 1e-5)


def test_adaptive_bins_follow_pytorch():
    assert adaptive_bins(5, 3) == [(0, 2), (1, 4), (3, 5)]
    assert adaptive_bins(8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert adaptive_bins(2, 4) == [(0, 1), (0, 1), (1, 2), (1, 2)]  # upsampling repeats


def test_spatial_matching():
    # Integer ratio (one pooling op), non-divisible sizes and a smaller source (adaptive bins).
    for source, target in (((8, 8), (4, 4)), ((7, 9), (4, 3)), ((3, 4), (6, 4))):
        m = _rand(2, *source, 2, seed=5)
        for mode in ("avg", "max"):
            out = _np(match_spatial(_t(m), source, target, mode))
            ref = adaptive_pool_ref(m, target, mode)
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_spatial_matching_other_ranks():
    # 1-D and 3-D state maps: integer ratios, non-divisible sizes, a smaller source.
    cases = (
        ((8,), (4,)), ((7,), (3,)), ((3,), (6,)),
        ((4, 4, 4), (2, 2, 2)), ((3, 5, 4), (2, 3, 4)), ((2, 2, 3), (4, 2, 3)),
    )
    for source, target in cases:
        m = _rand(2, *source, 2, seed=5)
        for mode in ("avg", "max"):
            out = _np(match_spatial(_t(m), source, target, mode))
            ref = adaptive_pool_ref(m, target, mode)
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


# -- DCA SE ---------------------------------------------------------------------------------------


def dca_se_reference(x, prev, layer):
    g = x.mean(axis=_spatial_axes(x))
    z = g
    if prev is not None:
        z = connect_ref(g, match_ref(prev, layer), _alpha(layer), layer.connection)
    s = _sigmoid(dense_ref(dense_ref(z, layer.squeeze), layer.excite))
    return x * _per_channel(s, x), g * s


@pytest.mark.parametrize("matching", ["fc", "fc2"])
@pytest.mark.parametrize("connection", ["direct", "weighted", "softmax"])
def test_dca_se_connection_and_channel_matching(connection, matching):
    x, prev = _rand(2, 8, 8, 32, seed=1), np.abs(_rand(2, 16, seed=2))
    layer = DCASqueezeExcite(reduction=4, connection=connection, channel_matching=matching,
                             matching_reduction=8, alpha_init=0.8)
    layer.build([x.shape, prev.shape])
    assert _alpha(layer) == pytest.approx(0.8)
    if matching == "fc":
        assert layer.match_fc.kernel.shape == (16, 32)
    else:
        assert layer.match_fc1.kernel.shape == (16, 4) and layer.match_fc2.kernel.shape == (4, 32)
    _randomise(layer)
    y, state = layer([x, prev])
    y_ref, state_ref = dca_se_reference(x, prev, layer)
    np.testing.assert_allclose(_np(y), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(state), state_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 16, 32), (2, 3, 4, 4, 32)], ids=["1d", "3d"])
def test_dca_se_other_ranks(shape):
    x, prev = _rand(*shape, seed=1), np.abs(_rand(2, 16, seed=2))
    layer = DCASqueezeExcite(reduction=4, connection="weighted", alpha_init=0.8)
    layer.build([x.shape, prev.shape])
    _randomise(layer)
    y, state = layer([x, prev])
    y_ref, state_ref = dca_se_reference(x, prev, layer)
    np.testing.assert_allclose(_np(y), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(state), state_ref, rtol=1e-5, atol=1e-5)
    first = DCASqueezeExcite(reduction=4, connection="weighted", data_format="channels_first")
    first.build([np.moveaxis(x, -1, 1).shape, prev.shape])
    first.set_weights(layer.get_weights())
    y_first, state_first = first([np.moveaxis(x, -1, 1), prev])
    np.testing.assert_allclose(np.moveaxis(_np(y_first), 1, -1), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(state_first), state_ref, rtol=1e-5, atol=1e-5)


def test_dca_se_same_channels_has_no_matching_layer():
    layer = DCASqueezeExcite()
    layer.build([(None, 4, 4, 32), (None, 32)])
    assert layer.match_fc is None and layer.match_fc1 is None
    assert [w.path.split("/")[-1] for w in layer.weights if "alpha" in w.path] == ["alpha"]


def test_dca_se_without_previous_equals_host():
    x = _rand(2, 8, 8, 32)
    host, dca = SqueezeExcite(reduction=4), DCASqueezeExcite(reduction=4)
    host.build(x.shape)
    dca.build(x.shape)
    _randomise(host)
    assert [w.shape for w in dca.weights] == [w.shape for w in host.weights]
    dca.set_weights(host.get_weights())
    for inputs in (x, [x], [x, None]):
        y, state = dca(inputs)
        np.testing.assert_array_equal(_np(y), _np(host(x)))
        np.testing.assert_allclose(_np(state), dca_se_reference(x, None, dca)[1], rtol=1e-5)


def test_dca_se_direct_alpha_zero_equals_host():
    x, prev = _rand(2, 8, 8, 32), _rand(2, 64, seed=3)
    host, dca = SqueezeExcite(reduction=4), DCASqueezeExcite(reduction=4, alpha_init=0.0)
    host.build(x.shape)
    dca.build([x.shape, prev.shape])
    _randomise(host)
    dca.squeeze.set_weights(host.squeeze.get_weights())
    dca.excite.set_weights(host.excite.get_weights())
    np.testing.assert_array_equal(_np(dca([x, prev])[0]), _np(host(x)))


# -- DCA CBAM -------------------------------------------------------------------------------------


def dca_cbam_reference(x, prev, layer, mode="avg"):
    """DCA-CBAM in NumPy (inference BN); ``prev`` is ``[pc, ps]``, one of them or None."""
    pc, ps = None, None
    if prev is not None:
        pc, ps = {"all": prev, "channel": (prev, None), "spatial": (None, prev)}[layer.dims]
    w1, b1 = layer.mlp_hidden.get_weights()
    w2, b2 = layer.mlp_out.get_weights()
    gamma, beta, mean, var = layer.spatial_bn.get_weights()
    kernel = layer.spatial_conv.get_weights()[0]
    mlp = lambda v: np.maximum(v @ w1 + b1, 0.0) @ w2 + b2  # noqa: E731

    axes = _spatial_axes(x)
    gc = np.stack([x.mean(axis=axes), x.max(axis=axes)], axis=1)
    zc = gc if pc is None else connect_ref(gc, match_ref(pc, layer), _alpha(layer, "alpha_channel"),
                                            layer.connection)
    tc = _sigmoid(mlp(zc[:, 0]) + mlp(zc[:, 1]))
    x1 = x * _per_channel(tc, x)
    gs = np.stack([x1.max(axis=-1), x1.mean(axis=-1)], axis=-1)
    zs = gs
    if ps is not None:
        ps = adaptive_pool_ref(ps, gs.shape[1:-1], mode)
        zs = connect_ref(gs, ps, _alpha(layer, "alpha_spatial"), layer.connection)
    ts = _sigmoid((conv_same(zs, kernel) - mean) / np.sqrt(var + EPS_BN) * gamma + beta)
    states = {"channel": gc * tc[:, None, :], "spatial": gs * ts}
    state = [states["channel"], states["spatial"]] if layer.dims == "all" else states[layer.dims]
    return x1 * ts, state


def _assert_state(state, ref, tol=1e-4):
    if isinstance(ref, list):
        assert isinstance(state, (list, tuple)) and len(state) == len(ref)
        for s, r in zip(state, ref):
            np.testing.assert_allclose(_np(s), r, rtol=tol, atol=tol)
    else:
        np.testing.assert_allclose(_np(state), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("connection", ["direct", "weighted", "softmax"])
def test_dca_cbam_all_dims_with_matching(connection):
    x = _rand(2, 8, 8, 32, seed=1)
    pc = np.abs(_rand(2, 2, 16, seed=2))
    for mode, prev_hw in (("avg", (16, 16)), ("max", (16, 16)), ("avg", (9, 11)), ("max", (9, 11))):
        ps = np.abs(_rand(2, *prev_hw, 2, seed=3))
        layer = DCACBAM(reduction=4, kernel_size=3, connection=connection, spatial_matching=mode,
                        alpha_init=0.6)
        layer.build([x.shape, [pc.shape, ps.shape]])
        _randomise(layer, scale=0.3)
        y, state = layer([x, [pc, ps]], training=False)
        y_ref, state_ref = dca_cbam_reference(x, [pc, ps], layer, mode)
        np.testing.assert_allclose(_np(y), y_ref, rtol=1e-4, atol=1e-5)
        _assert_state(state, state_ref)


@pytest.mark.parametrize("dims", ["channel", "spatial"])
def test_dca_cbam_single_dimension(dims):
    x = _rand(2, 8, 8, 16, seed=1)
    prev = np.abs(_rand(2, 2, 16, seed=2)) if dims == "channel" else _rand(2, 8, 8, 2, seed=3)
    layer = DCACBAM(reduction=4, dims=dims, channel_matching="fc2", matching_reduction=4)
    layer.build([x.shape, prev.shape])
    names = [w.path.split("/")[-1] for w in layer.weights]
    assert ("alpha_channel" in names) == (dims == "channel")
    assert ("alpha_spatial" in names) == (dims == "spatial")
    assert layer.match_fc1 is None  # same channel count: no matching
    _randomise(layer, scale=0.3)
    y, state = layer([x, prev], training=False)
    y_ref, state_ref = dca_cbam_reference(x, prev, layer)
    np.testing.assert_allclose(_np(y), y_ref, rtol=1e-4, atol=1e-5)
    _assert_state(state, state_ref)
    assert tuple(state.shape) == ((2, 2, 16) if dims == "channel" else (2, 8, 8, 2))


@pytest.mark.parametrize(
    "shape,prev_sizes",
    [((2, 16, 16), [(32,), (11,)]), ((2, 3, 4, 4, 16), [(6, 8, 8), (5, 4, 7)])],
    ids=["1d", "3d"],
)
def test_dca_cbam_other_ranks(shape, prev_sizes):
    # The spatial state is (batch, *spatial, 2), pooled along each axis; channels-first agrees.
    x = _rand(*shape, seed=1)
    pc = np.abs(_rand(2, 2, 8, seed=2))
    for mode, sizes in zip(("avg", "max"), prev_sizes):
        ps = np.abs(_rand(2, *sizes, 2, seed=3))
        layer = DCACBAM(reduction=4, kernel_size=3, spatial_matching=mode, alpha_init=0.6)
        layer.build([x.shape, [pc.shape, ps.shape]])
        n_spatial = len(shape) - 2
        assert layer.spatial_conv.kernel.shape == (3,) * n_spatial + (2, 1)
        _randomise(layer, scale=0.3)
        y, state = layer([x, [pc, ps]], training=False)
        y_ref, state_ref = dca_cbam_reference(x, [pc, ps], layer, mode)
        np.testing.assert_allclose(_np(y), y_ref, rtol=1e-4, atol=1e-5)
        _assert_state(state, state_ref)
        assert tuple(state[1].shape) == shape[:-1] + (2,)
        first = DCACBAM(
            reduction=4, kernel_size=3, spatial_matching=mode, data_format="channels_first"
        )
        first.build([np.moveaxis(x, -1, 1).shape, [pc.shape, ps.shape]])
        first.set_weights(layer.get_weights())
        y_f, state_f = first([np.moveaxis(x, -1, 1), [pc, ps]], training=False)
        np.testing.assert_allclose(np.moveaxis(_np(y_f), 1, -1), y_ref, rtol=1e-4, atol=1e-5)
        _assert_state(state_f, state_ref)


def test_dca_cbam_without_previous_and_alpha_zero_equal_host():
    x = _rand(2, 8, 8, 32)
    host = CBAM(reduction=4)
    host.build(x.shape)
    _randomise(host, scale=0.3)
    ref = _np(host(x, training=False))

    first = DCACBAM(reduction=4)
    first.build(x.shape)
    assert [w.shape for w in first.weights] == [w.shape for w in host.weights]
    first.set_weights(host.get_weights())
    y, state = first(x, training=False)
    np.testing.assert_array_equal(_np(y), ref)
    assert [tuple(s.shape) for s in state] == [(2, 2, 32), (2, 8, 8, 2)]

    prev = [_rand(2, 2, 16, seed=4), _rand(2, 16, 16, 2, seed=5)]
    zero = DCACBAM(reduction=4, alpha_init=0.0)
    zero.build([x.shape, [p.shape for p in prev]])
    for name in ("mlp_hidden", "mlp_out", "spatial_conv", "spatial_bn"):
        getattr(zero, name).set_weights(getattr(host, name).get_weights())
    np.testing.assert_array_equal(_np(zero([x, prev], training=False)[0]), ref)


def test_dca_cbam_channels_first_matches_channels_last():
    x = _rand(2, 8, 8, 16)
    prev = [np.abs(_rand(2, 2, 8, seed=2)), _rand(2, 16, 16, 2, seed=3)]
    last = DCACBAM(reduction=4)
    first = DCACBAM(reduction=4, data_format="channels_first")
    last.build([x.shape, [p.shape for p in prev]])
    first.build([(2, 16, 8, 8), [p.shape for p in prev]])
    _randomise(last, scale=0.3)
    first.set_weights(last.get_weights())
    y_l, s_l = last([x, prev], training=False)
    y_f, s_f = first([x.transpose(0, 3, 1, 2), prev], training=False)
    np.testing.assert_allclose(_np(y_f), _np(y_l).transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-6)
    for a, b in zip(s_f, s_l):  # the spatial state is channels-last in both layouts
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-6)


# -- DCA SB ---------------------------------------------------------------------------------------


def _bn_ref(v, layer):
    gamma, beta, mean, var = layer.get_weights()
    return (v - mean) / np.sqrt(var + EPS_BN) * gamma + beta


def dca_sb_reference(x, t, prev, layer):
    g = x.mean(axis=_spatial_axes(x))
    z = g
    if prev is not None:
        z = connect_ref(g, match_ref(prev, layer), _alpha(layer), layer.connection)
    h = np.maximum(_bn_ref(z @ layer.fc1.get_weights()[0], layer.bn1), 0.0)
    a = _bn_ref(h @ layer.fc2.get_weights()[0], layer.bn2)
    a = np.tanh(a) if layer.gate == "tanh" else _sigmoid(a)
    cf = keras.ops.convert_to_numpy(layer.control_factor)
    y = t + _per_channel(cf * a, t)
    state = a * t.mean(axis=_spatial_axes(t)) if layer.gate == "sigmoid" else a
    return y, state


@pytest.mark.parametrize("gate", ["tanh", "sigmoid"])
def test_dca_sb_layer_form_with_previous(gate):
    x, t, prev = _rand(2, 8, 8, 16, seed=1), _rand(2, 4, 4, 24, seed=2), _rand(2, 12, seed=3)
    for connection in ("direct", "weighted", "softmax"):
        layer = DCAShiftAndBalance(gate=gate, connection=connection, hidden_ratio=0.5)
        layer.build([x.shape, t.shape, prev.shape])
        assert layer.match_fc.kernel.shape == (12, 16)  # matched to the branch input's channels
        _randomise(layer)
        y_ref, state_ref = dca_sb_reference(x, t, prev, layer)
        for inputs in ([x, t, prev], [[x, t], prev]):  # the placement code passes the nested form
            y, state = layer(inputs, training=False)
            np.testing.assert_allclose(_np(y), y_ref, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(_np(state), state_ref, rtol=1e-5, atol=1e-5)
        assert tuple(state.shape) == (2, 24)


@pytest.mark.parametrize(
    "x_shape,t_shape", [((2, 16, 16), (2, 8, 24)), ((2, 4, 4, 4, 16), (2, 2, 2, 3, 24))],
    ids=["1d", "3d"],
)
@pytest.mark.parametrize("gate", ["tanh", "sigmoid"])
def test_dca_sb_other_ranks(x_shape, t_shape, gate):
    x, t, prev = _rand(*x_shape, seed=1), _rand(*t_shape, seed=2), _rand(2, 12, seed=3)
    layer = DCAShiftAndBalance(gate=gate, connection="softmax", hidden_ratio=0.5)
    layer.build([x.shape, t.shape, prev.shape])
    _randomise(layer)
    y_ref, state_ref = dca_sb_reference(x, t, prev, layer)
    for inputs in ([x, t, prev], [[x, t], prev]):
        y, state = layer(inputs, training=False)
        np.testing.assert_allclose(_np(y), y_ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(_np(state), state_ref, rtol=1e-5, atol=1e-5)
    # A pair of maps of one rank is [x, t]; a map and a (batch, C) state is [t, state].
    pair = DCAShiftAndBalance(gate=gate)
    y, _ = pair([x, t])
    assert tuple(y.shape) == t.shape and pair.source_channels == x_shape[-1]
    block = DCAShiftAndBalance(gate=gate)
    y, state = block([t, _rand(2, 24, seed=4)])
    assert tuple(y.shape) == t.shape and block.source_channels == t_shape[-1]
    assert block.has_previous and tuple(state.shape) == (2, 24)


def test_dca_sb_block_forms_and_host_equivalence():
    t, prev = _rand(2, 8, 8, 16, seed=1), _rand(2, 16, seed=2)
    host = ShiftAndBalance()
    host.build(t.shape)
    _randomise(host)
    ref = _np(host(t, training=False))

    dca = DCAShiftAndBalance()
    dca.build(t.shape)
    assert [w.shape for w in dca.weights] == [w.shape for w in host.weights]
    dca.set_weights(host.get_weights())
    y, state = dca(t, training=False)
    np.testing.assert_array_equal(_np(y), ref)
    state_ref = dca_sb_reference(t, t, None, dca)[1]
    np.testing.assert_allclose(_np(state), state_ref, rtol=1e-5, atol=1e-6)

    zero = DCAShiftAndBalance(alpha_init=0.0)
    zero.build([t.shape, prev.shape])  # [t, previous_state]
    assert zero.match_fc is None
    for name in ("fc1", "bn1", "fc2", "bn2"):
        getattr(zero, name).set_weights(getattr(host, name).get_weights())
    zero.control_factor.assign(host.control_factor)
    np.testing.assert_array_equal(_np(zero([t, prev], training=False)[0]), ref)

    identity = DCAShiftAndBalance(lambda_init=0.0)
    x = _rand(2, 16, 16, 8, seed=3)
    np.testing.assert_array_equal(_np(identity([x, t], training=True)[0]), t)


# -- chains in functional models -----------------------------------------------------------------


def _chain_model(kind, form=None):
    """Three connected layers over two stages (16x16x16 -> 8x8x32), a classifier head."""
    inputs = keras.Input((16, 16, 8))
    h = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    if kind == "dca_sb":
        a = keras.layers.Conv2D(16, 1)(h)
        h, state = get_attention(kind)([h, a])  # layer-wise form [x, t]
        b = keras.layers.Conv2D(16, 3, padding="same")(h)
        h, state = get_attention(kind)([h, b, state])
        c = keras.layers.Conv2D(32, 3, strides=2, padding="same")(h)
        h, state = get_attention(kind, connection="softmax")([h, c, state])
    else:
        kwargs = {"reduction": 4, **({} if form is None else {"connection_form": form})}
        h, state = get_attention(kind, **kwargs)(h)
        h = keras.layers.Conv2D(16, 3, padding="same")(h)
        h, state = get_attention(kind, connection="weighted", **kwargs)([h, state])
        h = keras.layers.Conv2D(32, 3, strides=2, padding="same")(h)
        h, state = get_attention(kind, channel_matching="fc2", matching_reduction=4, **kwargs)(
            [h, state]
        )
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(inputs, [out, state] if not isinstance(state, list) else [out] + state)


@pytest.mark.parametrize("kind, form", [("dca_se", None), ("dca_cbam", None), ("dca_sb", None),
                                        ("dca_se", "official"), ("dca_cbam", "official")])
def test_chain_trains_and_round_trips(kind, form, tmp_path):
    model = _chain_model(kind, form)
    dcas = [layer for layer in model.layers if getattr(layer, "is_connected", False)]
    assert len(dcas) == 3
    assert not dcas[0].has_previous and dcas[1].has_previous and dcas[2].has_previous
    # Channels change only into the second stage (the SB branch reads 16-channel inputs throughout).
    if form == "official":
        assert dcas[1].official_match is None and dcas[2].official_match is not None
        assert dcas[2].match_fc is None and dcas[2].match_fc1 is None
    else:
        assert dcas[1].match_fc is None and dcas[1].match_fc1 is None
        if kind != "dca_sb":
            assert dcas[2].match_fc1 is not None

    x = _rand(4, 16, 16, 8)
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    trainer = keras.Model(model.input, model.outputs[0])
    trainer.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
    # Four samples to memorise: a few SGD steps on them must lower the loss (gradients reach
    # the chain and point downhill).
    losses = [float(trainer.train_on_batch(x, y)) for _ in range(8)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses

    path = tmp_path / f"{kind}_{form}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for a, b in zip(model(x, training=False), loaded(x, training=False)):
        np.testing.assert_array_equal(_np(a), _np(b))


def test_gradients_reach_alpha_and_matching_layers():
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(2, 8, 8, 16)).astype("float32")
    x2 = rng.normal(size=(2, 4, 4, 32)).astype("float32")
    weight = np.arange(32.0, dtype="float32")
    for kind in ("dca_se", "dca_cbam", "dca_sb"):
        first = get_attention(kind, reduction=4) if kind != "dca_sb" else get_attention(kind)
        second = get_attention(kind, reduction=4) if kind != "dca_sb" else get_attention(kind)
        _, state = first(x1, training=True)
        second([x2, state])  # builds the matching layers before their variables are listed

        def loss():
            y, _ = second([x2, state], training=True)
            return keras.ops.sum(keras.ops.square(y) * weight)

        grads = gradients(loss, second.trainable_variables)
        names = [v.path.split("/", 1)[1] for v in second.trainable_variables]
        assert any("alpha" in n for n in names) and any("match_fc" in n for n in names)
        for name, g in zip(names, grads):
            assert g is not None and np.any(g != 0), (kind, name)


def test_mixed_precision_chain(policy):
    big = (np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 16)) * 1e3).astype("float32")
    nxt = (np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 32)) * 1e3).astype("float32")
    compute = keras.mixed_precision.global_policy().compute_dtype
    variants = [(kind, {}, {"connection": connection})
                for kind in ("dca_se", "dca_cbam", "dca_sb")
                for connection in ("direct", "weighted", "softmax")]
    variants += [(kind, {"connection_form": "official"}, {"connection_form": "official"})
                 for kind in ("dca_se", "dca_cbam")]
    for kind, first_kwargs, kwargs in variants:
        first, second = get_attention(kind, **first_kwargs), get_attention(kind, **kwargs)
        _, state = first(big, training=True)
        y, state = second([nxt, state], training=False)
        for tensor in [y] + (list(state) if isinstance(state, list) else [state]):
            assert tensor.dtype == compute
            assert np.all(np.isfinite(_np(tensor))), (kind, kwargs)
        # The same layers' weights in float32: the mixed result is the float32 one, rounded.
        ref_first = get_attention(kind, dtype="float32", **first_kwargs)
        ref_second = get_attention(kind, dtype="float32", **kwargs)
        _, ref_state = ref_first(big, training=False)
        ref_second([nxt, ref_state], training=False)
        ref_first.set_weights(first.get_weights())
        ref_second.set_weights(second.get_weights())
        _, state = first(big, training=False)
        y, _ = second([nxt, state], training=False)
        _, ref_state = ref_first(big, training=False)
        ref_y, _ = ref_second([nxt, ref_state], training=False)
        ref_y = _np(ref_y)
        # Inputs of magnitude 1e3 rounded to 11 (float16) or 8 (bfloat16) mantissa bits,
        # through two layers: errors of ~0.5% (float16) and ~3% (bfloat16) of the largest
        # value. A gate whose logit is near 0 (CBAM's 7x7 spatial conv sums 98 such inputs)
        # may move by more on a few elements: 99% of them must be within the tolerance.
        tol = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 5e-2}[compute]
        diff = np.abs(_np(y).astype("float32") - ref_y) / np.abs(ref_y).max()
        assert np.quantile(diff, 0.99) <= tol, (kind, kwargs, np.quantile(diff, 0.99))
        assert diff.mean() <= tol / 4, (kind, kwargs, diff.mean())


# -- the official code's connection (connection_form="official") ------------------------------

# The official modules' outputs, made with PyTorch from github.com/13952522076/DCANet @29c0792
# (CSELayer, CBAM) on fixed inputs with seeded random weights, and the second module's
# state_dict (tests/data/README.md).
OFFICIAL_DATA = os.path.join(os.path.dirname(__file__), "data", "dcanet_official.npz")
OFFICIAL_CASES = ["se_same", "se_change", "cbam_same", "cbam_change"]


def _official_case(case):
    with np.load(OFFICIAL_DATA) as data:
        return {k[len(case) + 1:]: data[k] for k in data.files if k.startswith(case + "/")}


def _torch_state(data):
    return {k[len("torch_l2/"):]: v for k, v in data.items() if k.startswith("torch_l2/")}


def _to_last(a, data_format):
    return np.moveaxis(a, 1, -1) if data_format == "channels_first" else a


def _to_format(a, data_format):
    return np.moveaxis(a, -1, 1) if data_format == "channels_first" else a


def _official_chain(case, data, data_format):
    """Block 1 (no previous state: the host, its weights in Keras layout) and block 2 (the
    official module's state_dict, through load_official_dca_weights) on x1, x2."""
    cls = DCASqueezeExcite if case.startswith("se") else DCACBAM
    call = {"training": False} if cls is DCACBAM else {}
    x1, x2 = (_to_format(data[k], data_format) for k in ("x1", "x2"))
    kwargs = {"reduction": int(data["reduction"]), "connection_form": "official",
              "data_format": data_format}
    first, second = cls(**kwargs), cls(**kwargs)
    _, state = first(x1, **call)
    second([x2, state], **call)
    for key, value in data.items():
        if key.startswith("l1/"):
            variable = first
            for part in key[3:].split("/"):
                variable = getattr(variable, part)
            variable.assign(value)
    assert len(first.weights) == len([k for k in data if k.startswith("l1/")])
    load_official_dca_weights(second, _torch_state(data))
    _, state = first(x1, **call)
    return second([x2, state], **call)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", OFFICIAL_CASES)
def test_official_fusion_reproduces_the_official_code(case, data_format):
    data = _official_case(case)
    y, state = _official_chain(case, data, data_format)
    y = _to_last(_np(y), data_format)
    np.testing.assert_allclose(y, data["official_random/y2"], rtol=0, atol=1e-5)
    if case.startswith("se"):
        np.testing.assert_allclose(_np(state), data["official_random/state2_0"], rtol=0,
                                   atol=1e-5)
        return
    # The official CBAM hands on its two maps; the goldens hold their statistics: the channel
    # map's spatial average and maximum, the output map's channel maximum and mean.
    channel_map, output_map = (_to_last(_np(t), data_format) for t in state)
    np.testing.assert_array_equal(output_map, y)
    pooled = np.stack([channel_map.mean(axis=(1, 2)), channel_map.max(axis=(1, 2))], axis=1)
    np.testing.assert_allclose(pooled, data["official_random/state2_0"], rtol=0, atol=1e-5)
    compressed = np.stack([output_map.max(axis=-1), output_map.mean(axis=-1)], axis=-1)
    np.testing.assert_allclose(compressed, data["official_random/state2_1"], rtol=0, atol=1e-5)


def _torch_bn_ref(z, w, prefix, training):
    """PyTorch BatchNorm2d (eps 1e-5) over axis 1 of an NCHW map: batch statistics (biased
    variance) when training, the running ones otherwise."""
    axes, shape = (0, 2, 3), (1, -1, 1, 1)
    if training:
        mean, var = z.mean(axis=axes, keepdims=True), z.var(axis=axes, keepdims=True)
    else:
        mean, var = (w[f"{prefix}.running_{k}"].reshape(shape) for k in ("mean", "var"))
    scale, offset = (w[f"{prefix}.{k}"].reshape(shape) for k in ("weight", "bias"))
    return (z - mean) / np.sqrt(var + EPS_BN) * scale + offset


def official_cbam_ref(x, prev_channel, prev_spatial, w, training):
    """resnet_cbam_dca.py's CBAM.forward (ChannelGate, SpatialGate) in float64 on NCHW maps, read
    from the official code; ``w`` is the module's state_dict. Returns ``(y, x * Mc)``."""
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731

    def mlp(v):
        h = relu(v @ w["ChannelGate.mlp.1.weight"].T + w["ChannelGate.mlp.1.bias"])
        return h @ w["ChannelGate.mlp.3.weight"].T + w["ChannelGate.mlp.3.bias"]

    def fuse(g, p):  # Conv2d(2, 1, 1, bias=False) over [g, p], LayerNorm(C), ReLU
        k = w["ChannelGate.alpha.0.weight"].reshape(2)
        z = k[0] * g + k[1] * p
        z = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + EPS_BN)
        return relu(z * w["ChannelGate.alpha.1.weight"] + w["ChannelGate.alpha.1.bias"])

    pre = prev_channel
    if "ChannelGate.att_fc.0.weight" in w:  # Conv1x1 + BN + ReLU on the whole map
        pre = np.einsum("bchw,oc->bohw", pre, w["ChannelGate.att_fc.0.weight"][:, :, 0, 0])
        pre = pre + w["ChannelGate.att_fc.0.bias"].reshape(1, -1, 1, 1)
        pre = relu(_torch_bn_ref(pre, w, "ChannelGate.att_fc.1", training))
    logits = (mlp(fuse(x.mean(axis=(2, 3)), pre.mean(axis=(2, 3))))
              + mlp(fuse(x.max(axis=(2, 3)), pre.max(axis=(2, 3)))))
    x1 = x * _sigmoid(logits)[:, :, None, None]

    def compress(m):
        return np.stack([m.max(axis=1), m.mean(axis=1)], axis=1)

    ps = prev_spatial
    if ps.shape[2] != x.shape[2]:  # avg_pool2d(kernel = stride = extent) before compressing
        e = ps.shape[2] // x.shape[2]
        b, c, h, wd = ps.shape
        ps = ps.reshape(b, c, h // e, e, wd // e, e).mean(axis=(3, 5))
    z = w["SpatialGate.p1"] * compress(x1) + w["SpatialGate.p2"] * compress(ps)
    z = relu(_torch_bn_ref(z, w, "SpatialGate.bnrelu.0", training))
    kernel = w["SpatialGate.spatial.conv.weight"].transpose(2, 3, 1, 0)
    logits = np.moveaxis(conv_same(np.moveaxis(z, 1, -1), kernel), -1, 1)
    return x1 * _sigmoid(_torch_bn_ref(logits, w, "SpatialGate.spatial.bn", training)), x1


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("training", [False, True])
def test_official_cbam_against_a_reference_in_both_modes(training, data_format):
    # The official weights of the channel-and-resolution change (16 at 8x8 -> 32 at 4x4), on
    # previous maps of its own; training uses the batch statistics of the three BatchNorms.
    data = _official_case("cbam_change")
    weights = _torch_state(data)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 32, 4, 4))
    prev_channel, prev_spatial = rng.normal(size=(2, 3, 16, 8, 8))
    layer = DCACBAM(reduction=4, connection_form="official", data_format=data_format)
    inputs = [_to_format(np.moveaxis(a, 1, -1), data_format).astype("float32")
              for a in (x, prev_channel, prev_spatial)]
    layer([inputs[0], inputs[1:]])
    load_official_dca_weights(layer, weights)
    match_bn = layer.official_match.bn
    moving_mean = _np(match_bn.moving_mean)
    y, (channel_map, output_map) = layer([inputs[0], inputs[1:]], training=training)
    ref_y, ref_x1 = official_cbam_ref(x, prev_channel, prev_spatial, weights, training)
    for got, ref in ((y, ref_y), (channel_map, ref_x1), (output_map, ref_y)):
        got = np.moveaxis(_to_last(_np(got), data_format), -1, 1)
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5)
    # PyTorch's momentum 0.1 (Keras' 0.9) on the matching BN's moving mean.
    conv = np.einsum("bchw,oc->bohw", prev_channel,
                     weights["ChannelGate.att_fc.0.weight"][:, :, 0, 0])
    conv += weights["ChannelGate.att_fc.0.bias"].reshape(1, -1, 1, 1)
    expected = 0.9 * moving_mean + 0.1 * conv.mean(axis=(0, 2, 3)) if training else moving_mean
    np.testing.assert_allclose(_np(match_bn.moving_mean), expected, rtol=0, atol=1e-5)


def test_official_initialisation():
    x1, x2 = _rand(2, 8, 8, 16), _rand(2, 4, 4, 32, seed=1)
    se = [DCASqueezeExcite(reduction=4, connection_form="official") for _ in range(2)]
    cbam = [DCACBAM(reduction=4, connection_form="official") for _ in range(2)]
    for first, second in (se, cbam):
        _, state = first(x1)
        second([x2, state])
        assert first.official_fusion is None and first.official_match is None
    # The first block of a chain has no previous state: the host's variables only.
    host_se, host_cbam = SqueezeExcite(reduction=4), CBAM(reduction=4)
    host_se(x1), host_cbam(x1)
    assert len(se[0].weights) == len(host_se.weights)
    assert len(cbam[0].weights) == len(host_cbam.weights)

    def values(variable):
        return _np(variable)

    bound = 1.0 / math.sqrt(16)  # PyTorch's default Linear/Conv init: U(+-1/sqrt(fan_in))
    se_fusion, se_match = se[1].official_fusion, se[1].official_match
    np.testing.assert_array_equal(values(se_fusion.norm.gamma), np.ones(32))
    np.testing.assert_array_equal(values(se_fusion.norm.beta), np.zeros(32))
    for variable in (se_match.dense.kernel, se_match.dense.bias):
        v = values(variable)
        assert np.all(np.abs(v) <= bound) and np.any(v != 0)
    # The fusion conv: kaiming_normal_(fan_out = 1) = N(0, 2); its bias PyTorch's U(+-1/sqrt 2).
    draws = _np(se_fusion.kernel_initializer(shape=(20000,)))
    assert abs(draws.mean()) < 0.05 and abs(draws.std() - math.sqrt(2.0)) < 0.04
    draws = _np(se_fusion.bias_initializer(shape=(20000,)))
    assert np.abs(draws).max() <= 1 / math.sqrt(2.0)
    assert abs(draws.std() - 1 / math.sqrt(6.0)) < 0.01

    fusion, match, spatial = (getattr(cbam[1], n) for n in (
        "official_fusion", "official_match", "official_spatial_fusion"))
    assert fusion.bias is None and np.all(np.abs(values(fusion.kernel)) <= 1 / math.sqrt(2.0))
    assert np.all(np.abs(values(match.conv.kernel)) <= bound)
    np.testing.assert_array_equal(values(match.conv.bias), np.zeros(32))
    np.testing.assert_array_equal(values(match.bn.gamma), np.ones(32))
    assert float(values(spatial.p1)) == 1.0 and float(values(spatial.p2)) == 0.0
    np.testing.assert_array_equal(values(spatial.bn.gamma), np.zeros(2))
    np.testing.assert_array_equal(values(spatial.bn.beta), np.zeros(2))


def test_official_initialisation_leaves_the_connected_spatial_gate_constant():
    # The official key-name rule zeroes the spatial fusion's BN scale (and every bias): its
    # ReLU then outputs 0 with a zero gradient, so a connected block's spatial gate is
    # sigmoid(BN(conv(0))) = sigmoid(0) = 1/2 and nothing on that path receives a gradient.
    x1, x2 = _rand(2, 8, 8, 16), _rand(2, 8, 8, 16, seed=1)
    first, second = (DCACBAM(reduction=4, connection_form="official") for _ in range(2))
    _, state = first(x1, training=True)
    y, (channel_map, _) = second([x2, state], training=True)
    np.testing.assert_array_equal(_np(y), 0.5 * _np(channel_map))
    path = [second.official_spatial_fusion.p1, second.official_spatial_fusion.p2,
            second.official_spatial_fusion.bn.gamma, second.official_spatial_fusion.bn.beta,
            second.spatial_conv.kernel]
    weight = _rand(2, 8, 8, 16, seed=2)

    def loss():
        out, _ = second([x2, state], training=True)
        return keras.ops.sum(out * weight)

    grads = gradients(loss, second.trainable_variables)
    by_path = {v.path: np.asarray(g) for v, g in zip(second.trainable_variables, grads)}
    for variable in path:
        assert not np.any(by_path[variable.path]), variable.path
    # ... while the channel connection learns from the start.
    for variable in (second.official_fusion.kernel, second.official_fusion.norm.gamma):
        assert np.any(by_path[variable.path]), variable.path


def test_official_gradients_reach_every_connection_variable():
    xs = _rand(2, 8, 8, 16), _rand(2, 4, 4, 32, seed=1)
    weight = np.arange(32.0, dtype="float32")
    for cls in (DCASqueezeExcite, DCACBAM):
        first, second = (cls(reduction=4, connection_form="official") for _ in range(2))
        _, state = first(xs[0], training=True)
        second([xs[1], state])
        _randomise(second, seed=3)  # off the official init, whose spatial path has no gradient

        def loss():
            y, _ = second([xs[1], state], training=True)
            return keras.ops.sum(keras.ops.square(y) * weight)

        grads = gradients(loss, second.trainable_variables)
        names = [v.path.split("/", 1)[1] for v in second.trainable_variables]
        assert sum("official" in n for n in names) >= 5, names
        for name, g in zip(names, grads):
            assert g is not None and np.any(np.asarray(g) != 0), (cls.__name__, name)


@pytest.mark.parametrize("attention", ["dca_se", "dca_cbam"])
def test_official_fusion_through_build_model(attention):
    # ResNet-20 at 16x16: three stages (16, 32, 64 channels at 16, 8, 4): the state crosses two
    # channel and resolution changes; the official CBAM state is the two full maps.
    model = keras_attn.build_model("resnet20", (16, 16, 3), 10, attention=attention,
                                   attention_kwargs={"connection_form": "official", "reduction": 4},
                                   seed=0)
    dcas = [layer for layer in model.layers if getattr(layer, "is_connected", False)]
    assert [layer.has_previous for layer in dcas] == [False] + [True] * 8
    assert [layer.official_match is not None for layer in dcas] == [False] * 3 + [
        True, False, False, True, False, False]
    assert all(layer.connection_form == "official" for layer in dcas)
    # Trainable parameters, counted from the official modules' definitions (CSELayer, CBAM).
    channels = [16] * 3 + [32] * 3 + [64] * 3
    for i, (layer, c) in enumerate(zip(dcas, channels)):
        hidden = c // 4
        count = 2 * c * hidden + hidden + c  # the host's MLP
        if attention == "dca_cbam":
            count += 7 * 7 * 2 + 2  # spatial conv, BN scale and offset
        if i:
            c_prev = channels[i - 1]
            match = c_prev * c + c + 2 * c if c_prev != c else 0  # Linear/Conv1x1; LN/BN
            fusion = 3 + 2 * c if attention == "dca_se" else 2 + 2 * c + 6  # conv; LN; p1, p2, BN
            count += match + fusion
        got = sum(int(np.prod(v.shape)) for v in layer.trainable_weights)
        assert got == count, (i, got, count)
    if attention == "dca_cbam":
        # What the first stage's last block hands on: y and the two 16x16x16 maps.
        shapes = [tuple(t.shape) for t in keras.tree.flatten(dcas[2].output)]
        assert shapes == [(None, 16, 16, 16)] * 3
    out = _np(model(_rand(2, 16, 16, 3), training=True))
    assert out.shape == (2, 10) and np.all(np.isfinite(out))


def test_load_official_weights_errors_and_first_block():
    x = _rand(2, 8, 8, 16)
    first = DCASqueezeExcite(reduction=4, connection_form="official")
    _, state = first(x)
    second = DCASqueezeExcite(reduction=4, connection_form="official")
    second([x, state])
    weights = _torch_state(_official_case("se_same"))
    # The official first block has its (unused) fusion too: those keys are skipped, not loaded.
    assert sorted(load_official_dca_weights(first, weights)) == [
        "conv.0.bias", "conv.0.weight", "conv.1.bias", "conv.1.weight"]
    np.testing.assert_array_equal(_np(first.squeeze.kernel), weights["fc.0.weight"].T)
    with pytest.raises(ValueError, match=r"state_dict has no \['conv.0.bias'\]"):
        load_official_dca_weights(second, {k: v for k, v in weights.items() if k != "conv.0.bias"})
    with pytest.raises(ValueError, match="unexpected key 'att_fc.0.weight'.*'conv.0.weight'"):
        load_official_dca_weights(second, {**weights, "att_fc.0.weight": np.zeros((16, 16))})
    with pytest.raises(ValueError, match=r"'fc.0.weight' of shape \(4, 8\) does not fit"):
        load_official_dca_weights(second, {**weights, "fc.0.weight": np.zeros((4, 8))})
    # A DCA-CBAM connected along one gate takes the other gate's official keys as unused.
    cbam_weights = _torch_state(_official_case("cbam_change"))
    spatial = DCACBAM(reduction=4, dims="spatial", connection_form="official")
    spatial([_rand(2, 4, 4, 32), _rand(2, 8, 8, 16)])
    skipped = load_official_dca_weights(spatial, cbam_weights)
    counters = [k for k in cbam_weights if k.endswith("num_batches_tracked")]
    assert sorted(skipped) == sorted(set(counters) | {
        k for k in cbam_weights if k.startswith(("ChannelGate.att_fc.", "ChannelGate.alpha."))})
    p2 = float(cbam_weights["SpatialGate.p2"][0])
    assert float(_np(spatial.official_spatial_fusion.p2)) == p2 != 0.0
    paper = DCASqueezeExcite(reduction=4)
    paper(x)
    with pytest.raises(ValueError,
                       match="connection_form='official'.*got DCASqueezeExcite.*'paper'"):
        load_official_dca_weights(paper, weights)
    with pytest.raises(ValueError, match="got DCAShiftAndBalance"):
        load_official_dca_weights(DCAShiftAndBalance(), weights)


# -- registry, config, errors --------------------------------------------------------------------


def test_registry_and_config_round_trip():
    for name, cls in (("dca_se", DCASqueezeExcite), ("dca_cbam", DCACBAM),
                      ("dca_sb", DCAShiftAndBalance)):
        assert get_attention(name).__class__ is cls and is_connected(name) and cls.is_connected
    layer = DCACBAM(reduction=8, kernel_size=3, dims="spatial", connection="softmax",
                    channel_matching="fc2", matching_reduction=4, spatial_matching="max",
                    alpha_init=0.5, data_format="channels_first")
    config = layer.get_config()
    assert DCACBAM.from_config(config).get_config() == config
    for key, value in (("dims", "spatial"), ("connection", "softmax"), ("channel_matching", "fc2"),
                       ("matching_reduction", 4), ("spatial_matching", "max"), ("alpha_init", 0.5)):
        assert config[key] == value
    official = DCACBAM(connection_form="official", dims="channel")
    assert DCACBAM.from_config(official.get_config()).get_config() == official.get_config()
    assert official.get_config()["connection_form"] == "official"
    assert DCASqueezeExcite().get_config()["connection_form"] == "paper"
    sb = DCAShiftAndBalance(gate="sigmoid", connection="weighted", lambda_init=0.2)
    assert DCAShiftAndBalance.from_config(sb.get_config()).get_config() == sb.get_config()


BAD_ARGUMENTS = [
    (DCASqueezeExcite, {"connection": "sum"}, "connection.*'direct'.*'softmax'.*'sum'"),
    (DCASqueezeExcite, {"channel_matching": "conv"}, "channel_matching.*'fc2'.*'conv'"),
    (DCASqueezeExcite, {"matching_reduction": 0}, "matching_reduction.*>= 1.*0"),
    (DCASqueezeExcite, {"reduction": -1}, "reduction.*-1"),
    (DCACBAM, {"spatial_matching": "bilinear"}, "spatial_matching.*'avg'.*'max'.*'bilinear'"),
    (DCACBAM, {"dims": "both"}, "dims.*'all'.*'channel'.*'spatial'.*'both'"),
    (DCAShiftAndBalance, {"gate": "gelu"}, "gate.*'gelu'"),
    (DCAShiftAndBalance, {"alpha_init": "one"}, "alpha_init"),
    (DCASqueezeExcite, {"connection_form": "conv"}, "connection_form.*'paper'.*'official'.*'conv'"),
    (DCACBAM, {"connection_form": "Official"}, "connection_form.*'paper'.*'official'.*'Official'"),
]


def test_bad_arguments():
    for cls, kwargs, pattern in BAD_ARGUMENTS:
        with pytest.raises(ValueError, match=pattern):
            cls(**kwargs)
    # The official code has no Shift-and-Balance: DCA-SB keeps the paper's connection only.
    with pytest.raises(ValueError, match="connection_form"):
        DCAShiftAndBalance(connection_form="official")


def test_bad_previous_states():
    x = _rand(2, 8, 8, 16)
    with pytest.raises(ValueError, match=r"previous state must be \(batch, channels\).*rank 2"):
        DCASqueezeExcite()([x, _rand(2, 4, 4, 16)])
    with pytest.raises(ValueError, match=r"\(batch, 2, channels\)"):
        DCACBAM(dims="channel")([x, _rand(2, 16)])
    with pytest.raises(ValueError, match=r"\(batch, height, width, 2\)"):
        DCACBAM(dims="spatial")([x, _rand(2, 8, 8, 16)])
    with pytest.raises(ValueError, match="dims='all' expects"):
        DCACBAM()([x, _rand(2, 2, 16)])
    with pytest.raises(ValueError, match="previous state must be"):
        DCAShiftAndBalance()([x, _rand(2, 3, 16)])
    with pytest.raises(ValueError, match="4-D"):
        DCASqueezeExcite()(_rand(2, 16))
    layer = DCASqueezeExcite()
    layer(x)
    with pytest.raises(ValueError, match="built without a previous state"):
        layer([x, _rand(2, 16)])
    # An official DCA-CBAM takes the previous official layer's maps, not the paper's statistics.
    paper_state = [_rand(2, 2, 16), _rand(2, 8, 8, 2)]
    with pytest.raises(ValueError,
                       match=r"connection_form='official'.*channel state.*rank 4.*\(2, 2, 16\)"):
        DCACBAM(connection_form="official")([x, paper_state])
    with pytest.raises(ValueError, match=r"spatial state.*rank 4.*\(2, 8, 16\)"):
        DCACBAM(connection_form="official", dims="spatial")([x, _rand(2, 8, 16)])


def test_bad_spatial_state_rank_names_the_form():
    # The spatial state has the map's rank: (batch, steps, 2) for 1-D maps, 5-D for 3-D maps.
    with pytest.raises(ValueError, match=r"\(batch, steps, 2\).*rank 3"):
        DCACBAM(dims="spatial")([_rand(2, 8, 16), _rand(2, 8, 8, 2)])
    with pytest.raises(ValueError, match=r"\(batch, depth, height, width, 2\).*rank 5"):
        DCACBAM(dims="spatial")([_rand(2, 2, 4, 4, 16), _rand(2, 4, 4, 2)])


def test_spatial_connection_needs_static_sizes():
    x = keras.Input((None, None, 16))
    _, state = DCACBAM(reduction=4)(x)
    with pytest.raises(ValueError, match="static spatial sizes"):
        DCACBAM(reduction=4)([x, state])
    # A channel-only connection does not care.
    _, state = DCACBAM(reduction=4, dims="channel")(x)
    y, _ = DCACBAM(reduction=4, dims="channel")([x, state])
    assert tuple(y.shape) == (None, None, None, 16)
