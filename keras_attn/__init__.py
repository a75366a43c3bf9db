"""keras-attn: lightweight CNN attention layers for Keras 3, and where to put them.

Layers: :class:`ShuffleAttention` (SA-Net), :class:`SimAM`, :class:`ShiftAndBalance`, the DCA
connected layers (:class:`DCASqueezeExcite`, :class:`DCACBAM`, :class:`DCAShiftAndBalance`) and the
baselines :class:`SqueezeExcite`, :class:`CBAM`, :class:`ECA`.
"""

from keras_attn.layers import *  # noqa: F401,F403
from keras_attn.layers import __all__ as _layer_names
from keras_attn.registry import (
    available_attentions,
    get_attention,
    get_attention_class,
    register_attention,
)

__version__ = "0.1.0"

__all__ = list(_layer_names) + [
    "available_attentions",
    "get_attention",
    "get_attention_class",
    "register_attention",
]

try:  # placement and backbones arrive with issue 3
    from keras_attn.placement import attach, attention_summary  # noqa: F401
    from keras_attn.backbones import build_model, SUPPORTED_BACKBONES  # noqa: F401

    __all__ += ["attach", "attention_summary", "build_model", "SUPPORTED_BACKBONES"]
except ImportError:  # pragma: no cover
    pass
