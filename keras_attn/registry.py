"""Registry: attention name -> layer class, and ``get_attention(name, **kwargs)``.

Names are the short ones used throughout (CLI, search space, placement): ``"sa"``, ``"simam"``,
``"sb"``, ``"se"``, ``"cbam"``, ``"eca"``, ``"dca_se"``, ``"dca_cbam"``, ``"dca_sb"``, and
:data:`NO_ATTENTION` (``"none"``) for the plain backbone, the baseline of every comparison.
"""

from __future__ import annotations

#: The user-facing name of "no attention layer" (the baseline). ``build_model`` and ``attach``
#: take it or ``None``; :func:`attention_argument` converts between the two.
NO_ATTENTION = "none"

# Insertion-ordered: registration order is the built-in layers' import order in
# keras_attn/layers/__init__.py, which the search's column order follows.
_REGISTRY: dict[str, type] = {}


def register_attention(name):
    """Class decorator: make a layer class available as ``get_attention(name)``."""

    def decorator(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"attention name {name!r} is already registered to {_REGISTRY[name]}")
        _REGISTRY[name] = cls
        cls.attention_name = name
        return cls

    return decorator


def unregister_attention(name):
    """Remove ``name`` from the registry (e.g. a layer registered by a test or a notebook).

    Raises:
        ValueError: ``name`` is not registered; the message lists the registered names.
    """
    get_attention_class(name)  # the unknown-name message
    del _REGISTRY[name.lower()]


def available_attentions():
    """Sorted list of registered attention names."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def registered_attentions():
    """Registered attention names in registration order (the built-ins: SA, SimAM, SB, SE, CBAM,
    ECA, then the DCA family, as ``keras_attn.layers`` imports them), without the baseline."""
    _ensure_loaded()
    return list(_REGISTRY)


def attention_argument(name):
    """The ``build_model``/``attach`` form of a user-facing attention name: ``None`` for the
    baseline (``None`` or :data:`NO_ATTENTION`, any case), else ``name`` unchanged.

    Example: ``attention_argument("none") is None``; ``attention_argument("sa") == "sa"``.
    """
    if name is None or (isinstance(name, str) and name.lower() == NO_ATTENTION):
        return None
    return name


def get_attention_class(name):
    """The layer class registered under ``name``.

    Raises:
        ValueError: ``name`` is not registered; the message lists the valid names.
    """
    _ensure_loaded()
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(
            f"Unknown attention {name!r}; valid names: {', '.join(sorted(_REGISTRY))}."
        )
    return _REGISTRY[key]


def get_attention(name, /, **kwargs):
    """Instantiate the attention layer registered under ``name`` with ``kwargs``.

    Example: ``get_attention("sa", groups=32)`` returns ``ShuffleAttention(groups=32)``.

    Raises:
        ValueError: unknown ``name`` (lists the valid ones) or an invalid argument value.
    """
    return get_attention_class(name)(**kwargs)


def is_connected(cls_or_name):
    """True for DCA-connected layers (they take ``[x, previous]`` and return ``(y, state)``)."""
    cls = get_attention_class(cls_or_name) if isinstance(cls_or_name, str) else cls_or_name
    return bool(getattr(cls, "is_connected", False))


def _ensure_loaded():
    # Importing the layers package runs every @register_attention.
    from keras_attn import layers  # noqa: F401
