"""The end of a search: the test split, for the comparison and for the model the user keeps.

Two questions, two stages, the test split touched only here:

1. **Does the answer hold on the test split?** The best configuration and the baseline are not
   retrained for this: every search run of both (the weights each repeat left in its trial
   directory, one per seed) is evaluated on the test split, and the per-seed differences give a
   paired Student-t interval over the same seeds as the validation answer (``search_test``).
   Evaluation costs seconds; a retraining of both per seed would cost minutes.
2. **The model the user keeps** (``best_model.keras``): the best configuration retrained from
   scratch on every training image (no validation hold-out: the choice is made) for
   ``final_epochs`` epochs with a schedule over this run's own steps, once per seed of
   ``final_seeds``, and tested (``best_model``). With ``final_epochs=0`` it is the best
   configuration's search run with the first seed.

The search runs with the first seed are also saved whole (``best_search_model.keras``,
``baseline_model.keras``): the same initial weights and data, one differing only in its
attention, for side-by-side inspection (the report's Grad-CAM figure). Each finished evaluation
or training is stored in ``final.json`` at once, so a re-run after an interruption keeps it, and
re-running a finished search only rebuilds the report.
"""

from __future__ import annotations

import time

import keras

from search import stats
from search.rundir import (TrialDir, as_rundir, atomic_path, check_free_space, model_nbytes,
                           read_json, write_json)


def _params_added(model):
    from keras_attn.placement import attention_summary
    return int(attention_summary(model).total_params)


def _load(path):
    return read_json(path, missing={}, kind=dict,
                     fix="delete it to run the final stage again, or --overwrite to start afresh")


def _save_model(model, path):
    """``model.save(path)``, atomically (see :func:`search.rundir.atomic_path`)."""
    check_free_space(path, model_nbytes(model))
    with atomic_path(path) as tmp:
        model.save(tmp)


def _section(done, name, key):
    """``done[name]``, emptied when it was made for another ``key`` (other trials or seeds)."""
    section = done.get(name)
    if not isinstance(section, dict) or section.get("key") != key:
        section = done[name] = {"key": key}
    return section


def _test_search_runs(done, rundir, tuner, hypermodel, roles, seeds, strategy, test_data):
    """Stage 1: every search run of each role, evaluated on the test split."""
    key = {"seeds": [int(s) for s in seeds], **{f"{n}_trial": r["trial"] for n, r in roles}}
    section = _section(done, "search_test", key)
    files = {"best": rundir.best_search_model, "baseline": rundir.baseline_model}
    for name, row in roles:
        entry = section.setdefault(name, {"trial": row["trial"], "runs": {}})
        todo = [s for s in seeds if str(s) not in entry["runs"]]
        if not todo:
            continue
        hp = tuner.oracle.trials[row["trial"]].hyperparameters
        keras.backend.clear_session()
        with strategy.scope():
            model = hypermodel.build(hp, seed=int(todo[0]))
            # The weights file holds the optimizer's state too: build it, or Keras skips it.
            # In the scope: a distributed (e.g. Mirrored) LossScaleOptimizer's variables must
            # be made there (benchmarks/gpu_check.py's search failed here).
            model.optimizer.build(model.trainable_variables)
        trial_dir = TrialDir(tuner.get_trial_dir(row["trial"]))
        for seed in todo:
            model.load_weights(trial_dir.weights(seed))
            accuracy = float(model.evaluate(test_data, verbose=0)[1])
            entry["runs"][str(seed)] = accuracy
            entry.update(params=int(model.count_params()), params_added=_params_added(model))
            if seed == seeds[0]:
                _save_model(model, files[name])
            write_json(rundir.final, done)
            print(f"[final] {name} (trial {row['trial']}), search run seed {seed}: "
                  f"test_accuracy={accuracy:.4f}", flush=True)
    for name, _row in roles:
        entry = section[name]
        entry["test_accuracy"], entry["test_accuracy_std"] = \
            stats.mean_std(entry["runs"].values())
    diff = {"delta": None, "low": None, "high": None, "pairs": 0}
    if "best" in section:
        diff = stats.paired_difference(section["best"]["runs"], section["baseline"]["runs"])
    section.update(how=f"the search's own runs (each seed's saved weights), seeds "
                   f"{[int(s) for s in seeds]}; test split; paired Student-t 95% interval",
                   delta_vs_baseline=diff["delta"], paired_ci95_low=diff["low"],
                   paired_ci95_high=diff["high"], pairs=diff["pairs"])
    return section


def _train_best_model(done, rundir, tuner, hypermodel, name, row, final_seeds, final_epochs,
                      strategy, full_train, test_data, verbose):
    """Stage 2: the configuration the user keeps, retrained on the full training split."""
    key = {"trial": row["trial"], "final_epochs": final_epochs,
           "seeds": [int(s) for s in final_seeds]}
    section = _section(done, "best_model", key)
    section.setdefault("runs", {})
    hp = tuner.oracle.trials[row["trial"]].hyperparameters
    for seed in final_seeds:
        if str(seed) in section["runs"]:
            continue
        keras.backend.clear_session()
        keras.utils.set_random_seed(int(seed))
        with strategy.scope():
            model = hypermodel.build(hp, seed=int(seed))
        print(f"[final] {name} (trial {row['trial']}), seed {seed}: training {final_epochs} "
              "epoch(s) on the full training split", flush=True)
        # hypermodel.fit spans the schedule over this run and stops on NaN.
        history = hypermodel.fit(hp, model, full_train(int(seed)), epochs=final_epochs,
                                 verbose=verbose)
        accuracy = float(model.evaluate(test_data, verbose=0)[1])
        section["runs"][str(seed)] = accuracy
        section.setdefault("train_loss", {})[str(seed)] = float(history.history["loss"][-1])
        section.update(params=int(model.count_params()), params_added=_params_added(model))
        if seed == final_seeds[0]:
            _save_model(model, rundir.best_model)
        write_json(rundir.final, done)
        print(f"[final] {name} seed {seed}: test_accuracy={accuracy:.4f}", flush=True)
    section["test_accuracy"], section["test_accuracy_std"] = \
        stats.mean_std(section["runs"].values())
    section.update(trial=row["trial"], configuration=name,
                   how=f"{name} configuration retrained from scratch for {final_epochs} "
                   f"epoch(s) on the full training split, seeds "
                   f"{[int(s) for s in final_seeds]}; test split")
    return section


def finalize(*, out, tuner, hypermodel, best, baseline, seeds, final_seeds, final_epochs,
             strategy, full_train=None, test_data, verbose=2):
    """Test the search's runs of the best configuration and the baseline, and train the model
    the user keeps (see the module docstring).

    Args:
        out: the search's output directory (a path or a :class:`search.rundir.RunDir`).
        tuner: the search's tuner (its trials and trial directories).
        hypermodel: the search's :class:`search.hypermodel.AttentionHyperModel`.
        best, baseline: leaderboard rows (:func:`search.report.configuration_rows`); ``best`` may
            be None (no attention configuration finished: the baseline is then the kept model).
        seeds: the search's seeds whose runs are tested (each trial directory holds their
            weights).
        final_seeds: the seeds of the retraining of the kept model.
        final_epochs: epochs of that retraining on ``full_train``; 0: the kept model is the
            search run with ``seeds[0]``.
        strategy: the ``tf.distribute`` strategy to build under.
        full_train: ``callable(seed) -> tf.data.Dataset`` over every training image in that
            seed's order (needed when ``final_epochs > 0``).
        test_data: the test split's ``tf.data.Dataset``.
        verbose: ``fit``'s verbosity.

    Returns:
        ``{"search_test": {...}, "best_model": {...}, "train_seconds"}``. ``search_test`` holds
        ``best`` and ``baseline`` (each ``trial``, ``runs`` ``{seed: test accuracy}``,
        ``test_accuracy`` mean, ``test_accuracy_std``, ``params``, ``params_added``),
        ``delta_vs_baseline``, ``paired_ci95_low``/``high`` and ``how``; ``best_model`` the kept
        model's ``runs``, ``test_accuracy``, ``test_accuracy_std``, ``train_loss`` and ``how``.
    """
    rundir = as_rundir(out)
    roles = [("baseline", baseline)] + ([("best", best)] if best is not None else [])
    done = _load(rundir.final)
    t0 = time.time()
    _test_search_runs(done, rundir, tuner, hypermodel, roles, seeds, strategy, test_data)
    kept_name, kept = roles[-1]
    if final_epochs:
        _train_best_model(done, rundir, tuner, hypermodel, kept_name, kept, final_seeds,
                          final_epochs, strategy, full_train, test_data, verbose)
    else:
        entry = done["search_test"][kept_name]
        src = rundir.best_search_model if kept is best else rundir.baseline_model
        _save_model(keras.models.load_model(src, compile=False), rundir.best_model)
        first = str(seeds[0])
        done["best_model"] = {
            "key": {"trial": kept["trial"], "final_epochs": 0}, "trial": kept["trial"],
            "configuration": kept_name, "runs": {first: entry["runs"][first]},
            "test_accuracy": entry["runs"][first], "test_accuracy_std": None,
            "params": entry.get("params"), "params_added": entry.get("params_added"),
            "how": f"the {kept_name} configuration's search run with seed {first} (no "
                   "retraining, --final-epochs 0); test split"}
    done["train_seconds"] = round(done.get("train_seconds", 0.0) + time.time() - t0, 1)
    write_json(rundir.final, done)
    keras.backend.clear_session()
    return done
