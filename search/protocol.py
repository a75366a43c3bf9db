"""The comparison protocol: every configuration trained with the same seeds, the same recipe.

A trial is one configuration (attention, placement and their hyperparameters). Under a
:class:`Protocol` it is trained once per seed ``seed, seed + 1, ..., seed + repeats - 1``, and for
each seed every configuration starts from the same backbone and head weights
(``keras_attn.build_model(seed=...)``) and sees the training images in the same order with the
same augmentation (``train_data(seed)``); the validation set and the recipe (optimiser, learning
rate, schedule, epochs, batch size) are shared by all. Two runs with one seed then differ only in
their attention, and the per-seed differences to the baseline are the paired comparison of
:mod:`search.stats`.

Each finished repeat is written at once to the trial's directory (its repeats file, plus the
model's weights; :class:`search.rundir.TrialDir`), so a search killed mid-trial re-runs that trial (KerasTuner retries an unfinished
trial on resume) but skips the repeats it has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

#: The score of a run: the validation accuracy after its last epoch (the fixed recipe's result,
#: not the best epoch picked on the validation set); a trial's is the mean over its seeds.
OBJECTIVE = "val_accuracy"


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Seeds and data of the paired, repeated comparison.

    Attributes:
        seeds: one training run per seed, in this order (e.g. ``(0, 1, 2)``).
        train_data: ``callable(seed) -> tf.data.Dataset``, the training data in that seed's order
            (None: the dataset given to ``search``, for every seed).
        save_weights: keep each repeat's final weights in the trial directory (default True;
            ``search.final`` can test them).
    """

    seeds: tuple
    train_data: Callable | None = None
    save_weights: bool = True

    @classmethod
    def with_repeats(cls, repeats, seed=0, train_data=None, save_weights=True):
        """``repeats`` seeds starting at ``seed``.

        Raises:
            ValueError: ``repeats`` not an integer >= 1 or ``seed`` not an integer.
        """
        from keras_attn.validation import check_number

        repeats = check_number("repeats", repeats, minimum=1, integer=True)
        seed = check_number("seed", seed, integer=True)
        return cls(tuple(range(seed, seed + repeats)), train_data, save_weights)
