"""The end of a search: the best configuration and the baseline, tested once on the test split.

Both are trained the same way, with the same seeds (paired, as in the search): retrained from
scratch on every training image (no validation hold-out: the choice is made) for
``final_epochs`` epochs, with a learning-rate schedule that spans this run's own steps; or, with
``final_epochs=0``, the search's own runs of the two configurations (the weights each repeat left
in its trial directory) are tested. The test split is touched here only. Each finished run is
stored in ``final.json`` at once, so a re-run after an interruption keeps it, and re-running a
finished search only rebuilds the report.
"""

from __future__ import annotations

import json
import os
import time

import keras

from search import stats
from search.protocol import weights_path
from search.report import write_json

FINAL_FILE = "final.json"
BEST_MODEL_FILE = "best_model.keras"
BASELINE_MODEL_FILE = "baseline_model.keras"


def _params_added(model):
    from keras_attn.placement import attention_summary
    return int(attention_summary(model).total_params)


def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def finalize(*, out, tuner, hypermodel, best, baseline, seeds, final_epochs, strategy,
             full_train=None, test_data, verbose=2):
    """Test the best configuration and the baseline; save ``best_model.keras`` and
    ``baseline_model.keras`` (each the first seed's model).

    Args:
        out: the search's output directory.
        tuner: the search's tuner (its trials and trial directories).
        hypermodel: the search's :class:`search.hypermodel.AttentionHyperModel`.
        best, baseline: leaderboard rows (:func:`search.report.configuration_rows`); ``best`` may
            be None (no attention configuration finished) and either may be the same row.
        seeds: the seeds of the final runs (paired: each seed trains both).
        final_epochs: epochs of the retraining on ``full_train``; 0 tests the search's runs.
        strategy: the ``tf.distribute`` strategy to build under.
        full_train: ``callable(seed) -> tf.data.Dataset`` over every training image in that
            seed's order (needed when ``final_epochs > 0``).
        test_data: the test split's ``tf.data.Dataset``.
        verbose: ``fit``'s verbosity.

    Returns:
        ``{"how", "seeds", "best": {...}, "baseline": {...}, "delta_vs_baseline",
        "delta_ci95_low", "delta_ci95_high", "train_seconds"}``, each of ``best``/``baseline``
        with ``trial``, ``test_accuracy`` (mean over the seeds), ``test_accuracy_std``, ``runs``
        (``{seed: test accuracy}``), ``params``, ``params_added``.
    """
    marker = os.path.join(out, FINAL_FILE)
    model_path = os.path.join(out, BEST_MODEL_FILE)
    baseline_path = os.path.join(out, BASELINE_MODEL_FILE)
    roles = [("baseline", baseline)] + ([("best", best)] if best is not None else [])
    key = {"final_epochs": final_epochs, "seeds": [int(s) for s in seeds],
           **{f"{name}_trial": row["trial"] for name, row in roles}}
    done = _load(marker)
    if any(done.get(k) != v for k, v in key.items()):
        done = {}
    done.update(key)
    t0 = time.time()
    ran = False
    for name, row in roles:
        entry = done.setdefault(name, {"trial": row["trial"], "runs": {}})
        trial = tuner.oracle.trials[row["trial"]]
        hp = trial.hyperparameters
        for seed in seeds:
            if str(seed) in entry["runs"]:
                continue
            ran = True
            keras.backend.clear_session()
            keras.utils.set_random_seed(int(seed))
            with strategy.scope():
                model = hypermodel.build(hp, seed=int(seed))
            if final_epochs:
                print(f"[final] {name} (trial {row['trial']}), seed {seed}: training "
                      f"{final_epochs} epoch(s) on the full training split", flush=True)
                # hypermodel.fit spans the schedule over this run and stops on NaN.
                hypermodel.fit(hp, model, full_train(int(seed)), epochs=final_epochs,
                               verbose=verbose)
            else:
                # The file holds the optimizer's state too: build it, or Keras warns and skips.
                model.optimizer.build(model.trainable_variables)
                model.load_weights(weights_path(tuner.get_trial_dir(row["trial"]), seed))
            test_loss, test_accuracy = model.evaluate(test_data, verbose=0)[:2]
            entry["runs"][str(seed)] = float(test_accuracy)
            entry.update(params=int(model.count_params()), params_added=_params_added(model))
            if name == ("best" if best is not None else "baseline") and seed == seeds[0]:
                model.save(model_path)
            if name == "baseline" and seed == seeds[0]:
                # For the report's Grad-CAM comparison with the best model.
                model.save(baseline_path)
            write_json(marker, done)
            print(f"[final] {name} seed {seed}: test_accuracy={test_accuracy:.4f}", flush=True)
    if not ran:
        print(f"[final] reusing the finished final runs in {marker}", flush=True)
    for name, _row in roles:
        entry = done[name]
        mean, std = stats.mean_std(entry["runs"].values())
        entry.update(test_accuracy=mean, test_accuracy_std=std)
    diff = {"delta": None, "low": None, "high": None}
    if best is not None:
        diff = stats.paired_difference(done["best"]["runs"], done["baseline"]["runs"])
    done.update(
        how=(f"retrained {final_epochs} epoch(s) on the full training split"
             if final_epochs else "the search's own runs (trial weights)")
        + f", seeds {list(seeds)}; test split",
        delta_vs_baseline=diff["delta"], delta_ci95_low=diff["low"],
        delta_ci95_high=diff["high"],
        train_seconds=round(done.get("train_seconds", 0.0) + time.time() - t0, 1),
    )
    write_json(marker, done)
    keras.backend.clear_session()
    return done
