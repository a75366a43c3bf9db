"""The attention to insert, resolved once: a layer class and its arguments, or a factory."""

from __future__ import annotations

import inspect
import re

import keras

from keras_attn.registry import available_attentions, get_attention_class


def _snake(name):
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def label_of(cls):
    """The name inserted layers of ``cls`` carry: its ``attention_name``, else its snake-cased
    class name (``MyGate`` -> ``"my_gate"``)."""
    return getattr(cls, "attention_name", None) or _snake(cls.__name__)


class AttentionSpec:
    """``attention`` resolved: a layer class (+ constructor arguments) or a factory.

    Args:
        attention: a registry name (``"sa"``, ``"simam"``, ...), a ``keras.layers.Layer``
            subclass, or a factory ``callable(channels, **kwargs) -> Layer``.
        kwargs: constructor arguments (for a factory: passed after ``channels``).

    Attributes:
        cls: the layer class, or None for a factory.
        factory: the factory, or None for a class.
        kwargs: a copy of ``kwargs``.
        label: :func:`label_of` ``cls`` (None for a factory: each layer it makes is labelled
            by its own class).

    Raises:
        ValueError: ``kwargs`` holding ``name``; a layer instance instead of a class; an unknown
            registry name (lists the valid ones) or an ``attention`` of another kind; arguments
            the class's constructor rejects (checked by making one layer now).
    """

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
        self.label = label_of(self.cls) if self.cls is not None else None
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
        """A new attention layer for a ``channels``-channel feature map after ``anchor_op``.

        Args:
            channels: the feature map's channel count.
            anchor_name: name of the layer it follows; the new layer is named
                ``f"{anchor_name}_{label}"`` (``_2``, ``_3``, ... on a clash).
            anchor_op: the layer it follows, whose dtype policy it takes (unless ``dtype`` is
                given).
            data_format: ``"channels_last"`` or ``"channels_first"`` (passed to a class then).
            used_names: ``{name: id(layer)}`` of the model's layers; the new name is added.
            defaults: constructor defaults for this point (a class's ``role_defaults``);
                ``kwargs`` win over them. Ignored for a factory.

        Returns:
            ``(layer, label)``.

        Raises:
            ValueError: a factory returning something other than a new, unbuilt keras Layer;
                the class's ``adapt_to_channels`` refusing ``channels``.
        """
        if self.factory is not None:
            return self._from_factory(channels, anchor_name, used_names)
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

    def _from_factory(self, channels, anchor_name, used_names):
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
        label = label_of(type(layer))
        layer.name = _unique_name(f"{anchor_name}_{label}", used_names, id(layer))
        return layer, label


def _unique_name(base, used_names, layer_id):
    name, k = base, 1
    while name in used_names:
        k += 1
        name = f"{base}_{k}"
    used_names[name] = layer_id
    return name
