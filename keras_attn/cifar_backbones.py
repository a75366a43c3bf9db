"""The papers' small-image networks as Keras functional models (no classifier head).

* :func:`resnet_cifar`: the CIFAR ResNets of He et al., "Deep Residual Learning for Image
  Recognition" (arXiv 1512.03385), Sec. 4.2: a 3x3 convolution with 16 filters, three stages of
  ``n`` basic blocks (two 3x3 convolutions each) with 16 / 32 / 64 filters and strides 1 / 2 / 2,
  depth ``6n + 2`` (ResNet-20, 32, 44, 56, 110: Table 6, 0.27M, 0.46M, 0.66M, 0.85M, 1.7M
  parameters). SimAM (Table 1) and SA-Net's small-image comparisons use these networks.
  Shortcuts are **option A** (Sec. 3.3 and 4.2: "we use identity shortcuts in all cases"): where a
  stage halves the map and doubles the channels, the shortcut subsamples with stride 2 and pads
  the new channels with zeros, so it has no parameters and Table 6's counts hold. Option B (1x1
  projections) would add 0.01M-0.02M parameters the paper's counts do not have.
* :func:`mobilenetv2_cifar`: the CIFAR MobileNetV2 that the Shift-and-Balance paper trains for its
  CIFAR-10 tables (Sec. 5.3, Tables 5-10), kuangliu/pytorch-cifar's ``MobileNetV2``: a stride-1
  3x3 stem with 32 filters; 17 inverted residual blocks ``(expansion, channels, repeats, stride)``
  = (1, 16, 1, 1), (6, 24, 2, **1**), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
  (6, 160, 3, 2), (6, 320, 1, 1), where the ImageNet network's stride 2 of the second stage is 1;
  every block has its 1x1 expansion convolution (also the first, with expansion 1); stride-1
  blocks add a shortcut, a 1x1 convolution + BatchNorm when the channels change; a final 1x1
  convolution to 1280 channels. ReLU (not ReLU6), as that code. The width multiplier ``alpha``
  is applied as in ``keras.applications.MobileNetV2``: every channel count ``c`` becomes
  ``make_divisible(c * alpha, 8)``, the last convolution stays 1280 for ``alpha <= 1``.

Both follow the PyTorch code the papers ran: convolutions without bias and He-normal
initialisation, BatchNorm with momentum 0.9 and epsilon 1e-5 (PyTorch's 0.1 and 1e-5).
Departure: strided convolutions use Keras' ``padding="same"``, which pads (0, 1) where PyTorch's
``padding=1`` pads (1, 1); output shapes and parameter counts are the same.

Layer names follow ``keras.applications`` so that ``keras_attn.attach`` finds the blocks and the
roles of their convolutions: ``stack{s}_block{b}_{1,2}_conv`` in the ResNets (roles ``conv1``,
``conv2``), ``block_{i}_{expand,depthwise,project}`` in the MobileNetV2 (roles ``expand``,
``depthwise``, ``project``).

Any input size and channel count: the input is ``(height, width, channels)`` with height and
width >= 1 (28x28x1 Fashion-MNIST needs no resize and no channel repetition).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_attn.validation import check_choice, check_image_shape, check_number

RESNET_DEPTHS = (20, 32, 44, 56, 110)
# (expansion, channels, blocks, stride): kuangliu/pytorch-cifar models/mobilenetv2.py.
MOBILENETV2_CIFAR_CONFIG = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

_BN = {"momentum": 0.9, "epsilon": 1e-5}


@keras.saving.register_keras_serializable(package="keras_attn")
class ChannelPadding(keras.layers.Layer):
    """Zero channels around a feature map: the parameter-free half of an option-A shortcut.

    Input ``(batch, height, width, channels)``; output ``(batch, height, width, channels + before
    + after)``, the input's channels in the middle (as the reference CIFAR ResNet code pads
    ``planes // 4`` on each side).

    Args:
        before, after: number of zero channels to add on each side (integers >= 0).
    """

    def __init__(self, before=0, after=0, **kwargs):
        super().__init__(**kwargs)
        self.before = check_number("before", before, minimum=0, integer=True)
        self.after = check_number("after", after, minimum=0, integer=True)

    def call(self, inputs):
        return ops.pad(inputs, [[0, 0], [0, 0], [0, 0], [self.before, self.after]])

    def compute_output_shape(self, input_shape):
        c = input_shape[-1]
        return (*input_shape[:-1], None if c is None else c + self.before + self.after)

    def get_config(self):
        return {**super().get_config(), "before": self.before, "after": self.after}


def _conv(filters, kernel, strides, name):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                               kernel_initializer="he_normal", name=name)


def _input(input_shape, name):
    return keras.Input(shape=check_image_shape("input_shape", input_shape), name=name)


def resnet_cifar(depth=20, input_shape=(32, 32, 3), name=None):
    """A CIFAR ResNet (He et al. 2016, Sec. 4.2) without its classifier.

    Args:
        depth: 20, 32, 44, 56 or 110 (``6n + 2``; default 20).
        input_shape: ``(height, width, channels)``, any positive sizes (default ``(32, 32, 3)``).
        name: model name (default ``f"resnet{depth}"``).

    Returns:
        A functional ``keras.Model`` mapping images to the last stage's feature map
        ``(batch, ceil(height / 4), ceil(width / 4), 64)``.

    Raises:
        ValueError: another ``depth`` (names the valid ones) or a bad ``input_shape``.
    """
    check_choice("depth", depth, RESNET_DEPTHS)
    n = (int(depth) - 2) // 6
    inputs = _input(input_shape, "input_layer")
    x = _conv(16, 3, 1, "conv1_conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv1_bn", **_BN)(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    channels = 16
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, n + 1):
            prefix = f"stack{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            y = _conv(filters, 3, strides, f"{prefix}_1_conv")(x)
            y = keras.layers.BatchNormalization(name=f"{prefix}_1_bn", **_BN)(y)
            y = keras.layers.ReLU(name=f"{prefix}_1_relu")(y)
            y = _conv(filters, 3, 1, f"{prefix}_2_conv")(y)
            y = keras.layers.BatchNormalization(name=f"{prefix}_2_bn", **_BN)(y)
            shortcut = x
            if strides != 1 or filters != channels:
                # Option A: subsample (a 1x1 pooling window with stride 2 picks x[::2, ::2]),
                # then zero channels.
                shortcut = keras.layers.MaxPooling2D(1, strides, padding="same",
                                                     name=f"{prefix}_0_pool")(shortcut)
                extra = filters - channels
                shortcut = ChannelPadding(extra // 2, extra - extra // 2,
                                          name=f"{prefix}_0_pad")(shortcut)
            x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            x = keras.layers.ReLU(name=f"{prefix}_out")(x)
            channels = filters
    return keras.Model(inputs, x, name=name or f"resnet{depth}")


def make_divisible(value, divisor=8, min_value=None):
    """``keras.applications``' (and the MobileNetV2 paper code's) channel rounding: the nearest
    multiple of ``divisor``, at least ``min_value`` (default ``divisor``), never below 90% of
    ``value``."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def mobilenetv2_cifar(input_shape=(32, 32, 3), alpha=1.0, name=None):
    """The CIFAR MobileNetV2 of kuangliu/pytorch-cifar (the SB paper's CIFAR network), no classifier.

    Args:
        input_shape: ``(height, width, channels)``, any positive sizes (default ``(32, 32, 3)``).
        alpha: width multiplier, > 0 (default 1.0; the SB paper uses 0.35, 0.5, 0.75, 1.0).
        name: model name (default ``"mobilenetv2_cifar"``).

    Returns:
        A functional ``keras.Model`` mapping images to the ``(batch, h, w, 1280)`` feature map of
        the last 1x1 convolution (after BatchNorm and ReLU), h and w the input's divided by 8
        (rounded up).

    Raises:
        ValueError: ``alpha`` not a positive number, or a bad ``input_shape``.
    """
    alpha = check_number("alpha", alpha, minimum=0.0, strict=True)
    inputs = _input(input_shape, "input_layer")
    channels = make_divisible(32 * alpha)
    x = _conv(channels, 3, 1, "Conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn_Conv1", **_BN)(x)
    x = keras.layers.ReLU(name="Conv1_relu")(x)
    index = 0
    for expansion, width, blocks, first_stride in MOBILENETV2_CIFAR_CONFIG:
        out = make_divisible(width * alpha)
        for i in range(blocks):
            strides = first_stride if i == 0 else 1
            prefix = f"block_{index}"
            hidden = expansion * channels
            y = _conv(hidden, 1, 1, f"{prefix}_expand")(x)
            y = keras.layers.BatchNormalization(name=f"{prefix}_expand_BN", **_BN)(y)
            y = keras.layers.ReLU(name=f"{prefix}_expand_relu")(y)
            y = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                             depthwise_initializer="he_normal",
                                             name=f"{prefix}_depthwise")(y)
            y = keras.layers.BatchNormalization(name=f"{prefix}_depthwise_BN", **_BN)(y)
            y = keras.layers.ReLU(name=f"{prefix}_depthwise_relu")(y)
            y = _conv(out, 1, 1, f"{prefix}_project")(y)
            y = keras.layers.BatchNormalization(name=f"{prefix}_project_BN", **_BN)(y)
            if strides == 1:
                shortcut = x
                if channels != out:
                    shortcut = _conv(out, 1, 1, f"{prefix}_shortcut")(x)
                    shortcut = keras.layers.BatchNormalization(name=f"{prefix}_shortcut_BN",
                                                               **_BN)(shortcut)
                y = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            x = y
            channels = out
            index += 1
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = _conv(last, 1, 1, "Conv_1")(x)
    x = keras.layers.BatchNormalization(name="Conv_1_bn", **_BN)(x)
    x = keras.layers.ReLU(name="out_relu")(x)
    return keras.Model(inputs, x, name=name or "mobilenetv2_cifar")
