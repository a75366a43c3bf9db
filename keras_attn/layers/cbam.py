"""CBAM: Convolutional Block Attention Module, the channel-then-spatial baseline.

Source: Sanghyun Woo, Jongchan Park, Joon-Young Lee, In So Kweon, "CBAM: Convolutional Block
Attention Module", ECCV 2018, arXiv 1807.06521; official code github.com/Jongchan/attention-module
(``MODELS/cbam.py``).

Channel gate, then spatial gate on the channel-gated map (paper Eq. 1-3)::

    Mc  = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))         shared MLP: C -> max(1, C//r) -> C
    x1  = x * Mc                                               (broadcast over space)
    Ms  = sigmoid(BN(conv_kxk([max_c(x1), mean_c(x1)])))       one output channel, no conv bias
    out = x1 * Ms                                              (broadcast over channels)

As in the official code (and unlike the paper's Eq. 3, which has no normalisation), the spatial
convolution has no bias and is followed by a BatchNormalization (PyTorch momentum 0.01 = Keras
momentum 0.99, epsilon 1e-5); the compressed map stacks the channel max before the channel mean.
The MLP layers have biases, so the second layer's bias enters twice (once per pooled vector), as in
the official code.

Each gate is written as DCANet's three stages (Ma et al., arXiv 2007.05099, Sec. 3.1): ``extract_*``
(pooling; the means in float32 under mixed precision), ``transform_*`` (MLP or conv + sigmoid),
``fuse_*`` (product), so that :class:`~keras_attn.layers.deep_connected.DCACBAM` only inserts its
connections between them.

Layout: the compressed spatial map and the spatial gate are always built channels-last
``(batch, H, W, 2)`` / ``(batch, H, W, 1)``, whatever ``data_format``: stacking the two channel
statistics on the last axis costs nothing, and TensorFlow's CPU convolution only supports NHWC.

Other ranks: the paper defines CBAM on 2-D maps. On a 1-D map ``(batch, steps, channels)`` or a
3-D map ``(batch, depth, height, width, channels)`` the channel gate pools over all spatial axes,
and the spatial gate's ``k x k`` convolution becomes a ``Conv1D`` of kernel ``k`` or a ``Conv3D``
of kernel ``k x k x k`` (same padding, no bias, one output channel), on ``(batch, *spatial, 2)``.

Departure: the hidden width is ``max(1, C // reduction)`` so that small C still builds.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_attn.layers._base import AttentionLayer, check_number, max_over, stats_dtype
from keras_attn.registry import register_attention


@register_attention("cbam")
@keras.saving.register_keras_serializable(package="keras_attn")
class CBAM(AttentionLayer):
    """CBAM channel + spatial attention (Woo et al., ECCV 2018, arXiv 1807.06521).

    Input: a feature map in ``data_format``: 1-D ``(batch, steps, channels)``, 2-D ``(batch,
    height, width, channels)`` or 3-D ``(batch, depth, height, width, channels)``
    (``"channels_last"``), or ``(batch, channels, steps)``, ``(batch, channels, height, width)``,
    ``(batch, channels, depth, height, width)`` (``"channels_first"``). The spatial convolution is
    a ``Conv1D``, ``Conv2D`` or ``Conv3D`` accordingly. Output: same shape, compute dtype.

    Args:
        reduction: ratio r of the shared MLP, an integer ``>= 1`` (default 16); hidden width
            ``max(1, C // r)``.
        kernel_size: side of the spatial convolution, an odd integer ``>= 1`` (default 7).
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        **kwargs: passed to ``keras.layers.Layer``.

    Call arguments: ``training`` for the spatial BatchNormalization.

    Variables: the shared MLP ``mlp_hidden`` (C -> hidden, ReLU) and ``mlp_out`` (hidden -> C), both
    with bias; ``spatial_conv`` (k x k x 2 x 1 in 2-D; k x 2 x 1 in 1-D, k x k x k x 2 x 1 in 3-D; no
    bias); ``spatial_bn`` (gamma, beta and moving
    statistics of one channel).

    Non-finite inputs are not checked (a check would cost a reduction per call). In inference mode
    a NaN or Inf stays within its own sample's output; in training mode the spatial BatchNormalization mixes the batch:
    one sample's NaN or Inf makes every sample's output NaN, and the moving statistics too (so
    every later output).

    Raises:
        ValueError: ``reduction`` or ``kernel_size`` not a positive integer, an even
            ``kernel_size``; unknown ``data_format``; at build, an input that is not 3-D, 4-D or
            5-D (the message names its rank).
    """

    def __init__(self, reduction=16, kernel_size=7, data_format="channels_last", **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.reduction = check_number("reduction", reduction, minimum=1, integer=True)
        self.kernel_size = check_number("kernel_size", kernel_size, minimum=1, integer=True)
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` must be odd (the spatial map keeps its size); got {kernel_size!r}."
            )

    # -- build -----------------------------------------------------------------------------

    def build(self, input_shape):
        self._set_axes(input_shape)
        self._build_host()
        self.built = True

    def _build_host(self):
        channels = self.channels
        hidden = max(1, channels // self.reduction)
        policy = self.dtype_policy
        self.mlp_hidden = keras.layers.Dense(
            hidden, activation="relu", name="mlp_hidden", dtype=policy
        )
        self.mlp_out = keras.layers.Dense(channels, name="mlp_out", dtype=policy)
        n_spatial = len(self.spatial_axes)
        conv = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}
        self.spatial_conv = conv[n_spatial](
            1,
            self.kernel_size,
            padding="same",
            use_bias=False,
            data_format="channels_last",
            name="spatial_conv",
            dtype=policy,
        )
        self.spatial_bn = keras.layers.BatchNormalization(
            axis=-1, momentum=0.99, epsilon=1e-5, name="spatial_bn", dtype=policy
        )
        self.mlp_hidden.build((None, 2, channels))
        self.mlp_out.build((None, 2, hidden))
        self.spatial_conv.build((None,) * (n_spatial + 1) + (2,))
        self.spatial_bn.build((None,) * (n_spatial + 1) + (1,))

    # -- channel gate ----------------------------------------------------------------------

    def extract_channel(self, x):
        """``(batch, 2, C)``: spatial average (row 0) and maximum (row 1), float32 when mixed."""
        avg = self._pool(x, keepdims=False)
        mx = ops.cast(max_over(x, axis=self.spatial_axes), avg.dtype)
        return ops.stack([avg, mx], axis=1)

    def transform_channel(self, g):
        """``(batch, C)`` sigmoid gate; the MLP is shared by the two pooled rows."""
        logits = ops.sum(self.mlp_out(self.mlp_hidden(g)), axis=1)
        return ops.sigmoid(logits)

    def fuse_channel(self, x, gate):
        shape = list(self._channel_shape(len(x.shape)))
        shape[0] = -1
        return x * ops.reshape(ops.cast(gate, x.dtype), shape)

    # -- spatial gate ----------------------------------------------------------------------

    def extract_spatial(self, x):
        """``(batch, *spatial, 2)``: channel maximum and channel mean (float32 when mixed)."""
        dtype = stats_dtype(self.compute_dtype)
        mean = ops.mean(ops.cast(x, dtype), axis=self.channel_axis)
        mx = ops.cast(max_over(x, axis=self.channel_axis), dtype)
        return ops.stack([mx, mean], axis=-1)

    def transform_spatial(self, g, training=None):
        """``(batch, *spatial, 1)`` sigmoid gate, channels-last in both layouts."""
        logits = self.spatial_conv(g)
        # TensorFlow's oneDNN convolution (TF_ENABLE_ONEDNN_OPTS=1) returns an empty batch with
        # the input's 2 channels instead of the kernel's 1; the slice restores (0, *spatial, 1)
        # and is the identity (no copy) on every non-empty batch.
        logits = logits[..., :1]
        return ops.sigmoid(self.spatial_bn(logits, training=training))

    def fuse_spatial(self, x, gate):
        gate = ops.cast(gate, x.dtype)
        if self.data_format == "channels_first":
            # A single channel moves to axis 1 without a transpose.
            gate = ops.expand_dims(gate[..., 0], axis=1)
        return x * gate

    def call(self, inputs, training=None):
        x1 = self.fuse_channel(inputs, self.transform_channel(self.extract_channel(inputs)))
        gate = self.transform_spatial(self.extract_spatial(x1), training=training)
        return self.fuse_spatial(x1, gate)

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction, "kernel_size": self.kernel_size})
        return config
