"""DCANet's official connection (``connection_form="official"`` of DCA-SE, DCA-CBAM); its weights.

Source: the official code of DCANet (Ma et al., arXiv 2007.05099), github.com/13952522076/DCANet
at commit 29c0792: ``models/resnet/resnet_se_dca.py`` (``CSELayer``; the ResNet's
initialisation loop) and ``models/resnet/resnet_cbam_dca.py`` (``ChannelGate``, ``SpatialGate``,
``CBAM``; the ``ResidualNet`` initialisation by state-dict key). DCANet's published numbers
(Tables 1-6) were made with this code, whose connection is not the paper's Eq. 3-6:

* SE (``CSELayer``): the previous state ``P = GAP(x') * gate'`` (as in the paper) is matched to
  ``C`` channels by ``ReLU(LayerNorm_C(Linear(P)))`` when the channel counts differ, then stacked
  with ``G = GAP(x)`` as a 2-channel map and fused by a 1x1 convolution (2 -> 1, with bias),
  ``LayerNorm_C`` and ReLU: ``z = ReLU(LN(k0 G + k1 P + b))``; the gate is ``t(z)``.
* CBAM's channel gate (``ChannelGate``): the previous state is the previous block's whole
  channel-gated map; when the channel counts differ it is matched *before pooling* by
  ``ReLU(BN(Conv1x1(map)))``; its spatial average and maximum are fused with the current ones by
  one module shared by the two paths, ``ReLU(LN_C(k0 G + k1 P))`` (1x1 convolution without bias);
  the gate is ``sigmoid(MLP(z_avg) + MLP(z_max))``.
* CBAM's spatial gate (``SpatialGate``): the previous state is the previous block's whole output
  map, average-pooled *before it is compressed* when the resolutions differ (window = stride =
  ratio of the sizes), then ``z = ReLU(BN_2(p1 compress(x1) + p2 compress(P)))`` with two scalars
  ``p1``, ``p2`` and a BatchNorm over the two compressed channels (channel max, channel mean).

So an official DCA-CBAM hands on the two full maps ``[x * Mc, x * Mc * Ms]`` (in the layer's
``data_format``), where the paper form hands on their pooled statistics; an official DCA-SE
hands on the same ``(batch, C)`` state as the paper form.

Initialisation (the official code's, for the connection's own variables): SE's fusion kernel
``N(0, 2)`` (``kaiming_normal_``, fan_out 1) and bias ``U(+-1/sqrt 2)`` (PyTorch's default), its
matching Linear PyTorch's default ``U(+-1/sqrt C')`` for kernel and bias; LayerNorms 1 / 0. CBAM:
the fusion kernel ``U(+-1/sqrt 2)`` (PyTorch's default: the key-name rule of ``ResidualNet``
matches no "conv" in ``ChannelGate.alpha.0.weight``), the matching convolution's kernel
``U(+-1/sqrt C')`` and bias 0, its BN 1 / 0; ``p1 = 1``, ``p2 = 0``, and the spatial fusion's BN
scale **0** and offset 0 (the rule zeroes every BN scale whose key contains "SpatialGate", the
fusion's ``bnrelu`` included). A consequence, in the official code as here: the spatial fusion
then outputs ``ReLU(0) = 0``, whose gradient is 0, so no gradient reaches the spatial fusion
(``p1``, ``p2``, its BN) nor the spatial convolution of a connected block, and its spatial gate is
``sigmoid(offset of the spatial BN)``, one value over the whole map, for the whole training (a zero
scale stays zero under SGD and weight decay). The channel connection trains normally. If the
published DCA-CBAM rows (Tables 1, 5, 6) were trained with this code, every connected block had a
constant spatial gate (the test ``test_official_initialisation_leaves_the_connected_spatial_gate_
constant`` shows it); set ``official_spatial_fusion.bn.gamma`` to 1 for a live spatial connection.

Departures from the official code:

* Only a block that receives a previous state has connection variables; the official modules
  also create them (unused) in the first block of the chain, and the matching layers wherever
  the *block's* input channels differ from its output channels, e.g. in ResNet-50's first block
  (64 -> 256), where there is no previous state to match. Parameter counts differ by those
  unused variables (see ``keras_attn/presets/dcanet.json``).
* The hosts' own variables keep the hosts' (Keras) initialisation: the official ResNets also
  re-initialise the SE/CBAM MLPs (PyTorch's defaults) and zero CBAM's spatial BN scale.
* Resolutions that are not integer multiples are pooled adaptively (the official code only
  handles integer ratios, taken from the height); ``spatial_matching="max"`` max-pools instead.
* Keras' BatchNormalization updates its moving variance with the biased batch variance (PyTorch:
  unbiased); the normalisation itself is the same (momentum 0.9 = PyTorch's 0.1, epsilon 1e-5).
* Every rank the hosts take (1-D, 2-D, 3-D maps) and both data formats; the official code is 2-D,
  channels first.

:func:`load_official_dca_weights` sets a layer's variables from one official module's
``state_dict`` (PyTorch layout).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from keras_attn.layers._base import max_over, stats_dtype

CONNECTION_FORMS = ("paper", "official")

_EPS = 1e-5  # PyTorch's LayerNorm and BatchNorm2d default
_BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1


def _uniform(bound):
    return keras.initializers.RandomUniform(-bound, bound)


class StackFusion(keras.layers.Layer):
    """``ReLU(LayerNorm_C(k0 * g + k1 * p [+ b]))``: the official 1x1 convolution (2 -> 1) over the
    stacked ``[G, P]``, LayerNorm over the channels (last axis) and ReLU.

    ``g`` and ``p``: ``(..., C)`` of one shape. Variables: ``kernel`` (2,), ``bias`` () when
    ``use_bias``, and ``norm`` (LayerNormalization, epsilon 1e-5).
    """

    def __init__(self, use_bias, kernel_initializer, bias_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(2,),
                                      initializer=self.kernel_initializer)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(), initializer=self.bias_initializer)
        self.norm = keras.layers.LayerNormalization(epsilon=_EPS, name="norm",
                                                    dtype=self.dtype_policy)
        self.norm.build(input_shape)
        self.built = True

    def call(self, g, p):
        z = self.kernel[0] * g + self.kernel[1] * p
        if self.bias is not None:
            z = z + self.bias
        return ops.relu(self.norm(z))


class VectorMatch(keras.layers.Layer):
    """``ReLU(LayerNorm_C(Dense_C(p)))`` on a ``(batch, C')`` state: the official SE matching
    (``att_fc``: Linear + LayerNorm + ReLU), PyTorch's default initialisation of the Linear."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def build(self, input_shape):
        bound = 1.0 / math.sqrt(input_shape[-1])
        self.dense = keras.layers.Dense(
            self.channels, name="dense", dtype=self.dtype_policy,
            kernel_initializer=_uniform(bound), bias_initializer=_uniform(bound),
        )
        self.dense.build(input_shape)
        self.norm = keras.layers.LayerNormalization(epsilon=_EPS, name="norm",
                                                    dtype=stats_dtype(self.compute_dtype))
        self.norm.build(tuple(input_shape[:-1]) + (self.channels,))
        self.built = True

    def call(self, p):
        return ops.relu(self.norm(self.dense(p)))


class MapMatch(keras.layers.Layer):
    """``ReLU(BN(Conv1x1(m)))`` on a channels-last map ``(batch, *spatial, C')``: the official CBAM
    channel matching (``att_fc``), applied to the whole previous map before it is pooled. The 1x1
    convolution is a Dense over the channel axis; its kernel starts ``U(+-1/sqrt C')``, its bias
    0, the BN's scale 1 and offset 0."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def build(self, input_shape):
        bound = 1.0 / math.sqrt(input_shape[-1])
        self.conv = keras.layers.Dense(self.channels, name="conv", dtype=self.dtype_policy,
                                       kernel_initializer=_uniform(bound))
        self.conv.build(input_shape)
        self.bn = keras.layers.BatchNormalization(
            momentum=_BN_MOMENTUM, epsilon=_EPS, name="bn", dtype=self.dtype_policy
        )
        self.bn.build(tuple(input_shape[:-1]) + (self.channels,))
        self.built = True

    def call(self, m, training=None):
        return ops.relu(self.bn(self.conv(m), training=training))


class SpatialFusion(keras.layers.Layer):
    """``ReLU(BN_2(p1 * g + p2 * p))`` on ``(batch, *spatial, 2)`` compressed maps: the official
    CBAM spatial connection. ``p1`` starts at 1, ``p2`` at 0, the BN's scale and offset at 0 (the
    official initialisation; module docstring)."""

    def build(self, input_shape):
        self.p1 = self.add_weight(name="p1", shape=(), initializer="ones")
        self.p2 = self.add_weight(name="p2", shape=(), initializer="zeros")
        self.bn = keras.layers.BatchNormalization(
            momentum=_BN_MOMENTUM, epsilon=_EPS, gamma_initializer="zeros", name="bn",
            dtype=self.dtype_policy,
        )
        self.bn.build(input_shape)
        self.built = True

    def call(self, g, p, training=None):
        return ops.relu(self.bn(self.p1 * g + self.p2 * p, training=training))


def stack_fusion_for(host, dtype):
    """The official fusion module of a host (``"se"`` or ``"cbam"``), with its initialisation."""
    if host == "se":
        return StackFusion(True, keras.initializers.RandomNormal(stddev=math.sqrt(2.0)),
                           _uniform(1.0 / math.sqrt(2.0)), name="official_fusion", dtype=dtype)
    return StackFusion(False, _uniform(1.0 / math.sqrt(2.0)), name="official_fusion",
                       dtype=dtype)


def channels_last(m, data_format):
    """A ``channels_first`` map moved to ``(batch, *spatial, C)``; a channels-last one as is."""
    return ops.moveaxis(m, 1, -1) if data_format == "channels_first" else m


def pooled_rows(m, dtype):
    """``(batch, 2, C)``: spatial average (row 0) and maximum (row 1) of a channels-last map."""
    axes = tuple(range(1, len(m.shape) - 1))
    avg = ops.mean(ops.cast(m, dtype), axis=axes)
    return ops.stack([avg, ops.cast(max_over(m, axis=axes), dtype)], axis=1)


def compressed(m, dtype):
    """``(batch, *spatial, 2)``: channel maximum and channel mean of a channels-last map."""
    mean = ops.mean(ops.cast(m, dtype), axis=-1)
    return ops.stack([ops.cast(max_over(m, axis=-1), dtype), mean], axis=-1)


# ---------------------------------------------------------------------------------------------
# Official weights


def _torch_dense(weight):
    """PyTorch Linear / 1x1 Conv weight ``(out, in[, 1, 1])`` -> Dense kernel ``(in, out)``."""
    weight = np.asarray(weight)
    return weight.reshape(weight.shape[0], weight.shape[1]).T


def _torch_conv(weight):
    """PyTorch ConvNd weight ``(out, in, *k)`` -> Keras ``(*k, in, out)``."""
    weight = np.asarray(weight)
    return np.transpose(weight, tuple(range(2, weight.ndim)) + (1, 0))


def _flat(value):
    return np.asarray(value).reshape(-1)


def _scalar(value):
    return np.asarray(value).reshape(())


def _bn(prefix, bn):
    return {f"{prefix}.weight": (bn.gamma, _flat), f"{prefix}.bias": (bn.beta, _flat),
            f"{prefix}.running_mean": (bn.moving_mean, _flat),
            f"{prefix}.running_var": (bn.moving_variance, _flat)}


def _norm(prefix, norm):
    return {f"{prefix}.weight": (norm.gamma, _flat), f"{prefix}.bias": (norm.beta, _flat)}


def _dense(prefix, dense):
    return {f"{prefix}.weight": (dense.kernel, _torch_dense),
            f"{prefix}.bias": (dense.bias, _flat)}


def _se_targets(layer):
    """``{official key: (variable, converter)}`` of a DCASqueezeExcite (``CSELayer``)."""
    targets = {**_dense("fc.0", layer.squeeze), **_dense("fc.2", layer.excite)}
    if getattr(layer, "official_match", None) is not None:
        targets.update(_dense("att_fc.0", layer.official_match.dense))
        targets.update(_norm("att_fc.1", layer.official_match.norm))
    if getattr(layer, "official_fusion", None) is not None:
        fusion = layer.official_fusion
        targets["conv.0.weight"] = (fusion.kernel, _flat)
        targets["conv.0.bias"] = (fusion.bias, _scalar)
        targets.update(_norm("conv.1", fusion.norm))
    return targets


def _cbam_targets(layer):
    """``{official key: (variable, converter)}`` of a DCACBAM (``CBAM``)."""
    targets = {**_dense("ChannelGate.mlp.1", layer.mlp_hidden),
               **_dense("ChannelGate.mlp.3", layer.mlp_out),
               "SpatialGate.spatial.conv.weight": (layer.spatial_conv.kernel, _torch_conv),
               **_bn("SpatialGate.spatial.bn", layer.spatial_bn)}
    match = getattr(layer, "official_match", None)
    if match is not None:
        targets["ChannelGate.att_fc.0.weight"] = (match.conv.kernel, _torch_dense)
        targets["ChannelGate.att_fc.0.bias"] = (match.conv.bias, _flat)
        targets.update(_bn("ChannelGate.att_fc.1", match.bn))
    fusion = getattr(layer, "official_fusion", None)
    if fusion is not None:
        targets["ChannelGate.alpha.0.weight"] = (fusion.kernel, _flat)
        targets.update(_norm("ChannelGate.alpha.1", fusion.norm))
    spatial = getattr(layer, "official_spatial_fusion", None)
    if spatial is not None:
        targets["SpatialGate.p1"] = (spatial.p1, _scalar)
        targets["SpatialGate.p2"] = (spatial.p2, _scalar)
        targets.update(_bn("SpatialGate.bnrelu.0", spatial.bn))
    return targets


# The official modules' connection keys: the fusions exist in every official module, the channel
# matching wherever the *block's* channels change, connected or not.
_FUSION_KEYS = {
    "DCASqueezeExcite": ("conv.",),
    "DCACBAM": ("ChannelGate.alpha.", "SpatialGate.p1", "SpatialGate.p2", "SpatialGate.bnrelu."),
}
_MATCH_KEYS = {"DCASqueezeExcite": ("att_fc.",), "DCACBAM": ("ChannelGate.att_fc.",)}


def _skippable(layer, key):
    """Whether a key the layer has no variable for is expected: PyTorch's BN step counter, a
    fusion of a connection the layer does not make, a matching where it connects no channels."""
    name = type(layer).__name__
    if key.endswith("num_batches_tracked") or key.startswith(_FUSION_KEYS[name]):
        return True
    return key.startswith(_MATCH_KEYS[name]) and layer.official_fusion is None


def load_official_dca_weights(layer, state_dict):
    """Set a built DCA layer's variables from one official DCANet module's ``state_dict``.

    Source: github.com/13952522076/DCANet @29c0792, ``CSELayer`` (``resnet_se_dca.py``) for a
    :class:`~keras_attn.DCASqueezeExcite`, ``CBAM`` (``resnet_cbam_dca.py``) for a
    :class:`~keras_attn.DCACBAM`, both built with ``connection_form="official"`` (a layer without a
    previous state, i.e. the official first block, takes the host's keys only).

    Args:
        layer: a built ``DCASqueezeExcite`` or ``DCACBAM`` with ``connection_form="official"``.
        state_dict: ``{key: array}`` in PyTorch's layout and naming, relative to the module
            (``"fc.0.weight"``, ``"conv.0.weight"``, ``"att_fc.0.weight"``, ...;
            ``"ChannelGate.mlp.1.weight"``, ``"SpatialGate.spatial.conv.weight"``,
            ``"SpatialGate.bnrelu.0.running_var"``, ...), e.g. ``{k: v.numpy() for k, v in
            module.state_dict().items()}``. Linear weights ``(out, in)`` and convolution weights
            ``(out, in, *k)`` are transposed to Keras' layout.

    Returns:
        The keys not loaded: ``num_batches_tracked`` and the keys of connection parts the layer
        does not have (all of them in a layer built without a previous state, the official first
        block's; a DCACBAM's unconnected gate with ``dims="channel"`` or ``"spatial"``).

    Raises:
        ValueError: ``layer`` is not a built official DCA-SE/DCA-CBAM; a variable of the layer
            has no key in ``state_dict`` (the message names the missing keys); a key the module
            does not expect (names it and the valid ones: e.g. a matching where the layer's
            previous state has its channel count); an array whose size does not fit.
    """
    name = type(layer).__name__
    builders = {"DCASqueezeExcite": _se_targets, "DCACBAM": _cbam_targets}
    form = getattr(layer, "connection_form", None)
    if name not in builders or form != "official" or not layer.built:
        raise ValueError(
            "load_official_dca_weights takes a built DCASqueezeExcite or DCACBAM with "
            f"connection_form='official'; got {name} (connection_form={form!r}, "
            f"built={getattr(layer, 'built', None)})."
        )
    targets = builders[name](layer)
    missing = sorted(k for k in targets if k not in state_dict)
    if missing:
        raise ValueError(f"{name} {layer.name!r}: state_dict has no {missing}.")
    skipped = []
    for key, value in state_dict.items():
        if key in targets:
            variable, convert = targets[key]
            array = convert(value)
            if tuple(array.shape) != tuple(variable.shape):
                raise ValueError(f"{name} {layer.name!r}: {key!r} of shape {np.shape(value)} "
                                 f"does not fit {variable.path} of shape {variable.shape}.")
            variable.assign(array.astype(variable.dtype))
        elif _skippable(layer, key):
            skipped.append(key)
        else:
            raise ValueError(f"{name} {layer.name!r}: unexpected key {key!r} for this layer; "
                             f"its keys are {sorted(targets)}.")
    return skipped
