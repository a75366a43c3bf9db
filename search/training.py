"""Training plumbing for the search: precision policy, tf.distribute strategy, compile, callbacks.

* :func:`resolve_precision` / :func:`set_precision`: ``"auto"`` is ``mixed_float16`` when a GPU is
  visible, else ``float32`` (CPUs have no fast float16 kernels).
* :func:`resolve_strategy`: ``"auto"`` is ``MirroredStrategy`` over all GPUs when there are several,
  one GPU when there is one, else TensorFlow's default strategy. It returns one
  ``MirroredStrategy`` per device set: a second instance over the same devices makes the
  collectives of both fail ("Shape mismatch in the collective instance").
* :func:`compile_model`: SGD with momentum (the optimiser of the SA-Net, SimAM, SB and DCANet papers)
  or Adam, a cosine / step / constant learning-rate schedule with linear warm-up, sparse categorical
  cross-entropy (optionally label-smoothed) and accuracy. Under ``mixed_float16`` Keras itself wraps
  the optimiser in a ``LossScaleOptimizer`` at compile time (the model's dtype policy decides);
  with several replicas :class:`ReplicaSafeLossScaleOptimizer` is used instead, because Keras
  3.15's skips a step only when the *first* replica's gradients overflow (the others' infs then
  reach the weights as NaN).
* :func:`check_schedule_arguments`, :func:`check_optimizer_arguments`, :func:`check_label_smoothing`:
  the checks of :func:`make_schedule`, :func:`make_optimizer` and :func:`make_loss`, without building
  anything (for a caller that validates its arguments long before it compiles). The choice lists
  (:data:`PRECISIONS`, :data:`STRATEGIES`, :data:`OPTIMIZERS`, :data:`SCHEDULES`) are defined in
  :mod:`search.training_choices`, which imports no TensorFlow, and re-exported here.
* :func:`fit_then_evaluate`: a run's fit without per-epoch validation, then one ``evaluate``.
* :func:`make_callbacks` and :class:`StopOnNaN`: a loss that becomes NaN or infinite raises
  ``keras_tuner.errors.FailedTrialError`` from inside ``fit``; KerasTuner 1.4.8 records the trial as
  ``FAILED`` (no retry) and goes on with the next one. Note its oracle's
  ``max_consecutive_failed_trials`` (default 3) still ends the search after that many failures in a
  row.
"""

from __future__ import annotations

import math
import sys
import time

import keras
import numpy as np
import tensorflow as tf

# Lives in keras_attn so that a saved model loads with `import keras_attn` alone.
from keras_attn.optimizers import ReplicaSafeLossScaleOptimizer  # noqa: F401
from keras_attn.validation import check_choice, check_number
# Defined without TensorFlow for the CLI; re-exported here, where they are the arguments' choices.
from search.training_choices import (  # noqa: F401
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    STRATEGIES,
    SUPPORTED_STRATEGIES,
)

# The step schedule divides the learning rate by 10 at these fractions of the (post-warm-up) run,
# the usual CIFAR recipe (e.g. epochs 150 and 225 of 300).
STEP_BOUNDARIES = (0.5, 0.75)
STEP_FACTOR = 0.1

MULTI_WORKER_MESSAGE = (
    "strategy 'multi_worker' is not supported: Keras 3's Model.fit does not work with "
    "tf.distribute.MultiWorkerMirroredStrategy. To use several machines, run a distributed "
    "search instead: KerasTuner's chief/worker tuning (--role chief on one machine with "
    "--oracle HOST:PORT, --role worker on the others), where each worker trains its own trials, "
    "on its own GPUs with 'mirrored' if it has several."
)


# --------------------------------------------------------------------------- precision


def resolve_precision(precision="auto"):
    """The precision policy name to use.

    Args:
        precision: ``"auto"`` (default: ``"mixed_float16"`` if TensorFlow sees a GPU, else
            ``"float32"``), ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.

    Returns:
        A Keras dtype policy name.

    Raises:
        ValueError: any other value; the message lists the valid ones.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "auto":
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    return precision


def set_precision(policy="auto"):
    """Resolve ``policy`` (see :func:`resolve_precision`) and make it Keras' global dtype policy.

    Call it before building a model: layers take the global policy when they are created.
    ``keras.backend.clear_session()`` resets the global policy to float32.

    Returns:
        The policy name that was set.
    """
    name = resolve_precision(policy)
    keras.mixed_precision.set_global_policy(name)
    return name


# --------------------------------------------------------------------------- strategy

_MIRRORED = {}


def resolve_strategy(strategy="auto", devices=None):
    """A ``tf.distribute.Strategy`` by name.

    Args:
        strategy: ``"auto"`` (default: ``MirroredStrategy`` over all GPUs when there are at least
            two, ``OneDeviceStrategy`` on the GPU when there is one, else TensorFlow's default
            strategy), ``"one_device"`` (first GPU, else the CPU), ``"mirrored"``
            (``MirroredStrategy`` over ``devices``; default all GPUs, else all logical CPU devices;
            the same instance for the same devices on every call), or a
            ``tf.distribute.Strategy`` instance (returned as is). ``"multi_worker"`` is refused.
        devices: device names for ``"mirrored"`` (default: see above).

    Returns:
        The strategy. Build and compile models under ``strategy.scope()``.

    Raises:
        ValueError: ``"multi_worker"`` (the message explains why and what to use instead) or an
            unknown name (the message lists the valid ones).
    """
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "multi_worker":
        raise ValueError(MULTI_WORKER_MESSAGE)
    check_choice("strategy", strategy, SUPPORTED_STRATEGIES)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if strategy == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy(gpus)
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy(gpus[0])
        return tf.distribute.get_strategy()
    if strategy == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")
    if devices is None:
        # A CPU split into logical devices (tf.config.set_logical_device_configuration) mirrors
        # like several GPUs: how the distributed path is tested on a CPU-only machine.
        devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    key = tuple(devices)
    if key not in _MIRRORED:
        # One instance per device set: two MirroredStrategy objects over the same devices
        # number their collective all-reduces alike, and the second one's steps then fail with
        # "Shape mismatch in the collective instance".
        _MIRRORED[key] = tf.distribute.MirroredStrategy(list(devices))
    return _MIRRORED[key]


# --------------------------------------------------------------------------- schedules


@keras.saving.register_keras_serializable(package="keras_attn_search")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``warmup_from`` to ``after(0)`` over ``warmup_steps``, then ``after``.

    ``after`` is a float (constant) or a ``LearningRateSchedule`` evaluated at
    ``step - warmup_steps``. (Cosine warm-up uses ``keras.optimizers.schedules.CosineDecay``'s own
    ``warmup_target`` instead.)
    """

    def __init__(self, after, warmup_steps, warmup_from=0.0, name="WarmupSchedule"):
        super().__init__()
        self.after = after
        self.warmup_steps = int(warmup_steps)
        self.warmup_from = float(warmup_from)
        self.name = name

    def _after(self, step):
        if isinstance(self.after, keras.optimizers.schedules.LearningRateSchedule):
            return keras.ops.cast(self.after(step), "float32")
        return keras.ops.convert_to_tensor(float(self.after), "float32")

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        target = self._after(keras.ops.convert_to_tensor(0.0))
        ramp = self.warmup_from + (target - self.warmup_from) * (step / warm)
        after = self._after(keras.ops.maximum(step - self.warmup_steps, 0.0))
        return keras.ops.where(step < self.warmup_steps, ramp, after)

    def get_config(self):
        after = self.after
        if isinstance(after, keras.optimizers.schedules.LearningRateSchedule):
            after = keras.optimizers.schedules.serialize(after)
        return {
            "after": after,
            "warmup_steps": self.warmup_steps,
            "warmup_from": self.warmup_from,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["after"], dict):
            config["after"] = keras.optimizers.schedules.deserialize(config["after"])
        return cls(**config)


def make_schedule(learning_rate=0.05, *, schedule="cosine", epochs=1, steps_per_epoch=None,
                  warmup_epochs=0, min_fraction=0.0):
    """A learning rate (float) or ``LearningRateSchedule`` over ``epochs * steps_per_epoch`` steps.

    Args:
        learning_rate: peak learning rate (default 0.05).
        schedule: ``"cosine"`` (default; cosine decay to ``min_fraction * learning_rate`` at the end),
            ``"step"`` (x0.1 at 50 % and 75 % of the post-warm-up steps) or ``"constant"``.
        epochs: length of the run (default 1).
        steps_per_epoch: batches per epoch; needed by ``"cosine"``, ``"step"`` and warm-up.
        warmup_epochs: linear warm-up from 0 to ``learning_rate`` over this many epochs (default 0;
            fractions allowed), counted inside ``epochs``.
        min_fraction: cosine floor as a fraction of ``learning_rate`` (default 0).

    Returns:
        A float for ``"constant"`` without warm-up (the optimiser keeps a settable variable), else a
        ``keras.optimizers.schedules.LearningRateSchedule``.

    Raises:
        ValueError: a bad argument (see :func:`check_schedule_arguments`), or no
            ``steps_per_epoch`` where ``schedule`` or the warm-up needs it.
    """
    check_schedule_arguments(learning_rate, schedule=schedule, epochs=epochs,
                             steps_per_epoch=steps_per_epoch, warmup_epochs=warmup_epochs)
    lr = float(learning_rate)
    if schedule == "constant" and not warmup_epochs:
        return lr
    if steps_per_epoch is None:
        raise ValueError(
            f"`steps_per_epoch` is required for schedule={schedule!r}"
            f"{' with warm-up' if warmup_epochs else ''}: pass the number of training batches per "
            "epoch, e.g. ceil(train_size / batch_size), or use schedule='constant'."
        )
    total, warmup = _run_steps(epochs, steps_per_epoch, warmup_epochs)
    decay = total - warmup
    if schedule == "cosine":
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                0.0, decay, alpha=min_fraction, warmup_target=lr, warmup_steps=warmup
            )
        return keras.optimizers.schedules.CosineDecay(lr, decay, alpha=min_fraction)
    if schedule == "step":
        boundaries = sorted({max(1, int(round(b * decay))) for b in STEP_BOUNDARIES})
        values = [lr * STEP_FACTOR ** i for i in range(len(boundaries) + 1)]
        after = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    else:
        after = lr
    return WarmupSchedule(after, warmup) if warmup else after


def check_schedule_arguments(learning_rate=0.05, *, schedule="cosine", epochs=1,
                             steps_per_epoch=None, warmup_epochs=0):
    """Check :func:`make_schedule`'s arguments without building a schedule; returns None.

    Each value is checked on its own, and the warm-up against the run's length when
    ``steps_per_epoch`` is given. ``steps_per_epoch=None`` passes here (a hypermodel knows it only
    when a trial trains); :func:`make_schedule` then requires it where ``schedule`` needs it.

    Raises:
        ValueError: ``schedule`` not one of :data:`SCHEDULES`; ``learning_rate``, ``epochs`` or
            ``steps_per_epoch`` not a finite number > 0; ``warmup_epochs`` not a number >= 0; a
            warm-up as long as the run. The message names the argument and the valid values.
    """
    check_choice("schedule", schedule, SCHEDULES)
    check_number("learning_rate", learning_rate, minimum=0, strict=True)
    check_number("epochs", epochs, minimum=0, strict=True)
    check_number("warmup_epochs", warmup_epochs, minimum=0)
    if steps_per_epoch is None:
        return
    check_number("steps_per_epoch", steps_per_epoch, minimum=0, strict=True)
    total, warmup = _run_steps(epochs, steps_per_epoch, warmup_epochs)
    if warmup and warmup >= total:
        raise ValueError(
            f"`warmup_epochs`={warmup_epochs} must be shorter than the run (epochs={epochs})."
        )


def _run_steps(epochs, steps_per_epoch, warmup_epochs):
    """``(total, warmup)`` optimiser steps of a run; the warm-up is counted inside the total."""
    total = max(1, int(round(epochs * steps_per_epoch)))
    return total, int(round(warmup_epochs * steps_per_epoch))


# --------------------------------------------------------------------------- loss, compile


@keras.saving.register_keras_serializable(package="keras_attn_search")
class SparseCategoricalCrossentropyLS(keras.losses.Loss):
    """Sparse categorical cross-entropy with label smoothing.

    Keras 3's ``SparseCategoricalCrossentropy`` has no ``label_smoothing``: integer labels are
    one-hot encoded here, to the width of ``y_pred``, and passed to the categorical cross-entropy,
    which smooths them to ``(1 - s) * onehot + s / num_classes``. The data pipelines keep their
    integer labels, so the ``"accuracy"`` metric is unchanged.
    """

    def __init__(self, label_smoothing=0.1, from_logits=False, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy_ls", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        num_classes = keras.ops.shape(y_pred)[-1]
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        onehot = keras.ops.one_hot(labels, num_classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            onehot, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing
        )

    def get_config(self):
        config = super().get_config()
        config.update({"label_smoothing": self.label_smoothing, "from_logits": self.from_logits})
        return config


def make_loss(label_smoothing=0.0):
    """The loss: ``"sparse_categorical_crossentropy"``, or :class:`SparseCategoricalCrossentropyLS`
    when ``label_smoothing > 0`` (a saved model then needs ``search.training`` imported to load
    with its compile state; ``compile=False`` always works).

    Raises:
        ValueError: ``label_smoothing`` outside [0, 1) (see :func:`check_label_smoothing`).
    """
    check_label_smoothing(label_smoothing)
    if label_smoothing == 0:
        return "sparse_categorical_crossentropy"
    return SparseCategoricalCrossentropyLS(label_smoothing=label_smoothing)


def check_label_smoothing(label_smoothing=0.0):
    """Check :func:`make_loss`'s ``label_smoothing`` without building a loss; returns None.

    Raises:
        ValueError: not a number in [0, 1); the message names the value.
    """
    check_number("label_smoothing", label_smoothing, minimum=0, maximum=1, strict_max=True)


def check_optimizer_arguments(optimizer="sgd", *, momentum=0.9, weight_decay=5e-4,
                              clipnorm=None):
    """Check :func:`make_optimizer`'s arguments without building an optimiser; returns None.

    Raises:
        ValueError: ``optimizer`` not one of :data:`OPTIMIZERS`; ``momentum`` not a number in
            [0, 1); ``weight_decay`` not a finite number >= 0; ``clipnorm`` not None or a finite
            number > 0. The message names the argument and the valid values.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_number("weight_decay", weight_decay, minimum=0)
    check_number("momentum", momentum, minimum=0, maximum=1, strict_max=True)
    check_number("clipnorm", clipnorm, minimum=0, strict=True, allow_none=True)


def make_optimizer(optimizer="sgd", learning_rate=0.05, *, momentum=0.9, nesterov=False,
                   weight_decay=5e-4, clipnorm=None):
    """An SGD (momentum) or Adam optimiser.

    ``weight_decay`` is Keras' decoupled decay (each step ``w -= lr * weight_decay * w``), not an
    L2 term in the gradient: with momentum 0.9 it matches a PyTorch ``SGD(weight_decay=wd / 10)``.

    Raises:
        ValueError: unknown ``optimizer`` or a bad number (see :func:`check_optimizer_arguments`).
    """
    check_optimizer_arguments(optimizer, momentum=momentum, weight_decay=weight_decay,
                              clipnorm=clipnorm)
    wd = float(weight_decay) or None
    if optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=float(momentum),
                                    nesterov=bool(nesterov), weight_decay=wd, clipnorm=clipnorm)
    return keras.optimizers.Adam(learning_rate, weight_decay=wd, clipnorm=clipnorm)


def compile_model(
    model,
    *,
    optimizer="sgd",
    learning_rate=0.05,
    momentum=0.9,
    nesterov=False,
    weight_decay=5e-4,
    schedule="cosine",
    warmup_epochs=0,
    epochs=1,
    steps_per_epoch=None,
    label_smoothing=0.0,
    clipnorm=None,
    metrics=("accuracy",),
    jit_compile=False,
):
    """Compile ``model`` for classification with integer labels; returns ``model``.

    Call it under ``strategy.scope()`` when training distributed (the optimiser's variables are
    created on first use under the model's strategy).

    Args:
        model: a ``keras.Model`` with a softmax output (probabilities, not logits).
        optimizer: ``"sgd"`` (default; momentum, the papers' optimiser) or ``"adam"``; or a
            ``keras.optimizers.Optimizer`` instance, used as is (``learning_rate``, schedule and
            decay arguments are then ignored).
        learning_rate: peak learning rate (default 0.05).
        momentum: SGD momentum (default 0.9). nesterov: Nesterov momentum (default False).
        weight_decay: decoupled weight decay (default 5e-4; see :func:`make_optimizer`), not applied
            to 1-D variables (biases, BatchNorm, attention scalars and per-channel factors).
        schedule: ``"cosine"`` (default), ``"step"`` or ``"constant"``; see :func:`make_schedule`.
        warmup_epochs: linear warm-up length in epochs (default 0).
        epochs: run length the schedule spans (default 1).
        steps_per_epoch: batches per epoch, required by ``"cosine"``, ``"step"`` and warm-up.
        label_smoothing: in [0, 1) (default 0); see :func:`make_loss`.
        clipnorm: optional gradient-norm clipping.
        metrics: compile metrics (default ``("accuracy",)``).
        jit_compile: XLA (default False: slower on this kind of CPU, and not every layer
            supports it).

    Returns:
        The compiled model. Under ``mixed_float16`` its optimizer is a Keras ``LossScaleOptimizer``
        wrapping the one made here (Keras wraps it in ``compile``); with several replicas it is a
        :class:`ReplicaSafeLossScaleOptimizer` (works around a Keras 3.15 bug, see there).

    Raises:
        ValueError: a bad argument (see :func:`make_schedule`, :func:`make_optimizer`,
            :func:`make_loss`).
    """
    if isinstance(optimizer, keras.optimizers.Optimizer):
        opt = optimizer
    else:
        lr = make_schedule(learning_rate, schedule=schedule, epochs=epochs,
                           steps_per_epoch=steps_per_epoch, warmup_epochs=warmup_epochs)
        opt = make_optimizer(optimizer, lr, momentum=momentum, nesterov=nesterov,
                             weight_decay=weight_decay, clipnorm=clipnorm)
        if opt.weight_decay:
            # Decay on scales and offsets only shrinks the normalisation; the usual exclusion.
            opt.exclude_from_weight_decay(
                var_list=[v for v in model.trainable_variables if len(v.shape) <= 1]
            )
    strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    if model.dtype_policy.name == "mixed_float16" and strategy.num_replicas_in_sync > 1 and \
            not isinstance(opt, keras.optimizers.LossScaleOptimizer):
        # Keras would wrap it in its own LossScaleOptimizer, which is wrong with replicas.
        opt = ReplicaSafeLossScaleOptimizer(opt)
    model.compile(
        optimizer=opt,
        loss=make_loss(label_smoothing),
        metrics=list(metrics) if metrics else None,
        jit_compile=jit_compile,
    )
    return model


# --------------------------------------------------------------------------- callbacks


def fit_verbosity(quiet=False, stream=None):
    """``verbose`` for ``fit``/``tuner.search``: 0 when ``quiet``; else Keras' progress bar (1)
    on a terminal and one line per epoch (2) when ``stream`` (default ``sys.stdout``) is not one:
    a progress bar redirected to a file writes one line of tens of kilobytes per epoch."""
    if quiet:
        return 0
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return 1 if isatty is not None and isatty() else 2


class StopOnNaN(keras.callbacks.Callback):
    """Fail the KerasTuner trial as soon as the training loss is NaN or infinite.

    Raises ``keras_tuner.errors.FailedTrialError`` from ``fit``: KerasTuner marks the trial
    ``FAILED`` (not retried) and starts the next one, instead of scoring a diverged model. Outside
    a search the error simply ends ``fit``. The loss checked is Keras' running mean over the epoch,
    so one non-finite batch is enough, which is what a NaN in the weights produces anyway.

    Args:
        monitor: the log keys to check (default ``("loss",)``; ``val_loss`` is also checked at
            epoch end when present).
    """

    def __init__(self, monitor=("loss",)):
        super().__init__()
        self.monitor = tuple(monitor)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _check(self, logs, where, keys):
        if not logs:
            return
        for key in keys:
            value = logs.get(key)
            if value is None:
                continue
            value = float(value)
            if not math.isfinite(value):
                from keras_tuner.errors import FailedTrialError

                raise FailedTrialError(
                    f"{key} became {value} at epoch {self._epoch + 1}{where}: the run diverged "
                    "(learning rate too high, or a numerical problem in the model)."
                )

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, f", batch {batch + 1}", self.monitor)

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, "", self.monitor + ("val_loss",))


def fit_then_evaluate(model, x, validation_data, *, epochs=1, callbacks=(), fit=None,
                      verbose=0, **fit_kwargs):
    """Train without validation, then evaluate once: a search run's recipe without the
    per-epoch validation passes that only the last of which is used.

    ``fit(x, epochs=..., callbacks=..., verbose=..., **fit_kwargs)`` (default ``model.fit``; a
    search passes its hypermodel's, e.g. ``lambda *a, **k: hypermodel.fit(hp, model, *a, **k)``)
    trains; ``model.evaluate(validation_data)`` then runs with the same ``callbacks`` (their
    ``on_test_*`` hooks). The returned history is ``fit``'s with ``val_<metric>`` lists added:
    NaN for every epoch but the last, which holds the evaluation, so that ``history["val_x"][-1]``
    and ``len(history["val_x"])`` read as after ``fit(validation_data=...)``. The evaluation's
    ``val_loss`` is checked as :class:`StopOnNaN` checks it at an epoch's end.

    On this project's 2-core CPU the default run (313 steps, 10,000 validation images) spent
    17-23% of its time in its two validation passes (benchmarks/README.md, run_breakdown.py).

    Args:
        model: a compiled Keras model.
        x: the training data (a ``tf.data.Dataset``, or anything ``fit`` takes).
        validation_data: as ``fit``'s: a dataset of ``(x, y)`` batches, or ``(x, y)`` or
            ``(x, y, sample_weight)`` arrays (evaluated at ``fit_kwargs``' ``batch_size``).
        epochs, callbacks, verbose, **fit_kwargs: passed to ``fit`` (``validation_data`` must
            not be among them).

    Returns:
        The ``keras.callbacks.History`` of ``fit``, with the validation metrics added.

    Raises:
        ValueError: ``validation_data`` is None or also given in ``fit_kwargs``.
        keras_tuner.errors.FailedTrialError: ``val_loss`` is NaN or infinite (with
            :class:`StopOnNaN` among ``callbacks``).
    """
    if validation_data is None or "validation_data" in fit_kwargs:
        raise ValueError("fit_then_evaluate needs `validation_data` once, as its third argument; "
                         f"got {validation_data!r} and fit keywords {sorted(fit_kwargs)}.")
    callbacks = list(callbacks)
    history = (fit or model.fit)(x, epochs=epochs, callbacks=callbacks, verbose=verbose,
                                 **fit_kwargs)
    # As fit unpacks validation_data: (x, y) or (x, y, sample_weight) arrays, or a dataset.
    parts = validation_data if isinstance(validation_data, tuple) else (validation_data,)
    data = dict(zip(("x", "y", "sample_weight"), parts))
    if "batch_size" in fit_kwargs:
        data["batch_size"] = fit_kwargs["batch_size"]
    results = model.evaluate(**data, callbacks=callbacks, verbose=0, return_dict=True)
    done = max((len(v) for v in history.history.values()), default=1)
    for key, value in results.items():
        history.history[f"val_{key}"] = [float("nan")] * (done - 1) + [float(value)]
    for callback in callbacks:
        if isinstance(callback, StopOnNaN):
            callback._check({"val_loss": results.get("loss")}, " (validation)", ("val_loss",))
    return history


class StepTimer(keras.callbacks.Callback):
    """Times a ``fit``: how much of it is training, and how much is one-off overhead.

    The first training (and validation) batch of a fit includes tracing the ``tf.function`` (and
    the first run of every kernel); the overhead is that batch's time minus the median of the
    others. After ``fit``, :meth:`result` gives ``{"fit_seconds", "train_steps",
    "median_step_seconds", "overhead_seconds"}``; a phase with a single batch has nothing to
    compare with and is left out of ``overhead_seconds`` (None if both are).
    """

    def __init__(self):
        super().__init__()
        self._times = {"train": [], "test": []}
        self._start = {}
        self._fit_start = None
        self._fit_seconds = None

    def on_train_begin(self, logs=None):
        self._fit_start = time.perf_counter()

    def on_train_end(self, logs=None):
        self._fit_seconds = time.perf_counter() - self._fit_start

    def on_train_batch_begin(self, batch, logs=None):
        self._start["train"] = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._times["train"].append(time.perf_counter() - self._start["train"])

    def on_test_batch_begin(self, batch, logs=None):
        self._start["test"] = time.perf_counter()

    def on_test_batch_end(self, batch, logs=None):
        self._times["test"].append(time.perf_counter() - self._start["test"])

    def result(self):
        overhead = None
        for phase in ("train", "test"):
            times = self._times[phase]
            if len(times) > 1:  # one batch: its time cannot be split into tracing and work
                overhead = (overhead or 0.0) + max(0.0, times[0] - float(np.median(times[1:])))
        train = self._times["train"]
        return {
            "fit_seconds": self._fit_seconds,
            "train_steps": len(train),
            "median_step_seconds": float(np.median(train[1:])) if len(train) > 1 else None,
            "overhead_seconds": overhead,
        }


def make_callbacks(log_dir=None, early_stopping_patience=None, *, monitor="val_accuracy",
                   stop_on_nan=True, restore_best_weights=True, tensorboard_kwargs=None):
    """Callbacks for ``fit``.

    Args:
        log_dir: TensorBoard log directory (default None: no TensorBoard). Inside a KerasTuner
            search the tuner moves it to a per-trial sub-directory.
        early_stopping_patience: epochs without improvement of ``monitor`` before stopping
            (default None: no early stopping).
        monitor: metric for early stopping (default ``"val_accuracy"``; its mode is inferred).
        stop_on_nan: add :class:`StopOnNaN` (default True).
        restore_best_weights: early stopping restores the best epoch's weights (default True).
        tensorboard_kwargs: extra ``keras.callbacks.TensorBoard`` arguments.

    Returns:
        A list of callbacks (deep-copyable, as KerasTuner requires).
    """
    callbacks = []
    if stop_on_nan:
        callbacks.append(StopOnNaN())
    check_number("early_stopping_patience", early_stopping_patience, minimum=0, integer=True,
                 allow_none=True)
    if early_stopping_patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, patience=int(early_stopping_patience),
            restore_best_weights=restore_best_weights,
        ))
    if log_dir is not None:
        kwargs = {"histogram_freq": 0, "write_graph": False, "profile_batch": 0}
        kwargs.update(tensorboard_kwargs or {})
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), **kwargs))
    return callbacks
