"""The end of a search: the best configuration trained on the full training split, tested once.

Trials train on a subset for a few epochs, which ranks configurations but undertrains them; the
reported model is the best trial's configuration retrained from scratch on every training image
(``--final-epochs``), or, with ``--final-epochs 0``, the best trial's own weights. Either way the
test split is touched once, here. The result is stored in ``final.json`` so that re-running a
finished search only rebuilds the report.
"""

from __future__ import annotations

import json
import os
import time

import keras

from search.report import write_json

FINAL_FILE = "final.json"


def _params_added(model):
    from keras_attn.placement import attention_summary
    return int(attention_summary(model).total_params)


def finalize(args, tuner, hypermodel, best_trial, strategy, splits):
    """Train (or take) the best model, test it, save ``best_model.keras``; return its facts.

    ``splits`` are the search's own data; retraining loads the full training split itself.
    """
    from search import data as data_mod
    from search.cli import data_kwargs

    out = args.out
    model_path = os.path.join(out, "best_model.keras")
    marker = os.path.join(out, FINAL_FILE)
    key = {"best_trial": best_trial.trial_id, "final_epochs": args.final_epochs}
    if os.path.exists(marker) and os.path.exists(model_path):
        with open(marker) as f:
            done = json.load(f)
        if all(done.get(k) == v for k, v in key.items()):
            print(f"[final] reusing {model_path} (trial {best_trial.trial_id})", flush=True)
            return done

    t0 = time.time()
    verbose = 0 if args.quiet else 2
    if args.final_epochs == 0:
        model = tuner.get_best_models(1)[0]
        how = f"best trial's weights ({args.epochs} epochs on {splits.sizes['train']} images)"
    else:
        # Every training image, no validation hold-out: the choice is made, only the test is left.
        splits = data_mod.load_dataset(
            **data_kwargs(args, train_size=None, validation_split=0.0, augment=False)
        )
        hp = best_trial.hyperparameters
        keras.backend.clear_session()
        keras.utils.set_random_seed(args.seed)
        with strategy.scope():
            model = hypermodel.build(hp)
        print(f"[final] retraining trial {best_trial.trial_id}'s configuration on "
              f"{splits.sizes['train']} images for {args.final_epochs} epochs", flush=True)
        # hypermodel.fit matches the learning-rate schedule to this run and stops on NaN.
        hypermodel.fit(hp, model, splits.train, epochs=args.final_epochs, verbose=verbose,
                       callbacks=[keras.callbacks.TensorBoard(os.path.join(out, "logs", "final"))])
        how = f"retrained {args.final_epochs} epochs on {splits.sizes['train']} images"
    train_seconds = time.time() - t0
    test_loss, test_accuracy = model.evaluate(splits.test, verbose=0)[:2]
    model.save(model_path)
    result = {
        **key,
        "how": how,
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "params": int(model.count_params()),
        "params_added": _params_added(model),
        "train_seconds": train_seconds,
    }
    write_json(marker, result)
    keras.backend.clear_session()
    return result
