"""Deep Connected Attention (DCA): SE, CBAM and Shift-and-Balance blocks that talk to each other.

Source: Xu Ma, Jingda Guo, Sihai Tang, Zhinan Qiao, Qi Chen, Qing Yang, Song Fu, "DCANet: Learning
Connected Attentions for Convolutional Neural Networks", arXiv 2007.05099 (ICME 2021); official
code github.com/13952522076/DCANet (also ma-xu/DCANet).

The paper (Sec. 3.1) splits an attention block into extraction ``G`` (e.g. global pooling),
transformation ``T`` (e.g. the bottleneck MLP + sigmoid) and fusion (e.g. ``x * T``), and connects
consecutive blocks by feeding the previous block's attention into the current transformation
(Sec. 3.2)::

    T_n = t_n( f(G_n, alpha * P_{n-1}) )

where ``P_{n-1}`` is the previous block's state, size-matched to ``G_n``. The connection functions
``f`` (``connection=``), computed element-wise in float32 with ``q = alpha * P``:

* ``"direct"`` (Eq. 4, the paper's default): ``f = G + q``; with ``alpha = 0`` the layer is its
  host.
* ``"weighted"`` (Eq. 5): ``f = G/(G+q) G + q/(G+q) q = (G^2 + q^2) / (G + q)``, computed as
  ``(|G| G + |q| q) / (|G| + |q| + eps)``. Where ``G`` and ``q`` have the same sign (both >= 0, or
  both <= 0) this equals Eq. 5 (up to ``eps``).
  **Departure** where the signs differ: Eq. 5 has a pole at ``G = -q`` (the weights
  ``G/(G+q)`` leave [0, 1]), and SE's extraction ``G = GAP(x)`` of a post-BatchNorm residual branch
  has either sign. With ``G`` and ``q`` independent standard normal, 10^6 draws gave Eq. 5 values
  of magnitude above 100 in 0.58% of the features and a maximum of 5e5; a single such feature
  saturates the sigmoid gate and its gradient is unbounded. The form used here stays a convex
  combination of ``G`` and ``q`` (within ``[min(G, q), max(G, q)]``) in both regions.
* ``"softmax"`` (Eq. 6): ``f = (e^-G G + e^-q q) / (e^-G + e^-q)``, a softmax over the
  *negated* terms, which favours the smaller one; computed stably as
  ``G + sigmoid(G - q) (q - G)``.

``alpha`` is one learnable scalar per connection (init ``alpha_init``, default 1), Eq. 3's single
weight on the previous map: ``f(G, alpha T~)``; ``alpha = 0`` with ``"direct"`` (and, by the
formulas above, with ``"weighted"``) is exactly the host block, while ``"softmax"`` still mixes in
``0`` (as the paper notes after Eq. 6).

The state a block hands on (Sec. 3.2, after Eq. 3): when the host's map is a sigmoid gate (SE;
CBAM's channel and spatial gates) the paper multiplies the previous map ``T~`` by the previous
extraction output ``E~`` "to match the scale": the state is ``G * T``, which for these
multiplicative hosts also equals the extraction of the fused output (``GAP(x * T) = GAP(x) * T``),
as in the official code.

**This project's extension** (Shift-and-Balance is not in the paper): the state of an SB block is
its shift ``A`` for the unbounded gates (``"tanh"``, ``"relu"``, ``"none"``, ``"softmax"``), and
``A * G`` for ``gate="sigmoid"``, applying the paper's scale-matching rule to the gate's (0, 1)
range. It is *not* the extraction of SB's output: SB fuses additively, ``GAP(t + c A) = GAP(t) +
c A``, so the identity above does not hold for it.

Size matching: when the previous block has other channels (the next stage of a backbone), one
Dense ``C_prev -> C`` (``channel_matching="fc"``) or two, ``C_prev -> max(1, C //
matching_reduction)`` (ReLU) ``-> C`` (``"fc2"``), created at build from the previous state's shape.
A previous spatial map of another resolution (CBAM's spatial connection) is average- or
max-pooled (``spatial_matching``) with stride = ratio of the sizes; when the sizes are not
multiples, it is pooled adaptively to the target size (bins ``[floor(i*H'/H), ceil((i+1)*H'/H))``,
as PyTorch's adaptive pooling), which also covers a previous map smaller than the current one.
CBAM is connected along the channel gate, the spatial gate or both (``dims``), each dimension with
its own connection and ``alpha`` (the paper's connections along each attention dimension).

The paper form and the official code. DCANet's published numbers (Tables 1-6) were made with its
official code, whose connection is not the paper's. ``connection_form="paper"`` (the default)
implements the paper's equations, as above; ``connection_form="official"`` (DCA-SE and DCA-CBAM)
implements the official code's connection, matching and initialisation, and reproduces the official
modules' outputs from their PyTorch weights (:mod:`keras_attn.layers.dca_official`, which also
lists its own departures, and :func:`~keras_attn.layers.dca_official.load_official_dca_weights`).
Departures of the paper form from the official code:

* Fusion of ``G`` and the previous state: the official code does not use the paper's ``G + alpha T``
  but stacks the two as a 2-channel map and fuses them with a learned 1x1 convolution (2 -> 1)
  followed by LayerNorm and ReLU (SE, CBAM channel gate), or ``ReLU(BN(p1 G + p2 P))`` for CBAM's
  spatial gate. The paper form implements the paper's equations, which keep ``alpha = 0`` equal to
  the host; no choice of its weights reproduces the official outputs.
* Channel matching: the official code uses Linear + LayerNorm + ReLU (SE) or 1x1 conv + BN + ReLU
  on the full previous map (CBAM); the paper form uses the paper's plain FC(s) on the state vectors.
* CBAM: the official code hands on the whole gated feature map (``x * scale``) and pools it in the
  next block; the paper form hands on the pooled statistics times the gate, ``(batch, 2, C)`` for
  the channel gate (average row, maximum row) and ``(batch, H, W, 2)`` for the spatial gate
  (channel max, channel mean; channels-last in both layouts). The gates are positive, so these
  equal the statistics the official code takes of the gated map (``max(x * s) = s * max(x)``),
  without carrying and re-reading a full feature map; the official code matches the channels of the
  full map before pooling and pools the spatial map before compressing it, and its spatial
  matching handles integer ratios only.
* Shift-and-Balance is not in the paper nor in the official code; its connection follows the
  paper's recipe on its branch (it has no ``connection_form``).

Other ranks: the paper connects 2-D attention blocks. Every host here also takes 1-D
``(batch, steps, channels)`` and 3-D ``(batch, depth, height, width, channels)`` maps (channels
second for ``channels_first``); the connections are unchanged (the channel states are vectors),
and CBAM's spatial state has the map's spatial axes, ``(batch, *spatial, 2)``: ``(batch, steps,
2)`` or ``(batch, D, H, W, 2)``, matched along each spatial axis as above. Connected layers must
have maps of the same rank.

Call convention: ``y, state = layer(x)`` (first block, or no connection) or
``y, state = layer([x, previous_state])`` where ``previous_state`` is exactly what the previous
layer of the same class returned (``[x, None]`` is accepted as "no previous state"). For
:class:`DCAShiftAndBalance` the forms of :class:`ShiftAndBalance` extend to ``t``, ``[x, t]``,
``[t, previous_state]``, ``[x, t, previous_state]`` and ``[[x, t], previous_state]`` (a previous
state has rank 2, a feature map rank 3, 4 or 5: the second element of a pair is ``t`` when it
has the first element's rank). Without a previous state every layer equals its host on
the same weights and has exactly the host's variables; ``alpha`` and the matching Dense layers
exist only when the layer is built with a previous state.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_attn.layers._base import (
    ArgumentChoices,
    check_choice,
    check_number,
    max_over,
    stats_dtype,
)
from keras_attn.layers.cbam import CBAM
from keras_attn.layers.dca_official import (
    CONNECTION_FORMS,
    MapMatch,
    SpatialFusion,
    VectorMatch,
    channels_last,
    compressed,
    pooled_rows,
    stack_fusion_for,
)
from keras_attn.layers.shift_and_balance import ShiftAndBalance
from keras_attn.layers.squeeze_excite import SqueezeExcite
from keras_attn.registry import register_attention

CONNECTIONS = ("direct", "weighted", "softmax")
CHANNEL_MATCHINGS = ("fc", "fc2")
SPATIAL_MATCHINGS = ("avg", "max")
CBAM_DIMS = ("all", "channel", "spatial")

_WEIGHTED_EPS = 1e-7

# What a search varies on every DCA layer, besides its host's own arguments: the connection of
# Sec. 3.2, direct being the paper's.
_CONNECTION_SEARCH = {"connection": ArgumentChoices(CONNECTIONS, "direct", "DCANet Sec. 3.2")}
# ... and, on the two hosts the official code connects, whose connection: the paper's (Eq. 3-6)
# or the official code's, which made the paper's tables (keras_attn.layers.dca_official).
_FORM_SEARCH = {
    "connection_form": ArgumentChoices(
        CONNECTION_FORMS, "paper", "DCANet Eq. 3-6; official code 13952522076/DCANet"
    )
}


def _is_shape(value):
    return isinstance(value, (list, tuple)) and all(
        d is None or isinstance(d, int) for d in value
    )


def connect(g, p, alpha, connection):
    """The connection function ``f(G, alpha * P)`` (dcanet.txt Eq. 4-6), element-wise.

    See the module docstring for the three forms and the ``"weighted"`` departure.

    ``g`` and ``p`` have the same shape and dtype (float32 in the layers); ``alpha`` is a scalar.
    """
    q = alpha * p
    if connection == "direct":
        return g + q
    if connection == "weighted":
        ag, aq = ops.abs(g), ops.abs(q)
        return (ag * g + aq * q) / (ag + aq + _WEIGHTED_EPS)
    if connection == "softmax":
        # Eq. 6 weights q by e^-q / (e^-G + e^-q) = sigmoid(G - q).
        d = q - g
        return g + ops.sigmoid(-d) * d
    raise ValueError(f"`connection` must be one of {CONNECTIONS}; got {connection!r}.")


def adaptive_bins(size_in, size_out):
    """``[start, end)`` of each of ``size_out`` adaptive-pooling bins over ``size_in`` positions."""
    return [
        (math.floor(i * size_in / size_out), math.ceil((i + 1) * size_in / size_out))
        for i in range(size_out)
    ]


def match_spatial(p, source_hw, target_hw, mode):
    """Pool a channels-last map ``(batch, *spatial', k)`` to the sizes ``target_hw`` (static).

    ``source_hw``/``target_hw`` hold one size per spatial axis (1, 2 or 3 of them: ``(H', W')``
    for 2-D maps). Integer ratios use one pooling op with stride = ratio; other sizes pool
    adaptively, one slice per output position along each axis (the state map has only ``k``
    channels, so this stays cheap).
    """
    source_hw, target_hw = tuple(source_hw), tuple(target_hw)
    if source_hw == target_hw:
        return p
    if all(n_in % n_out == 0 for n_in, n_out in zip(source_hw, target_hw)):
        window = tuple(n_in // n_out for n_in, n_out in zip(source_hw, target_hw))
        pool = ops.average_pool if mode == "avg" else ops.max_pool
        return pool(p, pool_size=window, strides=window, padding="valid")
    reduce = ops.mean if mode == "avg" else max_over
    rank = len(source_hw) + 2
    for axis, (n_in, n_out) in enumerate(zip(source_hw, target_hw), start=1):
        if n_in == n_out:
            continue
        pieces = []
        for start, end in adaptive_bins(n_in, n_out):
            index = [slice(None)] * rank
            index[axis] = slice(start, end)
            pieces.append(reduce(p[tuple(index)], axis=axis, keepdims=True))
        p = ops.concatenate(pieces, axis=axis)
    return p


class _ConnectedMixin:
    """Connection arguments, ``alpha`` variables, channel matching and input parsing."""

    is_connected = True

    def _init_connection(
        self, connection, channel_matching, matching_reduction, spatial_matching, alpha_init
    ):
        self.connection = check_choice("connection", connection, CONNECTIONS)
        self.channel_matching = check_choice(
            "channel_matching", channel_matching, CHANNEL_MATCHINGS
        )
        self.matching_reduction = check_number(
            "matching_reduction", matching_reduction, minimum=1, integer=True
        )
        self.spatial_matching = check_choice(
            "spatial_matching", spatial_matching, SPATIAL_MATCHINGS
        )
        self.alpha_init = check_number("alpha_init", alpha_init)
        self.match_fc = self.match_fc1 = self.match_fc2 = None

    def _connection_config(self):
        return {
            "connection": self.connection,
            "channel_matching": self.channel_matching,
            "matching_reduction": self.matching_reduction,
            "spatial_matching": self.spatial_matching,
            "alpha_init": self.alpha_init,
        }

    def _add_alpha(self, name):
        # Kept float32 under mixed precision: the connection is computed on float32 statistics.
        return self.add_weight(
            name=name,
            shape=(),
            initializer=keras.initializers.Constant(self.alpha_init),
            autocast=False,
        )

    def _build_channel_matcher(self, source_channels, target_channels, state_rank):
        """Dense layers mapping the state's last axis to ``target_channels`` (none if equal)."""
        self.match_fc = self.match_fc1 = self.match_fc2 = None
        if source_channels == target_channels:
            return
        policy = self.dtype_policy
        lead = (None,) * (state_rank - 1)
        if self.channel_matching == "fc":
            self.match_fc = keras.layers.Dense(target_channels, name="match_fc", dtype=policy)
            self.match_fc.build(lead + (source_channels,))
        else:
            hidden = max(1, target_channels // self.matching_reduction)
            self.match_fc1 = keras.layers.Dense(
                hidden, activation="relu", name="match_fc1", dtype=policy
            )
            self.match_fc2 = keras.layers.Dense(target_channels, name="match_fc2", dtype=policy)
            self.match_fc1.build(lead + (source_channels,))
            self.match_fc2.build(lead + (hidden,))

    def _match_channels(self, p, dtype):
        if self.match_fc is not None:
            p = self.match_fc(p)
        elif self.match_fc1 is not None:
            p = self.match_fc2(self.match_fc1(p))
        return ops.cast(p, dtype)

    def _check_state_shape(self, shape, rank, what, last_dim=None, dim1=None):
        """Validate a previous state's shape: rank, known channels, fixed small dims."""
        shape = tuple(shape) if _is_shape(shape) else shape
        if not _is_shape(shape) or len(shape) != rank:
            raise ValueError(
                f"{type(self).__name__}: the previous state must be {what} (rank {rank}), as "
                f"returned by the previous {type(self).__name__}; got shape {shape}."
            )
        if shape[-1] is None or (last_dim is not None and shape[-1] != last_dim):
            raise ValueError(
                f"{type(self).__name__}: the previous state must be {what}; got shape {shape}."
            )
        if dim1 is not None and shape[1] != dim1:
            raise ValueError(
                f"{type(self).__name__}: the previous state must be {what}; got shape {shape}."
            )
        return shape

    def _no_previous_error(self):
        return ValueError(
            f"{type(self).__name__} {self.name!r} was built without a previous state, so it has "
            "no connection variables; call it with `[x, previous_state]` the first time it is "
            "used if it is to be connected."
        )

    @staticmethod
    def _split_connected_shapes(input_shape):
        if _is_shape(input_shape):
            return tuple(input_shape), None
        parts = list(input_shape)
        if len(parts) == 1:
            return tuple(parts[0]), None
        if len(parts) != 2:
            raise ValueError(
                f"A DCA layer takes `x` or `[x, previous_state]`; got {len(parts)} inputs with "
                f"shapes {parts}."
            )
        return tuple(parts[0]), parts[1]

    @staticmethod
    def _split_connected(inputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) == 1:
                return inputs[0], None
            return inputs[0], inputs[1]
        return inputs, None


# ---------------------------------------------------------------------------------------------


@register_attention("dca_se")
@keras.saving.register_keras_serializable(package="keras_attn")
class DCASqueezeExcite(_ConnectedMixin, SqueezeExcite):
    """DCA-connected Squeeze-and-Excitation (Ma et al., arXiv 2007.05099; Hu et al., 1709.01507).

    Call: ``y, state = layer(x)`` or ``layer([x, previous_state])``; ``x`` is a 1-D, 2-D or 3-D
    feature map in ``data_format`` (see :class:`SqueezeExcite`), ``y`` has its shape, ``state`` is ``(batch, C)`` = ``GAP(x) * gate`` (the
    extraction times the sigmoid gate), all in the compute dtype (with either ``connection_form``).

    Args:
        reduction: SE bottleneck ratio, integer ``>= 1`` (default 16).
        connection_form: ``"paper"`` (default: ``f(G, alpha * P)`` of Eq. 4-6 with
            ``connection``) or ``"official"`` (the official code's ``ReLU(LN(k0 G + k1 P + b))``
            with its matching ``ReLU(LN(Linear(P)))``; :mod:`keras_attn.layers.dca_official`).
        connection: ``"direct"`` (default), ``"weighted"`` or ``"softmax"`` (module docstring);
            no effect with ``connection_form="official"``.
        channel_matching: ``"fc"`` (default) or ``"fc2"``, used when the previous state's
            channels differ from C; no effect with ``connection_form="official"``.
        matching_reduction: reduction of ``"fc2"``, integer ``>= 1`` (default 16).
        spatial_matching: ``"avg"`` (default) or ``"max"``; accepted for a uniform API, no effect
            here (the SE state has no spatial extent).
        alpha_init: initial value of ``alpha`` (default 1.0); no effect with
            ``connection_form="official"``.
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        **kwargs: passed to ``keras.layers.Layer``.

    Variables: SE's ``squeeze`` and ``excite``; with a previous state, ``alpha`` (scalar) and,
    when channels differ, ``match_fc`` (or ``match_fc1``/``match_fc2``); with
    ``connection_form="official"`` instead ``official_fusion`` (``kernel`` (2,), ``bias`` (),
    ``norm``: LayerNormalization of C) and, when channels differ, ``official_match`` (``dense``
    C' -> C, ``norm``). :func:`~keras_attn.layers.dca_official.load_official_dca_weights` loads the
    official ``CSELayer``'s weights.

    Non-finite inputs are not checked (a check would cost a reduction per call): a NaN or Inf
    passes through to the output, within its own sample, in training and in inference mode.

    Raises:
        ValueError: an invalid argument (names it, its value and the valid choices); at build, an
            input that is not 3-D, 4-D or 5-D or a previous state that is not ``(batch, C_prev)``;
            a call with a previous state on a layer built without one.
    """

    search_space = {**SqueezeExcite.search_space, **_CONNECTION_SEARCH, **_FORM_SEARCH}

    def __init__(
        self,
        reduction=16,
        connection="direct",
        channel_matching="fc",
        matching_reduction=16,
        spatial_matching="avg",
        alpha_init=1.0,
        data_format="channels_last",
        connection_form="paper",
        **kwargs,
    ):
        super().__init__(reduction=reduction, data_format=data_format, **kwargs)
        self.connection_form = check_choice("connection_form", connection_form, CONNECTION_FORMS)
        self._init_connection(
            connection, channel_matching, matching_reduction, spatial_matching, alpha_init
        )
        self.official_match = self.official_fusion = None
        self.has_previous = False

    def build(self, input_shape):
        x_shape, prev_shape = self._split_connected_shapes(input_shape)
        self._set_axes(x_shape)
        self._build_host()
        if prev_shape is not None:
            prev_shape = self._check_state_shape(prev_shape, 2, "(batch, channels)")
            if self.connection_form == "official":
                self._build_official(prev_shape)
            else:
                self._build_channel_matcher(prev_shape[-1], self.channels, 2)
                self.alpha = self._add_alpha("alpha")
            self.has_previous = True
        self.built = True

    def _build_official(self, prev_shape):
        if prev_shape[-1] != self.channels:
            self.official_match = VectorMatch(self.channels, name="official_match",
                                              dtype=self.dtype_policy)
            self.official_match.build(prev_shape)
        self.official_fusion = stack_fusion_for("se", stats_dtype(self.compute_dtype))
        self.official_fusion.build((None, self.channels))

    def _connect_official(self, g, prev):
        p = prev if self.official_match is None else self.official_match(prev)
        return self.official_fusion(g, ops.cast(p, g.dtype))

    def call(self, inputs):
        x, prev = self._split_connected(inputs)
        g = self.extract(x)
        z = g
        if prev is not None:
            if not self.has_previous:
                raise self._no_previous_error()
            if self.connection_form == "official":
                z = self._connect_official(g, prev)
            else:
                z = connect(g, self._match_channels(prev, g.dtype), self.alpha, self.connection)
        gate = self.transform(z)
        state = ops.cast(g * ops.cast(gate, g.dtype), self.compute_dtype)
        return self.fuse(x, gate), state

    def compute_output_shape(self, input_shape):
        x_shape, _ = self._split_connected_shapes(input_shape)
        _, _, channels = self._resolve_axes(x_shape)
        return x_shape, (x_shape[0], channels)

    def get_config(self):
        config = super().get_config()
        config.update({"connection_form": self.connection_form})
        config.update(self._connection_config())
        return config


# ---------------------------------------------------------------------------------------------


@register_attention("dca_cbam")
@keras.saving.register_keras_serializable(package="keras_attn")
class DCACBAM(_ConnectedMixin, CBAM):
    """DCA-connected CBAM (Ma et al., arXiv 2007.05099; Woo et al., arXiv 1807.06521).

    Call: ``y, state = layer(x)`` or ``layer([x, previous_state])``. The state depends on
    ``dims``: ``"channel"``: ``(batch, 2, C)`` (average and maximum pooled vectors times the
    channel gate); ``"spatial"``: ``(batch, H, W, 2)`` (channel max and mean of the channel-gated
    map times the spatial gate; channels-last in both layouts; ``(batch, steps, 2)`` for a 1-D
    ``x``, ``(batch, D, H, W, 2)`` for a 3-D one, see :class:`CBAM` for the input forms); ``"all"``: the list of both.
    With ``connection_form="official"`` the states are the official code's full maps, in ``x``'s
    shape and ``data_format``: ``"channel"``: the channel-gated map ``x * Mc``; ``"spatial"``: the
    output ``y``; ``"all"``: ``[x * Mc, y]``. All in the compute dtype. Connected layers must
    share ``connection_form``.

    Args:
        reduction: CBAM MLP ratio, integer ``>= 1`` (default 16).
        kernel_size: odd spatial kernel size (default 7).
        dims: which gates are connected: ``"all"`` (default), ``"channel"`` or ``"spatial"``.
        connection_form: ``"paper"`` (default: ``f(G, alpha * P)`` of Eq. 4-6 with
            ``connection``) or ``"official"`` (the official code's fusions and matchings;
            :mod:`keras_attn.layers.dca_official`).
        connection: ``"direct"`` (default), ``"weighted"`` or ``"softmax"``, for each connected
            gate; no effect with ``connection_form="official"``.
        channel_matching: ``"fc"`` (default) or ``"fc2"``, for the channel state; no effect with
            ``connection_form="official"``.
        matching_reduction: reduction of ``"fc2"``, integer ``>= 1`` (default 16).
        spatial_matching: ``"avg"`` (default, also the official code's) or ``"max"`` pooling of a
            larger previous spatial state.
        alpha_init: initial value of each ``alpha`` (default 1.0); no effect with
            ``connection_form="official"``.
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        **kwargs: passed to ``keras.layers.Layer``.

    Call arguments: ``training`` for the BatchNormalizations.

    Variables: CBAM's; with a previous state, ``alpha_channel`` and/or ``alpha_spatial`` (scalars)
    and, when the channel counts differ, ``match_fc`` (or ``match_fc1``/``match_fc2``). With
    ``connection_form="official"`` instead: ``official_fusion`` (channel: ``kernel`` (2,), ``norm``:
    LayerNormalization of C), ``official_match`` when the channel counts differ (``conv`` C' -> C,
    ``bn``), ``official_spatial_fusion`` (spatial: ``p1``, ``p2``, ``bn`` of 2 channels).
    :func:`~keras_attn.layers.dca_official.load_official_dca_weights` loads the official
    ``CBAM`` module's weights.

    Non-finite inputs are not checked (a check would cost a reduction per call). In inference mode
    a NaN or Inf stays within its own sample's output; in training mode the spatial BatchNormalization mixes the batch:
    one sample's NaN or Inf makes every sample's output NaN, and the moving statistics too (so
    every later output).

    Raises:
        ValueError: an invalid argument; at build, an input that is not 3-D, 4-D or 5-D, a previous
            state whose structure or rank does not match ``dims`` (and ``connection_form``), or a
            spatial connection with unknown spatial sizes; a call with a previous state on a layer
            built without one.
    """

    search_space = {**CBAM.search_space, **_CONNECTION_SEARCH, **_FORM_SEARCH}

    def __init__(
        self,
        reduction=16,
        kernel_size=7,
        dims="all",
        connection="direct",
        channel_matching="fc",
        matching_reduction=16,
        spatial_matching="avg",
        alpha_init=1.0,
        data_format="channels_last",
        connection_form="paper",
        **kwargs,
    ):
        super().__init__(
            reduction=reduction, kernel_size=kernel_size, data_format=data_format, **kwargs
        )
        self.dims = check_choice("dims", dims, CBAM_DIMS)
        self.connection_form = check_choice("connection_form", connection_form, CONNECTION_FORMS)
        self._init_connection(
            connection, channel_matching, matching_reduction, spatial_matching, alpha_init
        )
        self.official_match = self.official_fusion = self.official_spatial_fusion = None
        self.has_previous = False
        self._spatial_plan = None

    @property
    def _connect_channel(self):
        return self.dims in ("all", "channel")

    @property
    def _connect_spatial(self):
        return self.dims in ("all", "spatial")

    def _split_state(self, prev):
        """``(channel_state, spatial_state)`` from a state (or state shape) for ``dims``."""
        if prev is None:
            return None, None
        if self.dims == "all":
            if _is_shape(prev) or not isinstance(prev, (list, tuple)) or len(prev) != 2:
                raise ValueError(
                    f"{type(self).__name__} with dims='all' expects the previous state "
                    f"`[channel_state, spatial_state]`; got {prev!r}."
                )
            return prev[0], prev[1]
        if self.dims == "channel":
            return prev, None
        return None, prev

    def build(self, input_shape):
        x_shape, prev_shape = self._split_connected_shapes(input_shape)
        self._set_axes(x_shape)
        self._build_host()
        channel_shape, spatial_shape = self._split_state(prev_shape)
        if self.connection_form == "official":
            self._build_official(x_shape, channel_shape, spatial_shape)
        else:
            self._build_paper(x_shape, channel_shape, spatial_shape)
        self.has_previous = prev_shape is not None
        self.built = True

    def _build_paper(self, x_shape, channel_shape, spatial_shape):
        if channel_shape is not None:
            channel_shape = self._check_state_shape(
                channel_shape, 3, "(batch, 2, channels)", dim1=2
            )
            self._build_channel_matcher(channel_shape[-1], self.channels, 3)
            self.alpha_channel = self._add_alpha("alpha_channel")
        if spatial_shape is not None:
            rank = len(x_shape)
            what = {3: "(batch, steps, 2)", 4: "(batch, height, width, 2)"}.get(
                rank, "(batch, depth, height, width, 2)"
            )
            spatial_shape = self._check_state_shape(spatial_shape, rank, what, last_dim=2)
            self._plan_spatial(x_shape, spatial_shape, tuple(spatial_shape[1:-1]))
            self.alpha_spatial = self._add_alpha("alpha_spatial")

    def _plan_spatial(self, x_shape, spatial_shape, source_hw):
        target_hw = tuple(x_shape[a] for a in self.spatial_axes)
        if None in source_hw or None in target_hw:
            raise ValueError(
                f"{type(self).__name__} connects spatial gates (dims={self.dims!r}) and needs "
                f"static spatial sizes to match resolutions; got input shape {x_shape} and "
                f"previous spatial state shape {spatial_shape}. Give the model a fixed "
                "input size or use dims='channel'."
            )
        self._spatial_plan = (source_hw, target_hw)

    def _check_map_state(self, shape, x_shape, which):
        """An official state: the previous official DCACBAM's ``which`` map, ``x``'s rank."""
        shape = tuple(shape) if _is_shape(shape) else shape
        if not _is_shape(shape) or len(shape) != len(x_shape) or shape[self.channel_axis] is None:
            raise ValueError(
                f"{type(self).__name__} with connection_form='official': the previous {which} "
                f"state must be a feature map of rank {len(x_shape)} with known channels (the "
                f"{'channel-gated map' if which == 'channel' else 'output'} of the previous "
                f"DCACBAM with connection_form='official', in {self.data_format}); got shape "
                f"{shape}."
            )
        return shape

    def _build_official(self, x_shape, channel_shape, spatial_shape):
        stats = stats_dtype(self.compute_dtype)
        lead = (None,) * (len(x_shape) - 1)
        if channel_shape is not None:
            channel_shape = self._check_map_state(channel_shape, x_shape, "channel")
            source = channel_shape[self.channel_axis]
            if source != self.channels:
                self.official_match = MapMatch(self.channels, name="official_match",
                                               dtype=self.dtype_policy)
                self.official_match.build(lead + (source,))
            self.official_fusion = stack_fusion_for("cbam", stats)
            self.official_fusion.build((None, 2, self.channels))
        if spatial_shape is not None:
            spatial_shape = self._check_map_state(spatial_shape, x_shape, "spatial")
            source_hw = tuple(spatial_shape[a] for a in self.spatial_axes)
            self._plan_spatial(x_shape, spatial_shape, source_hw)
            self.official_spatial_fusion = SpatialFusion(name="official_spatial_fusion",
                                                         dtype=stats)
            self.official_spatial_fusion.build(lead + (2,))

    def call(self, inputs, training=None):
        x, prev = self._split_connected(inputs)
        if prev is not None and not self.has_previous:
            raise self._no_previous_error()
        prev_channel, prev_spatial = self._split_state(prev)
        if self.connection_form == "official":
            return self._call_official(x, prev_channel, prev_spatial, training)

        gc = self.extract_channel(x)
        zc = gc
        if prev_channel is not None:
            pc = self._match_channels(prev_channel, gc.dtype)
            zc = connect(gc, pc, self.alpha_channel, self.connection)
        tc = self.transform_channel(zc)
        x1 = self.fuse_channel(x, tc)

        gs = self.extract_spatial(x1)
        zs = gs
        if prev_spatial is not None:
            ps = match_spatial(prev_spatial, *self._spatial_plan, self.spatial_matching)
            zs = connect(gs, ops.cast(ps, gs.dtype), self.alpha_spatial, self.connection)
        ts = self.transform_spatial(zs, training=training)
        y = self.fuse_spatial(x1, ts)

        states = []
        if self._connect_channel:
            tc32 = ops.cast(tc, gc.dtype)
            states.append(ops.cast(gc * ops.expand_dims(tc32, 1), self.compute_dtype))
        if self._connect_spatial:
            states.append(ops.cast(gs * ops.cast(ts, gs.dtype), self.compute_dtype))
        return y, (states if self.dims == "all" else states[0])

    def _call_official(self, x, prev_channel, prev_spatial, training):
        """The official ``CBAM.forward`` (resnet_cbam_dca.py): the previous maps matched, pooled
        and fused by the official modules; the state is the two maps themselves."""
        gc = self.extract_channel(x)
        zc = gc
        if prev_channel is not None:
            m = channels_last(prev_channel, self.data_format)
            if self.official_match is not None:
                m = self.official_match(m, training=training)
            zc = self.official_fusion(gc, pooled_rows(m, gc.dtype))
        x1 = self.fuse_channel(x, self.transform_channel(zc))

        gs = self.extract_spatial(x1)
        zs = gs
        if prev_spatial is not None:
            source_hw, target_hw = self._spatial_plan
            if source_hw == target_hw:
                ps = self.extract_spatial(prev_spatial)
            else:  # pooled before it is compressed, as the official code
                m = channels_last(prev_spatial, self.data_format)
                ps = compressed(match_spatial(m, source_hw, target_hw, self.spatial_matching),
                                gs.dtype)
            zs = self.official_spatial_fusion(gs, ps, training=training)
        y = self.fuse_spatial(x1, self.transform_spatial(zs, training=training))
        states = [x1] * self._connect_channel + [y] * self._connect_spatial
        return y, (states if self.dims == "all" else states[0])

    def compute_output_shape(self, input_shape):
        x_shape, _ = self._split_connected_shapes(input_shape)
        channel_axis, spatial_axes, channels = self._resolve_axes(x_shape)
        batch = x_shape[0]
        if self.connection_form == "official":
            shapes = [x_shape] * (self._connect_channel + self._connect_spatial)
            return x_shape, (shapes if self.dims == "all" else shapes[0])
        shapes = []
        if self._connect_channel:
            shapes.append((batch, 2, channels))
        if self._connect_spatial:
            shapes.append((batch,) + tuple(x_shape[a] for a in spatial_axes) + (2,))
        return x_shape, (shapes if self.dims == "all" else shapes[0])

    def get_config(self):
        config = super().get_config()
        config.update({"dims": self.dims, "connection_form": self.connection_form})
        config.update(self._connection_config())
        return config


# ---------------------------------------------------------------------------------------------


@register_attention("dca_sb")
@keras.saving.register_keras_serializable(package="keras_attn")
class DCAShiftAndBalance(_ConnectedMixin, ShiftAndBalance):
    """DCA-connected Shift-and-Balance (Ma et al., arXiv 2007.05099; Luo et al., 2103.13080).

    Call: ``y, state = layer(t)``, ``layer([x, t])``, ``layer([t, previous_state])``,
    ``layer([x, t, previous_state])`` or ``layer([[x, t], previous_state])``: ``t`` is the trunk
    map, ``x`` the optional branch input (as :class:`ShiftAndBalance`), ``previous_state`` the
    ``(batch, C_prev)`` state of the previous layer. ``x`` and ``t`` are 1-D, 2-D or 3-D maps of
    the same rank (see :class:`ShiftAndBalance`). ``y`` has ``t``'s shape; ``state`` is
    ``(batch, C_out)``: the shift ``A``, or ``A * GAP(t)`` when ``gate="sigmoid"``. All in the
    compute dtype. The state is matched to the
    branch input's channel count ``C_in`` (its transformation input is ``GAP`` of the branch input).

    Args:
        hidden_ratio, gate, lambda_init, dropout: as :class:`ShiftAndBalance`.
        connection: ``"direct"`` (default), ``"weighted"`` or ``"softmax"``.
        channel_matching: ``"fc"`` (default) or ``"fc2"``.
        matching_reduction: reduction of ``"fc2"``, integer ``>= 1`` (default 16).
        spatial_matching: ``"avg"`` (default) or ``"max"``; accepted for a uniform API, no effect
            (the state is a vector).
        alpha_init: initial value of ``alpha`` (default 1.0).
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        **kwargs: passed to ``keras.layers.Layer``.

    Variables: ShiftAndBalance's; with a previous state, ``alpha`` and, when ``C_prev != C_in``,
    ``match_fc`` (or ``match_fc1``/``match_fc2``).

    Non-finite inputs are not checked (a check would cost a reduction per call). In inference mode
    a NaN or Inf stays within its own sample's output; in training mode the branch's BatchNormalization mixes the batch:
    one sample's NaN or Inf makes every sample's output NaN, and the moving statistics too (so
    every later output).

    Raises:
        ValueError: an invalid argument; at build, a feature map that is not 3-D, 4-D or 5-D or a
            previous state that is not ``(batch, C_prev)``; a call with a previous state on a layer
            built without one.
    """

    search_space = {**ShiftAndBalance.search_space, **_CONNECTION_SEARCH}

    def __init__(
        self,
        hidden_ratio=1.0,
        gate="tanh",
        lambda_init=0.1,
        dropout=0.0,
        connection="direct",
        channel_matching="fc",
        matching_reduction=16,
        spatial_matching="avg",
        alpha_init=1.0,
        data_format="channels_last",
        **kwargs,
    ):
        super().__init__(
            hidden_ratio=hidden_ratio,
            gate=gate,
            lambda_init=lambda_init,
            dropout=dropout,
            data_format=data_format,
            **kwargs,
        )
        self._init_connection(
            connection, channel_matching, matching_reduction, spatial_matching, alpha_init
        )
        self.has_previous = False

    @staticmethod
    def _parts(items, rank_of, is_leaf):
        """``(source, trunk, previous)`` from the accepted input structures.

        A two-element input is ``[[x, t], previous_state]`` when its first element is itself a
        pair, ``[x, t]`` when its second element is a map of the first element's rank (3, 4 or 5;
        a state has rank 2) and ``[t, previous_state]`` otherwise.
        """
        if is_leaf(items):
            return items, items, None
        items = list(items)
        if len(items) == 1:
            return items[0], items[0], None
        if len(items) == 2:
            if not is_leaf(items[0]):
                source, trunk, _ = DCAShiftAndBalance._parts(items[0], rank_of, is_leaf)
                return source, trunk, items[1]
            if items[1] is not None and rank_of(items[1]) == rank_of(items[0]):
                return items[0], items[1], None
            return items[0], items[0], items[1]
        if len(items) == 3:
            return items[0], items[1], items[2]
        raise ValueError(
            f"DCAShiftAndBalance takes t, [x, t], [t, previous_state] or "
            f"[x, t, previous_state]; got {len(items)} inputs."
        )

    @classmethod
    def _shape_parts(cls, input_shape):
        return cls._parts(input_shape, len, _is_shape)

    @classmethod
    def _tensor_parts(cls, inputs):
        def is_leaf(value):
            return not isinstance(value, (list, tuple))

        return cls._parts(inputs, lambda t: len(t.shape), is_leaf)

    def build(self, input_shape):
        source_shape, trunk_shape, prev_shape = self._shape_parts(input_shape)
        self._build_host(tuple(source_shape), tuple(trunk_shape))
        if prev_shape is not None:
            prev_shape = self._check_state_shape(prev_shape, 2, "(batch, channels)")
            self._build_channel_matcher(prev_shape[-1], self.source_channels, 2)
            self.alpha = self._add_alpha("alpha")
            self.has_previous = True
        self.built = True

    def call(self, inputs, training=None):
        source, trunk, prev = self._tensor_parts(inputs)
        g = self.extract(source)
        z = g
        if prev is not None:
            if not self.has_previous:
                raise self._no_previous_error()
            z = connect(g, self._match_channels(prev, g.dtype), self.alpha, self.connection)
        shift = self.transform(z, training=training)
        y = self.fuse(trunk, shift)
        if self.gate == "sigmoid":
            g_trunk = g if trunk is source else self.extract(trunk)
            state = g_trunk * ops.cast(shift, g_trunk.dtype)
        else:
            state = shift
        return y, ops.cast(state, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        _, trunk_shape, _ = self._shape_parts(input_shape)
        trunk_shape = tuple(trunk_shape)
        _, _, channels = self._resolve_axes(trunk_shape)
        return trunk_shape, (trunk_shape[0], channels)

    def get_config(self):
        config = super().get_config()
        config.update(self._connection_config())
        return config
