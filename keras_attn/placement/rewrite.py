"""Rewriting: :func:`attach` replays a model's graph, calling attention after the planned points."""

from __future__ import annotations

import collections

import keras

from keras_attn.placement.graph import Graph, as_functional
from keras_attn.placement.plan import check_placement, plan
from keras_attn.placement.record import Insertion, record_insertions
from keras_attn.placement.spec import AttentionSpec
from keras_attn.placement.summary import attention_summary


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
            (``("expand", "project")``, ``("conv1",)``, ...; see :mod:`keras_attn.placement`) or
            ``callable(layer) -> bool`` selecting the layers to insert after (any functional model).
        **attention_kwargs: passed to the layer constructor (or to the factory after
            ``channels``). For ShuffleAttention, ``groups`` (default 64) is lowered per insertion
            point to the largest g with ``C % (2 g) == 0``; the layer's config records it.

    Inserted layers are named ``f"{anchor}_{attention_name}"`` (``anchor`` = the layer they
    follow; a numeric suffix only on a clash), get the anchor's dtype policy (unless ``dtype``
    is given) and ``data_format="channels_first"`` in channels-first models. DCA layers
    (``is_connected``) are threaded: each gets the state of the previous one, in graph order.
    The new model carries its :func:`insertion_record`.

    Returns:
        A new functional model with the same name, inputs and outputs structure.

    Raises:
        ValueError: unknown ``placement`` (or a role the model's blocks lack); unknown
            ``attention`` (lists the registry names) or bad ``attention_kwargs``; a named
            placement on a model that is not one of the supported families (lists them and
            mentions the callable form); a callable placement selecting a layer whose output is
            not 4-D; ShuffleAttention at an odd channel count; a ``model`` that already has
            attention layers (names them and their count).
    """
    placement = check_placement(placement)
    spec = AttentionSpec(attention, attention_kwargs)
    model = as_functional(model)
    _check_no_attention(model)
    graph = Graph(model)
    points, layerwise = plan(model, graph, placement, spec)
    used_names = {layer.name: id(layer) for layer in model.layers}
    replay = _Replay(graph, points, layerwise, spec, used_names)
    new_model = keras.models.clone_model(
        model,
        input_tensors=keras.tree.map_structure(_fresh_input, model.input),
        clone_function=lambda layer: layer,
        call_function=replay,
    )
    return record_insertions(new_model, replay.insertions)


class _Replay:
    """``clone_model``'s call_function: calls each operation as the original graph did, and a
    new attention layer on the output of each planned point.

    Operations are matched to points by ``(id(op), k)`` for their k-th call, the key
    :class:`Graph` gives its nodes (both follow the replay's order).
    """

    def __init__(self, graph, points, layerwise, spec, used_names):
        self.graph = graph
        self.spec = spec
        self.layerwise = layerwise
        self.used_names = used_names
        self.data_format = graph.data_format()
        self.points = {graph.nodes[p.anchor].key: p for p in points}
        # Layer-wise points also read their convolution's input, captured as it goes in.
        self.captures = (
            {graph.nodes[p.capture].key: p.anchor for p in points} if layerwise else {}
        )
        self.conv_inputs = {}
        self.insertions = []
        self.calls = collections.Counter()
        self.dca_state = None

    def __call__(self, op, *args, **kwargs):
        key = (id(op), self.calls[id(op)])
        self.calls[id(op)] += 1
        if key in self.captures:
            self.conv_inputs[self.captures[key]] = args[0]
        outputs = op(*args, **kwargs)
        point = self.points.get(key)
        return outputs if point is None else self._insert(point, op, outputs)

    def _insert(self, point, op, outputs):
        anchor = self.graph.nodes[point.anchor]
        channels = outputs.shape[1 if self.data_format == "channels_first" else -1]
        if channels is None:
            raise ValueError(
                f"Cannot insert attention after {anchor.name!r}: its output {outputs.shape} has "
                "an unknown channel dimension."
            )
        layer, label = self.spec.make(
            channels, anchor.name, op, self.data_format, self.used_names, point.defaults
        )
        x = outputs
        if self.layerwise and getattr(type(layer), "takes_layerwise_input", False):
            x = [self.conv_inputs.pop(point.anchor), outputs]
        y = self._call(layer, x)
        self.insertions.append(Insertion(layer.name, anchor.name, label))
        return y

    def _call(self, layer, x):
        """``layer(x)``; a connected (DCA) layer also gets, and then passes on, the state."""
        if not getattr(type(layer), "is_connected", False):
            return layer(x)
        if self.dca_state is None:
            result = layer(x)
        else:
            # DCA layers take [x, state], and layer-wise DCA-SB the flat [conv_in, t, state].
            result = layer((x if isinstance(x, list) else [x]) + [self.dca_state])
        y, self.dca_state = result[0], result[1]
        return y


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
