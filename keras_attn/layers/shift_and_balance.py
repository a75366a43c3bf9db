"""Shift-and-Balance attention: an additive, balanced channel shift.

Source: Chunjie Luo, Jianfeng Zhan, Tianshu Hao, Lei Wang, Wanling Gao, "Shift-and-Balance
Attention", arXiv 2103.13080.

Where SE multiplies the trunk by a sigmoid gate, SB adds a channel-wise shift whose size a learned
``control_factor`` balances against the trunk::

    A   = gate(BN2(W2 Dropout(ReLU(BN1(W1 GAP(s))))))     W1: C_in -> hidden, W2: hidden -> C_out
    out = t + control_factor * A                          control_factor: (C_out,), init lambda_init

``s`` is what the branch reads: the trunk tensor ``t`` itself (``sb(t)``, block-wise) or the
trunk's input ``x`` (``sb([x, t])``, layer-wise: the branch runs in parallel with a convolution
``x -> t``, so ``x`` may have other channels and spatial size than ``t``).
``hidden = max(1, round(hidden_ratio * hidden_multiplier * C_out))``; the paper uses
``hidden_ratio`` 1 for pointwise and 1/6 for depthwise layers (``role_defaults``), and scales both
by x1, x2, x3, x4 in Table 10 (``hidden_multiplier``). ``gate`` is ``"tanh"`` (the paper's choice), ``"sigmoid"``,
``"softmax"`` (over channels), ``"relu"`` or ``"none"`` (the paper's ablations).

With ``control_factor`` all zero the output is exactly ``t``.

``fusion="multiply"`` is the SB paper's layer-wise SE baseline (Tables 2, 5 and 7: "SE,
Pointwise" etc.): the same branch on the same input, a sigmoid gate, and the trunk *multiplied* by
it, ``out = t * sigmoid(BN2(W2 ReLU(BN1(W1 GAP(s)))))``, with no control factor (so it has
``C_out`` parameters fewer than the SB layer of the same width: 2.500M vs 2.503M on
MobileNetV2_x0.35 in Table 2).

Written as DCANet's three stages (Ma et al., arXiv 2007.05099, Sec. 3.1) so that
:class:`~keras_attn.layers.deep_connected.DCAShiftAndBalance` only inserts its connection:
``extract`` (GAP, float32 under mixed precision), ``transform`` (the branch up to the gate),
``fuse`` (``t + control_factor * A``, one elementwise pass over ``t``).

Other ranks: the paper uses 2-D maps; the branch only reads ``GAP(s)`` and the fusion is per
channel, so on 1-D ``(batch, steps, channels)`` or 3-D ``(batch, depth, height, width, channels)``
maps the pooling averages over all spatial axes and nothing else changes. In ``[x, t]`` both maps
have the same rank (their spatial sizes and channels may differ).

Implementation notes: the two Dense layers have no bias, as each is followed by a BatchNormalization
whose beta makes a bias redundant; the BatchNormalizations act on the ``(batch, features)`` vectors
with epsilon 1e-5 (PyTorch's default) and Keras' momentum 0.99.
"""

from __future__ import annotations

import operator

import keras
from keras import ops

from keras_attn.layers._base import ArgumentChoices, AttentionLayer, check_choice, check_number
from keras_attn.registry import register_attention

GATES = ("tanh", "sigmoid", "softmax", "relu", "none")
FUSIONS = ("add", "multiply")


def _is_shape(value):
    return isinstance(value, (list, tuple)) and all(
        d is None or isinstance(d, int) for d in value
    )


@register_attention("sb")
@keras.saving.register_keras_serializable(package="keras_attn")
class ShiftAndBalance(AttentionLayer):
    """Shift-and-Balance attention (Luo et al., arXiv 2103.13080).

    Call as ``sb(t)`` (the branch reads ``t``) or ``sb([x, t])`` (the branch reads the trunk input
    ``x``, any channel count and spatial size, ``t``'s rank). ``t`` and ``x`` are feature maps in
    ``data_format``: 1-D ``(batch, steps, channels)``, 2-D ``(batch, height, width, channels)`` or
    3-D ``(batch, depth, height, width, channels)`` (``"channels_last"``), channels second for
    ``"channels_first"``; the pooling averages over all spatial axes. Output: ``t``'s shape, in
    the compute dtype.

    Args:
        hidden_ratio: hidden width relative to ``C_out``, a number ``> 0`` (default 1.0).
        hidden_multiplier: factor on the hidden width, ``> 0`` (default 1.0; Table 10's x1-x4).
            ``hidden = max(1, round(hidden_ratio * hidden_multiplier * C_out))``.
        gate: ``"tanh"``, ``"sigmoid"``, ``"softmax"`` (over channels), ``"relu"`` or ``"none"``;
            default None: ``"tanh"`` (the paper's SB) with ``fusion="add"``, ``"sigmoid"`` with
            ``fusion="multiply"`` (which takes no other gate).
        fusion: ``"add"`` (default, SB: ``t + control_factor * A``) or ``"multiply"`` (the paper's
            layer-wise SE: ``t * A``, sigmoid gate, no ``control_factor``).
        lambda_init: initial value of every ``control_factor`` entry (default 0.1).
        dropout: dropout rate after the hidden ReLU, in ``[0, 1)`` (default 0.0).
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        **kwargs: passed to ``keras.layers.Layer``.

    Call arguments: ``training`` for the BatchNormalizations and the dropout.

    Variables: ``control_factor`` ``(C_out,)`` (``fusion="add"`` only); ``fc1`` (C_in x hidden), ``bn1`` (hidden),
    ``fc2`` (hidden x C_out), ``bn2`` (C_out), Dense layers without bias.

    Non-finite inputs are not checked (a check would cost a reduction per call). In inference mode
    a NaN or Inf stays within its own sample's output; in training mode the branch's BatchNormalization mixes the batch:
    one sample's NaN or Inf makes every sample's output NaN, and the moving statistics too (so
    every later output).

    Raises:
        ValueError: non-positive ``hidden_ratio`` or ``hidden_multiplier``, unknown ``gate`` or
            ``fusion``, a gate other than ``"sigmoid"`` with ``fusion="multiply"``, non-numeric or non-finite ``lambda_init`` (every numeric argument must be finite),
            ``dropout`` outside ``[0, 1)``, unknown ``data_format``; at build, an input that is not
            3-D, 4-D or 5-D (the message names its rank), ``x`` and ``t`` of different ranks (or
            a list of more than two inputs).
    """

    # The paper puts SB after every convolution, its branch reading the convolution's input.
    paper_placement = "layer"
    takes_layerwise_input = True

    search_space = {
        "lambda_init": ArgumentChoices((0.01, 0.05, 0.1, 0.5, 1.0), 0.1, "SB paper, Table 8"),
        "gate": ArgumentChoices(GATES, "tanh", "SB paper, Table 9"),
    }

    @classmethod
    def role_defaults(cls, conv_kind):
        """The paper's branch width: ``hidden_ratio`` 1/6 after depthwise convolutions, else 1."""
        return {"hidden_ratio": 1.0 / 6.0} if conv_kind == "depthwise" else {}

    def __init__(
        self,
        hidden_ratio=1.0,
        gate=None,
        lambda_init=0.1,
        dropout=0.0,
        hidden_multiplier=1.0,
        fusion="add",
        data_format="channels_last",
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        self.hidden_ratio = check_number("hidden_ratio", hidden_ratio, minimum=0.0, strict=True)
        self.hidden_multiplier = check_number(
            "hidden_multiplier", hidden_multiplier, minimum=0.0, strict=True
        )
        self.fusion = check_choice("fusion", fusion, FUSIONS)
        if gate is None:
            gate = "sigmoid" if self.fusion == "multiply" else "tanh"
        self.gate = check_choice("gate", gate, GATES)
        if self.fusion == "multiply" and self.gate != "sigmoid":
            raise ValueError(
                f"`fusion='multiply'` (the SB paper's layer-wise SE) gates with a sigmoid; got "
                f"gate={gate!r}. Use gate='sigmoid' (or None), or fusion='add' for {gate!r}."
            )
        self.lambda_init = check_number("lambda_init", lambda_init)
        self.dropout = check_number("dropout", dropout, minimum=0.0)
        if self.dropout >= 1.0:
            raise ValueError(f"`dropout` must be in [0, 1); got {dropout!r}.")
        self.source_channels = None

    # -- build -----------------------------------------------------------------------------

    def _split_shapes(self, input_shape):
        """``(source_shape, trunk_shape)`` from ``t``'s shape or ``[x, t]``'s shapes."""
        if _is_shape(input_shape):
            return tuple(input_shape), tuple(input_shape)
        shapes = list(input_shape)
        if len(shapes) == 1:
            return tuple(shapes[0]), tuple(shapes[0])
        if len(shapes) != 2:
            raise ValueError(
                f"{type(self).__name__} takes `t` or `[x, t]`; got {len(shapes)} inputs with "
                f"shapes {shapes}."
            )
        return tuple(shapes[0]), tuple(shapes[1])

    def build(self, input_shape):
        source_shape, trunk_shape = self._split_shapes(input_shape)
        self._build_host(source_shape, trunk_shape)
        self.built = True

    def _build_host(self, source_shape, trunk_shape):
        self._set_axes(trunk_shape)
        _, _, self.source_channels = self._resolve_axes(source_shape, what="branch input `x`")
        if len(source_shape) != len(trunk_shape):
            raise ValueError(
                f"{type(self).__name__}: the branch input `x` and the trunk `t` of `[x, t]` must "
                f"have the same rank; got shapes {tuple(source_shape)} and {tuple(trunk_shape)}."
            )
        channels = self.channels
        hidden = max(1, int(round(self.hidden_ratio * self.hidden_multiplier * channels)))
        policy = self.dtype_policy
        self.fc1 = keras.layers.Dense(hidden, use_bias=False, name="fc1", dtype=policy)
        self.bn1 = keras.layers.BatchNormalization(epsilon=1e-5, name="bn1", dtype=policy)
        self.drop = keras.layers.Dropout(self.dropout, name="drop", dtype=policy)
        self.fc2 = keras.layers.Dense(channels, use_bias=False, name="fc2", dtype=policy)
        self.bn2 = keras.layers.BatchNormalization(epsilon=1e-5, name="bn2", dtype=policy)
        self.fc1.build((None, self.source_channels))
        self.bn1.build((None, hidden))
        self.fc2.build((None, hidden))
        self.bn2.build((None, channels))
        self.control_factor = None
        if self.fusion == "add":
            self.control_factor = self.add_weight(
                name="control_factor",
                shape=(channels,),
                initializer=keras.initializers.Constant(self.lambda_init),
            )

    # -- the three stages ------------------------------------------------------------------

    @staticmethod
    def _split(inputs):
        """``(source, trunk)`` from ``t`` or ``[x, t]``."""
        if isinstance(inputs, (list, tuple)):
            if len(inputs) == 1:
                return inputs[0], inputs[0]
            return inputs[0], inputs[1]
        return inputs, inputs

    def extract(self, source):
        """``(batch, C_in)`` channel means of the branch input, float32 under mixed precision."""
        return self._pool(source, keepdims=False)

    def transform(self, g, training=None):
        """``(batch, C_out)`` shift ``A`` in the compute dtype."""
        h = ops.relu(self.bn1(self.fc1(g), training=training))
        h = self.drop(h, training=training)
        a = self.bn2(self.fc2(h), training=training)
        return self._apply_gate(a)

    def _apply_gate(self, a):
        if self.gate == "tanh":
            return ops.tanh(a)
        if self.gate == "sigmoid":
            return ops.sigmoid(a)
        if self.gate == "softmax":
            return ops.softmax(a, axis=-1)
        if self.gate == "relu":
            return ops.relu(a)
        return a

    def fuse(self, t, shift):
        # The per-(batch, channel) coefficient is formed on the small vector, so the full map sees
        # a single broadcast add (or product).
        if self.fusion == "multiply":
            return self._to_map_view(t, shift, operator.mul)
        coeff = ops.cast(self.control_factor, t.dtype) * ops.cast(shift, t.dtype)
        return self._to_map_view(t, coeff, operator.add)

    def call(self, inputs, training=None):
        source, trunk = self._split(inputs)
        return self.fuse(trunk, self.transform(self.extract(source), training=training))

    def compute_output_shape(self, input_shape):
        return self._split_shapes(input_shape)[1]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_ratio": self.hidden_ratio,
                "hidden_multiplier": self.hidden_multiplier,
                "fusion": self.fusion,
                "gate": self.gate,
                "lambda_init": self.lambda_init,
                "dropout": self.dropout,
            }
        )
        return config
