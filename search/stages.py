"""The stages of a search: which configurations each asks for, chosen from the results so far.

A search is a sequence of stages over one run store (:mod:`search.store`). Each stage is a set of
configurations, run under the paired protocol with the search's seeds; a run an earlier stage
(or an earlier search in the same ``--out``) trained is reused, not trained again.

* ``which``: the configurations of the search's space: by default the baseline and SA, SimAM,
  SB and DCA-SE, each at its paper placement with its paper values (``--attention``,
  ``--placement``, ``--space``, ``--hyperparameters``, ``--preset`` change them).
* ``where``: *where and how* for the attention the ``which`` stage ranks highest by the blocked
  estimate of its difference to the baseline (:func:`top_attention`; not the raw mean): per
  block vs per layer, and its searched hyperparameters around the paper's value
  (``ArgumentChoices.around``: SA-Net's G, SimAM's lambda, SB's gate and lambda init, DCANet's
  connection), drawn by the search's KerasTuner oracle within ``--where-trials`` configurations
  besides the baseline (whose runs, like that attention's paper configuration's, are reused).

:class:`StagePlan` is what a stage is: its space, seeds and tuner. Its :meth:`StagePlan.project`
names the stage's KerasTuner project: a stage asked again with the same plan resumes its
oracle; another plan (more seeds, another attention) starts a new one, whose trials still find
the stored runs.

Pure: no TensorFlow, no KerasTuner.
"""

from __future__ import annotations

import dataclasses
import inspect

from keras_attn.registry import NO_ATTENTION, get_attention_class
from search.store import digest, plain

WHICH, WHERE = "which", "where"
#: The stages a search can have, in the order they run.
STAGES = (WHICH, WHERE)
DEFAULT_STAGES = (WHICH, WHERE)
#: Configurations the ``where`` stage draws besides the baseline (``--where-trials``).
WHERE_TRIALS = 4
#: The placements the ``where`` stage compares.
WHERE_PLACEMENTS = ("block", "layer")


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """One stage: what it asks for.

    Attributes:
        name: :data:`WHICH` or :data:`WHERE`.
        space: the space the stage's hypermodel searches (``search.space.normalize_space``'s
            input), or None with ``configurations``.
        configurations: named configurations (a preset's rows), or None.
        tuner: the KerasTuner algorithm (``search.tuner_names.TUNERS``).
        max_trials: the configurations it may ask for, the baseline included.
        seeds: the seeds every configuration runs with.
        oracle_seed: the oracle's seed.
        why: how the stage was chosen, in words (for the log and the report).
    """

    name: str
    space: dict | None
    configurations: tuple | None
    tuner: str
    max_trials: int
    seeds: tuple
    oracle_seed: int = 0
    why: str = ""

    def identity(self):
        """What the stage's KerasTuner project depends on (not ``max_trials``: a larger one
        continues the same project)."""
        return plain({"name": self.name, "space": self.space,
                      "configurations": self.configurations, "tuner": self.tuner,
                      "seeds": list(self.seeds), "oracle_seed": self.oracle_seed})

    @property
    def project(self):
        """The stage's KerasTuner project name, e.g. ``which-3f2a9c0b1d``."""
        return f"{self.name}-{digest(self.identity())[:10]}"

    def to_json(self):
        return {**self.identity(), "max_trials": self.max_trials, "why": self.why,
                "project": self.project}

    @classmethod
    def from_json(cls, data):
        return cls(name=data["name"], space=data.get("space"),
                   configurations=None if data.get("configurations") is None else tuple(
                       (name, kwargs) for name, kwargs in data["configurations"]),
                   tuner=data["tuner"], max_trials=int(data["max_trials"]),
                   seeds=tuple(int(s) for s in data["seeds"]),
                   oracle_seed=int(data.get("oracle_seed", 0)), why=data.get("why", ""))


def which_stage(space, seeds, max_trials, oracle_seed=0):
    """The ``which`` stage of a search's space (a ``search.config.SpaceSpec``)."""
    why = ("a paper's table" if space.configurations is not None else
           "the attentions at their paper placement and values"
           if space.hyperparameters == "paper" and not space.placement else "the search's space")
    return StagePlan(name=WHICH, space=None if space.configurations is not None else
                     plain(space.space_values), configurations=space.configurations,
                     tuner=space.tuner, max_trials=int(max_trials), seeds=tuple(seeds),
                     oracle_seed=int(oracle_seed), why=why)


def top_attention(rows):
    """``(attention, row)`` of the attention configuration with the highest blocked estimate of
    its difference to the baseline (``delta_vs_baseline``, from seeds shared with the baseline),
    or ``(None, None)`` when none has one."""
    ranked = [r for r in rows if r["attention"] != NO_ATTENTION
              and r.get("delta_vs_baseline") is not None]
    if not ranked:
        return None, None
    best = max(ranked, key=lambda r: r["delta_vs_baseline"])
    return best["attention"], best


def where_space(attention, fixed=None):
    """The ``where`` stage's space for ``attention``: the baseline and ``attention`` at
    :data:`WHERE_PLACEMENTS`, each searched argument of its class over
    ``ArgumentChoices.around`` its paper value, and the arguments in ``fixed`` (e.g. a
    ``--space`` file's other keys) kept."""
    cls = get_attention_class(attention)
    space = {"attention": [NO_ATTENTION, attention], "placement": list(WHERE_PLACEMENTS)}
    for name, choices in cls.search_space.items():
        around = list(choices.around())
        space[name] = around if len(around) > 1 else around[0]
    takes = inspect.signature(cls.__init__).parameters
    for name, value in (fixed or {}).items():
        if name not in space and name in takes:
            space[name] = value
    return space


def where_stage(which, rows, where_trials=WHERE_TRIALS):
    """The ``where`` stage after ``which`` (its :class:`StagePlan`), from ``which``'s leaderboard
    ``rows`` (with the blocked estimates); None when it does not apply (a preset's table, no
    attention with an estimate), with the reason as the second value.

    Returns:
        ``(StagePlan | None, reason)``.
    """
    if which.configurations is not None:
        return None, "a preset's table has no space to explore"
    attention, row = top_attention(rows)
    if attention is None:
        return None, "no attention configuration has an estimate against the baseline"
    fixed = {k: v for k, v in (which.space or {}).items()
             if k not in ("attention", "placement") and not isinstance(v, list)}
    space = where_space(attention, fixed)
    why = (f"{attention} ranked highest in stage {WHICH!r} by the blocked estimate "
           f"({row['delta_vs_baseline']:+.4f} vs the baseline); per block vs per layer and its "
           "hyperparameters around the paper's")
    return StagePlan(name=WHERE, space=space, configurations=None, tuner=which.tuner,
                     max_trials=1 + int(where_trials), seeds=which.seeds,
                     oracle_seed=which.oracle_seed, why=why), ""
