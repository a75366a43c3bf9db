"""Shuffle Attention (SA-Net): grouped channel + spatial attention followed by a channel shuffle.

Source: Qing-Long Zhang, Yu-Bin Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural
Networks", ICASSP 2021, arXiv 2102.00240; official code github.com/wofmanaf/SA-Net
(``models/sa_resnet.py``, ``sa_layer``).

The output equals the official ``sa_layer``::

    x            -> G groups of C/G channels; each group split in two halves of K = C/(2G)
    channel half -> x0 * sigmoid(channel_weight * GAP(x0) + channel_bias)
    spatial half -> x1 * sigmoid(spatial_weight * GN(x1) + spatial_bias)
                    GN: every channel normalised over H x W (GroupNorm with K groups of one
                    channel), eps 1e-5, affine ``norm_gamma``/``norm_beta``
    concatenate the halves back, then channel_shuffle(., 2):
                    output channel 2i+j = input channel j*C/2+i

The six vectors have shape ``(K,)`` and are shared by the G groups, so the layer has exactly
``3C/G`` parameters (C=256, G=64: 12).

How it is computed. With ``transform="affine"`` every channel c of every sample is gated as
``out = x * sigmoid(A_c * x + B_c)``: the channel half has ``A = 0``, ``B = w_c * mean + b_c``; the
spatial half has ``A = w_s * gamma / sqrt(var + eps)`` and
``B = w_s * (beta - gamma * mean / sqrt(var + eps)) + b_s``. The layer takes per-channel moments
in one reduction (float32 under mixed precision), does the group/branch bookkeeping on the tiny
``(batch, C)`` coefficient tensors, and touches the feature map once more for the fused gate and
once for the shuffle (one reshape/transpose/reshape). The official code's reshape, chunk,
GroupNorm and concatenate of the full map never happen. The spatial gate is evaluated in the
centred form ``A * (x - mean) + B'`` (one more elementwise op than ``A * x + B``), because ``A * x``
and ``A * mean`` nearly cancel for a channel whose mean is large against its spread: they overflow
float16, lose all bfloat16 precision, and in float32 gave gate errors of 0.3-0.8% of ``|x|`` on a
channel with mean 1e3 and spread 1e-3 (tests/test_shuffle_attention.py, large inputs).

The default path (``use_norm=True``) computes ``x - mean`` once, for the variance and for the
gate ``A (x - mean) + B'``, in the statistics dtype (6 elementwise passes over the map forward,
plus the shuffle), and its backward is written in closed form (``keras.ops.custom_gradient``,
every backend): with ``u = g x s (1 - s)`` the gradient of the map is
``g s + u A + (x - mean) c1 + c0``, where the per-channel ``c1``, ``c0`` carry the gradients
through the channel mean and variance, and the variables' gradients are per-channel sums of
``u (x - mean) / sqrt(var + eps)`` and ``u``. That is 8 elementwise passes backward where
automatic differentiation made about 20 (``u`` is ``g x`` and TensorFlow's fused ``SigmoidGrad``:
``keras_attn.layers._base.sigmoid_backprop``; the first three terms one ``AddN``;
benchmarks/README.md); ``_call_fused`` keeps the automatic path, and the tests check the two
gradients agree. The map is handled as the 3-D :class:`~keras_attn.layers._base.StatsView`
(``C < 64`` channels-last maps fold pixels into the last axis, so that per-channel broadcasts
run over at least 64 floats; the values differ from the plain layout's only in the order of the
spatial sums).

The channel shuffle is one transpose, except on TensorFlow's CPU kernels for a float32
channels-last map of at most 32 channels (ResNet-20's first two stages), where it is a product
with the permutation's 0/1 matrix: one pass of oneDNN's matrix product where TensorFlow's
transpose of this interleave cost 2-3 (benchmarks/README.md). The product is exact for finite
values (each output is one input times 1, plus zeros); it is not used where a GPU would round
its inputs to TensorFloat-32. **Departure** (from the transpose, not from the paper): a
non-finite value in such a map makes every channel of its pixel NaN (``inf * 0``), where the
transpose moves it alone; training has already diverged by then.

Other ranks: the paper defines SA on 2-D maps. On a 1-D map ``(batch, steps, channels)`` or a
3-D map ``(batch, depth, height, width, channels)`` the channel branch's GAP and the spatial
branch's GroupNorm statistics are taken over all spatial axes, ``transform="conv"`` is a
pointwise conv at every position, and the channel shuffle is the same permutation of channels.

Departures from the paper and the official code:

* Parameter count. The paper's abstract says SA adds "300" parameters to ResNet-50; the
  official code, which this layer follows, has ``3C/G`` per module: with G=64 on the 16 bottleneck
  outputs of ResNet-50 (3 x 256, 4 x 512, 6 x 1024, 3 x 2048 channels) that is
  ``3*12 + 4*24 + 6*48 + 3*96 = 708`` parameters.
* The paper's ablations are constructor arguments here (the official code has none of them):
  ``use_norm=False`` drops the GroupNorm of the spatial branch (and ``norm_gamma``/``norm_beta``);
  ``shuffle=False`` skips the channel shuffle; ``transform="none"`` drops the per-channel
  scale/shift ``F_c`` (weight 1, bias 0, no variables); ``transform="conv"`` replaces ``F_c`` of
  each branch by a 1x1 convolution over the K channels of a group (a ``K x K`` kernel plus bias,
  shared by the groups). The conv kernels start at zero and the biases at one, so every variant
  starts from the same function as the default; ``transform="conv"`` with a diagonal kernel equals
  ``transform="affine"``. The paper does not give its ablation code; these follow its text.
* ``C % (2 * groups) != 0`` is an error here; the official code fails later with a reshape error.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_attn.layers._base import (
    ArgumentChoices,
    AttentionLayer,
    StatsView,
    add_n,
    sigmoid_backprop,
    stats_dtype,
)
from keras_attn.validation import check_bool, check_choice, check_number
from keras_attn.registry import register_attention

TRANSFORMS = ("affine", "none", "conv")

# Largest magnitude kept for a float16 gate coefficient: finite after the cast, and sigmoid is
# saturated long before it.
_F16_LIMIT = 6.0e4


def valid_groups(channels):
    """The ``groups`` values ShuffleAttention accepts for ``channels`` input channels."""
    return [g for g in range(1, channels // 2 + 1) if channels % (2 * g) == 0]


# The channel shuffle is a product with a permutation matrix on TensorFlow's CPU kernels up to
# this many channels: there it cost one pass over the map, the transpose 2-3 (at C = 16-32 on the
# 2-core EPYC, benchmarks/README.md); the product's work grows with C, and from C = 64 the
# transpose was as fast or faster.
_PRODUCT_SHUFFLE_MAX_CHANNELS = 32


def _shuffle_by_product(layer, y):
    """Whether ``layer`` shuffles ``y``'s channels with a matrix product (see
    ``_PRODUCT_SHUFFLE_MAX_CHANNELS``): TensorFlow, channels last, float32, few channels, and a
    product that is exact, i.e. no GPU that would round its inputs to TensorFloat-32."""
    if keras.backend.backend() != "tensorflow" or layer.data_format != "channels_last":
        return False
    if layer.channels > _PRODUCT_SHUFFLE_MAX_CHANNELS:
        return False
    if keras.backend.standardize_dtype(y.dtype) != "float32":
        return False
    import tensorflow as tf

    return not (tf.config.list_logical_devices("GPU")
                and tf.config.experimental.tensor_float_32_execution_enabled())


def _permutation(channels):
    """The ``(C, C)`` float32 matrix ``P`` with ``(y @ P)[..., 2i + j] = y[..., j C/2 + i]``."""
    half = channels // 2
    p = np.zeros((channels, channels), "float32")
    for i in range(half):
        for j in range(2):
            p[j * half + i, 2 * i + j] = 1.0
    return p


@register_attention("sa")
@keras.saving.register_keras_serializable(package="keras_attn")
class ShuffleAttention(AttentionLayer):
    """Shuffle Attention of SA-Net (Zhang & Yang, ICASSP 2021, arXiv 2102.00240).

    Input: a feature map in ``data_format``: 1-D ``(batch, steps, channels)``, 2-D ``(batch,
    height, width, channels)`` or 3-D ``(batch, depth, height, width, channels)``
    (``"channels_last"``), or ``(batch, channels, steps)``, ``(batch, channels, height, width)``,
    ``(batch, channels, depth, height, width)`` (``"channels_first"``). ``channels``
    divisible by ``2 * groups``; statistics over all spatial axes. Output: same shape, in the
    layer's compute dtype.

    Args:
        groups: number G of channel groups (default 64, the paper's value for ResNets; the
            official code uses 8 for MobileNetV2). Each group has ``C / G`` channels.
        epsilon: GroupNorm epsilon, ``> 0`` (default ``1e-5``, as ``torch.nn.GroupNorm``).
        use_norm: normalise the spatial branch (default True). False is the paper's "w/o GN"
            ablation and drops ``norm_gamma``/``norm_beta``.
        shuffle: apply the final channel shuffle with 2 groups (default True).
        transform: the per-branch function applied before the sigmoid: ``"affine"`` (default,
            per-channel scale and shift, the paper's ``F_c``), ``"none"`` (identity, no variables)
            or ``"conv"`` (a 1x1 convolution over the ``C/(2G)`` channels of a group, with bias,
            shared by the groups; slower, it mixes channels at every pixel).
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        **kwargs: passed to ``keras.layers.Layer``.

    Variables, ``K = C // (2 * groups)``: ``channel_weight`` (init 0), ``channel_bias`` (1),
    ``spatial_weight`` (0), ``spatial_bias`` (1), ``norm_gamma`` (1), ``norm_beta`` (0), each of
    shape ``(K,)``: ``3C/G`` parameters. With ``transform="conv"`` the two weights are ``(K, K)``
    kernels (init 0); with ``transform="none"`` the four weight/bias vectors do not exist, nor
    do the norm vectors with ``use_norm=False``. Absent variables are ``None`` attributes.

    Non-finite inputs are not checked (a check would cost a reduction per call): a NaN or Inf
    passes through to the output, within its own sample, in training and in inference mode.

    Raises:
        ValueError: at construction, ``groups`` not a positive integer, ``epsilon <= 0``,
            ``use_norm``/``shuffle`` not booleans, unknown ``transform`` or ``data_format``; at
            build, an input that is not 3-D, 4-D or 5-D (the message names its rank) or whose channels are not divisible by
            ``2 * groups`` (the message lists the valid ``groups``).
    """

    # SA-Net's group count G: 64 for its ResNets (the official code's 8 for MobileNetV2 is among
    # the choices); placement lowers G to the largest choice that divides the channels.
    search_space = {"groups": ArgumentChoices((8, 16, 32, 64), 64, "SA-Net (arXiv 2102.00240)")}

    def __init__(
        self,
        groups=64,
        epsilon=1e-5,
        use_norm=True,
        shuffle=True,
        transform="affine",
        data_format="channels_last",
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        self.groups = check_number("groups", groups, minimum=1, integer=True)
        self.epsilon = check_number("epsilon", epsilon, minimum=0.0, strict=True)
        self.use_norm = check_bool("use_norm", use_norm)
        self.shuffle = check_bool("shuffle", shuffle)
        self.transform = check_choice("transform", transform, TRANSFORMS)
        self.channel_weight = self.channel_bias = None
        self.spatial_weight = self.spatial_bias = None
        self.norm_gamma = self.norm_beta = None

    @classmethod
    def adapt_to_channels(cls, kwargs, channels, where=None):
        """``kwargs`` with ``groups`` lowered to the largest valid g <= ``groups`` for ``channels``.

        The rule is the build check's (:func:`valid_groups`): ``channels % (2 * g) == 0``.

        Raises:
            ValueError: ``channels`` is odd (no ``groups`` is valid).
        """
        kwargs = dict(kwargs)
        groups = kwargs.get("groups", 64)
        valid = [g for g in valid_groups(channels) if g <= groups]
        if not valid:
            at = f" after {where!r}" if where else ""
            raise ValueError(
                f"ShuffleAttention cannot go{at}: it has {channels} channels and needs an even "
                f"number (C % (2 * groups) == 0 for some groups >= 1)."
            )
        kwargs["groups"] = valid[-1]
        return kwargs

    def build(self, input_shape):
        self._set_axes(input_shape)
        c, g = self.channels, self.groups
        if c % (2 * g) != 0:
            valid = valid_groups(c)
            hint = (
                f"valid `groups` for {c} channels: {', '.join(map(str, valid))}"
                if valid
                else "the channel count must be even"
            )
            raise ValueError(
                f"ShuffleAttention: the input channels C={c} must be divisible by 2*groups "
                f"= {2 * g} (`groups`={g}); {hint}."
            )
        k = c // (2 * g)
        self.group_channels = k

        # Coefficient math runs on (batch, C) tensors in the statistics dtype, so the variables
        # are read at full precision instead of being autocast to float16.
        def weight(name, shape, init):
            return self.add_weight(name=name, shape=shape, initializer=init, autocast=False)

        if self.transform == "affine":
            self.channel_weight = weight("channel_weight", (k,), "zeros")
            self.channel_bias = weight("channel_bias", (k,), "ones")
            self.spatial_weight = weight("spatial_weight", (k,), "zeros")
            self.spatial_bias = weight("spatial_bias", (k,), "ones")
        elif self.transform == "conv":
            self.channel_weight = weight("channel_weight", (k, k), "zeros")
            self.channel_bias = weight("channel_bias", (k,), "ones")
            self.spatial_weight = weight("spatial_weight", (k, k), "zeros")
            self.spatial_bias = weight("spatial_bias", (k,), "ones")
        if self.use_norm:
            self.norm_gamma = weight("norm_gamma", (k,), "ones")
            self.norm_beta = weight("norm_beta", (k,), "zeros")
        self.built = True

    # -- helpers -----------------------------------------------------------------------------

    def _split(self, stat):
        """(B, C) per-channel statistic -> channel-half and spatial-half, each (B, G, K)."""
        s = ops.reshape(stat, (-1, self.groups, 2, self.group_channels))
        return s[:, :, 0, :], s[:, :, 1, :]

    def _merge(self, channel_half, spatial_half, ndim):
        """Inverse of ``_split``, shaped to broadcast against the feature map."""
        s = ops.stack([channel_half, spatial_half], axis=2)
        return ops.reshape(s, (-1,) + self._channel_shape(ndim)[1:])

    def _channel_shuffle(self, y):
        # Output channel 2i+j = input channel j*C/2+i.
        if _shuffle_by_product(self, y):
            # The permutation as a product with its 0/1 matrix: one pass through oneDNN's matrix
            # product, where TensorFlow's CPU transpose of this interleave is several (module
            # docstring). Exact for finite values: each output is one input times 1 plus zeros.
            return ops.reshape(
                ops.matmul(ops.reshape(y, (-1, self.channels)), _permutation(self.channels)),
                ops.shape(y),
            )
        # As one transpose. The pixels (or the batch) are folded into one axis: TF's transpose
        # of a rank-3 view is ~1.7x faster on CPU than the same permutation of the rank-5 view.
        shape = ops.shape(y)
        half = self.channels // 2
        if self.data_format == "channels_last":
            y = ops.transpose(ops.reshape(y, (-1, 2, half)), (0, 2, 1))
        else:
            # The pixel count is spelled out, not -1: JAX cannot infer a -1 next to an empty
            # batch (0 / 0).
            pixels = 1
            for axis in self.spatial_axes:
                pixels = pixels * shape[axis]
            y = ops.transpose(ops.reshape(y, (shape[0], 2, half, pixels)), (0, 2, 1, 3))
        return ops.reshape(y, shape)

    def _read(self, variable, x):
        """``variable`` in the statistics dtype of ``x``: float32 variables pass unchanged under
        mixed precision; under a pure float16/bfloat16 policy the variables have the compute
        dtype and are promoted, so that the coefficient math never mixes dtypes."""
        return ops.cast(variable, stats_dtype(x.dtype))

    def _clip(self, coef, dtype):
        if keras.backend.standardize_dtype(dtype) == "float16":
            coef = ops.clip(coef, -_F16_LIMIT, _F16_LIMIT)
        return ops.cast(coef, dtype)

    # -- forward -----------------------------------------------------------------------------

    def call(self, inputs):
        x = inputs
        if self.transform == "conv":
            y = self._call_conv(x)
        elif self.use_norm:
            y = self._call_normalised(x)
        else:
            y = self._call_fused(x)
        if self.shuffle:
            y = self._channel_shuffle(y)
        return y

    def _coefficients(self):
        """Per-channel ``(alpha, beta, gamma)``, each ``(C,)``: every channel's gate logit is
        ``alpha * (x - mean) / sqrt(var + eps) + beta * mean + gamma`` (module docstring)."""
        k, g = self.group_channels, self.groups
        if self.transform == "affine":
            cw, cb = self.channel_weight, self.channel_bias
            sw, sb = self.spatial_weight, self.spatial_bias
        else:  # "none": unit weight, zero bias
            ones = ops.ones((k,), self.norm_gamma.dtype)
            cw, cb, sw, sb = ones, 0.0 * ones, ones, 0.0 * ones
        zeros = ops.zeros((k,), self.norm_gamma.dtype)

        def channels(channel_half, spatial_half):
            # Channel c = group * 2K + half * K + i, as the official code's grouping.
            halves = [ops.reshape(channel_half, (1, k)), ops.reshape(spatial_half, (1, k))]
            pair = ops.concatenate(halves, axis=1)
            return ops.reshape(ops.tile(pair, (g, 1)), (self.channels,))

        alpha = channels(zeros, sw * self.norm_gamma)
        beta = channels(cw, zeros)
        gamma = channels(cb, sw * self.norm_beta + sb)
        return alpha, beta, gamma

    def _call_normalised(self, x):
        """The default path (``use_norm=True``), with a closed-form backward for the whole map
        computation: the moments, the gate and its product (module docstring), on the map's
        3-D :class:`~keras_attn.layers._base.StatsView`."""
        stats = stats_dtype(x.dtype)
        eps = self.epsilon
        clip = self._clip
        view = StatsView(self, x)
        wide = view.wide

        @ops.custom_gradient
        def gate(x, alpha, beta, gamma):
            hw = ops.cast(view.size, stats)
            xs = ops.cast(x, stats)
            mean = view.sum(xs) / hw
            centred = xs - wide(mean)
            var = view.sum(ops.square(centred)) / hw
            r = ops.rsqrt(var + eps)
            # The centred form A * (x - mean) + B: bounded by the data's spread whatever its mean
            # (A * x - A * mean would cancel; module docstring), in the statistics dtype, with
            # only the sigmoid's input cast to the compute dtype.
            beta_c = view.per_channel(beta)
            ar = view.per_channel(alpha) * r
            b = beta_c * mean + view.per_channel(gamma)
            s = ops.sigmoid(clip(centred * wide(ar) + wide(b), x.dtype))
            y = x * s

            def grad(*args, upstream=None):
                g = args[0] if upstream is None else upstream
                u = ops.cast(sigmoid_backprop(s, g * x), stats)  # dL/dlogit = g x s (1 - s)
                sum_u = view.sum(u)
                # sum(u * xn) with xn = (x - mean) r, the normalised map.
                sum_un = view.sum(u * centred) * r
                # Through the mean and the variance of each channel (their gradients reduce to
                # a per-channel multiple of (x - mean) plus a per-channel constant).
                c1 = -ar * r * sum_un / hw
                c0 = (beta_c - ar) * sum_u / hw
                terms = [u * wide(ar), centred * wide(c1)]
                if u.dtype == g.dtype:  # one three-term sum and one broadcast add
                    dx = add_n([g * s, *terms]) + wide(c0)
                else:
                    dx = g * s + ops.cast(add_n(terms) + wide(c0), x.dtype)

                def per_channel(t):
                    return ops.sum(view.to_vectors(t), axis=0)

                return dx, per_channel(sum_un), per_channel(sum_u * mean), per_channel(sum_u)

            return y, grad

        # The variables are float32 under mixed precision but float16/bfloat16 under a pure
        # policy: the coefficients enter the gate in the statistics dtype either way (the casts
        # carry their gradients back to the variables' dtype).
        alpha, beta, gamma = (ops.cast(t, stats) for t in self._coefficients())
        return view.unview(gate(view.view(x), alpha, beta, gamma))

    def _call_fused(self, x):
        """The gate with automatic differentiation: the ``use_norm=False`` ablation's path, and
        for ``use_norm=True`` the reference the closed-form backward is tested against."""
        ndim = len(x.shape)
        if self.use_norm:
            mean, var = self._moments(x)
        else:
            mean, var = self._pool(x), None
        mean_c, mean_s = self._split(ops.reshape(mean, (-1, self.channels)))

        read = self._read
        if self.transform == "affine":
            cw, cb = read(self.channel_weight, x), read(self.channel_bias, x)
            sw, sb = read(self.spatial_weight, x), read(self.spatial_bias, x)
        else:  # "none": unit weight, zero bias
            cw, cb, sw, sb = 1.0, 0.0, 1.0, 0.0
        b_c = cw * mean_c + cb

        if self.use_norm:
            _, var_s = self._split(ops.reshape(var, (-1, self.channels)))
            scale = read(self.norm_gamma, x) * ops.rsqrt(var_s + self.epsilon)
            a_s = sw * scale
            # Centred form: A * (x - mean) + B', both terms bounded by the data's spread.
            b_s = ops.zeros_like(mean_s) + (sw * read(self.norm_beta, x) + sb)
        else:
            a_s = ops.zeros_like(mean_s) + sw
            b_s = ops.zeros_like(mean_s) + sb

        a = self._clip(self._merge(ops.zeros_like(a_s), a_s, ndim), x.dtype)
        b = self._clip(self._merge(b_c, b_s, ndim), x.dtype)
        if self.use_norm:
            # The channel half has A = 0, so centring every channel changes nothing there.
            z = a * (x - ops.cast(mean, x.dtype)) + b
        else:
            z = a * x + b
        return x * ops.sigmoid(z)

    def _call_conv(self, x):
        # Ablation path: the spatial 1x1 conv mixes channels per pixel, so the map is split.
        g, k = self.groups, self.group_channels
        shape = ops.shape(x)
        if self.use_norm:
            mean, var = self._moments(x)
        else:
            mean, var = self._pool(x), None
        mean_c, mean_s = self._split(ops.reshape(mean, (-1, self.channels)))
        # Channel branch: GAP -> 1x1 conv over the group's K channels, on (B, G, K).
        logit_c = ops.einsum(
            "bgk,kj->bgj", mean_c, self._read(self.channel_weight, x)
        ) + self._read(self.channel_bias, x)

        # One einsum letter and one reshape entry per spatial axis: "w" (1-D), "hw" (2-D),
        # "dhw" (3-D).
        n_spatial = len(self.spatial_axes)
        sp = "dhw"[3 - n_spatial :]
        ones = (1,) * n_spatial
        spatial = tuple(shape[a] for a in self.spatial_axes)
        if self.data_format == "channels_last":
            xr = ops.reshape(x, (shape[0],) + spatial + (g, 2, k))
            branch_axis, stat_shape = n_spatial + 2, (-1,) + ones + (g, k)
            conv_eq = f"b{sp}gk,kj->b{sp}gj"
            vec_shape = (k,)
        else:
            xr = ops.reshape(x, (shape[0], g, 2, k) + spatial)
            branch_axis, stat_shape = 2, (-1, g, k) + ones
            conv_eq = f"bgk{sp},kj->bgj{sp}"
            vec_shape = (k,) + ones
        x0, x1 = ops.unstack(xr, num=2, axis=branch_axis)

        def per_channel(v):  # (B, G, K) -> broadcastable against x0 / x1
            return ops.reshape(v, stat_shape)

        def vec(v):  # (K,) variable -> broadcastable against x0 / x1, compute dtype
            return ops.cast(ops.reshape(v, vec_shape), x.dtype)

        if self.use_norm:
            _, var_s = self._split(ops.reshape(var, (-1, self.channels)))
            scale = self._read(self.norm_gamma, x) * ops.rsqrt(var_s + self.epsilon)
            xn = (x1 - ops.cast(per_channel(mean_s), x.dtype)) * self._clip(
                per_channel(scale), x.dtype
            ) + vec(self.norm_beta)
        else:
            xn = x1
        # The 1x1 conv sums K products of the map: in float16/bfloat16 its logits lose the
        # precision that decides the gate (bfloat16 on inputs of 1e3: gate errors of 0.7), so it
        # accumulates in the statistics dtype (an ablation path; the default path has no conv).
        acc = stats_dtype(x.dtype)
        logit_s = ops.einsum(conv_eq, ops.cast(xn, acc), ops.cast(self.spatial_weight, acc))
        logit_s = logit_s + ops.cast(ops.reshape(self.spatial_bias, vec_shape), acc)

        y0 = x0 * ops.sigmoid(self._clip(per_channel(logit_c), x.dtype))
        y1 = x1 * ops.cast(ops.sigmoid(logit_s), x.dtype)
        y = ops.stack([y0, y1], axis=branch_axis)
        return ops.reshape(y, shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "groups": self.groups,
                "epsilon": self.epsilon,
                "use_norm": self.use_norm,
                "shuffle": self.shuffle,
                "transform": self.transform,
            }
        )
        return config
