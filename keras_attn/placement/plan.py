"""Planning: the placement argument checked, and the insertion points it selects in a graph."""

from __future__ import annotations

import dataclasses

import keras

from keras_attn.placement.blocks import SUPPORTED_FAMILIES, analyse_blocks, detect_family
from keras_attn.placement.graph import Graph, as_functional
from keras_attn.placement.spec import AttentionSpec

PLACEMENTS = ("block", "layer", "paper")
# Convolution roles for placement=tuple (the SB paper's C1/C2/C3, Tables 2 and 5): inverted
# residual blocks (those with a depthwise convolution), and ResNet blocks (basic: conv1, conv2).
INVERTED_RESIDUAL_ROLES = ("expand", "depthwise", "project")
RESNET_ROLES = ("conv1", "conv2", "conv3")


def check_placement(placement):
    """``placement`` normalised: a name lower-cased, roles de-duplicated, a callable as is.

    Args:
        placement: one of :data:`PLACEMENTS` (case-insensitive), a non-empty tuple or list of
            roles from :data:`INVERTED_RESIDUAL_ROLES` and :data:`RESNET_ROLES`, or
            ``callable(layer) -> bool``.

    Returns:
        The name (``"block"``, ...), a tuple of roles in first-seen order, or the callable.

    Raises:
        ValueError: anything else (lists the valid names and roles).
    """
    if callable(placement) and not isinstance(placement, str):
        return placement
    if isinstance(placement, str) and placement.lower() in PLACEMENTS:
        return placement.lower()
    roles = INVERTED_RESIDUAL_ROLES + RESNET_ROLES
    if isinstance(placement, (tuple, list)) and placement and all(
        isinstance(r, str) and r in roles for r in placement
    ):
        return tuple(dict.fromkeys(placement))
    raise ValueError(
        f"`placement` must be one of {', '.join(repr(p) for p in PLACEMENTS)}, a tuple of "
        f"convolution roles (any of {INVERTED_RESIDUAL_ROLES} for inverted residual blocks, "
        f"{RESNET_ROLES} for ResNet blocks) or a callable(layer) -> bool; got {placement!r}."
    )


@dataclasses.dataclass
class Point:
    anchor: int  # node index after which the attention goes
    capture: int | None = None  # node index whose input is the layer-wise conv input
    defaults: dict = dataclasses.field(default_factory=dict)  # per-point constructor defaults


def plan(model, graph, placement, spec):
    """The insertion points of a checked ``placement`` in ``graph`` (of ``model``).

    Returns:
        ``(points, layerwise)``: :class:`Point` s in graph order, and whether layer classes with
        ``takes_layerwise_input`` get ``[conv_input, conv_output]`` at them.

    Raises:
        ValueError: a named placement on a model of no supported family; roles its blocks lack;
            a callable selecting a layer whose output is not one 4-D feature map.
    """
    if callable(placement) and not isinstance(placement, str):
        return _selected_points(graph, placement), False
    family = detect_family(graph)
    if family is None:
        raise _unsupported_error(model, placement)
    mode = _paper_mode(spec) if placement == "paper" else placement
    blocks = analyse_blocks(graph, family)
    if isinstance(mode, tuple):
        return _role_points(model, graph, blocks, mode, spec), True
    # Only "paper" applies the class's per-convolution defaults at layer-wise points.
    defaults_from = spec if placement == "paper" else None
    return _mode_points(graph, blocks, mode, defaults_from), mode == "layer"


def equivalent_placement(attention, placement):
    """The plainest placement name that puts ``attention`` exactly where ``placement`` does.

    ``"paper"`` is ``"block"`` for a class whose ``paper_placement`` is ``"block"`` (SA, SE, CBAM,
    ECA, DCA: the same points, no per-convolution defaults), and ``"layer"`` for one whose
    ``paper_placement`` is ``"layer"`` and whose ``role_defaults`` add nothing; otherwise (SimAM's
    ``"second_conv"``, Shift-and-Balance's per-convolution defaults) it stays ``"paper"``. Every
    other placement is returned as :func:`check_placement` normalises it. A search keys its runs
    by this name, so the same model is trained once whichever name asked for it.

    Args:
        attention: a registry name or an attention layer class.
        placement: as for :func:`attach`, but not a callable.

    Raises:
        ValueError: an unknown attention or placement (as :func:`check_placement`).
    """
    placement = check_placement(placement)
    if placement != "paper":
        return placement
    cls = AttentionSpec(attention, {}).cls
    mode = getattr(cls, "paper_placement", "block")
    if mode == "block":
        return "block"
    if mode == "layer" and not any(cls.role_defaults(kind)
                                   for kind in ("pointwise", "depthwise", "standard")):
        return "layer"
    return "paper"


def insertion_points(model, placement="block", attention=None):
    """Names of the layers ``attach`` would insert attention after, in graph order.

    Args:
        model: a functional ``keras.Model``.
        placement: as for :func:`attach`.
        attention: only matters for ``placement="paper"`` (a registry name, class or factory).

    Raises:
        ValueError: as :func:`attach` for an unknown placement, attention or unsupported model.
    """
    placement = check_placement(placement)
    spec = AttentionSpec(attention, {}) if attention is not None else None
    model = as_functional(model)
    graph = Graph(model)
    points, _ = plan(model, graph, placement, spec)
    return [graph.nodes[p.anchor].name for p in points]


def _unsupported_error(model, placement):
    return ValueError(
        f"attach(placement={placement!r}) does not recognise model {model.name!r} as one of the "
        f"supported backbone families: {', '.join(SUPPORTED_FAMILIES)} (keras.applications "
        "models, flat, i.e. not nested inside another model). For any other functional model "
        "pass placement=callable(layer) -> bool, e.g. "
        "placement=lambda layer: isinstance(layer, keras.layers.Conv2D)."
    )


def _selected_points(graph, select):
    points = []
    for entry in graph.nodes:
        if not isinstance(entry.op, keras.layers.Layer) or not select(entry.op):
            continue
        outputs = entry.node.outputs
        if len(outputs) != 1 or len(outputs[0].shape) != 4:
            shapes = [tuple(t.shape) for t in outputs]
            raise ValueError(
                f"The placement callable selected layer {entry.name!r}, whose output "
                f"{shapes} is not a single 4-D feature map; attention layers need one."
            )
        points.append(Point(entry.index))
    return points


def _role_points(model, graph, blocks, roles, spec):
    points = []
    roles_seen = set()
    for b in blocks:
        for c, role in zip(b.convs, _conv_roles(graph, b.convs), strict=True):
            roles_seen.add(role)
            if role in roles:
                points.append(_layerwise_point(graph, c, spec))
    unknown = [r for r in roles if r not in roles_seen]
    if unknown:
        valid = [r for r in INVERTED_RESIDUAL_ROLES + RESNET_ROLES if r in roles_seen]
        raise ValueError(
            f"placement roles {unknown} do not occur in model {model.name!r}; its blocks have "
            f"the convolution roles {valid}."
        )
    return points


def _mode_points(graph, blocks, mode, spec):
    """Points of "block", "layer" or a class's "second_conv" / "spatial" paper position."""
    if mode == "block":
        return [Point(b.end) for b in blocks]
    if mode == "layer":
        return [_layerwise_point(graph, c, spec) for b in blocks for c in b.convs]
    if mode == "second_conv":
        # Right after the block's second convolution, before its BatchNorm.
        return [Point(b.convs[1]) for b in blocks if len(b.convs) > 1]
    # "spatial"
    return [
        Point(_after_norm(graph, c))
        for b in blocks
        for c in b.convs
        if _kernel_extent(graph.nodes[c].op) > 1
    ]


def _layerwise_point(graph, conv_index, spec):
    """After the conv (and its BatchNorm), reading the conv's input, with the class's defaults
    for this kind of convolution (none without ``spec``)."""
    return Point(
        _after_norm(graph, conv_index),
        _conv_input_capture(graph, conv_index),
        _role_defaults(spec, graph.nodes[conv_index].op),
    )


def _after_norm(graph, conv_index):
    """The conv itself, or the BatchNormalization that is its only consumer."""
    consumers = graph.nodes[conv_index].consumers
    if len(consumers) == 1 and isinstance(
        graph.nodes[consumers[0]].op, keras.layers.BatchNormalization
    ):
        return consumers[0]
    return conv_index


def _conv_input_capture(graph, conv_index):
    """The node whose first call argument is the conv's input, ahead of its padding layer."""
    conv = graph.nodes[conv_index]
    parent = conv.inputs[0] if len(conv.inputs) == 1 else None
    if parent is not None:
        pad = graph.nodes[parent]
        if isinstance(pad.op, keras.layers.ZeroPadding2D) and pad.consumers == [conv_index]:
            return parent
    return conv_index


def _kernel_extent(op):
    size = getattr(op, "kernel_size", (1,))
    return max(size) if isinstance(size, (tuple, list)) else int(size)


def _conv_roles(graph, convs):
    """Role of each of a block's convolutions: expand/depthwise/project around a depthwise
    convolution, else conv1, conv2, ... in graph order."""
    ops_ = [graph.nodes[c].op for c in convs]
    depthwise = [i for i, op in enumerate(ops_) if isinstance(op, keras.layers.DepthwiseConv2D)]
    if depthwise:
        d = depthwise[0]
        return [
            "expand" if i < d else "depthwise" if i == d else "project" for i in range(len(convs))
        ]
    return [f"conv{i + 1}" for i in range(len(convs))]


def _paper_mode(spec):
    """What "paper" means for this attention, as its class says: "block", "layer",
    "second_conv" or "spatial" ("block" for a factory)."""
    cls = spec.cls if spec is not None else None
    return getattr(cls, "paper_placement", "block")


def _conv_kind(op):
    """The role a convolution plays, in the terms of ``AttentionLayer.role_defaults``."""
    if isinstance(op, keras.layers.DepthwiseConv2D):
        return "depthwise"
    return "pointwise" if _kernel_extent(op) == 1 else "standard"


def _role_defaults(spec, conv_op):
    """The attention class's own constructor defaults after this kind of convolution."""
    role_defaults = getattr(spec.cls, "role_defaults", None) if spec is not None else None
    return role_defaults(_conv_kind(conv_op)) if role_defaults is not None else {}
