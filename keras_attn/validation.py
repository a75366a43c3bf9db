"""Argument checks shared by the layers, ``keras_attn.backbones``, ``keras_attn.placement`` and
``search``: every public entry point validates its arguments with these, so that a bad value gets
one ``ValueError`` that names the argument, the bad value and the valid ones, raised at the API
boundary rather than from deep inside TensorFlow.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_bool", "check_choice", "check_image_shape", "check_number", "check_shape"]


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise a ValueError naming all three."""
    try:
        ok = value in choices
    except TypeError:  # e.g. an unhashable value against a set
        ok = False
    if not ok:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(c) for c in choices)}; got {value!r}."
        )
    return value


def check_bool(name, value):
    """Return ``value`` if it is ``True`` or ``False`` (not merely truthy), else a ValueError."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False; got {value!r}.")
    return value


def check_number(
    name, value, *, minimum=None, maximum=None, strict=False, strict_max=False, integer=False,
    allow_none=False, finite=True,
):
    """Validate a numeric argument and return it as ``int`` (``integer=True``) or ``float``.

    Args:
        name: the argument's name, for the message.
        value: the value to check; booleans are rejected.
        minimum: lower bound; ``strict=True`` means ``value > minimum``, else ``value >= minimum``.
        maximum: upper bound; ``strict_max=True`` means ``value < maximum``, else ``<=``.
        integer: require an integral value.
        allow_none: accept ``None`` (returned as is).
        finite: reject ``inf`` and ``-inf`` (default True; NaN is always rejected). No argument
            of the package takes an infinite value: an unbounded ``inf`` would only fail later
            (``OverflowError`` at build) or make the output infinite.

    Raises:
        ValueError: not a number (or not an integer), NaN, infinite (``finite=True``), or out of
            bounds; the message names the argument, the bound and the value.
    """
    if value is None and allow_none:
        return None
    what = "an integer" if integer else "a number"
    if minimum is not None and maximum is not None:
        what += (f" in {'(' if strict else '['}{minimum}, {maximum}"
                 f"{')' if strict_max else ']'}")
    elif minimum is not None:
        what += f" {'>' if strict else '>='} {minimum}"
    elif maximum is not None:
        what += f" {'<' if strict_max else '<='} {maximum}"
    if allow_none:
        what += " or None"
    kind = numbers.Integral if integer else numbers.Real
    ok = not isinstance(value, bool) and isinstance(value, kind)
    if ok and not integer and not _finite_float(value):
        # NaN always fails; inf and -inf (or an int beyond float range) unless finite=False.
        if finite or value != value:
            what = "a finite " + what[2:] if finite and what.startswith("a ") else what
            ok = False
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if strict_max else value <= maximum
    if not ok:
        raise ValueError(f"`{name}` must be {what}; got {value!r}.")
    return int(value) if integer else float(value)


def _finite_float(value):
    """True if the real ``value`` converts to a finite float (a huge int overflows)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def check_shape(name, value, *, rank=None, allow_none_dims=True):
    """Validate a shape tuple of positive integers (``None`` allowed where ``allow_none_dims``).

    Returns it as a tuple. ``rank`` may be an int or a tuple of accepted lengths.
    """
    ranks = (rank,) if isinstance(rank, int) else rank
    ok = isinstance(value, (tuple, list)) and (ranks is None or len(value) in ranks)
    if ok:
        for d in value:
            if d is None and allow_none_dims:
                continue
            if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d <= 0:
                ok = False
                break
    if not ok:
        length = f" of length {' or '.join(map(str, ranks))}" if ranks else ""
        raise ValueError(
            f"`{name}` must be a tuple{length} of positive integers"
            f"{' (None for unknown)' if allow_none_dims else ''}; got {value!r}."
        )
    return tuple(None if d is None else int(d) for d in value)


def check_image_shape(name, value):
    """Validate an image input shape ``(height, width, channels)`` and return it as a tuple.

    Height and width are positive integers or ``None`` (any size); ``channels`` is a positive
    integer (a model's first layers need it to create their weights).

    Raises:
        ValueError: not a tuple or list of length 3, a size that is not a positive integer (or
            ``None``), or an unknown channel count; the message names the argument and the value.
    """
    try:
        shape = check_shape(name, value, rank=3)
    except ValueError:
        shape = None
    if shape is None or shape[-1] is None:
        raise ValueError(
            f"`{name}` must be a tuple of three positive integers (height, width, channels) "
            f"(height/width may be None); got {value!r}."
        )
    return shape
