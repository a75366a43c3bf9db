"""KerasTuner tuners for the CLI: a line per trial, per-trial facts on disk, resumable.

The tuners are KerasTuner's own (RandomSearch, BayesianOptimization, Hyperband) with a mixin that
prints one line per finished trial and stores what the leaderboard needs beyond the score
(parameters, parameters added by attention, train time) in the trial's directory, so that a
resumed or distributed search reports every trial, whichever process ran it.
"""

from __future__ import annotations

import time

import keras_tuner as kt

from search.hypermodel import describe_hyperparameters
from search.report import write_trial_info

class BalancedRandomSearchOracle(kt.oracles.RandomSearchOracle):
    """Random search that spreads trials evenly over the ``attention`` choices.

    Plain random search over a handful of trials easily draws one attention type three times and
    another never. Here every trial's values are drawn as in ``RandomSearchOracle``, redrawn
    (rejection sampling, so the conditional hyperparameters stay consistent with the attention
    drawn) until the attention type is one of the least tried so far: no type gets a (k+1)-th
    trial before every type has k. Without an ``attention`` choice it is plain random search.
    """

    def populate_space(self, trial_id):
        choices = [p.values for p in self.hyperparameters.space
                   if p.name == "attention" and hasattr(p, "values")]
        result = super().populate_space(trial_id)
        if not choices or result["status"] != kt.engine.trial.TrialStatus.RUNNING:
            return result
        counts = {choice: 0 for choice in choices[0]}
        for other_id, trial in self.trials.items():
            value = trial.hyperparameters.values.get("attention")
            if other_id != trial_id and value in counts:
                counts[value] += 1
        least = min(counts.values())
        for _ in range(200):
            if counts.get(result["values"].get("attention")) == least:
                break
            result = super().populate_space(trial_id)
            if result["status"] != kt.engine.trial.TrialStatus.RUNNING:
                break
        return result


class BalancedRandomSearch(kt.Tuner):
    """``keras_tuner.RandomSearch`` with :class:`BalancedRandomSearchOracle` (same arguments)."""

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


TUNER_CLASSES = {
    "random": BalancedRandomSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
}


class ReportingMixin:
    """Mixed in before a KerasTuner tuner class (see :func:`tuner_class`)."""

    def _populate_initial_space(self):
        # KerasTuner discovers conditional hyperparameters by building the model again and again
        # (a MobileNetV2 with 50 attention layers takes seconds each time); declaring them is all
        # it needs, and AttentionHyperModel can do that alone.
        hypermodel = self.hypermodel
        declare = getattr(hypermodel, "declare", None)
        if declare is None:
            return super()._populate_initial_space()
        build = hypermodel.build
        hypermodel.build = declare
        try:
            return super()._populate_initial_space()
        finally:
            hypermodel.build = build

    def run_trial(self, trial, *args, **kwargs):
        start = time.time()
        results = super().run_trial(trial, *args, **kwargs)
        info = {"train_seconds": round(time.time() - start, 2), "tuner_id": self.tuner_id}
        # AttentionHyperModel(track_build_info=True) leaves params and params_added there.
        info.update(getattr(self.hypermodel, "last_build_info", None) or {})
        write_trial_info(self.get_trial_dir(trial.trial_id), info)
        return results

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        # Through the oracle: in distributed tuning the local trial object has no score.
        done = self.oracle.get_trial(trial.trial_id)
        status = getattr(done.status, "value", done.status)
        score = "-" if done.score is None else f"{done.score:.4f}"
        print(
            f"[trial {trial.trial_id}] {status} val_accuracy={score} "
            f"{describe_hyperparameters(done.hyperparameters)}",
            flush=True,
        )


_CLASS_CACHE = {}


def tuner_class(name):
    """KerasTuner's tuner class for ``name`` (random, bayesian, hyperband) with reporting."""
    if name not in TUNER_CLASSES:
        raise ValueError(f"Unknown tuner {name!r}; valid: {', '.join(TUNER_CLASSES)}.")
    if name not in _CLASS_CACHE:
        base = TUNER_CLASSES[name]
        _CLASS_CACHE[name] = type(f"Reporting{base.__name__}", (ReportingMixin, base), {})
    return _CLASS_CACHE[name]


def make_tuner(args, splits, precision, strategy):
    """The CLI's tuner and hypermodel for parsed ``args`` and loaded ``splits``."""
    from search.hypermodel import AttentionHyperModel

    space = {}
    if args.attention:
        space["attention"] = args.attention
    if args.placement:
        space["placement"] = args.placement
    backbone_kwargs = {"alpha": args.width} if args.width is not None else {}
    hypermodel = AttentionHyperModel(
        backbone=args.backbone,
        input_shape=tuple(splits.input_shape),
        num_classes=splits.num_classes,
        precision=precision,
        backbone_kwargs=backbone_kwargs,
        space=space or None,
        optimizer=args.optimizer,
        bn_momentum=args.bn_momentum,
        epochs_hint=args.epochs,
        steps_per_epoch=splits.steps_per_epoch["train"],
        track_build_info=True,
    )
    common = dict(
        hypermodel=hypermodel,
        objective="val_accuracy",
        directory=args.out,
        project_name="tuner",
        seed=args.seed,
        overwrite=False,  # re-running resumes; --overwrite already cleared the directory
        distribution_strategy=strategy if strategy.num_replicas_in_sync > 1 else None,
    )
    cls = tuner_class(args.tuner)
    if args.tuner == "hyperband":
        tuner = cls(max_epochs=args.epochs, factor=3, **common)
    else:
        tuner = cls(max_trials=args.max_trials, **common)
    return tuner, hypermodel
