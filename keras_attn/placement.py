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
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import re
import weakref

import keras

from keras_attn.registry import available_attentions, get_attention_class

PLACEMENTS = ("block", "layer", "paper")
# Convolution roles for placement=tuple (the SB paper's C1/C2/C3, Tables 2 and 5): inverted
# residual blocks (those with a depthwise convolution), and ResNet blocks (basic: conv1, conv2).
INVERTED_RESIDUAL_ROLES = ("expand", "depthwise", "project")
RESNET_ROLES = ("conv1", "conv2", "conv3")

SUPPORTED_FAMILIES = (
    "ResNet50/101/152",
    "ResNet50V2/101V2/152V2",
    "MobileNetV2",
    "MobileNetV3Small/Large",
    "EfficientNetB0-B7",
    "CIFAR ResNet-20/32/44/56/110",
    "CIFAR MobileNetV2 (mobilenetv2_cifar)",
)


_CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
_GLOBAL_POOL_TYPES = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
_BASE_CONFIG_KEYS = frozenset({"name", "trainable", "dtype", "data_format"})


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

# Model -> what attach inserted into it (names, anchors): lets attention_summary find layers of
# arbitrary classes made by factories. Weak, so models are not kept alive by it.
_INSERTIONS = weakref.WeakKeyDictionary()


# --------------------------------------------------------------------------------------------
# The model's graph
# --------------------------------------------------------------------------------------------


class _Node:
    __slots__ = ("index", "node", "op", "inputs", "consumers", "key", "depth")

    def __init__(self, index, node, key):
        self.index = index
        self.node = node
        self.op = node.operation
        self.inputs = []  # producer indices, None for a model input
        self.consumers = []
        self.key = key
        self.depth = 0  # longest path from the model inputs

    @property
    def name(self):
        return self.op.name


class _Graph:
    """The nodes of one functional model in the order ``clone_model`` replays them."""

    def __init__(self, model):
        self.model = model
        self.nodes = []
        producer = {}
        calls = collections.Counter()
        # Same traversal as keras' Function._run_through_graph, which clone_model uses: the k-th
        # call of an operation here is the k-th call the call_function will see.
        by_depth = model._nodes_by_depth
        for depth in sorted(by_depth, reverse=True):
            for node in by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                op_id = id(node.operation)
                entry = _Node(len(self.nodes), node, (op_id, calls[op_id]))
                calls[op_id] += 1
                self.nodes.append(entry)
                for tensor in node.outputs:
                    producer[id(tensor)] = entry.index
        for entry in self.nodes:
            entry.inputs = [producer.get(id(t)) for t in entry.node.input_tensors]
            parents = [p for p in entry.inputs if p is not None]
            for p in parents:
                self.nodes[p].consumers.append(entry.index)
            entry.depth = 1 + max((self.nodes[p].depth for p in parents), default=0)

    def ancestors(self, index):
        """``index`` and every node it depends on."""
        seen = {index}
        stack = [index]
        while stack:
            for p in self.nodes[stack.pop()].inputs:
                if p is not None and p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen

    def layer_names(self):
        return [n.name for n in self.nodes]


def _detect_family(graph):
    names = graph.layer_names()
    for family in _FAMILIES:
        if not any(family.signature.search(n) for n in names):
            continue
        if family.exclude is not None and any(family.exclude.search(n) for n in names):
            continue
        return family
    return None


@dataclasses.dataclass
class _Block:
    name: str
    end: int  # node index of the block's end (block position)
    convs: list  # node indices of the block's own convolutions, graph order


def _analyse_blocks(graph, family):
    members = collections.OrderedDict()
    for entry in graph.nodes:
        match = family.block.match(entry.name)
        if match:
            members.setdefault(match.group(1), []).append(entry.index)

    se_convs = set()
    blocks = []
    for block_name, indices in members.items():
        nodes = [graph.nodes[i] for i in indices]
        adds = [
            n
            for n in nodes
            if isinstance(n.op, keras.layers.Add)
            and len([p for p in n.inputs if p is not None]) == 2
        ]
        if adds:
            # The residual branch is the longer way from the model input to the Add.
            branches = [p for p in adds[-1].inputs if p is not None]
            end = max(branches, key=lambda p: (graph.nodes[p].depth, p))
        else:
            norms = [n.index for n in nodes if isinstance(n.op, keras.layers.BatchNormalization)]
            if not norms:
                continue
            end = norms[-1]
        upstream = graph.ancestors(end)
        convs = []
        for n in nodes:
            if not isinstance(n.op, _CONV_TYPES):
                continue
            if _is_squeeze_excite(graph, n, se_convs):
                se_convs.add(n.index)
                continue
            if n.index in upstream:
                convs.append(n.index)
        blocks.append(_Block(block_name, end, convs))
    return blocks


def _is_squeeze_excite(graph, conv, se_convs):
    """A conv fed by a global pooling (or another SE conv) through single-input layers only."""
    parent = conv.inputs[0] if len(conv.inputs) == 1 else None
    while parent is not None:
        node = graph.nodes[parent]
        if isinstance(node.op, _GLOBAL_POOL_TYPES) or parent in se_convs:
            return True
        if isinstance(node.op, (*_CONV_TYPES, keras.layers.BatchNormalization)):
            return False
        parents = node.inputs
        if len(parents) != 1:
            return False
        parent = parents[0]
    return False


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


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Point:
    anchor: int  # node index after which the attention goes
    capture: int | None = None  # node index whose input is the layer-wise conv input
    defaults: dict = dataclasses.field(default_factory=dict)  # per-point constructor defaults


def _unsupported_error(model, placement):
    return ValueError(
        f"attach(placement={placement!r}) does not recognise model {model.name!r} as one of the "
        f"supported backbone families: {', '.join(SUPPORTED_FAMILIES)} (keras.applications "
        "models, flat, i.e. not nested inside another model). For any other functional model "
        "pass placement=callable(layer) -> bool, e.g. "
        "placement=lambda layer: isinstance(layer, keras.layers.Conv2D)."
    )


def _check_placement(placement):
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


def _conv_roles(graph, convs):
    """Role of each of a block's convolutions: expand/depthwise/project around a depthwise
    convolution, else conv1, conv2, ... in graph order."""
    ops_ = [graph.nodes[c].op for c in convs]
    depthwise = [i for i, op in enumerate(ops_) if isinstance(op, keras.layers.DepthwiseConv2D)]
    if depthwise:
        d = depthwise[0]
        return ["expand" if i < d else "depthwise" if i == d else "project" for i in range(len(convs))]
    return [f"conv{i + 1}" for i in range(len(convs))]


def _paper_mode(spec):
    """What "paper" means for this attention, as its class says: "block", "layer" or "spatial"."""
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


def _plan(model, graph, placement, spec):
    if callable(placement) and not isinstance(placement, str):
        points = []
        for entry in graph.nodes:
            if not isinstance(entry.op, keras.layers.Layer) or not placement(entry.op):
                continue
            outputs = entry.node.outputs
            if len(outputs) != 1 or len(outputs[0].shape) != 4:
                shapes = [tuple(t.shape) for t in outputs]
                raise ValueError(
                    f"The placement callable selected layer {entry.name!r}, whose output "
                    f"{shapes} is not a single 4-D feature map; attention layers need one."
                )
            points.append(_Point(entry.index))
        return points, False

    family = _detect_family(graph)
    if family is None:
        raise _unsupported_error(model, placement)
    mode = _paper_mode(spec) if placement == "paper" else placement
    blocks = _analyse_blocks(graph, family)
    points = []
    if isinstance(mode, tuple):
        roles_seen = set()
        for b in blocks:
            for c, role in zip(b.convs, _conv_roles(graph, b.convs), strict=True):
                roles_seen.add(role)
                if role in mode:
                    points.append(_Point(_after_norm(graph, c), _conv_input_capture(graph, c),
                                         _role_defaults(spec, graph.nodes[c].op)))
        unknown = [r for r in mode if r not in roles_seen]
        if unknown:
            valid = [r for r in INVERTED_RESIDUAL_ROLES + RESNET_ROLES if r in roles_seen]
            raise ValueError(
                f"placement roles {unknown} do not occur in model {model.name!r}; its blocks have "
                f"the convolution roles {valid}."
            )
        return points, True
    if mode == "block":
        points = [_Point(b.end) for b in blocks]
    elif mode == "layer":
        for b in blocks:
            for c in b.convs:
                defaults = _role_defaults(spec, graph.nodes[c].op) if placement == "paper" else {}
                points.append(
                    _Point(_after_norm(graph, c), _conv_input_capture(graph, c), defaults)
                )
    elif mode == "second_conv":
        # Right after the block's second convolution, before its BatchNorm.
        points = [_Point(b.convs[1]) for b in blocks if len(b.convs) > 1]
    else:  # "spatial"
        for b in blocks:
            points += [
                _Point(_after_norm(graph, c))
                for c in b.convs
                if _kernel_extent(graph.nodes[c].op) > 1
            ]
    return points, mode == "layer"


def insertion_points(model, placement="block", attention=None):
    """Names of the layers ``attach`` would insert attention after, in graph order.

    Args:
        model: a functional ``keras.Model``.
        placement: as for :func:`attach`.
        attention: only matters for ``placement="paper"`` (a registry name, class or factory).

    Raises:
        ValueError: as :func:`attach` for an unknown placement, attention or unsupported model.
    """
    placement = _check_placement(placement)
    spec = _AttentionSpec(attention, {}) if attention is not None else None
    model = _as_functional(model)
    graph = _Graph(model)
    points, _ = _plan(model, graph, placement, spec)
    return [graph.nodes[p.anchor].name for p in points]


# --------------------------------------------------------------------------------------------
# Making the layers
# --------------------------------------------------------------------------------------------


def _snake(name):
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _label_of(cls):
    return getattr(cls, "attention_name", None) or _snake(cls.__name__)


def _default_argument(cls, name):
    try:
        parameter = inspect.signature(cls.__init__).parameters.get(name)
    except (TypeError, ValueError):
        return None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


class _AttentionSpec:
    """``attention`` resolved: a layer class (+ kwargs) or a factory ``callable(channels)``."""

    def __init__(self, attention, kwargs):
        self.kwargs = dict(kwargs)
        self.factory = None
        self.cls = None
        if "name" in self.kwargs:
            raise ValueError(
                "`name` cannot be passed to attach: inserted layers are named "
                "f'{anchor}_{attention_name}'."
            )
        if isinstance(attention, keras.layers.Layer):
            raise ValueError(
                f"`attention` must be a layer class or a factory, not the layer instance "
                f"{attention.name!r}: one new layer is made per insertion point "
                f"(e.g. attention={type(attention).__name__} or lambda channels: ...)."
            )
        if isinstance(attention, str):
            self.cls = get_attention_class(attention)  # ValueError listing valid names
        elif inspect.isclass(attention):
            if not issubclass(attention, keras.layers.Layer):
                raise self._bad(attention)
            self.cls = attention
        elif callable(attention):
            self.factory = attention
        else:
            raise self._bad(attention)
        self.label = _label_of(self.cls) if self.cls is not None else None
        if self.cls is not None:
            self._probe()

    @staticmethod
    def _bad(attention):
        return ValueError(
            "`attention` must be a registry name (one of "
            f"{', '.join(available_attentions())}), a keras Layer subclass or a factory "
            f"callable(channels) -> Layer; got {attention!r}."
        )

    def _probe(self):
        # Surface bad constructor arguments now, as the layer's own ValueError, rather than from
        # inside the graph replay.
        try:
            self.cls(**self.kwargs)
        except TypeError as err:
            raise ValueError(f"Bad arguments for {self.cls.__name__}: {err}") from err

    def make(self, channels, anchor_name, anchor_op, data_format, used_names, defaults=None):
        if self.factory is not None:
            kwargs = dict(self.kwargs)
            layer = self.factory(channels, **kwargs) if kwargs else self.factory(channels)
            if not isinstance(layer, keras.layers.Layer):
                raise ValueError(
                    f"The attention factory must return a keras Layer; got {layer!r} for "
                    f"{channels} channels at {anchor_name!r}."
                )
            if layer.built or id(layer) in used_names.values():
                raise ValueError(
                    "The attention factory must return a new, unbuilt layer for every insertion "
                    f"point; it returned {layer.name!r} again at {anchor_name!r}."
                )
            label = _label_of(type(layer))
            layer.name = _unique_name(f"{anchor_name}_{label}", used_names, id(layer))
            return layer, label
        kwargs = dict(defaults or {})
        kwargs.update(self.kwargs)
        adapt = getattr(self.cls, "adapt_to_channels", None)
        if adapt is not None:
            # The class knows its channel constraints (e.g. ShuffleAttention lowers `groups`).
            kwargs = adapt(kwargs, channels, where=anchor_name)
        if data_format == "channels_first":
            kwargs.setdefault("data_format", data_format)
        policy = getattr(anchor_op, "dtype_policy", None)
        if policy is not None and policy.name != keras.mixed_precision.global_policy().name:
            # The inserted layer computes in the same precision as the layer it follows, also
            # when the model was built under another global policy than the current one.
            kwargs.setdefault("dtype", policy.name)
        name = _unique_name(f"{anchor_name}_{self.label}", used_names, None)
        layer = self.cls(name=name, **kwargs)
        used_names[name] = id(layer)
        return layer, self.label


def _unique_name(base, used_names, layer_id):
    name, k = base, 1
    while name in used_names:
        k += 1
        name = f"{base}_{k}"
    used_names[name] = layer_id
    return name


# --------------------------------------------------------------------------------------------
# attach
# --------------------------------------------------------------------------------------------


def _as_functional(model):
    if isinstance(model, keras.Sequential):
        if not model.built:
            raise ValueError(f"Sequential model {model.name!r} must be built before attach.")
        return keras.Model(model.inputs, model.outputs, name=model.name)
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            f"attach needs a functional keras.Model (e.g. from keras.applications); got "
            f"{type(model).__name__}."
        )
    return model


def _data_format(graph):
    for entry in graph.nodes:
        if isinstance(entry.op, _CONV_TYPES):
            return entry.op.data_format
    return keras.config.image_data_format()


def _fresh_input(tensor):
    # clone_model would name new inputs after the KerasTensors ("keras_tensor_154"); keep the
    # input layers' own names so that attached models are deterministic.
    return keras.Input(
        batch_shape=tensor.shape,
        dtype=tensor.dtype,
        sparse=tensor.sparse,
        name=tensor._keras_history.operation.name,
    )


def _check_no_attention(model):
    """Refuse a model that already carries attention (keras-attn layers, or layers a previous
    :func:`attach` inserted): attaching again would stack a second attention on every point."""
    existing = [row["name"] for row in attention_summary(model)]
    if not existing:
        return
    shown = ", ".join(repr(n) for n in existing[:5])
    if len(existing) > 5:
        shown += f", ... ({len(existing) - 5} more)"
    raise ValueError(
        f"Model {model.name!r} already has {len(existing)} attention layer"
        f"{'s' if len(existing) != 1 else ''} ({shown}); attaching again would add a second "
        "attention at every insertion point. Attach to a backbone without attention instead: "
        "the model that was passed to the first attach (attach returns a new model and leaves "
        "its argument unchanged), a fresh keras.applications constructor, or "
        "build_model(..., attention=None)."
    )


def attach(model, attention, placement="block", **attention_kwargs):
    """Insert attention layers into a functional model and return the new model.

    The original layers are reused, not copied: the new model shares their weights with
    ``model`` (pretrained weights survive; training one trains the other's backbone too).

    Args:
        model: a functional ``keras.Model``, e.g. a ``keras.applications`` backbone (a built
            ``Sequential`` is accepted with a callable placement).
        attention: a registry name (``"sa"``, ``"simam"``, ``"sb"``, ``"se"``, ``"cbam"``,
            ``"eca"``, ``"dca_se"``, ``"dca_cbam"``, ``"dca_sb"``), a ``keras.layers.Layer``
            subclass, or a factory ``callable(channels) -> Layer`` returning a new layer per call.
        placement: ``"block"`` (default), ``"layer"``, ``"paper"``, a tuple of convolution roles
            (``("expand", "project")``, ``("conv1",)``, ...; see the module docstring) or
            ``callable(layer) -> bool`` selecting the layers to insert after (any functional model).
        **attention_kwargs: passed to the layer constructor (or to the factory after
            ``channels``). For ShuffleAttention, ``groups`` (default 64) is lowered per insertion
            point to the largest g with ``C % (2 g) == 0``; the layer's config records it.

    Inserted layers are named ``f"{anchor}_{attention_name}"`` (``anchor`` = the layer they
    follow; a numeric suffix only on a clash), get the anchor's dtype policy (unless ``dtype``
    is given) and ``data_format="channels_first"`` in channels-first models. DCA layers
    (``is_connected``) are threaded: each gets the state of the previous one, in graph order.

    Returns:
        A new functional model with the same name, inputs and outputs structure.

    Raises:
        ValueError: unknown ``placement`` (or a role the model's blocks lack); unknown ``attention`` (lists the registry names) or bad
            ``attention_kwargs``; a named placement on a model that is not one of the supported
            families (lists them and mentions the callable form); a callable placement selecting
            a layer whose output is not 4-D; ShuffleAttention at an odd channel count; a
            ``model`` that already has attention layers (names them and their count).
    """
    placement = _check_placement(placement)
    spec = _AttentionSpec(attention, attention_kwargs)
    model = _as_functional(model)
    _check_no_attention(model)
    graph = _Graph(model)
    points, layerwise = _plan(model, graph, placement, spec)

    by_key = {graph.nodes[p.anchor].key: p for p in points}
    capture_keys = {}
    if layerwise:
        capture_keys = {graph.nodes[p.capture].key: p.anchor for p in points}
    data_format = _data_format(graph)
    used_names = {layer.name: id(layer) for layer in model.layers}
    conv_inputs = {}
    records = []
    calls = collections.Counter()
    dca_state = [None]

    def call_function(op, *args, **kwargs):
        key = (id(op), calls[id(op)])
        calls[id(op)] += 1
        if key in capture_keys:
            conv_inputs[capture_keys[key]] = args[0]
        outputs = op(*args, **kwargs)
        point = by_key.get(key)
        if point is None:
            return outputs
        anchor = graph.nodes[point.anchor]
        channels = outputs.shape[1 if data_format == "channels_first" else -1]
        if channels is None:
            raise ValueError(
                f"Cannot insert attention after {anchor.name!r}: its output {outputs.shape} has "
                "an unknown channel dimension."
            )
        layer, label = spec.make(channels, anchor.name, op, data_format, used_names, point.defaults)
        x = outputs
        if layerwise and getattr(type(layer), "takes_layerwise_input", False):
            x = [conv_inputs.pop(point.anchor), outputs]
        if getattr(type(layer), "is_connected", False):
            if dca_state[0] is None:
                result = layer(x)
            else:
                # DCA layers take [x, state], and layer-wise DCA-SB the flat [conv_in, t, state].
                result = layer((x if isinstance(x, list) else [x]) + [dca_state[0]])
            y, dca_state[0] = result[0], result[1]
        else:
            y = layer(x)
        records.append({"name": layer.name, "anchor": anchor.name, "attention": label})
        return y

    new_model = keras.models.clone_model(
        model,
        input_tensors=keras.tree.map_structure(_fresh_input, model.input),
        clone_function=lambda layer: layer,
        call_function=call_function,
    )
    _INSERTIONS[new_model] = records
    return new_model


# --------------------------------------------------------------------------------------------
# attention_summary
# --------------------------------------------------------------------------------------------


class AttentionSummary(list):
    """Rows (dicts) describing each inserted attention layer, plus totals.

    Each row: ``name`` (the inserted layer), ``anchor`` (the layer it follows), ``attention``
    (registry name, or snake-cased class name), ``class``, ``channels``, ``params`` (weights it
    adds), ``config`` (its constructor arguments, e.g. ``groups`` actually used by SA).
    ``str(summary)`` is a printable table. Totals: ``summary.total_params``, also readable as
    ``summary["total_params"]`` (and ``summary["rows"]``) by code that treats it as a mapping.
    """

    def __init__(self, rows=()):
        super().__init__(rows)
        self._classes = []  # each row's layer class, for the table's non-default arguments

    @property
    def total_params(self):
        return sum(row["params"] for row in self)

    @property
    def rows(self):
        return list(self)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in ("total_params", "rows"):
                raise KeyError(f"{key!r}: an AttentionSummary has 'total_params' and 'rows'.")
            return getattr(self, key)
        return super().__getitem__(key)

    def to_string(self):
        header = ("#", "layer", "anchor", "attention", "channels", "params", "config")
        lines = [header]
        for i, row in enumerate(self):
            cls = self._classes[i] if i < len(self._classes) else None
            lines.append(
                (
                    str(i),
                    row["name"],
                    str(row["anchor"]),
                    row["attention"],
                    str(row["channels"]),
                    f"{row['params']:,}",
                    _short_config(row["config"], cls),
                )
            )
        widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
        text = [
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines
        ]
        text.insert(1, "-" * len(text[0]))
        text.append(f"Total: {len(self)} attention layers, {self.total_params:,} parameters added.")
        return "\n".join(text)

    def __str__(self):
        return self.to_string()

    def print(self, print_fn=print):
        print_fn(self.to_string())


def print_attention_summary(model, print_fn=print):
    """Print :func:`attention_summary`'s table for ``model`` and return the summary."""
    return attention_summary(model, print_fn=print_fn)


def _short_config(config, cls):
    """Arguments that differ from the class defaults, and always ``groups``."""
    parts = []
    for key, value in config.items():
        default = _default_argument(cls, key) if cls is not None else None
        if key == "groups" or value != default:
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)


def _attention_classes():
    classes = []
    for name in available_attentions():
        classes.append(get_attention_class(name))
    return tuple(classes)


def _anchor_of(entry):
    """The layer producing the feature map an attention layer was applied to.

    Its inputs are ``x``, ``[conv_input, conv_output]``, or either of them followed by a DCA
    state; the state comes from a connected layer and the feature map is the last of the rest.
    """
    candidates = []
    for tensor in entry.node.input_tensors:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        if getattr(type(history.operation), "is_connected", False):
            continue  # a previous DCA layer's state
        candidates.append(history.operation.name)
    return candidates[-1] if candidates else None


def attention_summary(model, print_fn=None):
    """Where attention went in ``model`` and how many parameters each insertion added.

    Finds every keras-attn attention layer in the model (and, for a model returned by
    :func:`attach` in this session, layers of any class its factory made).

    Args:
        model: a functional ``keras.Model``.
        print_fn: if given (e.g. ``print``), called with the table.

    Returns:
        :class:`AttentionSummary`: a list of row dicts with ``.total_params`` and a table as
        ``str()``.
    """
    model = _as_functional(model)
    graph = _Graph(model)
    recorded = {row["name"]: row for row in _INSERTIONS.get(model, ())}
    classes = _attention_classes()
    summary = AttentionSummary()
    for entry in graph.nodes:
        op = entry.op
        if not isinstance(op, keras.layers.Layer):
            continue
        if op.name not in recorded and not isinstance(op, classes):
            continue
        record = recorded.get(op.name, {})
        output = entry.node.outputs[0]
        axis = 1 if getattr(op, "data_format", "channels_last") == "channels_first" else -1
        try:
            config = {k: v for k, v in op.get_config().items() if k not in _BASE_CONFIG_KEYS}
        except NotImplementedError:  # a factory's layer without get_config
            config = {}
        summary.append(
            {
                "name": op.name,
                "anchor": record.get("anchor") or _anchor_of(entry),
                "attention": record.get("attention") or _label_of(type(op)),
                "class": type(op).__name__,
                "channels": int(output.shape[axis]) if output.shape[axis] is not None else None,
                "params": int(op.count_params()) if op.built else 0,
                "config": config,
            }
        )
        summary._classes.append(type(op))
    if print_fn is not None:
        print_fn(summary.to_string())
    return summary
