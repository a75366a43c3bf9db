"""KerasTuner tuners for the CLI: the comparison protocol, a line per run, resumable.

The tuners are KerasTuner's own (RandomSearch, BayesianOptimization, Hyperband) and the Optuna
ones (:mod:`search.optuna_oracle`), each building its algorithm's oracle of
:mod:`search.oracles`, with a mixin (:class:`ReportingMixin`) that

* runs each trial's configuration once per seed of a :class:`search.protocol.Protocol` (same
  initial weights and data order per seed for every configuration), writing each finished repeat
  to the trial's directory at once, so a resumed trial keeps them;
* gives the oracle the protocol's order (:class:`search.oracles.PairedOracleMixin`): the
  baseline first, then trials balanced over (attention, placement) pairs;
* prints one line per run and per trial, and stores what the leaderboard needs beyond the score
  (parameters, parameters added by attention, train time) in the trial's directory, so that a
  resumed or distributed search reports every trial, whichever process ran it.
"""

from __future__ import annotations

import glob
import json
import os
import time
from concurrent import futures

import keras_tuner as kt

from search import kt_private
from search.hypermodel import configuration_label, describe_hyperparameters
from search.optuna_oracle import NSGA2Search, TPESearch  # Optuna imported only when used
# AtomicSaveOracleMixin, PairedOracleMixin and TrialIdDisplay were defined here: still importable.
from search.oracles import (AtomicSaveOracleMixin, BalancedRandomSearchOracle,  # noqa: F401
                            PairedOracleMixin, ProtocolBayesianOptimizationOracle,
                            ProtocolHyperbandOracle, ProtocolOracleMixin, TrialIdDisplay)
from search.rundir import DamagedFileError, TrialDir, is_no_space, read_json, write_text
from search.results import entries_of
from search.store import RunStore
from search.tuner_names import HYPERBAND_FACTOR, TUNERS

# KerasTuner's own files in its project directory (names as KerasTuner's Oracle and BaseTuner
# spell them): the oracle's state, each tuner's state (<tuner_id>.json), each trial's record.
ORACLE_FILE = "oracle.json"
TRIAL_FILE = "trial.json"
_KT_FILE_FIX = ("KerasTuner cannot resume this search without it: start afresh with --overwrite "
                "(or restore the file)")


class AbortSearch(kt.errors.FatalError, ValueError):
    """Raised from a trial for what no other trial could get past (a damaged file of the search,
    a full disk): KerasTuner stops the search instead of marking the trial failed and going on.
    ``str()`` is the cause's one-line message."""


def _is_worker():
    # KerasTuner's BaseTuner._is_worker, from the environment it documents for distributed tuning.
    return ("KERASTUNER_ORACLE_IP" in os.environ
            and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", ""))


class BalancedRandomSearch(kt.Tuner):
    """``keras_tuner.RandomSearch`` (same arguments) with
    :class:`search.oracles.BalancedRandomSearchOracle`."""

    def __init__(self, hypermodel=None, objective=None, max_trials=10, seed=None,
                 hyperparameters=None, tune_new_entries=True, allow_new_entries=True,
                 max_retries_per_trial=0, max_consecutive_failed_trials=3, **kwargs):
        oracle = BalancedRandomSearchOracle(
            objective=objective, max_trials=max_trials, seed=seed,
            hyperparameters=hyperparameters, tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries, max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        super().__init__(oracle, hypermodel, **kwargs)



class ProtocolBayesianOptimization(kt.BayesianOptimization):
    """``keras_tuner.BayesianOptimization`` (same arguments) with
    :class:`search.oracles.ProtocolBayesianOptimizationOracle`."""

    def __init__(self, hypermodel=None, objective=None, max_trials=10, num_initial_points=None,
                 alpha=1e-4, beta=2.6, seed=None, hyperparameters=None, tune_new_entries=True,
                 allow_new_entries=True, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3, **kwargs):
        oracle = ProtocolBayesianOptimizationOracle(
            objective=objective, max_trials=max_trials, num_initial_points=num_initial_points,
            alpha=alpha, beta=beta, seed=seed, hyperparameters=hyperparameters,
            tune_new_entries=tune_new_entries, allow_new_entries=allow_new_entries,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        # Past BayesianOptimization.__init__, which only builds KerasTuner's own oracle.
        super(kt.BayesianOptimization, self).__init__(oracle=oracle, hypermodel=hypermodel,
                                                      **kwargs)


class ProtocolHyperband(kt.Hyperband):
    """``keras_tuner.Hyperband`` (same arguments; its ``run_trial`` and weight reuse between
    rounds kept) with :class:`search.oracles.ProtocolHyperbandOracle`."""

    def __init__(self, hypermodel=None, objective=None, max_epochs=100, factor=3,
                 hyperband_iterations=1, seed=None, hyperparameters=None, tune_new_entries=True,
                 allow_new_entries=True, max_retries_per_trial=0,
                 max_consecutive_failed_trials=3, **kwargs):
        oracle = ProtocolHyperbandOracle(
            objective, max_epochs=max_epochs, factor=factor,
            hyperband_iterations=hyperband_iterations, seed=seed,
            hyperparameters=hyperparameters, tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries, max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        # Past Hyperband.__init__, which only builds KerasTuner's own oracle.
        super(kt.Hyperband, self).__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)

def _heartbeat_callback(trial_dir, every=2.0):
    """A Keras callback that touches ``trial_dir``'s heartbeat every ``every`` seconds while a run
    trains: how the chief of a distributed search tells a live worker from a dead one."""
    import keras

    class Heartbeat(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self._last = 0.0

        def _beat(self, *args, **kwargs):
            now = time.time()
            if now - self._last >= every:
                self._last = now
                trial_dir.touch_heartbeat()

        on_train_begin = on_train_batch_end = on_test_batch_end = on_epoch_end = _beat

    return Heartbeat()


def serve_oracle(tuner, worker_timeout=600.0, poll=1.0):
    """Serve ``tuner``'s oracle to the workers of a distributed search until the search is done:
    KerasTuner's ``oracle_chief.start_server``, with a bounded wait for dead workers.

    A trial whose worker has not been heard of for ``worker_timeout`` seconds (no heartbeat in
    its trial directory, see :class:`search.rundir.TrialDir`) is taken from that worker and queued again:
    the next worker that asks for a trial runs it, keeping the repeats it had finished. While
    any trial is running, workers that ask for one after the last are told to wait (``IDLE``)
    rather than to stop, so a re-queued trial still has a worker to run it.
    """
    import grpc

    oracle = tuner.oracle
    tuner.save()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = kt_private.add_oracle_servicer(oracle, server)
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    if not server.add_insecure_port(address):
        raise RuntimeError(f"the chief cannot listen on {address} (port in use?)")
    server.start()
    first_seen = {}
    try:
        while True:
            time.sleep(poll)
            for trial_id in oracle.requeue_stale_trials(
                    lambda t: _last_heard(tuner, t, first_seen), worker_timeout):
                print(f"[chief] trial {trial_id}: no heartbeat for {worker_timeout:.0f}s from "
                      "its worker; queued again for another worker", flush=True)
            if servicer.stop_triggered and kt_private.chief_may_exit(oracle):
                break
    finally:
        server.stop(grace=5)


def _last_heard(tuner, trial, first_seen):
    seen = first_seen.setdefault(trial.trial_id, time.time())
    beat = TrialDir(tuner.get_trial_dir(trial.trial_id)).last_heartbeat()
    return seen if beat is None else max(seen, beat)


def trial_prefix(stage, trial_id):
    """The start of a trial's log lines: ``[trial 3]`` in the first stage, ``[trial where-3]``
    in a later one (each stage's KerasTuner project numbers its trials from 0)."""
    return f"[trial {trial_id}]" if stage in (None, "which") else f"[trial {stage}-{trial_id}]"


class ReportingMixin(kt_private.InitialSpaceHook):
    """Mixed in before a tuner class of :data:`TUNER_CLASSES` (see :func:`tuner_class`), whose
    oracle (a :class:`search.oracles.ProtocolOracleMixin`) it configures: ``oracle.json``
    written atomically, and the protocol's trial order when a protocol is given (random search
    has it always). Before another KerasTuner tuner it reports only (no protocol): that tuner's
    oracle keeps KerasTuner's order, file writes and banners.

    Args (keyword, besides the tuner's own):
        protocol: a :class:`search.protocol.Protocol`: each trial trains its configuration once
            per seed (see :meth:`run_trial`). None (default): KerasTuner's own ``run_trial``.
        debug: let KerasTuner print a failed trial's traceback (default False: the trial's
            one line says why it failed; the reason is kept in the trial's ``message``).

    Raises:
        ValueError: a ``protocol`` with a tuner whose oracle is not a
            :class:`search.oracles.ProtocolOracleMixin` (a KerasTuner tuner of its own).

    Files: the tuner's and the oracle's state are written atomically (:meth:`save`); on resume
    (:meth:`reload`) a damaged KerasTuner file is refused with its name instead of KerasTuner's
    bare ``JSONDecodeError``. A damaged file of the search or a full disk inside a trial stops
    the search (:class:`AbortSearch`) rather than failing that trial and the next ones.
    """

    def __init__(self, *args, protocol=None, debug=False, store=None, measured=None,
                 stage=None, validate_every_epoch=False, **kwargs):
        self._debug = debug
        super().__init__(*args, **kwargs)
        self.protocol = protocol
        # Every run goes to the run store (search.store), looked up there first; a tuner made
        # without one (make_tuner, the examples) keeps its own beside its project.
        self.store = store if store is not None else RunStore(os.path.join(self.project_dir,
                                                                           "store"))
        self.measured = dict(measured or {})
        self.stage = stage
        self.validate_every_epoch = bool(validate_every_epoch)
        # The configurations of the stages before this one (their rows join the [plan] line),
        # the runs trained so far (their timings project the time left) and what the search
        # has still to do after this stage (search.projection.Ahead; set by the pipeline).
        self.earlier_entries = []
        self.timed_runs = []
        self.ahead = None
        # This package's tuners build a ProtocolOracleMixin oracle; a worker's oracle is
        # KerasTuner's OracleClient (the chief holds the real one): left as is.
        oracle = self.oracle
        if isinstance(oracle, ProtocolOracleMixin):
            oracle.keras_attn_state_file = os.path.join(self.project_dir, ORACLE_FILE)
            if protocol is not None:
                oracle.paired = True
        elif protocol is not None and not _is_worker():
            # Without the protocol's trial order a search may never run its baseline, or run some
            # (attention, placement) pairs many times before others once: refused, not run so.
            raise ValueError(
                f"A protocol needs a tuner of search.tuning ({type(oracle).__name__} has not the "
                "protocol's trial order); valid: "
                f"{', '.join(c.__name__ for c in TUNER_CLASSES.values())}.")

    def _state_file(self):
        return os.path.join(self.project_dir, f"{self.tuner_id}.json")

    def save(self):
        """KerasTuner's ``save`` (the oracle's state, then this tuner's), each file atomic."""
        if not _is_worker():
            self.oracle.save()
        write_text(self._state_file(), json.dumps(self.get_state()))

    def reload(self):
        """KerasTuner's ``reload``, after checking that each file it reads is whole JSON."""
        paths = [self._state_file()]
        if not _is_worker():
            paths.append(os.path.join(self.project_dir, ORACLE_FILE))
            paths += sorted(glob.glob(os.path.join(glob.escape(self.project_dir), "trial_*",
                                                   TRIAL_FILE)))
        for path in paths:
            read_json(path, fix=_KT_FILE_FIX)
        return super().reload()

    def declare_space(self):
        """The space in one call (:class:`search.kt_private.InitialSpaceHook`). KerasTuner's own
        discovery builds the model again and again, until each conditional scope was active
        once (a MobileNetV2 with 50 attention layers takes seconds a build);
        AttentionHyperModel.declare declares every hyperparameter, each conditional one in its
        hp.conditional_scope, which registers it active or not: one call gives the space (in the
        same order) that KerasTuner's loop finds. False for a hypermodel without ``declare``."""
        declare = getattr(self.hypermodel, "declare", None)
        if declare is None:
            return False
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        declare(hp)
        self.oracle.update_space(hp)
        return True

    def search(self, *fit_args, **fit_kwargs):
        """KerasTuner's ``search``; unless ``debug``, a failed trial shows one line (see
        :meth:`on_trial_end`), not KerasTuner's traceback (kept in the trial's ``message``)."""
        with kt_private.failed_trial_tracebacks(self._debug):
            return super().search(*fit_args, **fit_kwargs)

    def run_trial(self, trial, *args, **kwargs):
        try:
            return self._run_trial(trial, *args, **kwargs)
        except kt.errors.FatalError:
            raise
        except Exception as exc:
            if isinstance(exc, DamagedFileError) or is_no_space(exc):
                raise AbortSearch(str(exc).strip().splitlines()[0]) from exc
            raise

    def _run_trial(self, trial, *args, **kwargs):
        start = time.time()
        facts = {}
        if self.protocol is None:
            results = super().run_trial(trial, *args, **kwargs)
            # AttentionHyperModel(track_build_info=True) leaves params and params_added there.
            facts = dict(getattr(self.hypermodel, "last_build_info", None) or {})
        else:
            results, facts = self._run_repeats(trial, *args, **kwargs)
        info = {"train_seconds": round(time.time() - start, 2), "tuner_id": self.tuner_id,
                **facts}
        if getattr(self.oracle, "cost", None) == "flops":
            # A multi-objective oracle minimising FLOPs reads them from this record: counted on
            # a fresh build of the configuration (its weights do not change the count).
            from keras_attn.cost import forward_flops

            flops = forward_flops(self.hypermodel.build(trial.hyperparameters))
            info.update(flops=flops.total, flops_reason=flops.reason)
        TrialDir(self.get_trial_dir(trial.trial_id)).save_info(info)
        return results

    def _run_repeats(self, trial, *args, **kwargs):
        """The trial's configuration, once per seed of the protocol, through the run store
        (:class:`search.runner.RunTrainer`): runs already stored are reused, the others trained
        and stored as they end. Returns ``({objective: mean over the finished seeds}, facts)``,
        the facts (parameters, parameters added, seconds trained) read from the runs' records,
        so a trial whose runs were all reused reports them too.

        Hyperband's ``tuner/epochs`` sets the epochs of its rounds; each round trains from
        scratch (a schedule over its own epochs), not from the previous round's weights.

        Raises:
            keras_tuner.errors.FailedTrialError: no seed finished (every run diverged).
        """
        hp = trial.hyperparameters
        trial_dir = TrialDir(self.get_trial_dir(trial.trial_id))
        kwargs = dict(kwargs)
        callbacks = kwargs.pop("callbacks", None) or []
        epochs = hp.values.get("tuner/epochs") or kwargs.get("epochs") or 1

        def callbacks_for(index, seed):
            # Heard of before the build (which can outlast --worker-timeout on a loaded CPU).
            trial_dir.touch_heartbeat()
            run_callbacks = kt_private.copy_callbacks(self, callbacks)
            kt_private.configure_tensorboard(self, run_callbacks, trial, index)
            run_callbacks.append(_heartbeat_callback(trial_dir))
            return run_callbacks

        trainer = self._trainer(args, kwargs)
        configuration = self.hypermodel.configuration(hp)
        trained = trainer.train(
            configuration, self.protocol.seeds, epochs=epochs,
            label=configuration_label(configuration), stage=self.stage, trial=trial.trial_id,
            callbacks_for=callbacks_for, prefix=trial_prefix(self.stage, trial.trial_id))
        self.timed_runs.extend(r for s, r in trained.records.items()
                               if r.timings.get("wall_seconds") and s in trained.trained_seeds)
        values = trained.values
        if not values:
            raise kt.errors.FailedTrialError(
                "every run diverged: " + "; ".join(f"seed {s}: {r}"
                                                   for s, r in trained.diverged.items()))
        objective = self.oracle.objective.name
        facts = dict(next(iter(trained.records.values())).facts)
        facts["run_seconds"] = round(sum(r.timings.get("wall_seconds") or 0.0
                                         for r in trained.records.values()), 2)
        return {objective: sum(values.values()) / len(values)}, facts

    def run_keys(self):
        """The :class:`search.runner.RunKeys` of this tuner's store and hypermodel (one per
        tuner: it caches the models' fingerprints)."""
        from search.runner import RunKeys

        if getattr(self, "_run_keys", None) is None:
            self._run_keys = RunKeys(self.hypermodel, self.store, self.measured)
        return self._run_keys

    def _trainer(self, args, kwargs):
        """The :class:`search.runner.RunTrainer` of this search's ``fit`` arguments."""
        from search.runner import RunTrainer

        data = args[0] if args else kwargs.get("x")
        train_data = self.protocol.train_data or (lambda seed: data)
        trainer = RunTrainer(
            self.hypermodel, self.store, self.measured, train_data=train_data,
            validation_data=kwargs.get("validation_data"), epochs=kwargs.get("epochs") or 1,
            strategy=self.distribution_strategy, verbose=kwargs.get("verbose", 0),
            validate_every_epoch=self.validate_every_epoch, worker=self.tuner_id)
        trainer.keys = self.run_keys()
        return trainer

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        # Through the oracle: in distributed tuning the local trial object has no score.
        done = self.oracle.get_trial(trial.trial_id)
        status = getattr(done.status, "value", done.status)
        score = "-" if done.score is None else f"{done.score:.4f}"
        what = "mean " if self.protocol is not None and len(self.protocol.seeds) > 1 else ""
        message = (done.message or "").strip().splitlines()
        why = f" ({message[-1]})" if message and status != "COMPLETED" else ""
        print(
            f"{trial_prefix(self.stage, trial.trial_id)} {status}{why} {what}val_accuracy={score} "
            f"{describe_hyperparameters(done.hyperparameters)}",
            flush=True,
        )
        if self.protocol is not None:
            self._print_projection()

    def _time_left(self, trials_left):
        """``(seconds left, projected total seconds)`` of the whole job (see
        :mod:`search.projection`), from the runs this search trained so far; ``(None, None)``
        before the first."""
        from search import projection

        timing = projection.run_timing(self.timed_runs)
        if timing is None:
            return None, None
        recipe = self.hypermodel.recipe
        steps = (recipe.steps_per_epoch or 0) * (recipe.epochs or 1)
        ahead = self.ahead or projection.Ahead()
        left = projection.seconds_left(timing, max(0, trials_left) * len(self.protocol.seeds),
                                       steps, ahead)
        total = None if ahead.started is None else time.time() - ahead.started + left
        return left, total

    def _print_projection(self):
        """After each trial, what the whole planned search will be able to resolve (see
        :func:`search.report.projection_line`)."""
        from search import report

        planned = getattr(self.oracle, "max_trials", None)
        trials = getattr(self.oracle, "trials", None)
        if not planned or not isinstance(trials, dict):  # Hyperband, a worker's OracleClient
            return
        from search.results import rows as result_rows

        stage_rows = report.collect_trials(self)
        every = report.sort_rows(result_rows(
            list(self.earlier_entries) + entries_of(self, self.stage), self.run_keys(),
            self.protocol.seeds, self.hypermodel.recipe.epochs or 1))
        board = report.configuration_rows(every)
        configurations = len({r["config"] for r in every}) + max(0, planned - len(stage_rows))
        left, total = self._time_left(planned - len(stage_rows))
        line = report.projection_line(board, configurations, len(self.protocol.seeds),
                                      seconds_left=left, total_seconds=total)
        if line:
            print(line, flush=True)


class ReportingBalancedRandomSearch(ReportingMixin, BalancedRandomSearch):
    """``--tuner random``: :class:`BalancedRandomSearch` with :class:`ReportingMixin`."""

    tuner_name = "random"


class ReportingBayesianOptimization(ReportingMixin, ProtocolBayesianOptimization):
    """``--tuner bayesian``: :class:`ProtocolBayesianOptimization` with :class:`ReportingMixin`."""

    tuner_name = "bayesian"


class ReportingHyperband(ReportingMixin, ProtocolHyperband):
    """``--tuner hyperband``: :class:`ProtocolHyperband` with :class:`ReportingMixin`."""

    tuner_name = "hyperband"


class ReportingNSGA2Search(ReportingMixin, NSGA2Search):
    """``--tuner nsga2``: :class:`search.optuna_oracle.NSGA2Search` with :class:`ReportingMixin`."""

    tuner_name = "nsga2"


class ReportingTPESearch(ReportingMixin, TPESearch):
    """``--tuner tpe``: :class:`search.optuna_oracle.TPESearch` with :class:`ReportingMixin`."""

    tuner_name = "tpe"


# Each tuner of search.tuner_names.TUNERS (the names' one owner: the CLI reads them without
# importing KerasTuner): the class with reporting says its name, its base is the tuner.
REPORTING_TUNER_CLASSES = {cls.tuner_name: cls for cls in (
    ReportingBalancedRandomSearch, ReportingBayesianOptimization, ReportingHyperband,
    ReportingNSGA2Search, ReportingTPESearch)}
TUNER_CLASSES = {name: cls.__bases__[1] for name, cls in REPORTING_TUNER_CLASSES.items()}
if tuple(REPORTING_TUNER_CLASSES) != TUNERS:  # pragma: no cover  (a tuner added in one place)
    raise ImportError(f"search.tuner_names.TUNERS {TUNERS} and the tuner classes "
                      f"{tuple(REPORTING_TUNER_CLASSES)} differ")


def tuner_class(name):
    """The tuner class of ``--tuner name`` (one of :data:`search.tuner_names.TUNERS`), with
    reporting (:class:`ReportingMixin`).

    Raises:
        ValueError: an unknown ``name`` (the message lists the valid ones).
    """
    if name not in REPORTING_TUNER_CLASSES:
        raise ValueError(f"Unknown tuner {name!r}; valid: {', '.join(TUNERS)}.")
    return REPORTING_TUNER_CLASSES[name]


def make_tuner(
    *,
    backbone,
    input_shape,
    num_classes,
    out,
    epochs,
    steps_per_epoch,
    tuner="random",
    max_trials=9,
    seed=0,
    precision="float32",
    strategy=None,
    protocol=None,
    space=None,
    backbone_kwargs=None,
    optimizer="sgd",
    learning_rate=None,
    search_learning_rate=False,
    bn_momentum=0.9,
    configurations=None,
    project_name="tuner",
    debug=False,
    objective_cost="params_added",
):
    """A KerasTuner tuner (with reporting and the comparison protocol) and its hypermodel.

    Args:
        backbone, input_shape, num_classes, backbone_kwargs, optimizer, learning_rate,
            search_learning_rate, bn_momentum, space, precision: see
            :class:`search.hypermodel.AttentionHyperModel`.
        out: the directory of the tuner project (``out/project_name``); an existing project is
            resumed.
        epochs: epochs per run (Hyperband: its ``max_epochs``); steps_per_epoch: training batches
            per epoch (the schedule's length).
        tuner: ``"random"`` (balanced over attention and placement, baseline first),
            ``"bayesian"`` or ``"hyperband"``.
        max_trials: configurations to try (random, bayesian).
        seed: the oracle's seed.
        strategy: a ``tf.distribute`` strategy (used when it has several replicas).
        protocol: a :class:`search.protocol.Protocol` (repeats, seeds, data order); default one
            run per configuration with ``seed``.
        configurations: named models instead of a space (see ``AttentionHyperModel``), e.g. a
            preset's rows.
        debug: show a failed trial's traceback (see :class:`ReportingMixin`).

    Returns:
        ``(tuner, hypermodel)``.
    """
    from search.hypermodel import AttentionHyperModel
    from search.protocol import Protocol

    if protocol is None:  # one run per configuration, through the run store all the same
        protocol = Protocol.with_repeats(1, seed=seed)
    hypermodel = AttentionHyperModel(
        backbone=backbone,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        precision=precision,
        backbone_kwargs=backbone_kwargs,
        space=space,
        optimizer=optimizer,
        learning_rate=learning_rate,
        search_learning_rate=search_learning_rate,
        bn_momentum=bn_momentum,
        configurations=configurations,
        epochs_hint=epochs,
        steps_per_epoch=steps_per_epoch,
        track_build_info=True,
    )
    tuner = build_tuner(tuner, hypermodel, directory=out, project_name=project_name,
                        max_trials=max_trials, epochs=epochs, seed=seed, strategy=strategy,
                        protocol=protocol, debug=debug, cost=objective_cost)
    return tuner, hypermodel


def build_tuner(name, hypermodel, *, directory, project_name="tuner", max_trials=9, epochs=1,
                seed=0, strategy=None, protocol=None, debug=False, cost="params_added",
                store=None, measured=None, stage=None, validate_every_epoch=False):
    """The reporting tuner of algorithm ``name`` (:data:`search.tuner_names.TUNERS`) over
    ``hypermodel``, in ``directory/project_name`` (an existing project is resumed).

    Args:
        max_trials: configurations to try (Hyperband sizes itself from ``epochs``, its
            ``max_epochs``).
        strategy: a ``tf.distribute`` strategy (used when it has several replicas).
        protocol: a :class:`search.protocol.Protocol`, or None for KerasTuner's one-run trials.
        debug: show a failed trial's traceback.
        cost: the cost a multi-objective tuner minimises (:data:`search.costs.TRIAL_COSTS`).
        store, measured: the run store and the measured context its runs are keyed by (default
            a store beside the project, an empty context); stage: the stage's name, for the
            runs' records and the log; validate_every_epoch: see
            :class:`search.runner.RunTrainer`.

    Raises:
        ValueError: an unknown ``name`` or ``cost`` (the message lists the valid ones).
    """
    from search.protocol import OBJECTIVE

    cls = tuner_class(name)
    common = dict(
        hypermodel=hypermodel, objective=OBJECTIVE, directory=directory,
        project_name=project_name, seed=seed,
        overwrite=False,  # re-running resumes
        distribution_strategy=strategy if strategy is not None and
        strategy.num_replicas_in_sync > 1 else None,
        protocol=protocol, debug=debug, store=store, measured=measured, stage=stage,
        validate_every_epoch=validate_every_epoch)
    if issubclass(cls, kt.Hyperband):
        return cls(max_epochs=epochs, factor=HYPERBAND_FACTOR, **common)
    if getattr(cls, "minimises_cost", False):  # second objective: read from the trial's info
        from search.costs import TRIAL_COSTS

        if cost not in TRIAL_COSTS:
            raise ValueError(f"Unknown cost objective {cost!r}; valid: {', '.join(TRIAL_COSTS)}.")
        common["cost"] = cost
    return cls(max_trials=max_trials, **common)
