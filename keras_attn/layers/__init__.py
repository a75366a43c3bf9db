"""The attention layers. Each module holds one public layer (DCA: the connected family, and in
``dca_official`` the official DCANet code's connection and its weight loader).

A new layer subclasses :class:`AttentionLayer` (the facts it states about itself: see its
docstring) and declares its searchable arguments with :class:`ArgumentChoices`.
"""

from keras_attn.layers._base import ArgumentChoices, AttentionLayer

# The import order is the registration order, which orders the search's hyperparameters (SA's
# groups, SimAM's e_lambda, SB's lambda_init and gate, DCA's connection and connection_form) and
# attention names.
from keras_attn.layers.shuffle_attention import ShuffleAttention
from keras_attn.layers.simam import SimAM
from keras_attn.layers.shift_and_balance import ShiftAndBalance
from keras_attn.layers.squeeze_excite import SqueezeExcite
from keras_attn.layers.cbam import CBAM
from keras_attn.layers.eca import ECA
from keras_attn.layers.deep_connected import (
    DCACBAM,
    DCAShiftAndBalance,
    DCASqueezeExcite,
)

__all__ = [
    "AttentionLayer",
    "ArgumentChoices",
    "ShuffleAttention",
    "SimAM",
    "ShiftAndBalance",
    "SqueezeExcite",
    "CBAM",
    "ECA",
    "DCASqueezeExcite",
    "DCACBAM",
    "DCAShiftAndBalance",
]
