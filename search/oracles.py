"""The comparison protocol's oracles: KerasTuner's search algorithms with the baseline first,
trials balanced over (attention, placement) pairs, an atomic ``oracle.json`` and trial banners
numbered by trial id.

One class per algorithm, each :class:`ProtocolOracleMixin` mixed into KerasTuner's oracle:
:class:`BalancedRandomSearchOracle`, :class:`ProtocolBayesianOptimizationOracle`,
:class:`ProtocolHyperbandOracle` (and :class:`search.optuna_oracle.OptunaOracle`). The tuners of
:mod:`search.tuning` build them from their arguments.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

import keras_tuner as kt

from keras_attn.registry import NO_ATTENTION
from search import kt_private
from search.rundir import write_text

_Fixed = kt.engine.hyperparameters.Fixed


def _value(hp):
    return hp.value if isinstance(hp, _Fixed) else hp.default


def baseline_values(oracle):
    """The values of the no-attention configuration in ``oracle``'s space (defaults elsewhere),
    or None when ``"none"`` is not an attention choice. With named configurations (a
    ``configuration`` choice, no ``attention``), the first, the default, is the baseline."""
    names = {p.name for p in oracle.hyperparameters.space}
    if "configuration" in names and "attention" not in names:
        return {p.name: _value(p) for p in oracle.hyperparameters.space}
    hps = kt.HyperParameters()
    found = False
    for hp in oracle.hyperparameters.space:
        hps.merge([hp])
        if hp.name == "attention":
            if NO_ATTENTION not in getattr(hp, "values", [getattr(hp, "value", None)]):
                return None
            hps.values["attention"] = NO_ATTENTION
            found = True
        elif hps.is_active(hp):
            hps.values[hp.name] = _value(hp)
    return dict(hps.values) if found else None


def ran_baseline(oracle, baseline):
    """Whether a trial of ``oracle`` has the ``baseline`` values (whatever its learning rate)."""
    return any(all(t.hyperparameters.values.get(k) == v for k, v in baseline.items()
                   if k != "learning_rate") for t in oracle.trials.values())


class AtomicSaveOracleMixin:
    """An oracle whose ``save()`` writes ``oracle.json`` atomically (KerasTuner writes it in place:
    a kill or a full disk mid-write leaves an empty file that no resume can read). The file is
    set by the tuner (:class:`search.tuning.ReportingMixin`); until then KerasTuner's own
    ``save`` runs."""

    keras_attn_state_file = None

    def save(self):
        if self.keras_attn_state_file is None:
            return super().save()
        write_text(self.keras_attn_state_file, json.dumps(self.get_state()))


class PairedOracleMixin(kt_private.RandomValuesHook):
    """Oracle behaviour of the comparison protocol, for any KerasTuner oracle whose new values
    come from its draw (:class:`search.kt_private.RandomValuesHook`: random search, Bayesian
    optimisation's initial points, Hyperband's new models):

    * the baseline first: while no trial has ``attention="none"``, the next values are the
      baseline's (when ``none`` is an attention choice);
    * balanced coverage: values are drawn as the oracle draws them, and redrawn (rejection
      sampling, so the conditional hyperparameters stay consistent) until their
      ``(attention, placement)`` pair is one of the least tried: no pair gets a (k+1)-th trial
      before every pair has k. With 4 attention types and 2 placements, 9 trials train every pair
      once, and the baseline.
    * distributed search: a worker asking for a trial after the last one is told to wait while
      another trial runs (it may be queued again, see :meth:`requeue_stale_trials`).

    Attributes:
        paired: whether the above applies (True by default); False leaves the oracle's own
            order (the tuner of :mod:`search.tuning` sets it when it has a protocol).
    """

    _REDRAWS = 1000
    paired = True

    def _pair(self, values):
        return values.get("attention"), values.get("placement")

    def _all_pairs(self):
        space = {p.name: p for p in self.hyperparameters.space}
        attention = space.get("attention")
        if attention is None or not hasattr(attention, "values"):
            return []
        placement = space.get("placement")
        places = list(getattr(placement, "values", [getattr(placement, "value", None)])) \
            if placement is not None else [None]
        return [(a, p) for a in attention.values if a != NO_ATTENTION for p in places]

    def draw_values(self, draw):
        """The next values: the baseline's first, then ``draw()`` (KerasTuner's draw), redrawn
        until their (attention, placement) pair is one of the least tried."""
        if not self.paired:
            return draw()
        baseline = baseline_values(self)
        if baseline is not None and not ran_baseline(self, baseline) \
                and not kt_private.tried_already(self, baseline):
            return baseline
        values = draw()
        pairs = self._all_pairs()
        if values is None or not pairs:
            return values
        counts = {pair: 0 for pair in pairs}
        for t in self.trials.values():
            pair = self._pair(t.hyperparameters.values)
            if pair in counts:
                counts[pair] += 1
        least = min(counts.values())
        for _ in range(self._REDRAWS):
            if counts.get(self._pair(values)) == least:
                return values
            redrawn = draw()
            if redrawn is None:
                break
            values = redrawn
        return values

    @kt.synchronized
    def create_trial(self, tuner_id):
        trial = super().create_trial(tuner_id)
        if not self.paired:
            return trial
        others = [t for k, t in kt_private.running_trials(self).items() if k != tuner_id]
        if trial.status == kt.engine.trial.TrialStatus.STOPPED and others:
            # Not yet: a running trial may still be queued again (its worker may die). Waiting
            # workers ask again after a pause.
            time.sleep(1.0)
            kt_private.wait_for_a_trial(self, tuner_id, trial)
        return trial

    @kt.synchronized
    def requeue_stale_trials(self, last_heard, timeout):
        """Take every running trial whose worker was last heard of (``last_heard(trial)``, a
        time) more than ``timeout`` seconds ago from that worker and queue it again; returns
        their ids."""
        now = time.time()
        stale = [(k, t) for k, t in kt_private.running_trials(self).items()
                 if now - last_heard(t) > timeout]
        for tuner_id, trial in stale:
            kt_private.take_back(self, tuner_id)
            kt_private.queue_again(self, trial.trial_id)
        if stale:
            self.save()
        return [t.trial_id for _, t in stale]


class TrialIdDisplay(kt_private.trial_display_class()):
    """KerasTuner's trial display, numbered by trial id (``03``, as in ``trial_03/``, the
    leaderboard's ``trial`` column and this package's ``[trial 03]`` lines) instead of its own
    1-based count (``Running Trial #4``), so a user reads one number per trial everywhere."""

    def on_trial_begin(self, trial):
        # KerasTuner's own, with the trial id where it prints len(oracle.trials).
        if self.verbose < 1:
            return
        start_time = datetime.now()
        self.trial_start[trial.trial_id] = start_time
        if self.search_start is None:
            self.search_start = start_time
        # on_trial_end prints "Trial {trial_number[id]} Complete".
        self.trial_number[trial.trial_id] = trial.trial_id
        print(f"\nSearch: running trial {trial.trial_id}\n")
        self.show_hyperparameter_table(trial)
        print()


class ProtocolOracleMixin(PairedOracleMixin, AtomicSaveOracleMixin):
    """:class:`PairedOracleMixin` and :class:`AtomicSaveOracleMixin`, with the banners of
    :class:`TrialIdDisplay`; mixed in before a KerasTuner oracle class (same arguments)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kt_private.set_display(self, TrialIdDisplay(oracle=self))


class BalancedRandomSearchOracle(ProtocolOracleMixin, kt.oracles.RandomSearchOracle):
    """``RandomSearchOracle`` with the baseline first and trials balanced over (attention,
    placement) pairs (see :class:`PairedOracleMixin`), always."""


class ProtocolBayesianOptimizationOracle(ProtocolOracleMixin,
                                         kt.oracles.BayesianOptimizationOracle):
    """``BayesianOptimizationOracle`` with :class:`ProtocolOracleMixin`; its initial points are
    paired only once ``paired`` is set (by a tuner with a protocol)."""

    paired = False


class ProtocolHyperbandOracle(ProtocolOracleMixin, kt.oracles.HyperbandOracle):
    """``HyperbandOracle`` with :class:`ProtocolOracleMixin`; its new models are paired only
    once ``paired`` is set (by a tuner with a protocol)."""

    paired = False
