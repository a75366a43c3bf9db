"""Block recognition: which supported family a model is, its blocks, their ends and convolutions.

Layer names only recognise the family and group layers into blocks; the roles inside a block
come from the graph's structure (see the package docstring).
"""

from __future__ import annotations

import collections
import dataclasses
import re

import keras

from keras_attn.placement.graph import CONV_TYPES

SUPPORTED_FAMILIES = (
    "ResNet50/101/152",
    "ResNet50V2/101V2/152V2",
    "MobileNetV2",
    "MobileNetV3Small/Large",
    "EfficientNetB0-B7",
    "CIFAR ResNet-20/32/44/56/110",
    "CIFAR MobileNetV2 (mobilenetv2_cifar)",
)

_GLOBAL_POOL_TYPES = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


@dataclasses.dataclass(frozen=True)
class _Family:
    label: str
    signature: re.Pattern  # some layer name must match ...
    block: re.Pattern  # ... group(1) of this is the block a layer belongs to
    exclude: re.Pattern | None = None  # ... and no layer name may match this


_FAMILIES = (
    _Family(
        "ResNet50/101/152",
        re.compile(r"^conv\d+_block\d+_3_bn$"),
        re.compile(r"^(conv\d+_block\d+)_"),
        re.compile(r"_preact_bn$"),
    ),
    _Family(
        "ResNet50V2/101V2/152V2",
        re.compile(r"^conv\d+_block\d+_preact_bn$"),
        re.compile(r"^(conv\d+_block\d+)_"),
    ),
    _Family(
        # keras_attn.cifar_backbones.resnet_cifar: basic blocks (conv1, conv2), option-A shortcuts.
        "CIFAR ResNet-20/32/44/56/110",
        re.compile(r"^stack\d+_block\d+_2_bn$"),
        re.compile(r"^(stack\d+_block\d+)_"),
    ),
    _Family(
        # Also keras_attn.cifar_backbones.mobilenetv2_cifar, named alike.
        "MobileNetV2",
        re.compile(r"^(expanded_conv|block_\d+)_project_BN$"),
        re.compile(r"^(expanded_conv|block_\d+)_"),
    ),
    _Family(
        "MobileNetV3Small/Large",
        re.compile(r"^expanded_conv(_\d+)?_project_bn$"),
        re.compile(r"^(expanded_conv(?:_\d+)?)_"),
    ),
    _Family(
        "EfficientNetB0-B7",
        re.compile(r"^block\d+[a-z]_dwconv$"),
        re.compile(r"^(block\d+[a-z])_"),
        # EfficientNetV2 reuses the block names but has fused blocks and `dwconv2` layers.
        re.compile(r"_dwconv2$"),
    ),
)


def detect_family(graph):
    """The first family whose signature the graph's layer names bear, else None."""
    names = graph.layer_names()
    for family in _FAMILIES:
        if not any(family.signature.search(n) for n in names):
            continue
        if family.exclude is not None and any(family.exclude.search(n) for n in names):
            continue
        return family
    return None


@dataclasses.dataclass
class Block:
    name: str
    end: int  # node index of the block's end (block position)
    convs: list  # node indices of the block's own convolutions, graph order


def analyse_blocks(graph, family):
    """The model's blocks in graph order; a block without an Add or a BatchNorm is skipped."""
    members = collections.OrderedDict()
    for entry in graph.nodes:
        match = family.block.match(entry.name)
        if match:
            members.setdefault(match.group(1), []).append(entry.index)

    se_convs = set()
    blocks = []
    for block_name, indices in members.items():
        nodes = [graph.nodes[i] for i in indices]
        end = _block_end(graph, nodes)
        if end is None:
            continue
        upstream = graph.ancestors(end)
        convs = []
        for n in nodes:
            if not isinstance(n.op, CONV_TYPES):
                continue
            if _is_squeeze_excite(graph, n, se_convs):
                se_convs.add(n.index)
                continue
            if n.index in upstream:
                convs.append(n.index)
        blocks.append(Block(block_name, end, convs))
    return blocks


def _block_end(graph, nodes):
    """The residual-branch input of the block's last two-input Add, else its last BatchNorm."""
    adds = [
        n
        for n in nodes
        if isinstance(n.op, keras.layers.Add) and len([p for p in n.inputs if p is not None]) == 2
    ]
    if adds:
        # The residual branch is the longer way from the model input to the Add.
        branches = [p for p in adds[-1].inputs if p is not None]
        return max(branches, key=lambda p: (graph.nodes[p].depth, p))
    norms = [n.index for n in nodes if isinstance(n.op, keras.layers.BatchNormalization)]
    return norms[-1] if norms else None


def _is_squeeze_excite(graph, conv, se_convs):
    """A conv fed by a global pooling (or another SE conv) through single-input layers only."""
    parent = conv.inputs[0] if len(conv.inputs) == 1 else None
    while parent is not None:
        node = graph.nodes[parent]
        if isinstance(node.op, _GLOBAL_POOL_TYPES) or parent in se_convs:
            return True
        if isinstance(node.op, (*CONV_TYPES, keras.layers.BatchNormalization)):
            return False
        parents = node.inputs
        if len(parents) != 1:
            return False
        parent = parents[0]
    return False
