"""The search, step by step: claim -> start -> search (its stages) -> analyse -> finalize ->
report -> export.

Each step is a function of the :class:`search.config.SearchConfig`, the :class:`RunDir` and what
the steps before it returned; :func:`run` calls them in order. What differs between a single
process, a distributed search's chief and its workers is asked of the role
(:mod:`search.roles`).

1. :func:`claim_out_dir`: take ``--out`` (one owner at a time, :mod:`search.lock`), refuse one
   that measures something else (``--overwrite`` moves the previous search aside until the new
   one has started).
2. :func:`start`: devices, precision, seeds, the data; then the claim is confirmed and this run
   recorded (a run that cannot start leaves no record behind).
3. :func:`search`: the stages (:mod:`search.stages`), each a KerasTuner search over the
   hypermodel under the comparison protocol, every run looked up in and written to the run
   store (:mod:`search.store`, :mod:`search.runner`); ``--schedule race`` adds the later seeds
   race by race (:mod:`search.schedule`).
4. :func:`analyse`: the leaderboard of every stage's configurations from the store
   (:mod:`search.results`, :mod:`search.report`, :mod:`search.decision`) and the cost of each
   configuration (:mod:`search.costs`).
5. :func:`finalize`: the test split and the kept model (:mod:`search.final`).
6. :func:`grad_cam_figure` and :func:`write_summary`: the report.
7. :func:`export`: the kept model in the ``--export`` formats.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

from search.config import PROG, CLIError
from search.roles import role_of
from search.rundir import RunDir, atomic_path, write_json, write_text

GRAD_CAM_IMAGES = 6


def log(msg):
    print(f"[{PROG}] {msg}", flush=True)


def run(config):
    """Run the search of ``config`` end to end; returns the exit status (0)."""
    t_start = time.time()
    role = role_of(config)
    rundir = RunDir(config.session.out)
    role.before_start(config)
    if role.owns_out:
        check_export_formats(config)  # before the search, not after it
    claim = claim_out_dir(config, rundir, role)
    try:
        started = start(config, role)
        claim.confirm(config, started)
    except BaseException:
        claim.give_back()
        raise
    searched = search(config, rundir, role, started, t_start=t_start)
    if not role.reports:
        log(f"worker done in {time.time() - t_start:.0f}s")
        return 0
    analysed = analyse(config, rundir, searched, started)
    result = finalize(config, rundir, searched, analysed, started)
    plots = list(analysed.plots)
    figure = grad_cam_figure(config, rundir, started.splits, with_best=analysed.best is not None)
    if figure:
        plots.append(figure)
    exports = export(config, rundir)
    write_summary(config, rundir, started, searched, analysed, result, plots, exports,
                  total_seconds=time.time() - t_start)
    return 0


# ------------------------------------------------------------------ 1. claim


@dataclasses.dataclass
class Claim:
    """The --out this run writes to, held by ``lock`` (:class:`search.lock.OutLock`; None for a
    worker, whose chief holds it). ``replaced``: where --overwrite moved the search it replaces,
    deleted by :meth:`confirm` once the new run has started, put back by :meth:`give_back` if it
    fails before; ``created``: --out did not exist before this run."""

    rundir: RunDir
    lock: object = None
    replaced: str | None = None
    created: bool = False
    recorded: dict = dataclasses.field(default_factory=dict)

    def confirm(self, config, started):
        """The run has started: refuse an --out whose runs were measured on other numerics
        (precision, replicas, library versions), then record this run (the first run of a
        search writes its identity here, not before it could start)."""
        environment = started.environment
        known = self.recorded.get("environment") or {}
        if known and known != environment:
            diff = ", ".join(f"{k}: {known.get(k)!r} -> {environment.get(k)!r}"
                             for k in sorted(set(known) | set(environment))
                             if known.get(k) != environment.get(k))
            raise CLIError(f"--out {self.rundir.root} holds runs measured with other numerics "
                           f"({diff}); they would not be comparable: use another --out")
        if self.lock is not None:
            _record_run(config, self.rundir, self.recorded, environment)
        if self.replaced:
            shutil.rmtree(self.replaced)
            log(f"--overwrite: deleted the previous search (moved aside to {self.replaced})")
            self.replaced = None

    def give_back(self):
        """The run did not start: put a replaced search back, or remove the --out this run made,
        and release the lock."""
        if self.replaced:
            shutil.rmtree(self.rundir.root, ignore_errors=True)
            os.rename(self.replaced, self.rundir.root)
            log(f"--overwrite: this run did not start; the previous search is back in "
                f"{self.rundir.root}")
            self.replaced = None
        elif self.created and self.lock is not None:
            shutil.rmtree(self.rundir.root, ignore_errors=True)
        if self.lock is not None:
            self.lock.release()


def claim_out_dir(config, rundir, role):
    """Take --out for this run: its lock (a single search and a chief; a second process is
    refused naming the first), and refuse an --out that holds a different search.

    A search's identity is what it measures (data, model, recipe, seed): the plan (attentions,
    placements, space, repeats, stages, tuner) may change, its runs are reused from the store.
    With --overwrite, a previous search in --out is moved aside (``OUT.old-<time>``), not
    deleted (see :class:`Claim`); a directory that is not a search is never deleted.

    Raises:
        CLIError: --out is a file, not a search, in use by another process, holds a different
            search or one made before the run store; a worker's --out holds no search started
            by a chief.
    """
    from search.lock import LOCK_NAME, OutLock

    out = rundir.root
    if not role.owns_out and not os.path.exists(rundir.config):
        raise CLIError(
            f"--out {out} holds no search started by a chief ({RunDir.config} is missing): give "
            "every worker the chief's --out (a shared directory) and the chief's options")
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out} is a file, not a directory; use another --out")
    # A worker started before its chief may already have made the tuner project.
    contents = (set(os.listdir(out)) - {RunDir.project, RunDir.logs, LOCK_NAME}
                if os.path.isdir(out) else set())
    claim = Claim(rundir, created=not os.path.exists(out))
    if role.owns_out:
        if config.session.overwrite and contents and not rundir.is_search():
            raise CLIError(f"--out {out} is not a keras-attn search (no {RunDir.marker} or "
                           f"{RunDir.config}): --overwrite deletes only a search; use another "
                           "--out")
        if contents and not config.session.overwrite and not rundir.is_search():
            raise CLIError(f"--out {out} exists and is not a keras-attn search; use another "
                           "--out (a new or empty directory)")
        claim.lock = OutLock(out).acquire()  # before anything in --out is read or moved
    try:
        if config.session.overwrite and role.owns_out and contents:
            _move_aside(claim)
        elif os.path.exists(rundir.config):
            claim.recorded = rundir.read_config()
            _check_identity(config, rundir, claim.recorded, role)
    except BaseException:
        # Refused (nothing deleted, a search moved aside stays there): --out is free again, also
        # for a later claim in this process.
        if claim.lock is not None:
            claim.lock.release()
        raise
    return claim


def _move_aside(claim):
    """--overwrite: the previous search goes to ``OUT.old-<time>-<pid>`` (with its lock, still
    held by this process), and a fresh --out is locked in its place."""
    from search.lock import OutLock

    out = claim.rundir.root
    aside = f"{os.path.normpath(out)}.old-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    os.rename(out, aside)
    claim.replaced = aside  # only once moved: give_back deletes --out to put it back
    old_lock, claim.lock = claim.lock, OutLock(out).acquire()
    old_lock.release()


def _check_identity(config, rundir, recorded, role):
    out = rundir.root
    if recorded.get("legacy") or rundir.legacy_runs():
        raise CLIError(
            f"--out {out} was made by an earlier {PROG} (its runs are in "
            f"{RunDir.project}/trial_*/keras_attn_repeats.json, not in a run store) and cannot "
            "be resumed by this version; use another --out, or --overwrite to start afresh "
            "(it deletes that search)")
    diff = config.identity_differences(recorded.get("identity", {}))
    if diff:
        what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
        fix = ("give the worker the chief's options" if not role.owns_out else
               "use another --out, the same options to add to it, or --overwrite to start "
               "afresh")
        raise CLIError(f"--out {out} holds a different search ({what}: it measures something "
                       f"else); {fix}")


def _record_run(config, rundir, recorded, environment):
    if not os.path.exists(rundir.marker):
        write_text(rundir.marker, "A keras-attn-search output directory (keras-attn-search "
                   "--out); --overwrite may replace it.\n")
    run = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "plan": config.plan_record(),
           **config.run_record()}
    rundir.write_config(config.identity(), environment,
                        list(recorded.get("runs", [])) + [run])


def check_export_formats(config):
    """``--export onnx`` needs the optional ONNX packages: say so before the search."""
    if config.run.export and "onnx" in config.run.export:
        from keras_attn.export import check_onnx_available

        try:
            check_onnx_available()
        except ImportError as err:
            raise CLIError(f"--export onnx: {err}") from None


# ------------------------------------------------------------------ 2. start


@dataclasses.dataclass(frozen=True)
class Started:
    """What :func:`start` made: the data splits, the resolved precision and the strategy, and
    the environment every run is measured in (precision, replicas, library versions)."""

    splits: object
    precision: str
    strategy: object

    @property
    def environment(self):
        return {"precision": self.precision, "replicas": self.strategy.num_replicas_in_sync,
                "versions": numeric_versions()}


def numeric_versions():
    """The versions of the libraries that change a run's numbers (kernels, initialisers)."""
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__,
            "backend": keras.backend.backend()}


def load_kwargs(config, **overrides):
    """``search.data.load_dataset`` arguments of ``config`` (``overrides`` win)."""
    from keras_attn.backbones import SMALL_IMAGE_BACKBONES

    data = config.data
    small = config.model.backbone in SMALL_IMAGE_BACKBONES
    return {
        "name": data.dataset,
        "data_dir": data.data_dir,
        # 0: the native size; the small-image backbones take the native channels too, the
        # keras.applications ones 3 (grayscale repeated).
        "image_size": data.image_size or (None if small else 32),
        "channels": None if small else 3,
        "train_size": data.train_size or None,
        "validation_split": data.validation_split,
        "batch_size": data.batch_size,
        "seed": config.seed,
        **overrides,
    }


def start(config, role):
    """Everything up to the loaded data: once it returns, the run has started (--overwrite)."""
    role.configure_environment(config.session)

    import keras

    from search import data as data_mod
    from search import training

    _quiet_retracing_warning()
    precision = training.resolve_precision(config.model.precision)
    strategy = training.resolve_strategy(config.run.strategy)
    keras.utils.set_random_seed(config.seed)
    if config.run.run_eagerly:
        import tensorflow as tf

        tf.config.run_functions_eagerly(True)
    model = config.model
    log(f"dataset={config.data.dataset} backbone={model.backbone} width={model.width} "
        f"precision={precision} strategy={type(strategy).__name__} "
        f"replicas={strategy.num_replicas_in_sync} repeats={config.repeats} role={role.name} "
        f"out={config.session.out}")
    # The chief needs the data too: it retrains and tests the best configuration at the end.
    t0 = time.time()
    splits = data_mod.load_dataset(**load_kwargs(config))
    log(f"data: {splits.sizes} images of {splits.input_shape} in {time.time() - t0:.1f}s")
    check_splits(config, splits.sizes)
    return Started(splits, precision, strategy)


def check_splits(config, sizes):
    """Refuse, before anything trains, data the search cannot use: an empty split it needs
    (every role checks all three: one search, one answer) or a batch larger than the training
    set.

    Such a batch is refused rather than run at the size it would really have: the learning rate
    is scaled for the batch given (``search.config``), the final retraining on the full training
    split would use the batch given, and the search's record would name a batch no step saw.

    Args:
        sizes: ``{"train", "val", "test"}``: the number of images of each split.

    Raises:
        CLIError: one line naming every empty split and how to fill it, or the batch size and
            the largest that fits.
    """
    fixes = {
        "train": "give a larger --train-size (0: all)",
        "val": f"--validation-split {config.data.validation_split!r} gives none: the comparison "
               "needs validation images (give a number of images, e.g. --validation-split 1000)",
        "test": f"the {config.data.dataset} data"
                + (f" in {config.data.data_dir}" if config.data.data_dir else "")
                + " has no test images, on which the best configuration and the baseline are "
                "tested: use data whose test split holds images",
    }
    empty = [part for part in ("train", "val", "test") if not sizes.get(part)]
    if empty:
        raise CLIError("empty " + " and ".join(f"{p} split ({fixes[p]})" for p in empty))
    batch, train = config.data.batch_size, sizes["train"]
    if batch > train:
        raise CLIError(
            f"--batch-size {batch} is larger than the {train} training images of a search run: "
            f"every epoch would be one batch of {train}, not {batch} (and the default learning "
            f"rate scales with --batch-size); give --batch-size {train} or less, or a larger "
            "--train-size")


def _quiet_retracing_warning():
    """Every run builds a new model, so TensorFlow's "triggered tf.function retracing" warning
    fires on every trial; it is expected here (the overhead is measured and reported instead)."""
    import logging

    class _Filter(logging.Filter):
        def filter(self, record):
            return "triggered tf.function retracing" not in record.getMessage()

    logging.getLogger("tensorflow").addFilter(_Filter())


# ------------------------------------------------------------------ 3. search


@dataclasses.dataclass(frozen=True)
class Searched:
    """What :func:`search` made: the configurations every stage asked for (``entries``,
    :class:`search.results.Entry`), the stages' plans, the run store and the measured context
    its runs are keyed by, a hypermodel that builds any configuration, and the time taken."""

    entries: list
    plans: list
    keys: object
    hypermodel: object
    seconds: float

    @property
    def store(self):
        return self.keys.store

    def rows(self, config):
        """The leaderboard's rows of every configuration with its runs for ``config``'s seeds."""
        from search import report, results

        return report.sort_rows(results.rows(self.entries, self.keys, config.seeds,
                                             config.recipe.epochs))


def make_hypermodel(config, started, plan=None):
    """The :class:`search.hypermodel.AttentionHyperModel` of ``config`` for the loaded data, over
    ``plan``'s space (a :class:`search.stages.StagePlan`; default the search's own)."""
    from search.hypermodel import AttentionHyperModel

    splits = started.splits
    model = config.model
    if plan is None:
        space = config.space
        values, configurations = space.space_values, space.configurations
    else:
        values, configurations = plan.space, plan.configurations
    return AttentionHyperModel(
        backbone=model.backbone, input_shape=tuple(splits.input_shape),
        num_classes=splits.num_classes, precision=started.precision,
        backbone_kwargs={"alpha": model.width} if model.width is not None else None,
        space=None if configurations is not None else values,
        configurations=None if configurations is None else list(configurations),
        bn_momentum=model.bn_momentum,
        recipe=dataclasses.replace(config.recipe,
                                   steps_per_epoch=splits.steps_per_epoch["train"]),
        track_build_info=True)


def search(config, rundir, role, started, t_start=None):
    """Run (or resume) every stage of the search: each configuration once per seed, every run
    looked up in the run store first. ``t_start``: when the job started (for the ``[plan]``
    line's projected total)."""
    from search.runner import RunKeys
    from search.stages import which_stage
    from search.store import RunStore

    hypermodel = make_hypermodel(config, started)
    keys = RunKeys(hypermodel, RunStore(rundir.store),
                   config.measured(**_environment_args(started)))
    which = which_stage(config.space, config.seeds, config.run.max_trials, config.seed)
    entries, plans, timed = [], [], []
    t0 = time.time()

    def plan_of(name):
        return which if name == which.name else _later_stage(config, name, which, entries, keys)

    for plan in role.stage_plans(config, rundir, plan_of):
        log(f"stage {plan.name!r} ({plan.project}): {plan.why}; up to {plan.max_trials} "
            f"configuration(s) x {len(plan.seeds)} seed(s)")
        ahead = _ahead(config, started, plan, t_start or t0)
        stage_entries = _run_stage(config, rundir, role, started, keys, plan, entries,
                                   (timed, ahead))
        entries.extend(stage_entries)
        plans.append(plan)
    role.finish_stages(rundir)
    return Searched(entries, plans, keys, hypermodel, time.time() - t0)


def _environment_args(started):
    environment = started.environment
    return {"precision": environment["precision"], "replicas": environment["replicas"],
            "versions": environment["versions"]}


def _later_stage(config, name, which, entries, keys):
    """The plan of stage ``name`` after ``which``, chosen from the results so far (None, with a
    line saying why, when it does not apply)."""
    from search import report, results
    from search.stages import where_stage

    rows = report.configuration_rows(report.sort_rows(results.rows(
        entries, keys, which.seeds, config.recipe.epochs)))
    plan, reason = where_stage(which, rows, config.space.where_trials)
    if plan is None:
        log(f"stage {name!r} skipped: {reason}")
    return plan


def _ahead(config, started, plan, t_start):
    """What the job has still to do after ``plan``'s stage (:class:`search.projection.Ahead`)."""
    from search.projection import Ahead, steps_per_epoch
    from search.stages import WHERE

    stages = config.space.stages
    later = (config.space.where_trials * len(config.seeds)
             if WHERE in stages and plan.name != WHERE else 0)
    batch = config.data.batch_size
    final_steps = config.run.final_epochs * config.run.final_repeats * steps_per_epoch(
        started.splits.source_train_size or 0, batch)
    configurations = plan.max_trials + (config.space.where_trials if later else 0)
    return Ahead(later_runs=later, final_steps=final_steps, test_runs=2 * len(config.seeds),
                 test_batches=steps_per_epoch(started.splits.sizes.get("test", 0), batch),
                 configurations=configurations, started=t_start)


def _run_stage(config, rundir, role, started, keys, plan, earlier, progress=None):
    """One stage: its KerasTuner search (the first seeds only under ``--schedule race``), then
    the race's later seeds; returns the configurations it asked for."""
    import keras

    from search import training, tuning
    from search.protocol import Protocol
    from search.results import entries_of
    from search.schedule import RACE_START

    race = config.space.schedule == "race" and len(plan.seeds) > RACE_START
    seeds = plan.seeds[:RACE_START] if race else plan.seeds
    protocol = Protocol(seeds=tuple(seeds), train_data=started.splits.train_with_seed)
    hypermodel = make_hypermodel(config, started, plan)
    tuner = tuning.build_tuner(
        plan.tuner, hypermodel, directory=rundir.project, project_name=plan.project,
        max_trials=plan.max_trials, epochs=config.recipe.epochs, seed=plan.oracle_seed,
        strategy=started.strategy, protocol=protocol, debug=config.session.debug,
        cost=config.space.objective, store=keys.store, measured=keys.measured,
        stage=plan.name, validate_every_epoch=config.run.validate_every_epoch)
    tuner.earlier_entries = list(earlier)
    tuner._run_keys = keys  # one fingerprint cache for the whole search
    if progress is not None:
        tuner.timed_runs, tuner.ahead = progress
    role.announce_stage(rundir, plan)
    callbacks = [keras.callbacks.TensorBoard(log_dir=os.path.join(rundir.logs, plan.project))]
    role.search(tuner, started.splits, config, callbacks,
                training.fit_verbosity(config.session.quiet))
    if not role.reports:  # a worker: the chief keeps the stage's record
        return []
    stage_entries = entries_of(tuner, plan.name)
    if race:
        _race(config, started, keys, plan, stage_entries)
    os.makedirs(rundir.stages, exist_ok=True)
    write_json(rundir.stage_record(plan.project),
               {"plan": plan.to_json(), "entries": [e.to_json() for e in stage_entries]})
    return stage_entries


def _race(config, started, keys, plan, entries):
    """``--schedule race``: the stage's later seeds, round by round, for the baseline and the
    configurations not yet separated from the leader (:class:`search.schedule.Schedule`)."""
    from keras_attn.registry import NO_ATTENTION
    from search import training
    from search.runner import RunTrainer
    from search.schedule import Schedule

    trainer = RunTrainer(keys.hypermodel, keys.store, keys.measured,
                         train_data=started.splits.train_with_seed,
                         validation_data=started.splits.val, epochs=config.recipe.epochs,
                         strategy=started.strategy,
                         verbose=training.fit_verbosity(config.session.quiet),
                         validate_every_epoch=config.run.validate_every_epoch)
    trainer.keys = keys
    done = [e for e in entries if e.status == "COMPLETED"]
    by_digest = {e.digest: e for e in done}
    baseline = next((e.digest for e in done if e.attention == NO_ATTENTION), None)
    if baseline is None:
        log("race: no baseline finished; the later seeds are not run")
        return
    schedule = Schedule(list(by_digest), plan.seeds, baseline, mode="race")
    while True:
        values = {d: {s: r.value for s, r in trainer.lookup(e.configuration, plan.seeds).items()}
                  for d, e in by_digest.items()}
        todo = schedule.ask(values)
        if not todo:
            break
        seed = todo[0][1]
        dropped = sorted(set(by_digest) - {d for d, _ in todo})
        log(f"race: seed {seed} for {len(todo)} configuration(s); "
            f"{len(dropped)} separated from the leader stay at the seeds they have")
        for digest_, seed in todo:
            entry = by_digest[digest_]
            trainer.train(entry.configuration, [seed], label=_entry_label(entry),
                          stage=plan.name, trial=entry.trial, prefix=f"[race {entry.trial}]")
    log(f"race: {schedule.runs_saved(values)} of {len(by_digest) * len(plan.seeds)} runs "
        "not needed")


def _entry_label(entry):
    from search.report import configuration_label

    return configuration_label({"attention": entry.attention, "placement": entry.placement,
                                "hyperparameters": entry.hyperparameters})


# ------------------------------------------------------------------ 4. analyse


@dataclasses.dataclass(frozen=True)
class Analysed:
    """The leaderboard (rows with the analysis and the costs), its plots, the best
    configuration (None: none with attention finished or met --max-cost) and the baseline."""

    board: list
    costs: dict
    plots: list
    best: dict | None
    baseline: dict


def analyse(config, rundir, searched, started):
    """The leaderboard of the finished runs, with the cost of each configuration."""
    from search import report
    from search.costs import measure_costs

    board = report.configuration_rows(searched.rows(config),
                                      num_classes=started.splits.num_classes,
                                      ledger=rundir.read_looks())
    if board.analysis is not None and board.analysis.ledger:
        rundir.save_looks(board.analysis.ledger)  # this look, before anyone sees a verdict
    costs = measure_costs(board, searched.hypermodel,
                          batch_size=config.data.batch_size, out=rundir,
                          n_steps=config.run.cost_steps, strategy=started.strategy)
    log(f"costs measured in {costs['seconds']:.0f}s ({costs['how']})")
    report.add_costs(board, costs)
    report.write_leaderboard(board, rundir)
    plots = report.plot_configurations(board, rundir) + report.plot_pareto(board, rundir)
    best, baseline = report.best_and_baseline(board, config.run.max_cost)
    if config.run.max_cost and best is None:
        log("no attention configuration meets --max-cost "
            + ", ".join(f"{m}={v:g}" for m, v in config.run.max_cost) + "; the baseline is kept")
    if baseline is None or not baseline["repeats"]:
        raise CLIError(f"the baseline (no attention) did not finish; see {rundir.leaderboard_md}")
    print(report.analysis_text(board), flush=True)
    print(report.leaderboard_text(board), flush=True)
    return Analysed(board, costs, list(plots), best, baseline)


# ------------------------------------------------------------------ 5. finalize


def finalize(config, rundir, searched, analysed, started):
    """Test the search runs of the best configuration and the baseline; train the kept model
    (see :mod:`search.final`)."""
    from search import data as data_mod
    from search import final, training

    full = None
    if config.run.final_epochs:
        # Every training image, no validation hold-out: the choice is made, only the test is left.
        full = data_mod.load_dataset(**load_kwargs(config, train_size=None, validation_split=0.0))
    return final.finalize(
        out=rundir, runs=final.StoredRuns(searched.keys, config.recipe.epochs),
        hypermodel=searched.hypermodel, best=analysed.best,
        baseline=analysed.baseline, seeds=list(config.seeds),
        final_seeds=list(config.final_seeds), final_epochs=config.run.final_epochs,
        strategy=started.strategy, full_train=None if full is None else full.train_with_seed,
        test_data=started.splits.test, verbose=training.fit_verbosity(config.session.quiet),
        board=analysed.board, save_ledger=rundir.save_looks)


# ------------------------------------------------------------------ 6. report


def _load_model(path):
    """``keras.models.load_model(path)``; a file that cannot be read is a
    :class:`search.rundir.DamagedFileError` naming it, not h5py's or zipfile's error."""
    import keras

    import keras_attn  # noqa: F401  (registers the layers for load_model)
    from search.rundir import DamagedFileError

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001
        raise DamagedFileError(path, f"cannot load it: {str(err).splitlines()[0][:200]}",
                               "delete it (the final stage writes it again), or --overwrite "
                               "to start afresh") from None


def grad_cam_figure(config, rundir, splits, with_best):
    """The Grad-CAM figure of the best and baseline search runs with the first seed (the same
    initial weights and data, one differing only in its attention) on the first test images.
    Returns its path, or None (with a line saying why) when it cannot be drawn; a figure never
    fails the search."""
    from search import report

    if not with_best:
        log("Grad-CAM figure skipped: no attention configuration finished")
        return None
    paths = [rundir.best_search_model, rundir.baseline_model]
    missing = [os.path.basename(p) for p in paths if not os.path.exists(p)]
    if missing:  # a search whose final stage predates baseline_model.keras
        log(f"Grad-CAM figure skipped: {', '.join(missing)} missing in {rundir.root}")
        return None
    try:
        import numpy as np

        batch = splits.test.unbatch().take(GRAD_CAM_IMAGES).batch(GRAD_CAM_IMAGES)
        images, labels = next(iter(batch))
        path = report.plot_grad_cam(_load_model(paths[0]), _load_model(paths[1]),
                                    np.asarray(images), np.asarray(labels), splits.class_names,
                                    rundir.grad_cam)
    except Exception as exc:  # noqa: BLE001  (a figure must not cost the search's answer)
        if config.session.debug:
            raise
        log(f"Grad-CAM figure skipped: {type(exc).__name__}: {exc}".splitlines()[0])
        return None
    log(f"Grad-CAM, best vs baseline: {path}")
    return path


def write_summary(config, rundir, started, searched, analysed, result, plots, exports,
                  total_seconds):
    """``summary.json`` (see :func:`search.report.write_summary`), and its lines printed."""
    from search import report

    strategy = started.strategy
    summary = report.write_summary(
        rundir, board=analysed.board, final=result, costs=analysed.costs, plots=plots,
        exports=[os.path.relpath(p, rundir.root) for p in exports],
        timings={"search": round(searched.seconds, 1), "final": result["train_seconds"],
                 "total": round(total_seconds, 1)},
        config={**config.identity(), **config.plan_record(), **config.run_record(),
                "precision": started.precision, "strategy": type(strategy).__name__,
                "replicas": strategy.num_replicas_in_sync,
                "stages": [plan.to_json() for plan in searched.plans]},
        versions=_versions())
    for line in report.summary_lines(summary):
        log(line)
    return summary


def _versions():
    import platform

    import keras
    import keras_tuner
    import tensorflow as tf

    import keras_attn

    return {"keras_attn": keras_attn.__version__, "keras": keras.__version__,
            "keras_tuner": keras_tuner.__version__, "tensorflow": tf.__version__,
            "python": platform.python_version()}


# ------------------------------------------------------------------ 7. export


def export(config, rundir):
    """Export ``best_model.keras`` to ``OUT/export/best.<ext>`` in each ``--export`` format;
    returns the paths written. A killed export leaves no half an artifact, and an earlier
    SavedModel directory stays until the new one is in place."""
    if not config.run.export:
        return []
    from keras_attn.export import default_path, export_model

    model = _load_model(rundir.best_model)
    paths = []
    for fmt in dict.fromkeys(config.run.export):  # once per format, in the order given
        path = default_path(rundir.export_base, fmt)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old = None
        if os.path.isdir(path):  # a SavedModel directory: os.replace cannot replace a full one
            old = f"{path}.old-{os.getpid()}"
            os.replace(path, old)
        try:
            with atomic_path(path) as tmp:
                export_model(model, tmp, fmt)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        log(f"exported the best model ({fmt}): {path}")
        paths.append(path)
    return paths
