"""``build_model``: a backbone, attention attached, and a float32 head.

Backbones: the ``keras.applications`` families (ImageNet networks, inputs of at least 32x32) and
the papers' small-image networks of :mod:`keras_attn.cifar_backbones` (``resnet20`` ...
``resnet110``, ``mobilenetv2_cifar``; any input size and channel count).

With ``seed``, initial weights are drawn from three independent streams: the backbone's (seeded by
``seed`` alone), the attention layers' and the head's. Keras draws an initializer's seed from
Python's ``random`` when a layer is made, so each part is made under its own seeded
``random.Random`` state and two models with the same seed share their backbone's and head's
initial weights whatever attention they carry (the paired comparison of ``search`` rests on this).

The head is global average pooling, an optional Dropout and ``Dense(num_classes,
activation="softmax", dtype="float32")``: a float16 softmax gave NaN losses under
MirroredStrategy with ``mixed_float16``, so the probabilities are always computed in float32.
"""

from __future__ import annotations

import contextlib
import random

import keras

from keras_attn import cifar_backbones
from keras_attn.validation import check_image_shape, check_number

from keras_attn.placement import (
    AttentionSpec,
    attach,
    check_placement,
    insertion_record,
    record_insertions,
)

# Lower-case name (as used by the CLI and the search) -> keras.applications constructor.
_BACKBONES = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "resnet50v2": "ResNet50V2",
    "resnet101v2": "ResNet101V2",
    "resnet152v2": "ResNet152V2",
    "mobilenetv2": "MobileNetV2",
    "mobilenetv3small": "MobileNetV3Small",
    "mobilenetv3large": "MobileNetV3Large",
    **{f"efficientnetb{i}": f"EfficientNetB{i}" for i in range(8)},
}

# The papers' small-image networks: name -> builder(input_shape, **kwargs).
_SMALL_BACKBONES = {
    **{f"resnet{d}": (lambda d: lambda input_shape, **kw: cifar_backbones.resnet_cifar(
        d, input_shape, **kw))(d) for d in cifar_backbones.RESNET_DEPTHS},
    "mobilenetv2cifar": cifar_backbones.mobilenetv2_cifar,
}
_DISPLAY = {"mobilenetv2cifar": "mobilenetv2_cifar"}

SUPPORTED_BACKBONES = tuple(_DISPLAY.get(k, k) for k in (*_BACKBONES, *_SMALL_BACKBONES))
SMALL_IMAGE_BACKBONES = tuple(_DISPLAY.get(k, k) for k in _SMALL_BACKBONES)

# What keras.applications accepts without top (include_top=False): its ValueErrors are terse.
_ACCEPTS = (
    "input_shape=(height, width, channels) with height and width >= 32 "
    "(channels = 3 with weights='imagenet')"
)


def _backbone_key(backbone):
    if isinstance(backbone, str):
        key = backbone.lower().replace("_", "").replace("-", "")
        if key in _BACKBONES or key in _SMALL_BACKBONES:
            return key
    raise ValueError(
        f"Unknown `backbone` {backbone!r}; valid (case-insensitive): "
        f"{', '.join(SUPPORTED_BACKBONES)}."
    )


def canonical_backbone(backbone):
    """The one spelling of a backbone name (``"MobileNetV2_CIFAR"`` -> ``"mobilenetv2_cifar"``),
    as :data:`SUPPORTED_BACKBONES` lists it.

    Raises:
        ValueError: not a supported backbone (the message lists them).
    """
    key = _backbone_key(backbone)
    return _DISPLAY.get(key, key)


@contextlib.contextmanager
def _seeded(seed, stream):
    """Make layers under ``random.seed(f"{seed}/{stream}")``; Python's random state is restored
    after, so the caller's own sequence is not disturbed. ``seed=None``: no seeding."""
    if seed is None:
        yield
        return
    state = random.getstate()
    random.seed(f"keras_attn/{seed}/{stream}")
    try:
        yield
    finally:
        random.setstate(state)


def _is_none_attention(attention):
    return attention is None or (isinstance(attention, str) and attention.lower() == "none")


def _attention_arguments(backbone_kwargs, attention):
    """``{key: [class names]}`` for the keys of ``backbone_kwargs`` that are constructor
    arguments of the attention layer (of ``attention``'s class; for a factory or no attention,
    of any registered layer), e.g. ``{"groups": ["ShuffleAttention"]}``."""
    import inspect

    from keras_attn.registry import available_attentions, get_attention_class

    if isinstance(attention, str):
        classes = [get_attention_class(attention)]
    elif inspect.isclass(attention):
        classes = [attention]
    else:  # a factory or no attention: whichever registered layers take the argument
        classes = [get_attention_class(n) for n in available_attentions()]
    owners = {}
    for k in backbone_kwargs:
        for cls in classes:
            try:
                params = inspect.signature(cls.__init__).parameters
            except (TypeError, ValueError):
                continue
            if k in params and params[k].kind is not inspect.Parameter.VAR_KEYWORD:
                owners.setdefault(k, []).append(cls.__name__)
    return {k: list(dict.fromkeys(v)) for k, v in owners.items()}


def set_bn_momentum(model, momentum):
    """Set the momentum of every BatchNormalization in ``model``, nested ones included.

    The attribute is read at call time and saved in the layer config, so it holds for training,
    saving and loading. Returns ``model``.
    """
    flatten = getattr(model, "_flatten_layers", None)
    layers = flatten(include_self=False, recursive=True) if flatten else model.layers
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
    return model


def build_model(
    backbone="mobilenetv2",
    input_shape=(32, 32, 3),
    num_classes=10,
    attention=None,
    placement="block",
    attention_kwargs=None,
    weights=None,
    dropout=0.0,
    bn_momentum=None,
    seed=None,
    **backbone_kwargs,
):
    """A classifier: backbone without top, attention attached, pooled float32 softmax head.

    Args:
        backbone: one of :data:`SUPPORTED_BACKBONES` (case-insensitive; ``_``/``-`` ignored, so
            ``"ResNet50"`` and ``"mobilenet_v2"`` work): a ``keras.applications`` family or one
            of the papers' small-image networks (:data:`SMALL_IMAGE_BACKBONES`: ``resnet20``,
            ``resnet32``, ``resnet44``, ``resnet56``, ``resnet110``, ``mobilenetv2_cifar``).
        input_shape: ``(height, width, channels)``; the ``keras.applications`` backbones need
            height, width >= 32 (and 3 channels for ``weights="imagenet"``), the small-image
            ones take any size and channel count (e.g. ``(28, 28, 1)``).
        num_classes: number of classes, ``>= 2``.
        attention: ``None`` or ``"none"`` for the plain backbone; else anything :func:`attach`
            takes (registry name, layer class, factory).
        placement: ``"block"`` (default), ``"layer"``, ``"paper"``, a tuple of convolution roles
            (e.g. ``("expand", "project")``) or ``callable(layer) -> bool``; see
            :func:`keras_attn.attach`.
        attention_kwargs: dict of arguments for the attention layers (e.g. ``{"groups": 32}``).
        weights: ``None`` (random init, default), ``"imagenet"`` or a weights file path, passed
            to the ``keras.applications`` constructor (the small-image backbones have no
            pretrained weights: only ``None``).
        dropout: rate of a Dropout before the classifier, in ``[0, 1)``; 0 (default) adds none.
        bn_momentum: momentum of every BatchNormalization (backbone and attention), in ``[0, 1)``, or
            None (default) to keep ``keras.applications``' own (0.999 in the MobileNets, tuned for
            ImageNet-length runs: after a few hundred steps from scratch their moving statistics
            are still far from the batch statistics and inference accuracy collapses; 0.9 suits
            short runs).
        seed: ``None`` (default: unseeded) or an int. With a seed the backbone's initial weights
            depend only on ``(seed, backbone, its arguments)``, not on the attention or the head;
            the attention layers and the head are seeded from their own streams. Two models
            built with one seed and different attention start from identical backbone and head
            weights.
        **backbone_kwargs: passed to the backbone constructor (``alpha=0.35`` for the MobileNets
            including ``mobilenetv2_cifar``; ``include_preprocessing=False``, ...).

    Returns:
        A functional ``keras.Model`` named ``f"{backbone}_{attention}_{placement}"`` (or just the
        backbone name without attention) mapping images to float32 class probabilities
        ``(batch, num_classes)``. Layers: the backbone's, the inserted attention layers,
        ``avg_pool``, ``top_dropout`` (if ``dropout > 0``) and ``predictions``.

    Raises:
        ValueError: unknown ``backbone`` (lists the valid ones); ``input_shape`` not three
            positive integers or rejected by the backbone (names the backbone and what it
            accepts); ``num_classes < 2``; ``dropout`` outside ``[0, 1)``; unknown ``placement``
            or ``attention``; arguments the backbone constructor does not take (an attention
            layer's argument, e.g. ``groups=64``, is pointed at ``attention_kwargs=``); ``seed``
            not an integer.
    """
    key = _backbone_key(backbone)
    input_shape = check_image_shape("input_shape", input_shape)
    check_number("num_classes", num_classes, minimum=2, integer=True)
    check_number("dropout", dropout, minimum=0.0, maximum=1.0, strict_max=True)
    check_number("bn_momentum", bn_momentum, minimum=0.0, maximum=1.0, strict_max=True,
                 allow_none=True)
    seed = check_number("seed", seed, integer=True, allow_none=True)
    placement, attention_kwargs = _check_attention(attention, placement, attention_kwargs)
    with_attention = not _is_none_attention(attention)

    with _seeded(seed, "backbone"):
        base = _make_backbone(key, input_shape, weights, backbone_kwargs,
                              attention if with_attention else None, attention_kwargs)
    name = _DISPLAY.get(key, key)
    if with_attention:
        with _seeded(seed, "attention"):
            base = attach(base, attention, placement, **attention_kwargs)
        name = f"{name}_{_attention_label(attention)}_{_placement_label(placement)}"
    with _seeded(seed, "head"):
        model = _with_head(base, num_classes, dropout, name)
    if bn_momentum is not None:
        set_bn_momentum(model, bn_momentum)
    if insertion_record(base):
        # attention_summary(model) then also finds layers a factory made of any class.
        record_insertions(model, insertion_record(base))
    return model


def _check_attention(attention, placement, attention_kwargs):
    """Validate the attention arguments before the (slow) backbone is built; return the
    placement normalised and the attention's arguments as a new dict."""
    if attention_kwargs is not None and not isinstance(attention_kwargs, dict):
        raise ValueError(f"`attention_kwargs` must be a dict or None; got {attention_kwargs!r}.")
    attention_kwargs = dict(attention_kwargs or {})
    placement = check_placement(placement)
    if not _is_none_attention(attention):
        AttentionSpec(attention, attention_kwargs)
    return placement, attention_kwargs


def _make_backbone(key, input_shape, weights, backbone_kwargs, attention, attention_kwargs):
    """The backbone without top; its constructor's terse errors become ones that say what to do
    (``attention`` is None without attention)."""
    if key in _SMALL_BACKBONES:
        if weights is not None:
            raise ValueError(
                f"Backbone {_DISPLAY.get(key, key)!r} has no pretrained weights; use weights=None "
                f"(got {weights!r})."
            )
        constructor = _SMALL_BACKBONES[key]
        kwargs = dict(backbone_kwargs)
    else:
        constructor = getattr(keras.applications, _BACKBONES[key])
        kwargs = dict(include_top=False, weights=weights, **backbone_kwargs)
    try:
        return constructor(input_shape=input_shape, **kwargs)
    except TypeError as err:
        raise _misplaced_arguments_error(key, backbone_kwargs, attention, attention_kwargs,
                                         err) from err
    except ValueError as err:
        raise ValueError(
            f"Backbone {key!r} rejects input_shape={input_shape}, weights={weights!r}"
            + (f", {backbone_kwargs}" if backbone_kwargs else "")
            + f": {err}"
            + ("" if key in _SMALL_BACKBONES else f" It accepts {_ACCEPTS}.")
        ) from err


def _misplaced_arguments_error(key, backbone_kwargs, attention, attention_kwargs, err):
    """The ValueError for backbone arguments the constructor refused: those that belong to the
    attention layer are pointed at ``attention_kwargs=``."""
    owners = _attention_arguments(backbone_kwargs, attention)
    if not owners:
        return ValueError(
            f"Backbone {key!r} does not take the arguments {sorted(backbone_kwargs)}: {err}"
        )
    moved = {**attention_kwargs, **{k: backbone_kwargs[k] for k in owners}}
    what = "; ".join(f"{k} is an argument of {' and '.join(v)}" for k, v in owners.items())
    others = sorted(set(backbone_kwargs) - set(owners))
    return ValueError(
        f"Backbone {key!r} does not take {', '.join(f'`{k}`' for k in owners)}: {what}"
        f": pass attention_kwargs={moved!r}"
        + ("" if attention is not None else " together with `attention=`")
        + (f" (the backbone does not take {others} either)" if others else "")
        + f". ({err})"
    )


def _attention_label(attention):
    """The attention's part of the model name: the lower-cased registry name, the class's
    ``attention_name`` or ``__name__``; ``"custom"`` for what is no identifier (``"<lambda>"``)."""
    if isinstance(attention, str):
        label = attention.lower()
    else:
        label = getattr(attention, "attention_name", getattr(attention, "__name__", "custom"))
    return label if str(label).isidentifier() else "custom"


def _placement_label(placement):
    if isinstance(placement, str):
        return placement
    return "+".join(placement) if isinstance(placement, tuple) else "custom"


def _with_head(base, num_classes, dropout, name):
    """``base`` + global average pooling, optional Dropout, float32 softmax ``predictions``."""
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="predictions"
    )(x)
    return keras.Model(base.input, outputs, name=name)
