"""Shared plumbing for the attention layers: layout handling, argument checks, float32 statistics.

Every public layer subclasses :class:`AttentionLayer`. It owns ``data_format`` and resolves, at
``build`` time, the channel axis and the spatial axes of the input, so that a layer body is written
once for both layouts and for 1-D, 2-D and 3-D feature maps (``SUPPORTED_RANKS``: inputs of rank
3, 4 and 5, batch included).
"""

from __future__ import annotations

import dataclasses
import math
import types

import keras
from keras import ops

from keras_attn.validation import check_bool, check_choice, check_number  # noqa: F401

DATA_FORMATS = ("channels_last", "channels_first")


def stats_dtype(compute_dtype):
    """The dtype in which means and variances are taken: float32 under float16/bfloat16.

    ``compute_dtype`` may be a name or any backend's dtype object (``torch.float16`` does not
    compare equal to ``"float16"``)."""
    compute_dtype = keras.backend.standardize_dtype(compute_dtype)
    if compute_dtype in ("float16", "bfloat16"):
        return "float32"
    return compute_dtype


def max_over(x, axis, keepdims=False):
    """``keras.ops.max`` over ``axis`` that also takes an empty batch.

    TensorFlow's ``keras.ops.max`` refuses, when eager, any tensor with no elements, even when
    the reduced axes are not empty (a batch of 0 images has a well-defined ``(0, C)`` channel
    maximum). With an ``initial`` of ``-inf`` it reduces normally; ``maximum(m, -inf)`` changes
    no value and passes the gradient through.
    """
    return ops.max(x, axis=axis, keepdims=keepdims, initial=float("-inf"))


def sigmoid_backprop(s, upstream):
    """``upstream * s * (1 - s)``: a gradient carried back through ``s = sigmoid(z)``.

    For the closed-form backward passes (SimAM, ShuffleAttention). Under TensorFlow it is the one
    ``SigmoidGrad`` kernel that TensorFlow's own sigmoid gradient uses: one pass over the map
    instead of the two or three of the written-out product. Other backends get that product in
    ``keras.ops`` (JAX's XLA fuses it).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.raw_ops.SigmoidGrad(y=s, dy=upstream)
    return upstream * s * (1.0 - s)


def add_n(tensors):
    """The sum of same-shape tensors: TensorFlow's one ``AddN`` kernel (one pass over the map for
    any number of terms, where pairwise sums make one pass per term), pairwise sums elsewhere."""
    tensors = list(tensors)
    if keras.backend.backend() == "tensorflow" and len(tensors) > 2:
        import tensorflow as tf

        return tf.add_n(tensors)
    total = tensors[0]
    for t in tensors[1:]:
        total = total + t
    return total


# A per-(sample, channel) vector broadcast against a channels-last map runs, in TensorFlow's CPU
# kernels, 2-3x slower than a same-shape product when the channels are few (C = 16: its inner
# run is 16 floats, 2 AVX registers; benchmarks/README.md). Folding P pixels into the last axis,
# (B, S, C) -> (B, S / P, P * C), with the vector tiled P times, makes the run P * C long.
_FOLD_WIDTH = 64


class StatsView:
    """A feature map seen as 3-D, for per-(sample, channel) statistics and gates over space.

    ``channels_last`` ``(batch, *spatial, C)`` is viewed as ``(batch, S / P, P * C)`` (``S`` the
    number of positions), ``channels_first`` ``(batch, C, *spatial)`` as ``(batch, C, S)``; both
    are reshapes, no copy. ``P`` is the smallest divisor of ``S`` with ``P * C >= 64`` when
    ``C < 64``, ``S`` is known when the layer is traced and the backend is TensorFlow, else 1
    (see ``_FOLD_WIDTH``).

    A per-(sample, channel) statistic is kept *narrow*, ``(batch, 1, C)`` (``(batch, C, 1)``
    channels-first), and :meth:`wide` makes it broadcast against the view. Sums over space are
    taken over the view's position axis, then over the ``P`` folded copies.

    Args:
        layer: the built :class:`AttentionLayer` (its ``data_format`` and spatial axes).
        x: a feature map of the layer's rank (its trunk or, for Shift-and-Balance, its branch
            input); only its shape is read, and its channel dimension must be known.
        fold: False keeps ``P = 1``.
    """

    def __init__(self, layer, x, fold=True):
        self.channels_last = layer.data_format == "channels_last"
        self.channels = c = int(x.shape[layer.channel_axis])
        shape = ops.shape(x)
        self.shape = shape
        static = [x.shape[a] for a in layer.spatial_axes]
        if None in static:
            size = 1
            for axis in layer.spatial_axes:
                size = size * shape[axis]
            self.size, self.fold = size, 1
        else:
            self.size = size = int(math.prod(static))
            # Only TensorFlow's CPU kernels need it; XLA (JAX) fuses the broadcasts anyway.
            fold = fold and self.channels_last and keras.backend.backend() == "tensorflow"
            self.fold = _fold(size, c) if fold else 1

    def view(self, x):
        """``x`` as the 3-D view."""
        if self.channels_last:
            rows = self.size // self.fold
            return ops.reshape(x, (self.shape[0], rows, self.fold * self.channels))
        return ops.reshape(x, (self.shape[0], self.channels, self.size))

    def unview(self, t):
        """A tensor of the view's shape back in the map's shape."""
        return ops.reshape(t, self.shape)

    def sum(self, t):
        """Narrow per-(sample, channel) sums over space of a view-shaped ``t``."""
        if not self.channels_last:
            return ops.sum(t, axis=2, keepdims=True)
        # Over the (batch, S, C) view: TensorFlow's reduction of a middle axis was faster on it
        # than over the folded rows followed by the P copies.
        return ops.sum(ops.reshape(t, (self.shape[0], self.size, self.channels)), axis=1,
                       keepdims=True)

    def wide(self, v):
        """A narrow per-(sample, channel) tensor made to broadcast against the view."""
        if self.channels_last and self.fold > 1:
            return ops.tile(v, (1, 1, self.fold))
        return v

    def per_channel(self, v):
        """A ``(C,)`` vector as a narrow tensor."""
        shape = (1, 1, self.channels) if self.channels_last else (1, self.channels, 1)
        return ops.reshape(v, shape)

    def from_vectors(self, v):
        """``(batch, C)`` vectors (or any tensor of that size) as a narrow tensor."""
        # The batch is spelled out, not -1: JAX cannot infer a -1 next to an empty batch.
        batch = self.shape[0]
        return ops.reshape(v, (batch, 1, self.channels) if self.channels_last
                           else (batch, self.channels, 1))

    def to_vectors(self, v):
        """A narrow tensor as ``(batch, C)`` vectors."""
        return ops.reshape(v, (self.shape[0], self.channels))


def _fold(size, channels):
    if channels >= _FOLD_WIDTH:
        return 1
    for p in range(1, size + 1):
        if size % p == 0 and p * channels >= _FOLD_WIDTH:
            return p
    return size


@dataclasses.dataclass(frozen=True)
class ArgumentChoices:
    """The values an architecture search tries for one constructor argument of a layer.

    Attributes:
        choices: the values to try, a non-empty tuple (a list is converted).
        default: the paper's value, one of ``choices``: what a search uses when it does not vary
            the argument (``keras_tuner`` ``Choice`` default, ``paper_space``).
        source: where the values come from (paper, section or table), for the reader.

    Raises:
        ValueError: empty ``choices`` or a ``default`` not among them (the message lists them).
    """

    choices: tuple
    default: object
    source: str = ""

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise ValueError("ArgumentChoices: `choices` is empty; give at least one value.")
        check_choice("default", self.default, self.choices)

    def around(self, width=1):
        """The values a search tries *around the paper's*: for numbers, the default and the
        ``width`` nearest choices on each side of it in numeric order (SA-Net's G = 64 among
        8..64 gives ``(32, 64)``, SimAM's lambda = 1e-4 gives ``(1e-5, 1e-4, 1e-3)``); for other
        values (a gate's name, a connection), every choice, since they have no order.

        Raises:
            ValueError: ``width`` not an integer >= 0.
        """
        width = check_number("width", width, minimum=0, integer=True)
        numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool)
                      for c in self.choices)
        if not numeric:
            return self.choices
        ordered = sorted(self.choices)
        at = ordered.index(self.default)
        return tuple(ordered[max(0, at - width):at + width + 1])


class AttentionLayer(keras.layers.Layer):
    """Base class: ``data_format`` and input-rank checks shared by all keras-attn layers.

    Subclasses call ``self._resolve_axes(input_shape)`` at the start of ``build`` and then use
    ``self.channel_axis`` (an int, negative-free), ``self.spatial_axes`` (tuple of ints) and
    ``self.channels`` (int).

    Args:
        data_format: ``"channels_last"`` (default; input ``(batch, steps, channels)``,
            ``(batch, height, width, channels)`` or ``(batch, depth, height, width, channels)``)
            or ``"channels_first"`` (channels second: ``(batch, channels, steps)``, ...).

    Inputs must have a floating dtype (float16, bfloat16, float32 or float64; Keras casts them
    to the compute dtype). Integer, boolean or complex inputs are refused at call, symbolic or
    eager, for every layer alike: the gates are fractions in (0, 1) and a product in an integer
    dtype would truncate them to zero.

    Raises:
        ValueError: unknown ``data_format``; at call, an input (or a DCA state) that is not
            floating (the message names its dtype and says to cast it); at build, an input whose
            rank is not in ``SUPPORTED_RANKS`` (the message names its rank and the valid forms)
            or whose channel dimension is unknown.
    """

    # Feature-map ranks (batch included) the layer accepts: 3 = (batch, steps, channels),
    # 4 = (batch, height, width, channels), 5 = (batch, depth, height, width, channels).
    SUPPORTED_RANKS = (3, 4, 5)

    # ---- What the layer knows about itself. Placement and the search ask these; they never
    # ---- test a layer's name. A new attention layer sets them and needs no edit elsewhere.

    #: Where the method's paper puts it, for ``attach(placement="paper")``: ``"block"`` (on each
    #: residual branch before its Add), ``"layer"`` (after every convolution of each block),
    #: ``"second_conv"`` (right after each block's second convolution, before its BatchNorm) or
    #: ``"spatial"`` (after the spatial, i.e. k > 1 or depthwise, convolution of each block).
    paper_placement = "block"

    #: True: at layer-wise insertion points the layer is called as ``layer([conv_input,
    #: conv_output])`` (its branch reads the convolution's input, as Shift-and-Balance's);
    #: False: ``layer(conv_output)``.
    takes_layerwise_input = False

    #: True for DCA-connected layers: they take ``[x, previous_state]`` and return
    #: ``(y, state)``; placement threads the state from one insertion point to the next.
    is_connected = False

    #: The constructor arguments an architecture search varies, ``{argument: ArgumentChoices}``,
    #: in the order the search declares them (default: none). ``search`` reads it for each
    #: registered layer: a layer that sets it is searched over it with no edit in ``search/``.
    search_space = types.MappingProxyType({})

    @classmethod
    def role_defaults(cls, conv_kind):
        """Constructor defaults for an insertion after a convolution of ``conv_kind``.

        Args:
            conv_kind: ``"pointwise"`` (1x1), ``"depthwise"`` or ``"standard"`` (k > 1, dense).

        Returns:
            A dict of constructor arguments; arguments the user passes take precedence.
        """
        return {}

    @classmethod
    def adapt_to_channels(cls, kwargs, channels, where=None):
        """Constructor arguments ``kwargs`` adapted to an insertion point with ``channels``.

        The default returns ``kwargs`` unchanged. A layer with a channel constraint (e.g.
        ShuffleAttention's ``C % (2 * groups) == 0``) lowers its argument here.

        Args:
            kwargs: the constructor arguments the user asked for (not modified).
            channels: the feature map's channel count at the insertion point.
            where: name of the insertion point, for error messages.

        Raises:
            ValueError: no valid arguments exist for ``channels``.
        """
        return dict(kwargs)

    def __init__(self, data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_choice("data_format", data_format, DATA_FORMATS)
        self.channel_axis = None
        self.spatial_axes = None
        self.channels = None

    def __call__(self, *args, **kwargs):
        inputs = args[0] if args else kwargs.get("inputs")
        self._check_input_dtypes(inputs)
        return super().__call__(*args, **kwargs)

    def _check_input_dtypes(self, inputs):
        """Raise a ValueError for any input tensor (of ``x``, ``[x, t]`` or ``[x, state]``) whose
        dtype is not floating; objects without a ``dtype`` (nested Python lists) pass."""
        for i, t in enumerate(keras.tree.flatten(inputs)):
            dtype = getattr(t, "dtype", None)
            if dtype is None:
                continue
            dtype = keras.backend.standardize_dtype(dtype)
            if not keras.backend.is_float_dtype(dtype):
                which = "an input" if i == 0 else f"input {i} (zero-based, of the list)"
                raise ValueError(
                    f"{type(self).__name__} {self.name!r} needs floating-point inputs; got "
                    f"{which} of dtype {dtype!r}. Cast it to a float dtype first, e.g. "
                    f"keras.ops.cast(x, {self.compute_dtype!r}) (or scale images with "
                    "keras.layers.Rescaling)."
                )

    def _resolve_axes(self, input_shape, what="input"):
        shape = tuple(input_shape)
        if len(shape) not in self.SUPPORTED_RANKS:
            forms = {
                3: "(batch, steps, channels)",
                4: "(batch, height, width, channels)",
                5: "(batch, depth, height, width, channels)",
            }
            ranks = self.SUPPORTED_RANKS
            dims = ", ".join(f"{r}-D" for r in ranks[:-1])
            dims = f"{dims} or {ranks[-1]}-D" if dims else f"{ranks[-1]}-D"
            layouts = " or ".join(forms.get(r, "?") for r in ranks)
            raise ValueError(
                f"{type(self).__name__} expects a {dims} {what}: {layouts} for "
                f"data_format='channels_last', channels second for 'channels_first'; got a "
                f"{len(shape)}-D {what} of shape {shape}."
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

    def _spatial_size(self, x, dtype):
        """The number of positions per channel (``H * W``, ``steps``, ``D * H * W``) as a scalar
        of ``dtype``; sizes unknown until the call are read from ``x``'s dynamic shape."""
        shape = ops.shape(x)
        size = 1
        for axis in self.spatial_axes:
            size = size * shape[axis]
        return ops.cast(size, dtype)

    def _pool(self, x, keepdims=True):
        """Global average over the spatial axes, accumulated in float32 under mixed precision:
        ``(batch, C)``, or ``(batch, 1, ..., C)`` (channels first: ``(batch, C, 1, ...)``) with
        ``keepdims``. Its gradient is one broadcast of ``g / S`` over the map (on the folded
        :class:`StatsView`), where TensorFlow's own broadcasts ``g`` and then divides the whole
        map (a second pass), and casts it back under mixed precision (a third)."""
        stats = stats_dtype(self.compute_dtype)
        view = StatsView(self, x)

        @ops.custom_gradient
        def pool(x):
            mean = ops.mean(ops.cast(x, stats), axis=self.spatial_axes, keepdims=True)

            def grad(*args, upstream=None):
                g = args[0] if upstream is None else upstream
                g = view.wide(view.from_vectors(ops.cast(g / ops.cast(view.size, stats), x.dtype)))
                return view.unview(ops.broadcast_to(g, ops.shape(view.view(x))))

            return mean, grad

        mean = pool(x)
        return mean if keepdims else view.to_vectors(mean)

    def _to_map_view(self, x, vectors, combine):
        """``combine(x, v)`` with ``(batch, C)`` ``vectors`` broadcast over ``x``'s space, on
        the folded :class:`StatsView` (a per-(sample, channel) broadcast there is as fast as a
        same-shape product); the vectors are cast to ``x``'s dtype. ``combine`` is
        ``operator.add`` or ``operator.mul``, not ``keras.ops.add``, whose TensorFlow form takes
        a ``(0 or 1, 1, C)`` operand for a bias and fails on an empty batch. Only float32 maps
        fold: in float16/bfloat16 the vectors' gradient, a sum over space, would be rounded twice
        (over the folded rows, then over the P copies) where it was rounded once."""
        view = StatsView(self, x, fold=keras.backend.standardize_dtype(x.dtype) == "float32")
        v = ops.cast(vectors, x.dtype)
        if view.fold == 1:  # the map's own layout: the same sums, in the same order, as ever
            shape = [1] * len(x.shape)
            shape[0], shape[self.channel_axis] = view.shape[0], view.channels
            return combine(x, ops.reshape(v, tuple(shape)))
        return view.unview(combine(view.view(x), view.wide(view.from_vectors(v))))

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
