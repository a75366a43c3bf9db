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
* The energy ``E^-1 = d k + 0.5`` (``k = 1 / (4 (v + lambda))``) is computed in float32 under
  mixed precision, from the same squared deviations ``d`` as the variance, so that a deviation of
  1e3 (``d = 1e6 > 65504``) never overflows float16; only the gate's sigmoid input is cast.

How it is computed: one subtraction and one square give ``d`` for both the variance and the
energy (6 elementwise passes over the map forward), and the backward is written in closed form
(``keras.ops.custom_gradient``, every backend). With ``u = g x s (1 - s)``, ``s`` the gate and
``c = t - mean_c``, the input gradient is ``g s + c (2 k u + alpha) + beta``, where the
per-channel ``alpha = -8 k^2 sum(u d) / n`` and ``beta = -2 k sum(u c) / (H W)`` carry it through
the channel variance and mean: 9 elementwise passes instead of the ~20 of automatic
differentiation (``u`` is ``g x`` and TensorFlow's fused ``SigmoidGrad``:
``keras_attn.layers._base.sigmoid_backprop``; ``g s + 2 k (u c) + alpha c`` is one three-term
``AddN``: ``keras_attn.layers._base.add_n``). The tests check it against automatic
differentiation of Eq. 5-6.

The map is handled as the 3-D :class:`~keras_attn.layers._base.StatsView`: channels-last
``(batch, H, W, C)`` as ``(batch, H W / P, P C)`` with ``P`` pixels folded into the last axis
when ``C < 64``, so that the per-(sample, channel) ``mean_c``, ``k``, ``alpha``, ``beta``
broadcast over a run of at least 64 floats: on TensorFlow's CPU kernels a broadcast over the 16
channels of ResNet-20's first stage cost 2-3 passes (benchmarks/README.md). The values are those
of the plain layout but for the order of the spatial sums (within 1e-6 relative,
``tests/test_layer_reference.py``).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_attn.layers._base import (
    ArgumentChoices,
    AttentionLayer,
    StatsView,
    add_n,
    check_number,
    sigmoid_backprop,
    stats_dtype,
)
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

    Non-finite inputs are not checked (a check would cost a reduction per call): a NaN or Inf
    passes through to the output, within its own sample, in training and in inference mode.

    Raises:
        ValueError: negative, non-finite or non-numeric ``e_lambda``; unknown ``data_format``; an input that is not 3-D, 4-D or 5-D (the message names its rank).

    The layer has no variables.
    """

    # "We add this implementation after second convolutional layer within each block" (simam.txt
    # Sec. 3), before that convolution's BatchNorm as in the official code.
    paper_placement = "second_conv"

    # The paper's lambda sweep, 1e-1 to 1e-6, and its CIFAR value 1e-4 (Sec. 4.1, the lambda
    # analysis with ResNet-20 on CIFAR-100).
    search_space = {"e_lambda": ArgumentChoices((1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6), 1e-4,
                                                "SimAM Sec. 4.1, lambda analysis")}

    def __init__(self, e_lambda=1e-4, data_format="channels_last", **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.e_lambda = check_number("e_lambda", e_lambda, minimum=0.0)

    def build(self, input_shape):
        self._set_axes(input_shape)
        self.built = True

    def call(self, inputs):
        return self._gate(inputs)

    def _gate(self, x):
        """``x * sigmoid(E^-1)`` with the closed-form gradient of the whole layer (module
        docstring), on the map's 3-D :class:`~keras_attn.layers._base.StatsView`."""
        stats = stats_dtype(x.dtype)
        e_lambda = self.e_lambda
        view = StatsView(self, x)
        wide = view.wide

        @ops.custom_gradient
        def simam(x):
            hw = ops.cast(view.size, stats)
            n = ops.maximum(hw - 1.0, 1.0)
            xs = ops.cast(x, stats)
            mean = view.sum(xs) / hw
            centred = xs - wide(mean)
            d2 = ops.square(centred)  # (t - mean)^2, in float32 under mixed precision
            # sum(d) / n of Eq. 5.
            v = view.sum(d2) / n
            # The floor keeps e_lambda = 0 on a constant map finite (0 * inf would be NaN).
            k = 1.0 / (4.0 * ops.maximum(v + e_lambda, 1e-12))
            # E^-1 of Eq. 6 in the statistics dtype: a deviation of 1e3 squares to 1e6, beyond
            # float16 (65504); the gate's sigmoid saturates long before, so its cast is safe.
            s = ops.sigmoid(ops.cast(d2 * wide(k) + 0.5, x.dtype))
            y = x * s

            def grad(*args, upstream=None):
                g = args[0] if upstream is None else upstream
                # u = dL/dE^-1 = g x s (1 - s); E^-1 depends on x directly (2 k d) and through
                # the channel mean and variance, whose terms reduce to alpha * d + beta.
                u = ops.cast(sigmoid_backprop(s, g * x), stats)
                uc = u * centred
                sum_ud = view.sum(uc)
                sum_ud2 = view.sum(uc * centred)
                alpha = sum_ud2 * (-8.0 / n) * ops.square(k)
                beta = sum_ud * (-2.0 / hw) * k
                # g s + (2 k u + alpha) c + beta: one three-term sum and one broadcast add.
                terms = [uc * wide(2.0 * k), centred * wide(alpha)]
                if u.dtype == g.dtype:
                    return add_n([g * s, *terms]) + wide(beta)
                return g * s + ops.cast(add_n(terms) + wide(beta), x.dtype)

            return y, grad

        return view.unview(simam(view.view(x)))

    def get_config(self):
        config = super().get_config()
        config.update({"e_lambda": self.e_lambda})
        return config
