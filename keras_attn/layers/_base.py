"""Shared plumbing for the attention layers: layout handling, argument checks, float32 statistics.

Every public layer subclasses :class:`AttentionLayer`. It owns ``data_format`` and resolves, at
``build`` time, the channel axis and the spatial axes of the input, so that a layer body is written
once for both layouts (and, later, for 1-D and 3-D feature maps: only ``SUPPORTED_RANKS`` changes).
"""

from __future__ import annotations

import numbers

import keras
from keras import ops

DATA_FORMATS = ("channels_last", "channels_first")


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming all three."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(c) for c in choices)}; got {value!r}."
        )
    return value


def check_number(name, value, *, minimum=None, strict=False, integer=False, allow_none=False):
    """Validate a numeric constructor argument and return it (``int`` or ``float``).

    ``minimum`` with ``strict=True`` means ``value > minimum``, else ``value >= minimum``.
    """
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a number"
        raise ValueError(f"`{name}` must be {what}; got {value!r}.")
    if minimum is not None:
        bad = value <= minimum if strict else value < minimum
        if bad:
            op = ">" if strict else ">="
            raise ValueError(f"`{name}` must be {op} {minimum}; got {value!r}.")
    return int(value) if integer else float(value)


def stats_dtype(compute_dtype):
    """The dtype in which means and variances are taken: float32 under float16/bfloat16."""
    if compute_dtype in ("float16", "bfloat16"):
        return "float32"
    return compute_dtype


class AttentionLayer(keras.layers.Layer):
    """Base class: ``data_format`` and input-rank checks shared by all keras-attn layers.

    Subclasses call ``self._resolve_axes(input_shape)`` at the start of ``build`` and then use
    ``self.channel_axis`` (an int, negative-free), ``self.spatial_axes`` (tuple of ints) and
    ``self.channels`` (int).

    Args:
        data_format: ``"channels_last"`` (default; input ``(batch, height, width, channels)``) or
            ``"channels_first"`` (input ``(batch, channels, height, width)``).

    Raises:
        ValueError: unknown ``data_format``; at build, an input that is not 4-D or whose channel
            dimension is unknown.
    """

    # Feature-map ranks (batch included) the layer accepts; 3-D and 5-D will join later.
    SUPPORTED_RANKS = (4,)

    def __init__(self, data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_choice("data_format", data_format, DATA_FORMATS)
        self.channel_axis = None
        self.spatial_axes = None
        self.channels = None

    def _resolve_axes(self, input_shape, what="input"):
        shape = tuple(input_shape)
        if len(shape) not in self.SUPPORTED_RANKS:
            raise ValueError(
                f"{type(self).__name__} expects a 4-D {what} "
                f"(batch, height, width, channels) for data_format='channels_last' or "
                f"(batch, channels, height, width) for 'channels_first'; got shape {shape}."
            )
        rank = len(shape)
        if self.data_format == "channels_last":
            channel_axis, spatial_axes = rank - 1, tuple(range(1, rank - 1))
        else:
            channel_axis, spatial_axes = 1, tuple(range(2, rank))
        channels = shape[channel_axis]
        if channels is None:
            raise ValueError(
                f"{type(self).__name__} needs a known channel dimension; got {what} shape {shape}."
            )
        return channel_axis, spatial_axes, int(channels)

    def _set_axes(self, input_shape):
        self.channel_axis, self.spatial_axes, self.channels = self._resolve_axes(input_shape)

    def _pool(self, x, keepdims=True):
        """Global average over the spatial axes, accumulated in float32 under mixed precision."""
        xs = ops.cast(x, stats_dtype(self.compute_dtype))
        return ops.mean(xs, axis=self.spatial_axes, keepdims=keepdims)

    def _moments(self, x):
        """Per-sample, per-channel mean and (biased) variance over space, in float32 when mixed."""
        xs = ops.cast(x, stats_dtype(self.compute_dtype))
        mean = ops.mean(xs, axis=self.spatial_axes, keepdims=True)
        var = ops.mean(ops.square(xs - mean), axis=self.spatial_axes, keepdims=True)
        return mean, var

    def _channel_shape(self, ndim):
        """Broadcast shape of a per-channel vector against an ``ndim``-D feature map."""
        shape = [1] * ndim
        shape[self.channel_axis] = self.channels
        return tuple(shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": self.data_format})
        return config
