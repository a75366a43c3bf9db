"""ECA: efficient channel attention by a 1-D convolution across channels.

Source: Qilong Wang, Banggu Wu, Pengfei Zhu, Peihua Li, Wangmeng Zuo, Qinghua Hu, "ECA-Net:
Efficient Channel Attention for Deep Convolutional Neural Networks", CVPR 2020, arXiv 1910.03151;
official code github.com/BangguWu/ECANet (``models/eca_module.py``).

    y    = GAP(x)                                   (batch, C)
    y'_c = sum_j w_j * y_{c + j - (k-1)/2}          1-D conv over channels, zero 'same' padding,
                                                    no bias (a cross-correlation, as Conv1d)
    out  = x * sigmoid(y')

The kernel size is adaptive by default (paper Eq. 12-13, the official ``eca_mobilenetv2``)::

    t = int(abs((log2(C) + b) / gamma));  k = t if t is odd else t + 1     (gamma=2, b=1)

so C=64 -> 3, 256 -> 5, 512 -> 5, 1024 -> 5, 2048 -> 7.

Other ranks: the paper pools 2-D maps; on a 1-D ``(batch, steps, channels)`` or 3-D
``(batch, depth, height, width, channels)`` map ``GAP`` averages over all spatial axes (the 1-D
convolution across channels is unchanged).

Departures from the official code:

* The official ResNets do not use the formula: ``eca_resnet*`` default to k=3 everywhere and
  the README trains ResNet-50 with ``--ksize 3557`` (stage 1 uses 3 where the formula gives 5).
  Pass ``kernel_size`` to reproduce them.
* The kernel is initialised like PyTorch's ``Conv1d`` default, uniform in ``+-1/sqrt(k)``
  (the official ResNets only re-initialise 2-D convs, so this is what they train from).
* The pooling and the 1-D convolution run in float32 under mixed precision; only the final
  multiply is in the compute dtype.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_attn.layers._base import AttentionLayer, check_number
from keras_attn.registry import register_attention


def adaptive_kernel_size(channels, gamma=2, b=1):
    """ECA's kernel size for ``channels`` channels: ``|log2(C)/gamma + b/gamma|`` made odd."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


@register_attention("eca")
@keras.saving.register_keras_serializable(package="keras_attn")
class ECA(AttentionLayer):
    """Efficient Channel Attention (Wang et al., CVPR 2020, arXiv 1910.03151).

    Input: a feature map in ``data_format``: 1-D ``(batch, steps, channels)``, 2-D ``(batch,
    height, width, channels)`` or 3-D ``(batch, depth, height, width, channels)``
    (``"channels_last"``), or ``(batch, channels, steps)``, ``(batch, channels, height, width)``,
    ``(batch, channels, depth, height, width)`` (``"channels_first"``). The pooling averages over all spatial axes.
    Output: same shape, in the layer's compute dtype.

    Args:
        kernel_size: odd size ``k >= 1`` of the 1-D convolution across channels, or ``None``
            (default) for the paper's adaptive size from the channel count (see
            :func:`adaptive_kernel_size`).
        gamma: ``gamma > 0`` of the adaptive size (default 2); unused with a fixed kernel_size.
        b: ``b`` of the adaptive size (default 1); unused with a fixed kernel_size.
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        **kwargs: passed to ``keras.layers.Layer``.

    Variables: ``kernel`` of shape ``(k,)``, no bias. After build, ``effective_kernel_size``
    holds ``k``.

    Non-finite inputs are not checked (a check would cost a reduction per call): a NaN or Inf
    passes through to the output, within its own sample, in training and in inference mode.

    Raises:
        ValueError: at construction, ``kernel_size`` even, ``< 1`` or not an integer,
            ``gamma <= 0``, non-numeric ``b``, unknown ``data_format``; at build, an input that
            is not 3-D, 4-D or 5-D (the message names its rank).
    """

    def __init__(self, kernel_size=None, gamma=2, b=1, data_format="channels_last", **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        kernel_size = check_number(
            "kernel_size", kernel_size, minimum=1, integer=True, allow_none=True
        )
        if kernel_size is not None and kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` must be an odd integer >= 1 (the 'same' padding is symmetric) "
                f"or None for the adaptive size; got {kernel_size!r}."
            )
        self.kernel_size = kernel_size
        self.gamma = check_number("gamma", gamma, minimum=0.0, strict=True)
        self.b = check_number("b", b)
        self.kernel = None
        self.effective_kernel_size = None

    def build(self, input_shape):
        self._set_axes(input_shape)
        k = self.kernel_size
        if k is None:
            k = adaptive_kernel_size(self.channels, self.gamma, self.b)
        self.effective_kernel_size = k
        bound = 1.0 / math.sqrt(k)
        # Read at full precision: the conv runs on the float32 pooled vector.
        self.kernel = self.add_weight(
            name="kernel",
            shape=(k,),
            initializer=keras.initializers.RandomUniform(-bound, bound),
            autocast=False,
        )
        self.built = True

    def call(self, inputs):
        x = inputs
        pooled = self._pool(x)  # float32 under mixed precision
        # Channels become the 1-D "length" axis of a single-feature sequence.
        y = ops.reshape(pooled, (-1, self.channels, 1))
        kernel = ops.reshape(ops.cast(self.kernel, y.dtype), (self.effective_kernel_size, 1, 1))
        y = ops.conv(y, kernel, strides=1, padding="same", data_format="channels_last")
        gate = ops.sigmoid(ops.reshape(y, (-1,) + self._channel_shape(len(x.shape))[1:]))
        return x * ops.cast(gate, x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "gamma": self.gamma, "b": self.b})
        return config
