"""Squeeze-and-Excitation: the channel-attention baseline.

Source: Jie Hu, Li Shen, Gang Sun, "Squeeze-and-Excitation Networks", CVPR 2018, arXiv 1709.01507;
official code github.com/hujie-frank/SENet.

Per sample, with ``g`` the global average of each channel (the squeeze)::

    s   = sigmoid(W2 relu(W1 g + b1) + b2)      W1: C -> max(1, C // r), W2: -> C
    out = x * s                                   (broadcast over space)

The layer is written as DCANet's three stages (Ma et al., arXiv 2007.05099, Sec. 3.1) so that
:class:`~keras_attn.layers.deep_connected.DCASqueezeExcite` only inserts its connection between
them: ``extract`` (GAP, float32 under mixed precision), ``transform`` (the bottleneck MLP and
sigmoid), ``fuse`` (the channel-wise product).

Other ranks: the paper squeezes 2-D maps; on a 1-D ``(batch, steps, channels)`` or 3-D
``(batch, depth, height, width, channels)`` map the squeeze averages over all spatial axes.

Departures from the paper: the hidden width is ``max(1, C // reduction)`` so that ``C < reduction``
still builds (the paper only uses C >= 64); the squeeze is accumulated in float32 under mixed
precision, the MLP and the product run in the compute dtype.
"""

from __future__ import annotations

import operator

import keras
from keras import ops

from keras_attn.layers._base import AttentionLayer, check_number
from keras_attn.registry import register_attention


@register_attention("se")
@keras.saving.register_keras_serializable(package="keras_attn")
class SqueezeExcite(AttentionLayer):
    """Squeeze-and-Excitation channel attention (Hu et al., CVPR 2018, arXiv 1709.01507).

    Input: a feature map in ``data_format``: 1-D ``(batch, steps, channels)``, 2-D ``(batch,
    height, width, channels)`` or 3-D ``(batch, depth, height, width, channels)``
    (``"channels_last"``), or ``(batch, channels, steps)``, ``(batch, channels, height, width)``,
    ``(batch, channels, depth, height, width)`` (``"channels_first"``). The squeeze averages over all spatial axes. Output: same
    shape, in the layer's compute dtype.

    Args:
        reduction: bottleneck ratio r, an integer ``>= 1`` (default 16); the hidden layer has
            ``max(1, C // r)`` units.
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        **kwargs: passed to ``keras.layers.Layer``.

    Variables: two Dense layers with bias, ``squeeze`` (C -> hidden, ReLU) and ``excite``
    (hidden -> C, sigmoid): ``2 * C * hidden + hidden + C`` parameters.

    Non-finite inputs are not checked (a check would cost a reduction per call): a NaN or Inf
    passes through to the output, within its own sample, in training and in inference mode.

    Raises:
        ValueError: ``reduction`` not an integer ``>= 1``; unknown ``data_format``; at build, an
            input that is not 3-D, 4-D or 5-D (the message names its rank) or has an unknown
            channel dimension.
    """

    def __init__(self, reduction=16, data_format="channels_last", **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.reduction = check_number("reduction", reduction, minimum=1, integer=True)

    # -- build -----------------------------------------------------------------------------

    def build(self, input_shape):
        self._set_axes(input_shape)
        self._build_host()
        self.built = True

    def _build_host(self):
        channels = self.channels
        hidden = max(1, channels // self.reduction)
        self.squeeze = keras.layers.Dense(
            hidden, activation="relu", name="squeeze", dtype=self.dtype_policy
        )
        self.excite = keras.layers.Dense(
            channels, activation="sigmoid", name="excite", dtype=self.dtype_policy
        )
        self.squeeze.build((None, channels))
        self.excite.build((None, hidden))

    # -- the three stages ------------------------------------------------------------------

    def extract(self, x):
        """``(batch, C)`` channel means, float32 under mixed precision."""
        return self._pool(x, keepdims=False)

    def transform(self, g):
        """``(batch, C)`` sigmoid gate in the compute dtype."""
        return self.excite(self.squeeze(g))

    def fuse(self, x, gate):
        return self._to_map_view(x, gate, operator.mul)

    def call(self, inputs):
        return self.fuse(inputs, self.transform(self.extract(inputs)))

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction})
        return config
