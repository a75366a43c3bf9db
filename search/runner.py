"""Training runs into the run store: look a run up, train it only when it is missing.

:class:`RunTrainer` is what every part of a search that needs a run calls (a KerasTuner trial of
:mod:`search.tuning`, a racing round of :mod:`search.pipeline`): given a configuration and its
seeds it looks each run up in the :class:`search.store.RunStore` by its
:class:`search.store.RunKey` and trains only the missing ones, writing each to the store as it
ends (weights, then the record), so a kill never loses a finished run and no run is trained
twice.

A run is the comparison protocol's unit (:mod:`search.protocol`): for one seed every
configuration starts from the same backbone and head weights and sees the training images in
the same order, with the search's one recipe. It is validated once, after its last epoch (only
that value is used: the recipe is fixed and no epoch is picked), unless the search asks for
per-epoch curves (``validate_every_epoch``); the two give the same final value.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from search.store import DIVERGED, FINISHED, RunKey, RunRecord

#: The score of a run (and the name of its metric in the record).
OBJECTIVE = "val_accuracy"


@dataclasses.dataclass
class Trained:
    """The runs of one configuration after :meth:`RunTrainer.train`: ``records`` by seed, and
    how many were found in the store (``reused``) and trained now (``trained``)."""

    records: dict
    reused: int
    trained: int
    trained_seeds: tuple = ()

    @property
    def values(self):
        """``{seed: val_accuracy}`` of the finished runs."""
        return {s: r.value for s, r in self.records.items() if r.value is not None}

    @property
    def diverged(self):
        return {s: r.reason for s, r in self.records.items() if r.status == DIVERGED}


class RunKeys:
    """The run store's keys of a search's configurations: the measured context, the model's
    fingerprint (:func:`search.store.model_fingerprint`, computed by building the model once
    and cached in the store), the seed and the epochs.

    Args:
        hypermodel: builds a configuration's model (``build_configuration``).
        store: the :class:`search.store.RunStore` (its fingerprint cache).
        measured: the measured context.
    """

    def __init__(self, hypermodel, store, measured):
        self.hypermodel = hypermodel
        self.store = store
        self.measured = dict(measured)
        self._fingerprints = {}

    def fingerprint(self, configuration, model=None):
        """The fingerprint of ``configuration``'s model: cached (in memory, then in the store),
        else read off ``model`` (the configuration built) or a model built for it here."""
        from search.store import configuration_digest, model_fingerprint

        cache = configuration_digest(configuration)
        if cache not in self._fingerprints:
            def compute():
                built = model if model is not None else \
                    self.hypermodel.build_configuration(configuration, seed=0)
                return model_fingerprint(built, configuration)

            self._fingerprints[cache] = self.store.fingerprint(self.measured, configuration,
                                                               compute)
        return self._fingerprints[cache]

    def known(self, configuration):
        """Whether the fingerprint of ``configuration`` is cached (no build needed)."""
        from search.store import configuration_digest

        if configuration_digest(configuration) in self._fingerprints:
            return True
        return self.store.has_fingerprint(self.measured, configuration)

    def key(self, configuration, seed, epochs):
        return RunKey(self.measured, self.fingerprint(configuration), int(seed), int(epochs))

    def model_id(self, configuration):
        """A short id of the model a configuration builds (one leaderboard row per model)."""
        from search.store import configuration_digest

        return configuration_digest(self.fingerprint(configuration))

    def lookup(self, configuration, seeds, epochs):
        """``{seed: RunRecord}`` of the runs of ``configuration`` already in the store."""
        found = {}
        for seed in seeds:
            record = self.store.get(self.key(configuration, seed, epochs))
            if record is not None:
                found[int(seed)] = record
        return found


class RunTrainer:
    """Trains a search's runs into its store (see the module docstring).

    Args:
        hypermodel: the search's :class:`search.hypermodel.AttentionHyperModel` (builds a
            configuration's model, compiled with the recipe, and fits it).
        store: the :class:`search.store.RunStore`.
        measured: the measured context (``SearchConfig.measured``) every key carries.
        train_data: ``callable(seed) -> tf.data.Dataset``: the training data in that seed's order.
        validation_data: the validation ``tf.data.Dataset``.
        epochs: the recipe's epochs per run.
        strategy: the ``tf.distribute`` strategy models are built under (None: the default).
        verbose: ``fit``'s verbosity.
        validate_every_epoch: validate after every epoch (per-epoch curves in the record and in
            TensorBoard) instead of once at the end.
        worker: who trains (recorded in each run), e.g. the tuner id.
    """

    def __init__(self, hypermodel, store, measured, *, train_data, validation_data, epochs,
                 strategy=None, verbose=0, validate_every_epoch=False, worker=None):
        self.hypermodel = hypermodel
        self.store = store
        self.keys = RunKeys(hypermodel, store, measured)
        self.train_data = train_data
        self.validation_data = validation_data
        self.epochs = int(epochs)
        self.strategy = strategy
        self.verbose = verbose
        self.validate_every_epoch = bool(validate_every_epoch)
        self.worker = worker

    def key(self, configuration, seed, epochs=None):
        return self.keys.key(configuration, seed, epochs or self.epochs)

    def lookup(self, configuration, seeds, epochs=None):
        """``{seed: RunRecord}`` of the runs of ``configuration`` already in the store."""
        return self.keys.lookup(configuration, seeds, epochs or self.epochs)

    def train(self, configuration, seeds, *, epochs=None, label="", stage=None, trial=None,
              callbacks_for: Callable | None = None, log=print, prefix="[run]"):
        """The runs of ``configuration`` with ``seeds``: the stored ones as they are, the missing
        ones trained now (each stored as it ends). Returns a :class:`Trained`.

        Args:
            configuration: the canonical configuration (``hypermodel.configuration(hp)``).
            seeds: the seeds, in order.
            epochs: this run's epochs (default: the recipe's).
            label, stage, trial: recorded with each trained run (the configuration in words, the
                stage and the KerasTuner trial that trained it).
            callbacks_for: ``callable(index, seed) -> list`` of extra callbacks for one run.
            log: where the lines go; prefix: their start (``"[trial 3]"``).

        A run whose loss becomes NaN or infinite is stored as diverged (with where it
        happened) and not trained again; the other seeds still train.
        """
        epochs = int(epochs or self.epochs)
        seeds = [int(s) for s in seeds]
        prebuilt = None
        if seeds and not self.keys.known(configuration):
            # The model of the first seed, built as training builds it: its fingerprint keys
            # the runs, and it trains that seed if that run is missing (one build, not two).
            prebuilt = self._model_for_seed(configuration, seeds[0], None, None)
            self.keys.fingerprint(configuration, model=prebuilt[0])
        records = self.lookup(configuration, seeds, epochs)
        todo = [s for s in seeds if s not in records]
        log(f"{prefix} {label or configuration}: {len(records)} of {len(seeds)} run(s) in the "
            f"store, reused; {len(todo)} to train" + (f" (seeds {todo})" if todo else ""))
        model = optimizer_start = None
        for index, seed in enumerate(seeds):
            if seed not in todo:
                continue
            extra = list(callbacks_for(index, seed)) if callbacks_for else []
            if prebuilt is not None and seed == seeds[0]:
                model, optimizer_start = prebuilt
            model, optimizer_start, record = self._train_one(
                configuration, seed, epochs, model, optimizer_start, extra,
                dict(label=label, stage=stage, trial=trial, worker=self.worker,
                     asked=configuration))
            records[seed] = record
            if record.status == FINISHED:
                overhead = record.timings.get("overhead_seconds")
                log(f"{prefix} seed {seed}: {OBJECTIVE}={record.value:.4f} "
                    f"({record.timings.get('fit_seconds') or 0:.0f}s"
                    + ("" if overhead is None else f", of which {overhead:.1f}s tracing/first "
                       "steps") + ")")
            else:
                log(f"{prefix} seed {seed}: diverged ({record.reason})")
        return Trained({s: records[s] for s in seeds}, len(seeds) - len(todo), len(todo),
                       tuple(todo))

    # ------------------------------------------------------------------------ one run

    def _train_one(self, configuration, seed, epochs, model, optimizer_start, callbacks, who):
        from keras_tuner.errors import FailedTrialError

        from search import training

        t0 = time.perf_counter()
        if optimizer_start is None or model is None or not getattr(model, "_keras_attn_fresh",
                                                                   False):
            model, optimizer_start = self._model_for_seed(configuration, seed, model,
                                                          optimizer_start)
        model._keras_attn_fresh = False
        build_seconds = time.perf_counter() - t0
        timer = training.StepTimer()
        validation = self.validation_data if self.validate_every_epoch else None
        key = self.key(configuration, seed, epochs)
        try:
            history = self.hypermodel.fit_model(
                model, self.train_data(seed), epochs=epochs, validation_data=validation,
                callbacks=[*callbacks, timer], verbose=self.verbose)
        except FailedTrialError as err:  # StopOnNaN: store it, do not train it again
            record = RunRecord(key=key, status=DIVERGED, metrics={}, history={},
                               timings={"build_seconds": round(build_seconds, 3)},
                               facts=self._facts(model), reason=str(err).splitlines()[0],
                               **who)
            # The model's weights are NaN now: the next seed builds afresh.
            return None, None, self.store.put(record)
        metrics, validation_seconds = self._final_metrics(model, history.history)
        timings = {k: (round(v, 3) if isinstance(v, float) else v)
                   for k, v in timer.result().items()}
        timings.update(build_seconds=round(build_seconds, 3),
                       validation_seconds=round(validation_seconds, 3))
        if not all(_finite(v) for v in metrics.values()):
            bad = {k: v for k, v in metrics.items() if not _finite(v)}
            record = RunRecord(key=key, status=DIVERGED, metrics={}, history={},
                               timings=timings, facts=self._facts(model),
                               reason=f"non-finite final metrics {bad}", **who)
            return None, None, self.store.put(record)
        timings["wall_seconds"] = round(time.perf_counter() - t0, 3)
        record = RunRecord(key=key, status=FINISHED, metrics=metrics,
                           history={k: [float(x) for x in v] for k, v in history.history.items()},
                           timings=timings, facts=self._facts(model), **who)
        return model, optimizer_start, self.store.put(record, model=model)

    def _final_metrics(self, model, history):
        """The last epoch's training metrics and the validation metrics after it (one
        evaluation, or the last epoch's when the run validated every epoch)."""
        metrics = {k: float(v[-1]) for k, v in history.items() if v and not k.startswith("val_")}
        t0 = time.perf_counter()
        if self.validate_every_epoch:
            metrics.update({k: float(v[-1]) for k, v in history.items()
                            if v and k.startswith("val_")})
        else:
            result = model.evaluate(self.validation_data, verbose=0, return_dict=True)
            metrics.update({f"val_{k}": float(v) for k, v in result.items()})
        return metrics, time.perf_counter() - t0

    def _facts(self, model):
        """The model's facts (:func:`search.hypermodel.model_facts`), read from the model itself
        so that every run's record has them, whatever the hypermodel tracks."""
        from search.hypermodel import model_facts

        return model_facts(model)

    def _model_for_seed(self, configuration, seed, model, optimizer_start):
        """The configuration's model with ``seed``'s initial weights: ``model`` restarted when it
        can be (see :func:`restart`), else built afresh; returns it and its optimizer's state
        before any step. Restarting keeps Keras' traced train and test functions instead of
        tracing them again (5-12 s per run on a 2-core CPU, a third of a short run)."""
        import contextlib

        import keras

        if model is None:
            keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        scope = self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()
        with scope:
            fresh = self.hypermodel.build_configuration(configuration, seed=seed)
            if model is None or not restart(model, fresh, optimizer_start):
                model = fresh
                model.optimizer.build(model.trainable_variables)
                optimizer_start = [v.numpy() for v in model.optimizer.variables]
        model._keras_attn_fresh = True  # in this seed's initial state, not yet trained
        return model, optimizer_start


def restart(model, fresh, optimizer_start):
    """Put ``model`` in the state of ``fresh`` (the same configuration built with another seed):
    every variable (weights, BatchNorm statistics, random-seed states) from ``fresh``, the
    optimizer back to its state before any step. Returns False, changing nothing, when the two
    models' variables do not correspond one to one."""
    pairs = list(zip(model.variables, fresh.variables))
    if len(model.variables) != len(fresh.variables) or any(
            tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype for a, b in pairs):
        return False
    optimizer = model.optimizer
    if optimizer_start is None or len(optimizer.variables) != len(optimizer_start):
        return False
    for a, b in pairs:
        a.assign(b.value)
    for v, start in zip(optimizer.variables, optimizer_start):
        v.assign(start)
    return True


def _finite(value):
    import math

    return isinstance(value, (int, float)) and math.isfinite(value)
