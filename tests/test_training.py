"""search.training: precision, strategy, schedules, compile, loss, callbacks."""

import copy
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_tuner.errors import FailedTrialError

from search import training


def tiny_model(num_classes=4, bn=False):
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    if bn:
        x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="head")(x)
    return keras.Model(inputs, outputs)


def tiny_data(n=16, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 2)).astype("float32"), rng.integers(0, num_classes, n)


# ------------------------------------------------------------------------------------ precision


def test_resolve_precision(monkeypatch):
    # "auto" on the machine at hand: mixed_float16 where TensorFlow sees a GPU, else float32.
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert training.resolve_precision() == ("mixed_float16" if has_gpu else "float32")
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["/physical_device:GPU:0"] if kind == "GPU" else [])
    assert training.resolve_precision("auto") == "mixed_float16"
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert training.resolve_precision("auto") == "float32"
    for name in ("float32", "mixed_float16", "mixed_bfloat16"):
        assert training.resolve_precision(name) == name
    with pytest.raises(ValueError, match="`precision` must be one of 'auto', 'float32', "
                                         "'mixed_float16', 'mixed_bfloat16'; got 'float16'"):
        training.resolve_precision("float16")


def test_set_precision():
    assert training.set_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    auto = training.resolve_precision("auto")
    assert training.set_precision("auto") == auto
    assert keras.mixed_precision.global_policy().name == auto
    with pytest.raises(ValueError, match="got 'half'"):
        training.set_precision("half")


# ------------------------------------------------------------------------------------ strategy


def test_resolve_strategy():
    # What "auto" means on the machine at hand (this suite runs on CPU-only and GPU machines).
    gpus = tf.config.list_logical_devices("GPU")
    default = training.resolve_strategy()
    if not gpus:
        assert default is tf.distribute.get_strategy()  # CPU only: no wrapper, no overhead
    elif len(gpus) == 1:
        assert isinstance(default, tf.distribute.OneDeviceStrategy)
    else:
        assert isinstance(default, tf.distribute.MirroredStrategy)
        assert default.num_replicas_in_sync == len(gpus)
    one = training.resolve_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    assert ("GPU:0" if gpus else "CPU:0") in one.extended.worker_devices[0]
    mirrored = training.resolve_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    # All GPUs, else every logical CPU device (one unless the CPU was split).
    assert mirrored.num_replicas_in_sync == (len(gpus) or len(tf.config.list_logical_devices("CPU")))
    assert training.resolve_strategy("mirrored") is mirrored  # one instance per device set
    cpu = training.resolve_strategy("mirrored", devices=["/cpu:0"])
    assert cpu.num_replicas_in_sync == 1 and "CPU:0" in cpu.extended.worker_devices[0]
    assert training.resolve_strategy(one) is one


def test_multi_worker_refused():
    with pytest.raises(ValueError) as info:
        training.resolve_strategy("multi_worker")
    message = str(info.value)
    assert "Keras 3's Model.fit does not work with tf.distribute.MultiWorkerMirroredStrategy" in message
    assert "--role chief" in message and "--role worker" in message and "--oracle" in message
    with pytest.raises(ValueError, match="`strategy` must be one of 'auto', 'one_device', "
                                         "'mirrored'; got 'tpu'"):
        training.resolve_strategy("tpu")


# ------------------------------------------------------------------------------------ schedules


def lr_at(schedule, steps):
    return np.array([float(schedule(s)) if callable(schedule) else schedule for s in steps])


def test_cosine_with_warmup_values():
    steps = np.arange(0, 60)
    schedule = training.make_schedule(0.1, schedule="cosine", epochs=5, steps_per_epoch=10,
                                      warmup_epochs=1)
    # Linear from 0 to 0.1 over 10 steps, then cosine over the remaining 40, then flat at 0.
    expected = np.where(
        steps < 10, 0.1 * steps / 10,
        0.05 * (1 + np.cos(np.pi * np.minimum(steps - 10, 40) / 40)),
    )
    np.testing.assert_allclose(lr_at(schedule, steps), expected, atol=1e-7)
    plain = training.make_schedule(0.2, schedule="cosine", epochs=2, steps_per_epoch=5,
                                   min_fraction=0.1)
    s = np.arange(12)
    expected = 0.2 * (0.9 * 0.5 * (1 + np.cos(np.pi * np.minimum(s, 10) / 10)) + 0.1)
    np.testing.assert_allclose(lr_at(plain, s), expected, atol=1e-7)


def test_step_and_constant_with_warmup_values():
    step = training.make_schedule(0.1, schedule="step", epochs=10, steps_per_epoch=4,
                                  warmup_epochs=2)
    # 8 warm-up steps; the 32 after them divide by 10 after 16 and 24 of them.
    steps = np.arange(45)
    after = steps - 8
    expected = np.where(
        steps < 8, 0.1 * steps / 8,
        np.where(after <= 16, 0.1, np.where(after <= 24, 0.01, 0.001)),
    )
    np.testing.assert_allclose(lr_at(step, steps), expected, rtol=1e-6, atol=1e-9)
    constant = training.make_schedule(0.3, schedule="constant", epochs=3, steps_per_epoch=10,
                                      warmup_epochs=0.5)
    np.testing.assert_allclose(lr_at(constant, [0, 1, 4, 5, 6, 29]), [0, 0.06, 0.24, 0.3, 0.3, 0.3],
                               atol=1e-7)
    assert training.make_schedule(0.3, schedule="constant") == 0.3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(schedule="linear"), "`schedule` must be one of 'cosine', 'step', 'constant'; got 'linear'"),
        (dict(), r"`steps_per_epoch` is required for schedule='cosine'.*ceil\(train_size / batch_size\)"),
        (dict(schedule="constant", warmup_epochs=1), "required for schedule='constant' with warm-up"),
        (dict(steps_per_epoch=10, epochs=2, warmup_epochs=2), "`warmup_epochs`=2 must be shorter"),
        (dict(steps_per_epoch=10, warmup_epochs=-1), "`warmup_epochs` must be a number >= 0"),
        (dict(learning_rate=0), "`learning_rate` must be a number > 0; got 0"),
        (dict(learning_rate=float("nan")), "`learning_rate` must be a finite number > 0; got nan"),
        (dict(steps_per_epoch=0), "`steps_per_epoch` must be a number > 0; got 0"),
    ],
)
def test_schedule_errors(kwargs, match):
    kwargs = {"learning_rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        training.make_schedule(**kwargs)


# ------------------------------------------------------------------------------------ compile


def test_compile_sgd_defaults():
    model = training.compile_model(tiny_model(bn=True), steps_per_epoch=10, epochs=3)
    opt = model.optimizer
    assert isinstance(opt, keras.optimizers.SGD)
    assert opt.momentum == 0.9 and not opt.nesterov and opt.weight_decay == 5e-4
    assert isinstance(opt._learning_rate, keras.optimizers.schedules.CosineDecay)
    assert model.loss == "sparse_categorical_crossentropy"
    assert not model.jit_compile
    decayed = {v.path for v in model.trainable_variables if opt._use_weight_decay(v)}
    assert decayed == {"conv/kernel", "head/kernel"}  # biases and BN scale/offset excluded
    adam = training.compile_model(tiny_model(), optimizer="adam", learning_rate=1e-3,
                                  schedule="constant", weight_decay=0, nesterov=True)
    assert isinstance(adam.optimizer, keras.optimizers.Adam)
    assert adam.optimizer.weight_decay is None
    assert float(adam.optimizer.learning_rate) == pytest.approx(1e-3)


def test_compile_errors():
    with pytest.raises(ValueError, match="`optimizer` must be one of 'sgd', 'adam'; got 'rmsprop'"):
        training.compile_model(tiny_model(), optimizer="rmsprop", schedule="constant")
    with pytest.raises(ValueError, match=r"`momentum` must be a number in \[0, 1\); got 1.0"):
        training.compile_model(tiny_model(), momentum=1.0, schedule="constant")
    with pytest.raises(ValueError, match="`weight_decay` must be a number >= 0"):
        training.compile_model(tiny_model(), weight_decay=-1, schedule="constant")
    with pytest.raises(ValueError, match=r"`label_smoothing` must be a number in \[0, 1\); got 1.0"):
        training.compile_model(tiny_model(), label_smoothing=1.0, schedule="constant")



@pytest.mark.parametrize(
    "check, kwargs, match",
    [
        ("check_optimizer_arguments", dict(optimizer="lamb"), "`optimizer` must be one of 'sgd', 'adam'; got 'lamb'"),
        ("check_optimizer_arguments", dict(momentum=-0.1), r"`momentum` must be a number in \[0, 1\)"),
        ("check_optimizer_arguments", dict(weight_decay=float("inf")), "`weight_decay` must be a finite number >= 0"),
        ("check_optimizer_arguments", dict(clipnorm=0), "`clipnorm` must be a number > 0 or None; got 0"),
        ("check_label_smoothing", dict(label_smoothing=True), r"`label_smoothing` must be a number in \[0, 1\); got True"),
        ("check_schedule_arguments", dict(schedule="poly"), "`schedule` must be one of 'cosine', 'step', 'constant'"),
        ("check_schedule_arguments", dict(epochs=0), "`epochs` must be a number > 0; got 0"),
        ("check_schedule_arguments", dict(warmup_epochs="1"), "`warmup_epochs` must be a number >= 0"),
        ("check_schedule_arguments", dict(epochs=2, steps_per_epoch=5, warmup_epochs=2),
         "`warmup_epochs`=2 must be shorter than the run"),
    ],
)
def test_check_functions_reject(check, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(training, check)(**kwargs)


def test_check_functions_accept_what_the_makers_take():
    # Without steps_per_epoch (not known yet when a hypermodel is made) a warm-up is accepted;
    # make_schedule itself then asks for it.
    assert training.check_schedule_arguments(0.1, schedule="cosine", warmup_epochs=3) is None
    with pytest.raises(ValueError, match="`steps_per_epoch` is required"):
        training.make_schedule(0.1, schedule="cosine", warmup_epochs=3)
    assert training.check_optimizer_arguments("adam", momentum=0, weight_decay=0, clipnorm=1.0) is None
    assert training.check_label_smoothing(0.1) is None


def test_choice_lists_import_without_tensorflow():
    # The CLI's --help reads these: importing them must not load TensorFlow or Keras.
    code = (
        "import sys\n"
        "from search.training_choices import OPTIMIZERS, PRECISIONS, SCHEDULES, STRATEGIES\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'loaded'\n"
        "print(PRECISIONS[0], STRATEGIES[0])\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": root}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["auto", "auto"]
    # And they are the lists the functions check against.
    from search import training_choices

    for name in ("PRECISIONS", "STRATEGIES", "SUPPORTED_STRATEGIES", "OPTIMIZERS", "SCHEDULES"):
        assert getattr(training, name) is getattr(training_choices, name)

@pytest.mark.parametrize("policy_name, wrapped", [
    ("float32", False), ("mixed_float16", True), ("mixed_bfloat16", False)])
def test_loss_scale_optimizer_by_policy(policy_name, wrapped):
    training.set_precision(policy_name)
    model = training.compile_model(tiny_model(), schedule="constant")
    is_lso = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_lso == wrapped
    if wrapped:
        assert isinstance(model.optimizer.inner_optimizer, keras.optimizers.SGD)
    x, y = tiny_data()
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][0])
    assert model.get_layer("conv").kernel.dtype == "float32"
    assert model.output.dtype == "float32"


def test_replica_safe_loss_scale_optimizer_saves(tmp_path):
    # The multi-replica wrapper (exercised in test_distributed.py) is a serializable Keras
    # LossScaleOptimizer; on one device it behaves as Keras' own.
    training.set_precision("mixed_float16")
    model = tiny_model()
    opt = training.ReplicaSafeLossScaleOptimizer(training.make_optimizer("sgd", 0.1))
    training.compile_model(model, optimizer=opt)
    assert model.optimizer is opt
    x, y = tiny_data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "lso.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded.optimizer) is training.ReplicaSafeLossScaleOptimizer
    assert isinstance(loaded.optimizer.inner_optimizer, keras.optimizers.SGD)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-3)


def test_label_smoothing_loss_matches_numpy():
    loss = training.make_loss(0.1)
    assert isinstance(loss, training.SparseCategoricalCrossentropyLS)
    assert training.make_loss(0.0) == "sparse_categorical_crossentropy"
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=6).astype("float32")
    labels = np.array([0, 4, 2, 2, 1, 3])
    target = np.full((6, 5), 0.1 / 5)
    target[np.arange(6), labels] += 0.9
    expected = -(target * np.log(probs)).sum(-1).mean()
    assert float(loss(labels, probs)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(labels[:, None], probs)) == pytest.approx(expected, rel=1e-5)

    model = training.compile_model(tiny_model(), label_smoothing=0.1, schedule="constant")
    x, y = tiny_data()
    pred = model.predict(x, verbose=0)
    target = np.full((16, 4), 0.1 / 4)
    target[np.arange(16), y] += 0.9
    expected = -(target * np.log(np.clip(pred, 1e-7, 1))).sum(-1).mean()
    result = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean(pred.argmax(-1) == y))


def test_compiled_model_saves_and_loads(tmp_path):
    model = training.compile_model(tiny_model(), label_smoothing=0.2, schedule="step",
                                   warmup_epochs=1, epochs=3, steps_per_epoch=4)
    x, y = tiny_data()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert isinstance(loaded.loss, training.SparseCategoricalCrossentropyLS)
    assert loaded.loss.label_smoothing == pytest.approx(0.2)
    schedule = loaded.optimizer._learning_rate
    assert isinstance(schedule, training.WarmupSchedule)
    np.testing.assert_allclose(lr_at(schedule, range(14)), lr_at(model.optimizer._learning_rate, range(14)))


# ------------------------------------------------------------------------------------ callbacks


def test_stop_on_nan_raises_failed_trial():
    # A NaN sample weight makes the loss of its batch NaN on any CPU or GPU (a NaN *input* may
    # not: oneDNN kernels on some CPUs turn it into a finite loss). No shuffling: sample 5 is in
    # the second batch of 4, whatever Keras' shuffle would draw.
    model = training.compile_model(tiny_model(), schedule="constant")
    x, y = tiny_data()
    weights = np.ones(len(x), "float32")
    weights[5] = np.nan
    with pytest.raises(FailedTrialError, match=r"loss became nan at epoch 1, batch 2"):
        model.fit(x, y, sample_weight=weights, batch_size=4, epochs=2, shuffle=False, verbose=0,
                  callbacks=[training.StopOnNaN()])
    # Finite runs are untouched; a NaN validation loss fails at the epoch end.
    model = training.compile_model(tiny_model(), schedule="constant")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[training.StopOnNaN()])
    with pytest.raises(FailedTrialError, match="val_loss became nan at epoch 1:"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(x, y, weights),
                  callbacks=[training.StopOnNaN()])
    callback = training.StopOnNaN()
    with pytest.raises(FailedTrialError, match="loss became inf"):
        callback.on_train_batch_end(0, {"loss": float("inf")})


def test_fit_then_evaluate_equals_the_last_epoch_of_validating_every_epoch():
    # Validation changes no weight: training without it, then evaluating once, must give the
    # training losses and the last epoch's validation metrics of fit(validation_data=...), with
    # one evaluation instead of one per epoch.
    x, y = tiny_data(32)
    xv, yv = tiny_data(12, seed=1)
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(4)
    every = training.compile_model(tiny_model(bn=True), schedule="constant")
    once = training.compile_model(tiny_model(bn=True), schedule="constant")
    once.set_weights(every.get_weights())

    class CountTests(keras.callbacks.Callback):
        tests = 0

        def on_test_begin(self, logs=None):
            CountTests.tests += 1

    want = every.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                     validation_data=val).history
    got = training.fit_then_evaluate(once, x, val, y=y, epochs=3, batch_size=8, shuffle=False,
                                     callbacks=[CountTests()]).history
    assert CountTests.tests == 1
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    for key in ("val_loss", "val_accuracy"):
        assert len(got[key]) == 3 and all(np.isnan(got[key][:2]))
        np.testing.assert_allclose(got[key][-1], want[key][-1], rtol=1e-5)
    # A hypermodel's fit is used when given.
    calls = []
    training.fit_then_evaluate(once, x, val, y=y, fit=lambda *a, **k: calls.append(k) or
                               once.fit(*a, **k), epochs=1, batch_size=8, verbose=0)
    assert calls and calls[0]["epochs"] == 1 and "validation_data" not in calls[0]


def test_fit_then_evaluate_fails_a_nan_validation_and_needs_validation_data():
    x, y = tiny_data()
    weights = np.ones(len(x), "float32")
    weights[3] = np.nan
    model = training.compile_model(tiny_model(), schedule="constant")
    with pytest.raises(FailedTrialError, match="val_loss became nan"):
        training.fit_then_evaluate(model, x, (x, y, weights), y=y, batch_size=4, epochs=1,
                                   callbacks=[training.StopOnNaN()])
    with pytest.raises(ValueError, match="needs `validation_data` once"):
        training.fit_then_evaluate(model, x, None, y=y)


def test_make_callbacks(tmp_path):
    assert [type(c) for c in training.make_callbacks()] == [training.StopOnNaN]
    callbacks = training.make_callbacks(log_dir=tmp_path / "logs", early_stopping_patience=2)
    kinds = [type(c) for c in callbacks]
    assert kinds == [training.StopOnNaN, keras.callbacks.EarlyStopping, keras.callbacks.TensorBoard]
    early = callbacks[1]
    assert early.monitor == "val_accuracy" and early.patience == 2 and early.restore_best_weights
    assert callbacks[2].log_dir == str(tmp_path / "logs")
    copy.deepcopy(callbacks)  # KerasTuner deep-copies callbacks for every trial
    assert training.make_callbacks(stop_on_nan=False) == []
    with pytest.raises(ValueError, match="`early_stopping_patience` must be an integer >= 0"):
        training.make_callbacks(early_stopping_patience=-1)
    # The callbacks work in a real fit (TensorBoard writes its event files).
    model = training.compile_model(tiny_model(), schedule="constant")
    x, y = tiny_data()
    model.fit(x, y, validation_data=(x, y), batch_size=8, epochs=2, verbose=0, callbacks=callbacks)
    assert any((tmp_path / "logs").rglob("events.out.tfevents.*"))


def test_saved_model_loads_with_keras_attn_alone(tmp_path):
    # Users load best_model.keras in a fresh process with `import keras_attn` only (README); the
    # multi-replica mixed-precision optimiser it may carry must be found without `search`.
    training.set_precision("mixed_float16")
    model = tiny_model()
    training.compile_model(
        model, optimizer=training.ReplicaSafeLossScaleOptimizer(training.make_optimizer("sgd", 0.1))
    )
    x, y = tiny_data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "best_model.keras"
    model.save(str(path))
    code = (
        "import sys, keras, keras_attn\n"
        f"m = keras.models.load_model({str(path)!r})\n"
        "assert not any(k == 'search' or k.startswith('search.') for k in sys.modules), 'search'\n"
        "print(type(m.optimizer).__name__)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "ReplicaSafeLossScaleOptimizer"
