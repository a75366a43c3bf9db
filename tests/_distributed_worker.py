"""Run by tests/test_distributed.py in its own process: the CPU split into 2 logical devices.

The split must happen before anything initialises TensorFlow's devices, which is why this is a
separate process and why the split comes first. Usage::

    python tests/_distributed_worker.py OUT_JSON WORK_DIR [--mobilenet]

Writes ``{"equivalence": {...}, "loss_scale": {...}, "search": {...}}`` to OUT_JSON; a part that raised has
``{"error": traceback}``.
"""

import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

tf.config.experimental.enable_tensor_float_32_execution(False)  # float32 is float32 (any GPU)

# The CPU split into two replicas is what is tested, on any machine: a GPU would otherwise take
# over "mirrored" (and "auto") here.
tf.config.set_visible_devices([], "GPU")
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
import numpy as np  # noqa: E402

import keras_attn  # noqa: E402
from search import training  # noqa: E402
from search.hypermodel import AttentionHyperModel  # noqa: E402

RECORDS = []  # module level: KerasTuner deep-copies callbacks and hypermodel state per trial


def tiny_builder(backbone, input_shape, num_classes, attention=None, placement="block",
                 attention_kwargs=None, weights=None, dropout=0.0, **backbone_kwargs):
    """build_model's contract (float32 head) on a small conv net with BatchNorm."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    if attention is not None:
        x = keras_attn.get_attention(attention, **(attention_kwargs or {}))(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                 name="predictions")(x)
    return keras.Model(inputs, outputs)


class RecordingHyperModel(AttentionHyperModel):
    def fit(self, hp, model, *args, **kwargs):
        history = super().fit(hp, model, *args, **kwargs)
        head = model.get_layer("predictions")
        RECORDS.append({
            "attention": hp.values["attention"],
            "replicas": model.distribute_strategy.num_replicas_in_sync,
            "global_policy": keras.mixed_precision.global_policy().name,
            "variable_dtypes": sorted({v.dtype for v in model.variables}),
            "conv_compute_dtypes": sorted({
                layer.compute_dtype for layer in model.layers
                if isinstance(layer, keras.layers.Conv2D)
            }),
            "attention_compute_dtypes": sorted({
                layer.compute_dtype for layer in model.layers
                if isinstance(layer, keras_attn.layers._base.AttentionLayer)
            }),
            "head_policy": head.dtype_policy.name,
            "output_dtype": str(model.output.dtype),
            "loss_scale_optimizer": isinstance(model.optimizer,
                                               keras.optimizers.LossScaleOptimizer),
            "mirrored_variables": all(
                isinstance(v.value, tf.distribute.DistributedValues) for v in model.variables
            ),
            "losses": [float(v) for v in history.history["loss"]],
            "val_losses": [float(v) for v in history.history.get("val_loss", [])],
        })
        return history


def run_search(work_dir, mobilenet):
    strategy = training.resolve_strategy("mirrored")
    rng = np.random.default_rng(0)
    size = 32
    x = rng.normal(size=(96, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, 96).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[64:], y[64:])).batch(16)
    common = dict(input_shape=(size, size, 3), num_classes=10, precision="mixed_float16",
                  space={"attention": ["none", "simam", "sb"], "placement": "block",
                         "e_lambda": 1e-4, "gate": "tanh", "lambda_init": 0.1,
                         "learning_rate": 0.05})
    if mobilenet:
        hm = RecordingHyperModel(backbone="mobilenetv2", backbone_kwargs={"alpha": 0.35}, **common)
    else:
        hm = RecordingHyperModel(backbone="tiny", model_builder=tiny_builder, **common)
    # A grid over the three attentions: one trial each.
    tuner = kt.GridSearch(hm, objective="val_accuracy", max_trials=3, seed=0,
                            distribution_strategy=strategy, directory=work_dir,
                            project_name="mirrored")
    tuner.search(train, validation_data=val, epochs=2, verbose=0)
    trials = list(tuner.oracle.trials.values())
    # The best model as the CLI saves it (2 replicas, mixed_float16), for a fresh process to load.
    best = tuner.get_best_models(1)[0]
    saved = os.path.join(work_dir, "best_model.keras")
    best.save(saved)
    np.save(os.path.join(work_dir, "best_x.npy"), x[:8])
    np.save(os.path.join(work_dir, "best_pred.npy"), best.predict(x[:8], verbose=0))
    return {
        "saved": saved,
        "saved_optimizer": type(best.optimizer).__name__,
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "devices": list(strategy.extended.worker_devices),
        "statuses": [t.status for t in trials],
        "scores": [t.score for t in trials],
        "messages": [t.message for t in trials if t.message],
        "records": RECORDS,
    }


def plain_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def run_equivalence():
    """The same SGD run on 1 device and on 2 replicas (each half of every batch)."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, 64).astype("int32")
    initial = plain_model().get_weights()

    def train(strategy):
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        with strategy.scope():
            model = plain_model()
            model.set_weights(initial)
            training.compile_model(model, learning_rate=0.1, schedule="cosine", warmup_epochs=1,
                                   epochs=3, steps_per_epoch=4, label_smoothing=0.1)
        model.fit(data, epochs=3, verbose=0, shuffle=False)
        return model.get_weights(), strategy.num_replicas_in_sync

    single, n1 = train(tf.distribute.get_strategy())
    mirrored, n2 = train(training.resolve_strategy("mirrored"))
    return {
        "replicas": [n1, n2],
        "max_abs_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(single, mirrored)),
        "max_abs_change": max(float(np.max(np.abs(a - b))) for a, b in zip(single, initial)),
    }


def run_loss_scale():
    """One replica's float16 gradients overflow, the other's do not: the step must be skipped."""
    strategy = training.resolve_strategy("mirrored")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32") * 1e-2
    x[2:] = 1e5  # replica 1's half of the batch: inf in float16
    y = np.array([0, 1, 2, 3], "int32")
    result = {}
    for name, use_ours in (("ours", True), ("keras", False)):
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("mixed_float16")
        with strategy.scope():
            model = plain_model()
            if use_ours:
                training.compile_model(model, learning_rate=0.1, schedule="constant")
            else:
                model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        before = model.get_weights()
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(4), epochs=1, verbose=0,
                  shuffle=False)
        after = model.get_weights()
        result[name] = {
            "optimizer": type(model.optimizer).__name__,
            "weights_finite": all(bool(np.all(np.isfinite(w))) for w in after),
            "weights_unchanged": all(bool(np.array_equal(a, b)) for a, b in zip(before, after)),
            "scale": float(keras.ops.convert_to_numpy(model.optimizer.dynamic_scale)),
        }
    keras.mixed_precision.set_global_policy("float32")
    return result


def run_protocol(work_dir):
    """The comparison protocol under MirroredStrategy + mixed_float16: two seeds per trial, the
    second restarting the first's traced model (LossScaleOptimizer state and mirrored variables
    reset), against the second seed run alone."""
    from search.protocol import Protocol
    from search.tuning import tuner_class

    strategy = training.resolve_strategy("mirrored")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 96).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[64:], y[64:])).batch(16)
    records = {}
    for name, seeds in (("both", (0, 1)), ("alone", (1,))):
        hm = AttentionHyperModel(backbone="tiny", model_builder=tiny_builder, input_shape=(8, 8, 3),
                                 num_classes=3, precision="mixed_float16", steps_per_epoch=4,
                                 space={"attention": "simam", "placement": "block",
                                        "e_lambda": 1e-4})
        tuner = tuner_class("random")(hypermodel=hm, objective="val_accuracy", max_trials=1,
                                      seed=0, distribution_strategy=strategy,
                                      directory=work_dir, project_name=f"protocol_{name}",
                                      protocol=Protocol(seeds))
        tuner.search(train, validation_data=val, epochs=2, verbose=0)
        trial = tuner.oracle.trials["0"]
        # The runs as the run store (search.store) holds them, looked up by their keys.
        runs = tuner.run_keys().lookup(hm.configuration(trial.hyperparameters), seeds, 2)
        records[name] = {"status": trial.status,
                         "repeats": {str(s): r.metrics for s, r in runs.items()}}
        if name == "both":
            try:
                records["final"] = _final_stage(work_dir, tuner, hm, seeds, strategy, val)
            except Exception:
                records["final"] = {"error": traceback.format_exc()}
    return records


def _final_stage(work_dir, tuner, hypermodel, seeds, strategy, test_data):
    """The final stage's test evaluation of the search runs (search.final) under the mirrored
    strategy: it rebuilds each run's model and its LossScaleOptimizer's state, which must be
    made in the strategy's scope."""
    from search import final
    from search.rundir import RunDir

    done = {}
    configuration = hypermodel.configuration(tuner.oracle.trials["0"].hyperparameters)
    row = {"trial": "0", "config": "simam", "attention": "simam", "configuration": configuration}
    out = os.path.join(work_dir, "final_out")
    os.makedirs(out, exist_ok=True)
    runs = final.StoredRuns(tuner.run_keys(), 2)
    final._test_search_runs(done, RunDir(out), runs, hypermodel,
                            [("best", row), ("baseline", row)], list(seeds), strategy, test_data)
    return done["search_test"]["best"]["runs"]


def main():
    out_path, work_dir = sys.argv[1], sys.argv[2]
    mobilenet = "--mobilenet" in sys.argv[3:]
    result = {}
    for name, fn in (("equivalence", run_equivalence), ("loss_scale", run_loss_scale),
                     ("search", lambda: run_search(work_dir, mobilenet)),
                     ("protocol", lambda: run_protocol(work_dir))):
        try:
            result[name] = fn()
        except Exception:
            result[name] = {"error": traceback.format_exc()}
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
