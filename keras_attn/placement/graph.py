"""A functional model read as a graph of layer calls, in the order ``clone_model`` replays them."""

from __future__ import annotations

import collections

import keras

CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


def as_functional(model):
    """``model`` as a functional ``keras.Model`` (a built ``Sequential`` is wrapped in one).

    Raises:
        ValueError: an unbuilt ``Sequential``, or anything that is not a functional model
            (names its type).
    """
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


class Node:
    """One call of one operation: its producers, consumers and depth in the graph."""

    __slots__ = ("index", "node", "op", "inputs", "consumers", "key", "depth")

    def __init__(self, index, node, key):
        self.index = index
        self.node = node
        self.op = node.operation
        self.inputs = []  # producer indices, None for a model input
        self.consumers = []
        self.key = key  # (id(op), k) for the op's k-th call
        self.depth = 0  # longest path from the model inputs

    @property
    def name(self):
        return self.op.name


class Graph:
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
                entry = Node(len(self.nodes), node, (op_id, calls[op_id]))
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

    def data_format(self):
        """The first convolution's data format, else Keras' global image data format."""
        for entry in self.nodes:
            if isinstance(entry.op, CONV_TYPES):
                return entry.op.data_format
        return keras.config.image_data_format()
