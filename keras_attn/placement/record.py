"""The insertion record: which layers :func:`attach` inserted into a model, kept on the model.

It lets :func:`attention_summary` find layers of any class a factory made. It lives only as long
as the model object: ``keras.models.clone_model`` and saving + loading do not carry it (the
summary then reads the layers themselves).
"""

from __future__ import annotations

import dataclasses

# An attribute Keras does not know: saving, loading and cloning ignore it.
_ATTRIBUTE = "_keras_attn_insertions"


@dataclasses.dataclass(frozen=True)
class Insertion:
    """One inserted layer: its ``name``, the ``anchor`` layer it follows and its ``attention``
    label (registry name, or snake-cased class name)."""

    name: str
    anchor: str
    attention: str


def record_insertions(model, insertions):
    """Keep ``insertions`` (an iterable of :class:`Insertion`) on ``model``, replacing any
    record it had. Returns ``model``.

    Raises:
        ValueError: an item that is not an :class:`Insertion` (names its type).
    """
    insertions = tuple(insertions)
    for item in insertions:
        if not isinstance(item, Insertion):
            raise ValueError(
                f"record_insertions takes Insertion items; got {type(item).__name__}: {item!r}."
            )
    # A tuple of frozen dataclasses: Keras' attribute tracking leaves it as it is (a tuple of
    # dicts would come back holding TrackedDicts).
    setattr(model, _ATTRIBUTE, insertions)
    return model


def insertion_record(model):
    """The :class:`Insertion` s :func:`attach` (or :func:`record_insertions`) kept on ``model``,
    in graph order; ``()`` for any other model, and for a clone or a reloaded copy."""
    return getattr(model, _ATTRIBUTE, ())
