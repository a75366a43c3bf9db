"""Registry: attention name -> layer class, and ``get_attention(name, **kwargs)``.

Names are the short ones used throughout (CLI, search space, placement): ``"sa"``, ``"simam"``,
``"sb"``, ``"se"``, ``"cbam"``, ``"eca"``, ``"dca_se"``, ``"dca_cbam"``, ``"dca_sb"``.
"""

from __future__ import annotations

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


def available_attentions():
    """Sorted list of registered attention names."""
    _ensure_loaded()
    return sorted(_REGISTRY)


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
