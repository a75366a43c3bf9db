"""The search, stage by stage: claim -> start -> search -> analyse -> finalize -> report -> export.

Each stage is a function of the :class:`search.config.SearchConfig`, the :class:`RunDir` and what
the stages before it returned; :func:`run` calls them in order. What differs between a single
process, a distributed search's chief and its workers is asked of the role
(:mod:`search.roles`).

1. :func:`claim_out_dir`: refuse an ``--out`` made by a different search, record this run
   (``--overwrite`` moves the previous search aside until the new one has started).
2. :func:`start`: devices, precision, seeds, the data.
3. :func:`search`: the tuner over the hypermodel, trained under the comparison protocol
   (:mod:`search.tuning`, :mod:`search.protocol`).
4. :func:`analyse`: the leaderboard (:mod:`search.report`, :mod:`search.decision`) and the cost of
   each configuration (:mod:`search.costs`).
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
    except BaseException:
        claim.give_back()
        raise
    claim.confirm()
    searched = search(config, rundir, role, started)
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
    """The --out this run writes to; ``replaced``: where --overwrite moved the search it
    replaces, deleted by :meth:`confirm` once the new run has started, put back by
    :meth:`give_back` if it fails before."""

    rundir: RunDir
    replaced: str | None = None

    def confirm(self):
        if self.replaced:
            shutil.rmtree(self.replaced)
            log(f"--overwrite: deleted the previous search (moved aside to {self.replaced})")
            self.replaced = None

    def give_back(self):
        if self.replaced:
            shutil.rmtree(self.rundir.root, ignore_errors=True)
            os.rename(self.replaced, self.rundir.root)
            log(f"--overwrite: this run did not start; the previous search is back in "
                f"{self.rundir.root}")
            self.replaced = None


def claim_out_dir(config, rundir, role):
    """Refuse to resume into an --out made by a different search; record this run.

    With --overwrite, a previous search in --out is moved aside (``OUT.old-<time>``), not
    deleted (see :class:`Claim`). A directory that is not a search is never deleted.

    Raises:
        CLIError: --out is a file, not a search, or holds a different search; a worker's --out
            holds no search started by a chief.
    """
    out = rundir.root
    claim = Claim(rundir)
    if not role.owns_out and not os.path.exists(rundir.config):
        raise CLIError(
            f"--out {out} holds no search started by a chief ({RunDir.config} is missing): give "
            "every worker the chief's --out (a shared directory) and the chief's options")
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out} is a file, not a directory; use another --out")
    # A worker started before its chief may already have made the tuner project.
    contents = set(os.listdir(out)) - {RunDir.project, RunDir.logs} if os.path.isdir(out) \
        else set()
    recorded = {}
    if config.session.overwrite and role.owns_out and contents:
        if not rundir.is_search():
            raise CLIError(f"--out {out} is not a keras-attn search (no {RunDir.marker} or "
                           f"{RunDir.config}): --overwrite deletes only a search; use another "
                           "--out")
        claim.replaced = (f"{os.path.normpath(out)}.old-{time.strftime('%Y%m%d-%H%M%S')}-"
                          f"{os.getpid()}")
        os.rename(out, claim.replaced)
    elif os.path.exists(rundir.config) and not config.session.overwrite:
        recorded = rundir.read_config()
        diff = config.identity_differences(recorded)
        if diff:
            what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
            raise CLIError(f"--out {out} holds a different search ({what}); use another --out, "
                           "the same options to resume, or --overwrite to start afresh")
    elif role.owns_out and contents and not rundir.is_search():
        raise CLIError(f"--out {out} exists and is not a keras-attn search; use another --out "
                       "(a new or empty directory)")
    os.makedirs(out, exist_ok=True)
    if role.owns_out:
        _record_run(config, rundir, recorded)
    return claim


def _record_run(config, rundir, recorded):
    if not os.path.exists(rundir.marker):
        write_text(rundir.marker, "A keras-attn-search output directory (keras-attn-search "
                   "--out); --overwrite may replace it.\n")
    run = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **config.run_record()}
    write_json(rundir.config, {**config.identity(),
                               "runs": list(recorded.get("runs", [])) + [run]})


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
    """What :func:`start` made: the data splits, the resolved precision and the strategy."""

    splits: object
    precision: str
    strategy: object


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
    if role.trains and not splits.sizes.get("val"):
        raise CLIError("the comparison needs a validation set: --validation-split must be > 0")
    return Started(splits, precision, strategy)


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
    """What :func:`search` made: the tuner (its trials), the hypermodel, the protocol."""

    tuner: object
    hypermodel: object
    protocol: object
    seconds: float


def make_hypermodel(config, started):
    """The :class:`search.hypermodel.AttentionHyperModel` of ``config`` for the loaded data."""
    from search.hypermodel import AttentionHyperModel

    splits = started.splits
    space = config.space
    model = config.model
    return AttentionHyperModel(
        backbone=model.backbone, input_shape=tuple(splits.input_shape),
        num_classes=splits.num_classes, precision=started.precision,
        backbone_kwargs={"alpha": model.width} if model.width is not None else None,
        space=None if space.configurations is not None else space.space_values,
        configurations=None if space.configurations is None else list(space.configurations),
        bn_momentum=model.bn_momentum,
        recipe=dataclasses.replace(config.recipe,
                                   steps_per_epoch=splits.steps_per_epoch["train"]),
        track_build_info=True)


def search(config, rundir, role, started):
    """Run (or resume) the search: every configuration once per seed of the protocol."""
    import keras

    from search import training, tuning
    from search.protocol import Protocol

    protocol = Protocol(seeds=config.seeds, train_data=started.splits.train_with_seed)
    hypermodel = make_hypermodel(config, started)
    tuner = tuning.build_tuner(
        config.space.tuner, hypermodel, directory=rundir.root, project_name=RunDir.project,
        max_trials=config.run.max_trials, epochs=config.recipe.epochs, seed=config.seed,
        strategy=started.strategy, protocol=protocol, debug=config.session.debug,
        cost=config.space.objective)
    callbacks = [keras.callbacks.TensorBoard(log_dir=rundir.logs)]
    t0 = time.time()
    role.search(tuner, started.splits, config, callbacks,
                training.fit_verbosity(config.session.quiet))
    return Searched(tuner, hypermodel, protocol, time.time() - t0)


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

    board = report.configuration_rows(report.collect_trials(searched.tuner),
                                      num_classes=started.splits.num_classes)
    costs = measure_costs(board, searched.tuner, searched.hypermodel,
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
        out=rundir, tuner=searched.tuner, hypermodel=searched.hypermodel, best=analysed.best,
        baseline=analysed.baseline, seeds=list(config.seeds),
        final_seeds=list(config.final_seeds), final_epochs=config.run.final_epochs,
        strategy=started.strategy, full_train=None if full is None else full.train_with_seed,
        test_data=started.splits.test, verbose=training.fit_verbosity(config.session.quiet),
        board=analysed.board)


# ------------------------------------------------------------------ 6. report


def _load_model(path):
    import keras

    import keras_attn  # noqa: F401  (registers the layers for load_model)

    return keras.models.load_model(path, compile=False)


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
        config={**config.identity(), **config.run_record(), "precision": started.precision,
                "strategy": type(strategy).__name__,
                "replicas": strategy.num_replicas_in_sync},
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
