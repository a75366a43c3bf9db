"""Reporting: where attention went in a model, and the parameters each insertion added."""

from __future__ import annotations

import inspect

import keras

from keras_attn.placement.graph import Graph, as_functional
from keras_attn.placement.record import insertion_record
from keras_attn.placement.spec import label_of
from keras_attn.registry import available_attentions, get_attention_class

_BASE_CONFIG_KEYS = frozenset({"name", "trainable", "dtype", "data_format"})


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


def attention_summary(model, print_fn=None):
    """Where attention went in ``model`` and how many parameters each insertion added.

    Finds every keras-attn attention layer in the model (and, in a model :func:`attach` or
    ``build_model`` returned, layers of any class its factory made, through its
    :func:`insertion_record`; a clone or a reloaded copy has none).

    Args:
        model: a functional ``keras.Model``.
        print_fn: if given (e.g. ``print``), called with the table.

    Returns:
        :class:`AttentionSummary`: a list of row dicts with ``.total_params`` and a table as
        ``str()``.
    """
    model = as_functional(model)
    graph = Graph(model)
    recorded = {insertion.name: insertion for insertion in insertion_record(model)}
    classes = _attention_classes()
    summary = AttentionSummary()
    for entry in graph.nodes:
        op = entry.op
        if not isinstance(op, keras.layers.Layer):
            continue
        if op.name not in recorded and not isinstance(op, classes):
            continue
        summary.append(_row(entry, recorded.get(op.name)))
        summary._classes.append(type(op))
    if print_fn is not None:
        print_fn(summary.to_string())
    return summary


def print_attention_summary(model, print_fn=print):
    """Print :func:`attention_summary`'s table for ``model`` and return the summary."""
    return attention_summary(model, print_fn=print_fn)


def _row(entry, insertion):
    """The summary row of the attention layer called at graph node ``entry``; anchor and label
    from attach's ``insertion`` when there is one, else from the graph and the class."""
    op = entry.op
    output = entry.node.outputs[0]
    axis = 1 if getattr(op, "data_format", "channels_last") == "channels_first" else -1
    try:
        config = {k: v for k, v in op.get_config().items() if k not in _BASE_CONFIG_KEYS}
    except NotImplementedError:  # a factory's layer without get_config
        config = {}
    if insertion is not None:
        anchor, label = insertion.anchor, insertion.attention
    else:
        anchor, label = _anchor_of(entry), label_of(type(op))
    return {
        "name": op.name,
        "anchor": anchor,
        "attention": label,
        "class": type(op).__name__,
        "channels": int(output.shape[axis]) if output.shape[axis] is not None else None,
        "params": int(op.count_params()) if op.built else 0,
        "config": config,
    }


def _attention_classes():
    return tuple(get_attention_class(name) for name in available_attentions())


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


def _short_config(config, cls):
    """Arguments that differ from the class defaults, and always ``groups``."""
    parts = []
    for key, value in config.items():
        default = _default_argument(cls, key) if cls is not None else None
        if key == "groups" or value != default:
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)


def _default_argument(cls, name):
    try:
        parameter = inspect.signature(cls.__init__).parameters.get(name)
    except (TypeError, ValueError):
        return None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default
