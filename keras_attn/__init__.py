"""keras-attn: lightweight CNN attention layers for Keras 3, and where to put them.

Layers: :class:`ShuffleAttention` (SA-Net), :class:`SimAM`, :class:`ShiftAndBalance`, the DCA
connected layers (:class:`DCASqueezeExcite`, :class:`DCACBAM`, :class:`DCAShiftAndBalance`) and the
baselines :class:`SqueezeExcite`, :class:`CBAM`, :class:`ECA`.
"""

from keras_attn.layers import *  # noqa: F401,F403
from keras_attn.layers import __all__ as _layer_names
from keras_attn.registry import (
    NO_ATTENTION,
    available_attentions,
    get_attention,
    get_attention_class,
    register_attention,
    unregister_attention,
)

__version__ = "0.1.0"

__all__ = list(_layer_names) + [
    "NO_ATTENTION",
    "available_attentions",
    "get_attention",
    "get_attention_class",
    "register_attention",
    "unregister_attention",
]

from keras_attn.backbones import (  # noqa: E402
    SMALL_IMAGE_BACKBONES,
    SUPPORTED_BACKBONES,
    build_model,
)
from keras_attn.optimizers import ReplicaSafeLossScaleOptimizer  # noqa: E402
from keras_attn.placement import (  # noqa: E402
    attach,
    attention_summary,
    insertion_points,
    print_attention_summary,
)

__all__ += [
    "attach",
    "attention_summary",
    "insertion_points",
    "print_attention_summary",
    "build_model",
    "SUPPORTED_BACKBONES",
    "SMALL_IMAGE_BACKBONES",
    "ReplicaSafeLossScaleOptimizer",
]

from keras_attn.export import export_model  # noqa: E402
from keras_attn.gradcam import grad_cam  # noqa: E402

__all__ += ["export_model", "grad_cam"]
