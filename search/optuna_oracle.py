"""``--tuner nsga2`` and ``--tuner tpe``: a multi-objective search through Optuna's samplers.

:class:`OptunaOracle` is a KerasTuner ``Oracle`` that asks Optuna (ask-and-tell) for each new
trial's values and tells it each finished trial's objectives: the trial's score (the mean
validation accuracy over the protocol's seeds, maximised) and, optionally, a cost (minimised)
read from the trial's ``keras_attn_trial.json``, e.g. ``params_added``. Everything around the
oracle is KerasTuner's and this package's: the paired protocol, the baseline first, resume and
distributed workers (the oracle lives in the chief).

The KerasTuner space is mapped to Optuna define-by-run: hyperparameters are suggested in their
declaration order, and a conditional one only when its conditions hold for the values already
suggested (``attention`` first, then what that attention uses), so inactive conditionals are
never suggested.

Resume: the study lives in memory and is rebuilt from the oracle's own saved state. Every trial
told to Optuna is also kept as a record (params, distributions, values, state, the sampler's
system attributes such as NSGA-II's generation) in ``oracle.json``, which KerasTuner writes with
the trials; reloading adds the records back to a fresh study (``study.add_trial``) in their
order, and any finished KerasTuner trial without a record (a process killed between the two
writes; a trial retried after a restart) is told from the trial itself. One source of truth,
no second file that can disagree with ``oracle.json``, no file locks, and the same code for any
Optuna >= 3.4.

Optuna is imported only when an oracle is made, so this module (and ``search.tuning``, which
registers the tuners) imports without it.
"""

from __future__ import annotations

import json
import math
import warnings

import keras_tuner as kt

from search import kt_private
from search.oracles import ProtocolOracleMixin, baseline_values, ran_baseline

SAMPLERS = ("nsga2", "tpe")
TRIAL_ID_ATTR = "keras_tuner_trial_id"


class OptunaMissing(ImportError, ValueError):
    """Optuna is not installed (a ValueError too: the CLI prints it as one line)."""


def import_optuna(tuner="nsga2"):
    try:
        import optuna
    except ImportError:
        raise OptunaMissing(
            f"--tuner {tuner} needs Optuna: pip install keras-attn[optuna]") from None
    return optuna


# ----------------------------------------------------------------------- the space in Optuna


def _distribution(optuna, hp):
    """Optuna's distribution for a KerasTuner hyperparameter (None for Fixed)."""
    d = optuna.distributions
    if isinstance(hp, kt.engine.hyperparameters.Fixed):
        return None
    if isinstance(hp, kt.engine.hyperparameters.Boolean):
        return d.CategoricalDistribution([False, True])
    if isinstance(hp, kt.engine.hyperparameters.Choice):
        return d.CategoricalDistribution(list(hp.values))
    is_int = isinstance(hp, kt.engine.hyperparameters.Int)
    if isinstance(hp, (kt.engine.hyperparameters.Int, kt.engine.hyperparameters.Float)):
        if hp.step is not None and hp.sampling != "linear":
            # A geometric grid (step is a factor): Optuna has no such distribution.
            return d.CategoricalDistribution(list(hp.values))
        log = hp.sampling == "log"  # reverse_log: sampled uniformly
        if is_int:
            return d.IntDistribution(int(hp.min_value), int(hp.max_value), log=log,
                                     step=int(hp.step or 1))
        return d.FloatDistribution(float(hp.min_value), float(hp.max_value), log=log,
                                   step=None if hp.step is None else float(hp.step))
    raise ValueError(f"{type(hp).__name__} {hp.name!r}: not supported by the Optuna tuners.")


def _suggest(trial, name, dist):
    cls = type(dist).__name__
    if cls == "CategoricalDistribution":
        return trial.suggest_categorical(name, dist.choices)
    if cls == "IntDistribution":
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def _walk(space, pick):
    """Values for the active hyperparameters of ``space``, in declaration order: ``pick(hp)``
    gives each non-Fixed one's value; conditions are checked against the values so far."""
    hps = kt.HyperParameters()
    for hp in space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = hp.value if isinstance(
                hp, kt.engine.hyperparameters.Fixed) else pick(hp)
    return dict(hps.values)


def _jsonable(attrs):
    out = {}
    for k, v in (attrs or {}).items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


class OptunaOracle(ProtocolOracleMixin, kt.Oracle):
    """A KerasTuner oracle driven by Optuna's NSGA-II or TPE sampler (ask-and-tell), with the
    protocol's atomic save and trial banners (:class:`search.oracles.ProtocolOracleMixin`; its
    baseline comes first on its own, and ``paired``, set by a tuner with a protocol, adds the
    distributed search's waiting workers).

    Args:
        sampler: ``"nsga2"`` (``NSGAIISampler``) or ``"tpe"`` (``TPESampler``, multivariate,
            grouped for conditional spaces; multi-objective when a cost is given).
        cost: the second objective, minimised: a callable ``trial_id -> float | None``, or a key
            of the trial's info (``"params_added"``; read through :attr:`trial_info`, a callable
            ``trial_id -> dict`` that the tuner sets). None: accuracy only. A completed trial
            whose cost cannot be read is told to Optuna as failed (and says so).
        population_size: NSGA-II's population, TPE's random startup trials; default
            ``max_trials // 3`` within [4, 50] (Optuna's 50 would make a 30-trial search random);
            a resume keeps the saved one unless given.
        objective, max_trials, seed, ...: KerasTuner's ``Oracle`` arguments.

    Raises:
        ValueError: an unknown ``sampler``; :class:`OptunaMissing` without Optuna.
    """

    paired = False

    def __init__(self, objective=None, max_trials=10, sampler="nsga2", cost=None,
                 population_size=None, seed=None, hyperparameters=None, allow_new_entries=True,
                 tune_new_entries=True, max_retries_per_trial=0, max_consecutive_failed_trials=3):
        if sampler not in SAMPLERS:
            raise ValueError(f"Unknown Optuna sampler {sampler!r}; valid: {', '.join(SAMPLERS)}.")
        import_optuna(sampler)
        super().__init__(objective=objective, max_trials=max_trials,
                         hyperparameters=hyperparameters, allow_new_entries=allow_new_entries,
                         tune_new_entries=tune_new_entries, seed=seed,
                         max_retries_per_trial=max_retries_per_trial,
                         max_consecutive_failed_trials=max_consecutive_failed_trials)
        self.sampler_name = sampler
        self.cost = cost
        self.trial_info = None
        self.population_size = population_size or max(4, min(50, (max_trials or 150) // 3))
        self._population_size_given = population_size is not None
        self._records = []  # every trial told to Optuna, in order (saved with the oracle)
        self._live = {}  # KerasTuner trial id -> the Optuna trial asked for it
        self._study = None
        self._exhausted_at = None

    # ------------------------------------------------------------------- the study

    @property
    def study(self):
        """The Optuna study (built on first use, from the saved records on a resume)."""
        if self._study is None:
            optuna = import_optuna(self.sampler_name)
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            directions = ["maximize" if self.objective.direction == "max" else "minimize"]
            if self.cost is not None:
                directions.append("minimize")
            study = optuna.create_study(directions=directions,
                                        sampler=self._sampler(optuna, len(self._records)))
            for record in self._records:
                study.add_trial(self._frozen(optuna, record))
            self._study = study
            for trial_id in self.end_order:  # finished trials never told (see module doc)
                self._finish(self.trials[trial_id])
        return self._study

    def _sampler(self, optuna, told):
        # A resumed study must not replay the first run's random draws: the seed moves on with
        # the trials already told.
        seed = (int(self.seed) + told) % (2 ** 31)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning (multivariate, group)
            if self.sampler_name == "nsga2":
                return optuna.samplers.NSGAIISampler(population_size=self.population_size,
                                                     seed=seed)
            return optuna.samplers.TPESampler(n_startup_trials=self.population_size, seed=seed,
                                              multivariate=True, group=True)

    def _distributions(self, optuna, values):
        space = {hp.name: hp for hp in self.hyperparameters.space}
        out = {}
        for name in values:
            hp = space.get(name)
            dist = None if hp is None else _distribution(optuna, hp)
            if dist is not None:
                out[name] = dist
        return out

    @staticmethod
    def _frozen(optuna, record):
        dists = {k: optuna.distributions.json_to_distribution(v)
                 for k, v in record["distributions"].items()}
        complete = record["state"] == "COMPLETE"
        user_attrs = {TRIAL_ID_ATTR: record["trial_id"]}
        if record.get("duplicate_of") is not None:
            user_attrs["duplicate_of"] = record["duplicate_of"]
        return optuna.trial.create_trial(
            state=optuna.trial.TrialState[record["state"]],
            values=record["values"] if complete else None,
            params=record["params"], distributions=dists, user_attrs=user_attrs,
            system_attrs=record.get("system_attrs") or {})

    def _record(self, frozen, trial_id, duplicate_of=None):
        optuna = import_optuna(self.sampler_name)
        self._records.append({
            "trial_id": trial_id,
            "duplicate_of": duplicate_of,
            "state": frozen.state.name,
            "values": None if frozen.values is None else [float(v) for v in frozen.values],
            "params": dict(frozen.params),
            "distributions": {k: optuna.distributions.distribution_to_json(v)
                              for k, v in frozen.distributions.items()},
            "system_attrs": _jsonable(frozen.system_attrs),
        })

    def told(self, trial_id):
        """The record of KerasTuner trial ``trial_id`` as told to Optuna, or None."""
        return next((r for r in self._records if r["trial_id"] == trial_id), None)

    # ------------------------------------------------------------------- objectives

    def _cost(self, trial_id):
        if self.cost is None:
            return None
        if callable(self.cost):
            value = self.cost(trial_id)
        else:
            info = self.trial_info(trial_id) if self.trial_info is not None else {}
            value = (info or {}).get(self.cost)
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    def _values(self, trial):
        """The objective values of a finished KerasTuner trial, or None (told as failed)."""
        if trial.status != kt.engine.trial.TrialStatus.COMPLETED or trial.score is None \
                or not math.isfinite(trial.score):
            return None
        values = [float(trial.score)]
        if self.cost is not None:
            cost = self._cost(trial.trial_id)
            if cost is None:
                print(f"[trial {trial.trial_id}] no {self.cost!r} for it: told to Optuna as "
                      "failed", flush=True)
                return None
            values.append(cost)
        return values

    def _finish(self, trial):
        """Tell Optuna how KerasTuner trial ``trial`` (finished) ended, once."""
        if self.told(trial.trial_id) is not None:
            return
        optuna = import_optuna(self.sampler_name)
        values = self._values(trial)
        state = optuna.trial.TrialState.COMPLETE if values else optuna.trial.TrialState.FAIL
        asked = self._live.pop(trial.trial_id, None)
        if asked is not None:
            frozen = self.study.tell(asked, values=values, state=state)
        else:  # asked by an earlier process (a restart), or never told
            params = {k: v for k, v in trial.hyperparameters.values.items()}
            dists = self._distributions(optuna, params)
            params = {k: params[k] for k in dists}
            frozen = optuna.trial.create_trial(
                state=state, values=values, params=params, distributions=dists,
                user_attrs={TRIAL_ID_ATTR: trial.trial_id})
            self.study.add_trial(frozen)
        self._record(frozen, trial.trial_id)

    # ------------------------------------------------------------------- KerasTuner hooks

    def _baseline(self):
        """The baseline's values while no trial has run it (as PairedOracleMixin), else None."""
        baseline = baseline_values(self)
        if baseline is None or kt_private.tried_already(self, baseline) \
                or ran_baseline(self, baseline):
            return None
        return baseline

    def populate_space(self, trial_id):
        optuna = import_optuna(self.sampler_name)
        if self._exhausted_at == len(self.trials):
            # Nothing new since the space ran out: do not tell Optuna the same duplicates again
            # (waiting workers ask every second).
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        study = self.study
        space = list(self.hyperparameters.space)
        baseline = self._baseline()
        for _ in range(kt_private.max_collisions(self) + 1):
            if baseline is not None:
                fixed = {k: v for k, v in baseline.items()
                         if k in self._distributions(optuna, baseline)}
                study.enqueue_trial(fixed)
                baseline = None
            asked = study.ask()
            values = _walk(space, lambda hp: _suggest(asked, hp.name,
                                                      _distribution(optuna, hp)))
            if not kt_private.tried_already(self, values):
                asked.set_user_attr(TRIAL_ID_ATTR, trial_id)
                self._live[trial_id] = asked
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values}
            # Tried already: Optuna learns the earlier result without training it again.
            same = kt_private.trials_with_values(self, values)
            earlier = next((r for r in self._records if r["trial_id"] in same
                            and r["state"] == "COMPLETE"), None)
            frozen = study.tell(asked, values=earlier["values"] if earlier else None,
                                state=optuna.trial.TrialState.COMPLETE if earlier
                                else optuna.trial.TrialState.FAIL)
            self._record(frozen, None, duplicate_of=earlier["trial_id"] if earlier else None)
        self._exhausted_at = len(self.trials)
        self.save()
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}

    @kt.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)
        done = self.trials[trial.trial_id]
        if done.status in (kt.engine.trial.TrialStatus.COMPLETED,
                           kt.engine.trial.TrialStatus.FAILED):
            self._finish(done)  # INVALID: to be retried, Optuna's trial stays open
            self.save()

    def get_state(self):
        state = super().get_state()
        state["optuna"] = {"sampler": self.sampler_name, "records": list(self._records),
                           "population_size": self.population_size}
        return state

    def set_state(self, state):
        super().set_state(state)
        saved = state.get("optuna") or {}
        self._records = list(saved.get("records") or [])
        if not self._population_size_given and saved.get("population_size"):
            # A resume with another --max-trials keeps the generations' size.
            self.population_size = int(saved["population_size"])
        self._live = {}
        self._study = None


class OptunaSearch(kt.Tuner):
    """A KerasTuner tuner with :class:`OptunaOracle` (``RandomSearch``'s arguments, and
    ``sampler``, ``cost``, ``population_size``). A string ``cost`` is read from the trial's
    info record (:meth:`search.rundir.TrialDir.load_info`)."""

    #: Minimises a cost beside the objective: ``build_tuner`` passes ``cost``.
    minimises_cost = True

    sampler = "nsga2"

    def __init__(self, hypermodel=None, objective=None, max_trials=10, seed=None,
                 hyperparameters=None, tune_new_entries=True, allow_new_entries=True,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3, sampler=None,
                 cost=None, population_size=None, **kwargs):
        oracle = OptunaOracle(
            objective=objective, max_trials=max_trials, sampler=sampler or self.sampler,
            cost=cost, population_size=population_size, seed=seed,
            hyperparameters=hyperparameters, tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries, max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        super().__init__(oracle, hypermodel, **kwargs)
        if isinstance(cost, str):
            from search.rundir import TrialDir

            oracle.trial_info = lambda trial_id: TrialDir(self.get_trial_dir(trial_id)).load_info()


class NSGA2Search(OptunaSearch):
    """``--tuner nsga2``: :class:`OptunaSearch` with Optuna's NSGA-II sampler."""

    sampler = "nsga2"


class TPESearch(OptunaSearch):
    """``--tuner tpe``: :class:`OptunaSearch` with Optuna's (multi-objective) TPE sampler."""

    sampler = "tpe"
