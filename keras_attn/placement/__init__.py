"""Insert attention layers into an existing functional model: ``attach`` and ``attention_summary``.

``attach`` rebuilds the model's graph with ``keras.models.clone_model(clone_function=identity,
call_function=...)``: every original layer object is reused (so pretrained weights are kept, and are
*shared* with the original model), and the attention layers are called on the output of the chosen
layers ("anchors") while the graph is replayed.

Where attention goes in the supported ``keras.applications`` families (ResNet50/101/152,
ResNet50V2/101V2/152V2, MobileNetV2, MobileNetV3Small/Large, EfficientNetB0-B7) is worked out from
the graph. Layer names are only used to recognise the family and to group layers into blocks
(``conv4_block3_*``, ``block_5_*``, ``expanded_conv_2_*``, ``block3b_*``); inside a block the roles
come from the structure:

* the block's end: the residual-branch input of its ``Add`` (the input with the longer path from the
  model input; the other one is the shortcut), else the block's last ``BatchNormalization``;
* the block's convolutions: those the block's end depends on (so shortcut projections are left
  out), minus squeeze-excite convolutions (fed, through reshapes and activations only, by a global
  pooling or another squeeze-excite convolution). Stem and head convolutions belong to no block.

Placements (the DESIGN's contract):

* ``"block"``: at each block's end: SENet / SA-Net position, on the residual branch right before
  the ``Add`` (for EfficientNet that is after the branch's stochastic-depth ``Dropout``); blocks
  without an ``Add`` get it after their last BatchNorm (the linear bottleneck's projection BN).
* ``"layer"``: after every convolution of every block (after its BatchNorm when one follows;
  depthwise convolutions count). A layer class with ``takes_layerwise_input`` (ShiftAndBalance,
  DCA-SB) is then called as ``layer([conv_input, conv_output])``, the SB paper's layer-wise form;
  the conv input is taken before any ``ZeroPadding2D`` that only emulates the conv's padding.
* ``"paper"``: where the class's ``paper_placement`` says: ``"second_conv"`` (SimAM, "after
  second convolutional layer within each block", simam.txt Sec. 3, as its official code) right
  after the block's second convolution, before that convolution's BatchNorm (the 3x3 of ResNet
  blocks, the depthwise of inverted residual blocks with an expansion, the projection of those
  without); ``"spatial"`` after the spatial (k > 1 or depthwise) convolutions of each block, after
  their BatchNorm; ``"layer"`` (ShiftAndBalance) as ``"layer"``, with the class's
  ``role_defaults`` per convolution kind (SB: ``hidden_ratio=1/6`` after depthwise convolutions,
  unless ``hidden_ratio`` is given); ``"block"`` (SA, SE, CBAM, ECA, DCA) as ``"block"``.
  Placement never tests a layer's name: a new layer class sets these attributes
  (``keras_attn.layers._base.AttentionLayer``) and needs no edit here. SimAM after the BatchNorm
  instead (this package's position before it followed the paper, e.g. to keep pretrained BN
  statistics seeing the features they were computed on) is a role placement: ``("conv2",)`` in
  ResNets, ``("depthwise",)`` in inverted residual blocks. Factories default to ``"block"``.
* a tuple of convolution roles, ``("expand", "depthwise", "project")`` (any subset) in inverted
  residual blocks or ``("conv1", "conv2", "conv3")`` in ResNet blocks: after the convolutions of
  those roles (after their BatchNorm), layer-wise as ``"layer"`` and with the class's
  ``role_defaults``: the SB paper's C1 / C2 / C3 placements (Tables 2 and 5). A role the model's
  blocks do not have is a ValueError naming the roles they have.
* ``callable(layer) -> bool``: after every call of every layer it selects, in any functional model
  (input layers cannot be selected; the selected outputs must be 4-D feature maps).

Expected counts (block / layer): resnet20 9 / 18 (resnet110 54 / 108), mobilenetv2_cifar
17 / 51 (every block has its expansion conv), ResNet50 16 / 48, ResNet101 33 / 99, ResNet152 50 / 150 (same for
the V2 models), MobileNetV2 17 / 50, MobileNetV3Small 11 / 32, MobileNetV3Large 15 / 44,
EfficientNetB0 16 / 47 ... B7 55 / 161.

Modules, each importing only those above it: ``graph`` (a functional model read as a graph of
layer calls), ``blocks`` (the supported families and their blocks), ``spec`` (the attention to
insert, resolved), ``plan`` (the placement checked, and its insertion points), ``record`` (what
``attach`` inserted, kept on the new model), ``summary`` (``attention_summary``) and ``rewrite``
(``attach``).
"""

from keras_attn.placement.blocks import SUPPORTED_FAMILIES
from keras_attn.placement.plan import (
    INVERTED_RESIDUAL_ROLES,
    PLACEMENTS,
    RESNET_ROLES,
    check_placement,
    equivalent_placement,
    insertion_points,
)
from keras_attn.placement.record import Insertion, insertion_record, record_insertions
from keras_attn.placement.rewrite import attach
from keras_attn.placement.spec import AttentionSpec
from keras_attn.placement.summary import (
    AttentionSummary,
    attention_summary,
    print_attention_summary,
)

__all__ = [
    "INVERTED_RESIDUAL_ROLES",
    "PLACEMENTS",
    "RESNET_ROLES",
    "SUPPORTED_FAMILIES",
    "AttentionSpec",
    "AttentionSummary",
    "Insertion",
    "attach",
    "attention_summary",
    "check_placement",
    "equivalent_placement",
    "insertion_points",
    "insertion_record",
    "print_attention_summary",
    "record_insertions",
]
