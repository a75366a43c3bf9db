"""The argument types of ``search.cli``'s options: each parses one option's text and checks it
against the option's real range at parse time, or raises ``argparse.ArgumentTypeError`` (which
argparse turns into one line naming the option).

Importing this module loads no TensorFlow (``--help`` stays instant); a parser that needs
``keras_attn`` (the number checks, the export formats) imports it when an option is given, with
TensorFlow's start-up lines filtered (:mod:`search.quiet_import`).
"""

from __future__ import annotations

import argparse
import sys

from search.config import SEED_MAX
from search.quiet_import import import_tensorflow_quietly

# TensorFlow takes sizes, counts and steps as int32 (tf.data batch sizes, image sizes, step
# counters): a larger int option would fail deep inside it, or overflow.
INT32_MAX = 2**31 - 1
# A peak learning rate above this diverges with any recipe here (SGD's and Adam's are 0.1 and
# 3e-3 at batch 128; the linear scaling rule gives 0.1 x batch / 128): a larger value is a typo.
MAX_LEARNING_RATE = 10.0


def _keras_attn():
    """Load TensorFlow (through ``keras_attn``) quietly, unless ``--debug`` asks to see it."""
    import_tensorflow_quietly("--debug" in sys.argv[1:])


def _check_number(*args, **kwargs):
    """``keras_attn.validation.check_number``, loaded only when an option needs it."""
    _keras_attn()
    from keras_attn.validation import check_number

    return check_number(*args, **kwargs)


def int_at_least(minimum, what, maximum=INT32_MAX):
    """An integer in ``[minimum, maximum]``: "expected {what}" below it or for a non-integer."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        try:
            _check_number("value", value, minimum=minimum, integer=True)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value > maximum:
            raise argparse.ArgumentTypeError(
                f"expected an integer in [{minimum}, {maximum}], got {text!r}")
        return value

    return parse


def float_in(what, minimum=0.0, maximum=float("inf"), strict=True, strict_max=True):
    """A finite float in the interval (``strict``: open at that end), else "expected {what}"."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = None
        try:
            return _check_number("value", value, minimum=minimum, maximum=maximum,
                                 strict=strict, strict_max=strict_max)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


positive_int = int_at_least(1, "a positive integer")
non_negative_int = int_at_least(0, "an integer >= 0")
seed = int_at_least(0, "an integer >= 0", maximum=SEED_MAX)
# Finite: inf and nan are refused (check_number refuses nan; the open upper bound inf).
positive_float = float_in("a positive number")
fraction = float_in("a number in [0, 1)", 0.0, 1.0, strict=False)
learning_rate = float_in(f"a positive number <= {MAX_LEARNING_RATE:g}", 0.0, MAX_LEARNING_RATE,
                         strict_max=False)


def split(text):
    """An int >= 1 is a number of images, anything else a fraction in [0, 1)."""
    if text.strip().isdigit() and int(text) >= 1:
        return positive_int(text)
    return fraction(text)


def max_cost(text):
    """``MEASURE=LIMIT`` (:func:`search.costs.parse_max_cost`)."""
    from search.costs import parse_max_cost  # no TensorFlow

    try:
        return parse_max_cost(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def export_format(text):
    """One of ``keras_attn.export.FORMATS`` (read there: a format it adds is taken at once)."""
    _keras_attn()
    from keras_attn.export import FORMATS

    if text not in FORMATS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(map(repr, FORMATS))})")
    return text


def csv_list(text):
    """``"a, B,c"`` -> ``["a", "b", "c"]``; an empty list is refused."""
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got an empty one")
    return items
