"""Which runs a stage does next: every seed for every configuration, or a race.

A plain ask/tell over the stage's results, without KerasTuner or TensorFlow, so that it is tested
and simulated as a pure function of stored results: :meth:`Schedule.ask` takes
``{configuration: {seed: value}}`` (the runs in the store so far; a value may be None for a
run that did not finish) and returns the ``(configuration, seed)`` runs to do next; an empty
list means the stage is done.

* ``"full"``: every configuration runs every seed.
* ``"race"`` (``--schedule race``): every configuration runs the first :data:`RACE_START` seeds;
  then seed by seed, only the baseline and the configurations the blocked model cannot yet
  separate from the leader get the next seed (:func:`behind_leader`). A configuration dropped
  once stays dropped (it keeps the seeds it has), so the race only ever saves runs. This is
  irace's racing (Lopez-Ibanez et al. 2016) on the search's shared seeds, with the blocked model
  of :mod:`search.analysis` in place of Friedman's test.

The verdicts are not the race's: they come from the analysis of all the stored runs at the end
(:mod:`search.analysis`), like a full schedule's, on the seeds each configuration has.
"""

from __future__ import annotations

import dataclasses

#: ``--schedule``: the choices, in a module that imports nothing heavy (``--help`` stays instant).
RUN_SCHEDULES = ("full", "race")
#: Seeds every configuration runs before a race drops any (the blocked model needs two).
RACE_START = 2
#: The confidence with which a configuration must be behind the leader to be dropped.
RACE_CONFIDENCE = 0.95


def behind_leader(runs, baseline, confidence=RACE_CONFIDENCE):
    """The configurations the blocked model separates from the leader: those whose simultaneous
    ``confidence`` interval of the difference to the leader lies wholly below 0
    (:func:`search.decision.race`: the leader is the decision procedure's best).

    Args:
        runs: ``{configuration: {seed: value}}`` (None or non-finite values are left out).
        baseline: the baseline's key (never dropped, never the leader).

    Returns:
        A set of configuration keys (empty without enough runs to separate anything).
    """
    from search.decision import race

    usable = {c: {s: v for s, v in r.items() if _finite(v)} for c, r in runs.items()}
    usable = {c: r for c, r in usable.items() if r}
    if baseline not in usable or len(usable) < 3:
        return set()
    return set(race(usable, baseline, confidence=confidence).drop)


@dataclasses.dataclass
class Schedule:
    """The runs of one stage (see the module docstring).

    Attributes:
        configurations: the stage's configuration keys (any hashables), the baseline among them.
        seeds: the seeds, in the order they are run.
        baseline: the baseline's key.
        mode: one of :data:`RUN_SCHEDULES`.
        start: seeds every configuration runs before a race drops any.
        separated: ``callable(runs, baseline) -> set``: the configurations to drop (default
            :func:`behind_leader`).
    """

    configurations: list
    seeds: tuple
    baseline: object
    mode: str = "full"
    start: int = RACE_START
    separated: object = None

    def __post_init__(self):
        if self.mode not in RUN_SCHEDULES:
            raise ValueError(f"Unknown schedule {self.mode!r}; valid: {', '.join(RUN_SCHEDULES)}.")
        if self.baseline not in self.configurations:
            raise ValueError(f"The baseline {self.baseline!r} is not among the configurations.")

    def ask(self, results):
        """The ``(configuration, seed)`` runs to do next, given the stored ``results``
        (``{configuration: {seed: value}}``); [] when the stage is done."""
        done = {c: set((results or {}).get(c, {})) for c in self.configurations}
        if self.mode == "full" or len(self.seeds) <= self.start:
            return [(c, s) for c in self.configurations for s in self.seeds if s not in done[c]]
        first = [(c, s) for c in self.configurations for s in self.seeds[:self.start]
                 if s not in done[c]]
        if first:
            return first
        return [(c, seed) for c, seed in self._next_round(results, done)]

    def _next_round(self, results, done):
        """The first round (seed) some configuration still racing has not run: the runners of
        round ``i`` are the configurations that ran every earlier seed; of them, the baseline
        and those :attr:`separated` does not drop (judged on the earlier seeds only, so the
        decision is the same each time it is asked) run seed ``i``."""
        separated = self.separated or behind_leader
        for i in range(self.start, len(self.seeds)):
            prior = self.seeds[:i]
            runners = [c for c in self.configurations if all(s in done[c] for s in prior)]
            table = {c: {s: results[c][s] for s in prior} for c in runners}
            drop = separated(table, self.baseline)
            missing = [(c, self.seeds[i]) for c in runners
                       if (c == self.baseline or c not in drop) and self.seeds[i] not in done[c]]
            if missing:
                return missing
        return []

    def runs_saved(self, results):
        """How many runs the race did not do, of the full schedule's."""
        total = len(self.configurations) * len(self.seeds)
        return total - sum(len(set((results or {}).get(c, {})) & set(self.seeds))
                           for c in self.configurations)


def _finite(value):
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
