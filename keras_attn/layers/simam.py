"""SimAM: a simple, parameter-free attention module.

Source: Lingxiao Yang, Ru-Yuan Zhang, Lida Li, Xiaohua Xie, "SimAM: A Simple, Parameter-Free
Attention Module for Convolutional Neural Networks", ICML 2021 (PMLR 139:11863-11874); official code
github.com/ZjjConan/SimAM.

Each neuron t of a channel gets the inverse of its minimal energy (paper Eq. 5-6)::

    n   = H * W - 1                     (the number of other neurons of the channel)
    d   = (t - mean_c)^2
    v   = sum_c(d) / n
    E^-1 = d / (4 * (v + lambda)) + 0.5
    out = x * sigmoid(E^-1)

Other ranks: the paper defines SimAM on 2-D maps (its energy is per channel over the H x W
neurons). On a 1-D map ``(batch, steps, channels)`` or a 3-D map ``(batch, depth, height, width,
channels)`` the same statistics are taken over all spatial axes: ``mean_c`` and ``v`` over every
neuron of the channel, ``n = prod(spatial sizes) - 1``.

Departures from the official code, none of which change the value where it is defined:

* ``n = max(H * W - 1, 1)``: the official code divides by ``H * W - 1`` and returns NaN for a 1x1
  feature map; here every ``d`` is 0 then and the output is ``x * sigmoid(0.5)`` (likewise for a
  single-step 1-D or a 1x1x1 3-D map).
* The energy is computed as ``((x - mean) * sqrt(k))^2 + 0.5`` with ``k = 1 / (4 (v + lambda))``
  taken in float32, so that under float16 the square of a large deviation (``1e3^2 > 65504``)
  never overflows before it is scaled.

How it is computed: the moments are taken in one reduction each (float32 under mixed precision)
and the backward is written in closed form (``keras.ops.custom_gradient``, every backend). With
``u = g x s (1 - s)``, ``s`` the gate, ``z = (x - mean) sqrt(k)``, the input gradient is
``g s + z (2 sqrt(k) u + alpha) + beta``, where the per-channel ``alpha = -8 sqrt(k) sum(u z^2) / n``
and ``beta = -2 sqrt(k) sum(u z) / (H W)`` carry it through the channel variance and mean:
11 elementwise passes over the map instead of the ~20 of automatic differentiation. The tests
check it against automatic differentiation of Eq. 5-6.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_attn.layers._base import AttentionLayer, check_number, stats_dtype
from keras_attn.registry import register_attention


@register_attention("simam")
@keras.saving.register_keras_serializable(package="keras_attn")
class SimAM(AttentionLayer):
    """SimAM parameter-free 3-D attention (Yang et al., ICML 2021).

    Input: a feature map in ``data_format``: 1-D ``(batch, steps, channels)``, 2-D ``(batch,
    height, width, channels)`` or 3-D ``(batch, depth, height, width, channels)``
    (``"channels_last"``), or ``(batch, channels, steps)``, ``(batch, channels, height, width)``,
    ``(batch, channels, depth, height, width)`` (``"channels_first"``). The statistics are taken over all spatial axes.
    Output: same shape and dtype (the layer's compute dtype).

    Args:
        e_lambda: the energy regulariser lambda of Eq. 5, ``>= 0`` (default ``1e-4``: the
            paper's value for its CIFAR networks, searched with ResNet-20 on CIFAR-100, Sec. 4.1
            and the lambda analysis; for ImageNet the paper selects ``0.1``, Sec. 4.2: pass
            ``e_lambda=0.1`` for ImageNet-scale models).
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        **kwargs: passed to ``keras.layers.Layer`` (``name``, ``dtype``, ...).

    Raises:
        ValueError: negative or non-numeric ``e_lambda``; unknown ``data_format``; an input that is not 3-D, 4-D or 5-D (the message names its rank).

    The layer has no variables.
    """

    # "We add this implementation after second convolutional layer within each block" (simam.txt
    # Sec. 3), before that convolution's BatchNorm as in the official code.
    paper_placement = "second_conv"

    def __init__(self, e_lambda=1e-4, data_format="channels_last", **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.e_lambda = check_number("e_lambda", e_lambda, minimum=0.0)

    def build(self, input_shape):
        self._set_axes(input_shape)
        self.built = True

    def call(self, inputs):
        return self._gate(inputs)

    def _gate(self, x):
        """``x * sigmoid(E^-1)`` with the closed-form gradient of the whole layer (see the module
        docstring: it replaces the ~20 elementwise passes of the automatic backward by 11)."""
        stats = stats_dtype(x.dtype)
        axes = self.spatial_axes
        e_lambda = self.e_lambda

        @ops.custom_gradient
        def simam(x):
            shape = ops.shape(x)
            hw = 1
            for axis in axes:
                hw = hw * shape[axis]
            hw = ops.cast(hw, stats)
            n = ops.maximum(hw - 1.0, 1.0)
            xs = ops.cast(x, stats)
            mean = ops.mean(xs, axis=axes, keepdims=True)
            centred = xs - mean
            # sum(d) / n of Eq. 5, from the biased variance.
            v = ops.mean(ops.square(centred), axis=axes, keepdims=True) * (hw / n)
            # The floor keeps e_lambda = 0 on a constant map finite (0 * inf would be NaN).
            sk = ops.sqrt(1.0 / (4.0 * ops.maximum(v + e_lambda, 1e-12)))
            if x.dtype == "float16":
                sk = ops.minimum(sk, 6.0e4)  # stays finite once cast to float16
            sk = ops.cast(sk, x.dtype)
            # z^2 = k d^2 with k = 1 / (4 (v + lambda)): the square is taken after the scaling,
            # so that in float16 a deviation of 1e3 never squares to more than 65504.
            z = ops.cast(centred, x.dtype) * sk
            s = ops.sigmoid(ops.square(z) + ops.cast(0.5, x.dtype))
            y = x * s

            def grad(*args, upstream=None):
                g = args[0] if upstream is None else upstream
                # u = dL/dE^-1 = g x s (1 - s); E^-1 depends on x directly (through z) and through
                # the channel mean and variance, whose terms reduce to alpha * z + beta.
                gy = g * y
                u = gy - gy * s
                uz = u * z
                sum_uz = ops.sum(ops.cast(uz, stats), axis=axes, keepdims=True)
                sum_uz2 = ops.sum(ops.cast(uz * z, stats), axis=axes, keepdims=True)
                sk32 = ops.cast(sk, stats)
                alpha = ops.cast(sum_uz2 * (-8.0 / n) * sk32, x.dtype)
                beta = ops.cast(sum_uz * (-2.0 / hw) * sk32, x.dtype)
                return g * s + z * (2.0 * sk * u + alpha) + beta

            return y, grad

        return simam(x)

    def get_config(self):
        config = super().get_config()
        config.update({"e_lambda": self.e_lambda})
        return config
