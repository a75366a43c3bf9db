"""The training recipe every trial of a search shares: optimiser, learning rate, schedule, loss.

The comparison protocol trains every configuration with one recipe, so that trials differ only in
their attention; :class:`Recipe` holds it, validated once, and :func:`learning_rate_range` gives
the learning rate's default and search range per optimiser.
"""

from __future__ import annotations

import dataclasses

from keras_attn.validation import check_bool, check_choice, check_number
from search.training import OPTIMIZERS, SCHEDULES

# Learning-rate defaults (the fixed recipe) and search ranges per optimiser, (min, max, default).
# SGD 0.1 at batch 128 is the SB paper's CIFAR recipe (Sec. 5.3, kuangliu/pytorch-cifar);
# measured here: ResNet-20 on Fashion-MNIST 28x28, one epoch of 55,000 images, cosine to 0: test
# accuracy 0.899 (SGD 0.1, Nesterov) and 0.897 (Adam 3e-3).
LEARNING_RATES = {"sgd": (0.01, 0.2, 0.1), "adam": (1e-3, 1e-2, 3e-3)}

# AttentionHyperModel's keyword for a field before the recipe had its own class.
_OLD_NAMES = {"epochs_hint": "epochs"}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How each trial's model is compiled and trained (see :func:`search.training.compile_model`).

    Attributes:
        optimizer: ``"sgd"`` (default) or ``"adam"``; it also picks the learning-rate range.
        learning_rate: the (peak) learning rate of every trial (default None: the optimiser's,
            0.1 for SGD, 3e-3 for Adam; see :func:`learning_rate_range`).
        search_learning_rate: search the learning rate over the optimiser's range instead of
            fixing it (default False): trials then differ in more than their attention.
        schedule: ``"cosine"`` (default), ``"step"`` or ``"constant"``.
        warmup_epochs: linear warm-up, a number >= 0 (default 0).
        momentum: SGD momentum in [0, 1) (default 0.9).
        nesterov: Nesterov momentum (default False).
        weight_decay: decoupled weight decay >= 0 (default 5e-4).
        label_smoothing: in [0, 1) (default 0.0).
        epochs: epochs the schedule spans, if known when building (default None: ``fit``'s).
        steps_per_epoch: training batches per epoch, if known when building (default None: from
            ``fit``'s data).

    Raises:
        ValueError: at construction, an unknown optimiser or schedule, or a number out of its
            range (the message names the field, the valid values and the bad one).
    """

    optimizer: str = "sgd"
    learning_rate: float | None = None
    search_learning_rate: bool = False
    schedule: str = "cosine"
    warmup_epochs: float = 0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    epochs: int | None = None
    steps_per_epoch: int | None = None

    def __post_init__(self):
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_bool("search_learning_rate", self.search_learning_rate)
        check_bool("nesterov", self.nesterov)
        numbers = {
            "learning_rate": dict(minimum=0, strict=True, allow_none=True),
            "warmup_epochs": dict(minimum=0),
            "momentum": dict(minimum=0, maximum=1, strict_max=True),
            "weight_decay": dict(minimum=0),
            "label_smoothing": dict(minimum=0, maximum=1, strict_max=True),
            "epochs": dict(minimum=1, integer=True, allow_none=True),
            "steps_per_epoch": dict(minimum=1, integer=True, allow_none=True),
        }
        for field, bounds in numbers.items():
            check_number(field, getattr(self, field), **bounds)

    @classmethod
    def from_arguments(cls, **arguments):
        """A Recipe from ``AttentionHyperModel``'s recipe keywords (``epochs_hint`` for
        ``epochs``).

        Raises:
            TypeError: a keyword that is no field of the recipe.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        renamed = {_OLD_NAMES.get(k, k): v for k, v in arguments.items()}
        unknown = sorted(k for k in arguments if _OLD_NAMES.get(k, k) not in fields)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}; the recipe takes "
                            f"{', '.join(sorted(fields | set(_OLD_NAMES)))}.")
        return cls(**renamed)

    @property
    def needs_steps(self):
        """True when the schedule needs the steps per epoch (a decay or a warm-up)."""
        return self.schedule != "constant" or bool(self.warmup_epochs)


def learning_rate_range(optimizer, learning_rate=None):
    """``(min, max, default)`` of the learning rate for ``optimizer`` (:data:`LEARNING_RATES`),
    the range widened to include ``learning_rate`` when one is given (it is then the default).

    Raises:
        ValueError: unknown ``optimizer``.
    """
    lo, hi, default = LEARNING_RATES[check_choice("optimizer", optimizer, OPTIMIZERS)]
    if learning_rate is None:
        return lo, hi, default
    learning_rate = float(learning_rate)
    return min(lo, learning_rate), max(hi, learning_rate), learning_rate
