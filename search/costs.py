"""What each configuration of a search costs, measured once per configuration in the run.

For every finished configuration one model is built (its first seed's initial weights: the cost
does not depend on them) and measured with :mod:`keras_attn.cost`:

* ``params_added``: parameters its attention layers add (from the search's build record);
* ``flops`` / ``flops_added``: forward FLOPs per image in inference mode, counted by TensorFlow's
  graph profiler, and the part above the baseline's (the attention's); op types without a FLOP
  statistic are listed in ``flops_uncounted`` (they count 0), and a count that cannot be made is
  missing with its reason in ``flops_reason``, never 0;
* ``train_step`` / ``inference_step``: the ratio of the median train step (forward, backward,
  update) and inference step to the baseline's, all models timed round-robin in one process on
  the run's device, batch size and input shape (random inputs: the time of these networks does not
  depend on the values), with ``*_spread``, half the interquartile range of the per-round ratios.

The numbers are written to ``costs.json`` as measured, so a resumed search reuses them; the
timing settings and the device are recorded beside them (``how``).
"""

from __future__ import annotations

import contextlib
import os
import time

COST_MEASURES = ("params_added", "flops_added", "train_step", "inference_step")
# What a multi-objective tuner (--tuner nsga2/tpe) can minimise beside maximising accuracy, read
# per trial from its info record: no baseline is at hand there, so FLOPs are the model's total
# (the baseline's are the same for every trial) and step-time ratios are not offered.
TRIAL_COSTS = ("params_added", "flops")


def _device():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return f"CPU, {os.cpu_count()} cores"


def measure_costs(board, hypermodel, *, batch_size, out, n_steps=3, rounds=3, strategy=None):
    """Measure the cost of every configuration of ``board`` that has runs (see the module
    docstring); returns ``{"how": ..., "configurations": {config: {measure: value, ...}}}``,
    keyed by each row's configuration id (``row["config"]``).

    Reuses ``out/costs.json`` when it holds every configuration of ``board`` with the same
    settings.
    ``n_steps=0`` skips the timing (the step ratios are then missing, with the reason).
    """
    import keras

    from keras_attn.registry import NO_ATTENTION
    from search.rundir import as_rundir, write_json

    rows = [r for r in board if r["repeats"]]
    path = as_rundir(out).costs
    settings = {"batch_size": int(batch_size), "n_steps": int(n_steps), "rounds": int(rounds)}
    cached = _read_costs(path)
    if cached.get("settings") == settings and \
            {r["config"] for r in rows} <= set(cached.get("configurations", {})):
        return cached
    baseline = next((r for r in rows if r["attention"] == NO_ATTENTION), None)
    t0 = time.time()
    keras.backend.clear_session()
    models, result = _count_flops(rows, baseline, hypermodel, strategy)
    timing_reason = ""
    if baseline is None:
        timing_reason = "no baseline to take the ratio to"
    elif n_steps < 1:
        timing_reason = "timing off (cost steps 0)"
    if not timing_reason:
        _time_steps(models, result, baseline["config"], hypermodel, batch_size, n_steps, rounds)
    for entry in result.values():
        for mode in ("train", "inference"):
            entry.setdefault(f"{mode}_step", None)
            if entry[f"{mode}_step"] is None:
                entry[f"{mode}_step_reason"] = timing_reason
    keras.backend.clear_session()
    costs = {
        "how": (f"one model per configuration (seed 0's initial weights); forward FLOPs per "
                f"image from TensorFlow's graph profiler (op types without a FLOP statistic "
                f"count 0, listed per configuration); train and inference step times at batch "
                f"{batch_size} on random inputs of the run's shape, all configurations timed "
                f"round-robin in one process ({rounds} rounds of {n_steps} steps after 2 warm-up "
                f"steps), ratio = median step / the baseline's median step, spread = half the "
                f"interquartile range of the per-round ratios; device: {_device()}"),
        "settings": settings,
        "seconds": round(time.time() - t0, 1),
        "configurations": result,
    }
    write_json(path, costs)
    return costs


def _read_costs(path):
    """``costs.json``, checked: ``settings`` an object, ``configurations`` objects whose values
    are numbers, strings, lists or None (never NaN).

    Raises:
        search.rundir.DamagedFileError: another shape (names the file and the field).
    """
    import math

    from search.rundir import DamagedFileError, read_json

    fix = "delete it to measure the costs again"
    cached = read_json(path, missing={}, kind=dict, fix=fix)
    if not cached:
        return cached
    configurations = cached.get("configurations")
    if not isinstance(cached.get("settings"), dict) or not isinstance(configurations, dict):
        raise DamagedFileError(path, "'settings' and 'configurations' must be objects", fix)
    for config, entry in configurations.items():
        if not isinstance(entry, dict):
            raise DamagedFileError(path, f"configuration {config!r} is not an object", fix)
        for key, value in entry.items():
            bad = isinstance(value, float) and not math.isfinite(value)
            if bad or not (value is None or isinstance(value, (int, float, str, list))):
                raise DamagedFileError(path, f"configuration {config!r}: {key} is {value!r}",
                                       fix)
            if key.endswith(("_step", "flops", "flops_added", "params_added")) and \
                    isinstance(value, str):
                raise DamagedFileError(path, f"configuration {config!r}: {key} is {value!r}, "
                                       "not a number", fix)
    return cached


def _count_flops(rows, baseline, hypermodel, strategy):
    """One model per configuration (seed 0's initial weights) and its forward FLOPs, also as
    added to the baseline's; returns ``(models, {config: entry})``."""
    from keras_attn.cost import forward_flops

    models, result = {}, {}
    for row in rows:
        context = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with context:
            models[row["config"]] = hypermodel.build_configuration(row["configuration"], seed=0)
        flops = forward_flops(models[row["config"]])
        result[row["config"]] = {"params_added": row.get("params_added"),
                                     "flops": flops.total, "flops_reason": flops.reason,
                                     "flops_uncounted": list(flops.uncounted)}
    base_flops = result[baseline["config"]]["flops"] if baseline else None
    for entry in result.values():
        entry["flops_added"] = (None if entry["flops"] is None or base_flops is None
                                else entry["flops"] - base_flops)
        if entry["flops_added"] is None and not entry["flops_reason"]:
            entry["flops_reason"] = "the baseline's FLOPs are missing"
    return models, result


def _time_steps(models, result, baseline_config, hypermodel, batch_size, n_steps, rounds):
    """Train and inference step times of every model, round-robin, as ratios to the
    baseline's, into ``result``."""
    import numpy as np

    from keras_attn.cost import step_function, step_times

    shape = (int(batch_size), *hypermodel.input_shape)
    rng = np.random.default_rng(0)
    x = rng.random(shape, dtype=np.float32)
    y = rng.integers(0, hypermodel.num_classes, int(batch_size))
    for mode in ("train", "inference"):
        steps = {t: step_function(m, mode, x, y) for t, m in models.items()}
        timed = step_times(steps, baseline_config, n_steps=n_steps, rounds=rounds)
        for config, t in timed.items():
            result[config].update({f"{mode}_step": t["ratio"],
                                       f"{mode}_step_spread": t["spread"],
                                       f"{mode}_step_seconds": t["seconds"]})


def pareto_front(points):
    """Which points are on the accuracy-cost Pareto front.

    Args:
        points: ``{key: (gain, cost)}``, ``gain`` to maximise (the paired difference to the
            baseline), ``cost`` to minimise; a None in either leaves the point off the front.

    Returns:
        ``{key: True | False | None}``: True when no other point has a gain at least as high and
        a cost at least as low with one of them strictly better; None for a point with a missing
        value. Points with equal gain and cost are both on the front.
    """
    known = {k: v for k, v in points.items() if v[0] is not None and v[1] is not None}
    out = {k: None for k in points}
    for k, (gain, cost) in known.items():
        out[k] = not any(g >= gain and c <= cost and (g > gain or c < cost)
                         for j, (g, c) in known.items() if j != k)
    return out


def parse_max_cost(text):
    """``"train_step=1.10"`` -> ``("train_step", 1.10)``.

    Raises:
        ValueError: no ``=``, an unknown measure (the message lists :data:`COST_MEASURES`), or a
            value that is not a finite number.
    """
    import math

    measure, sep, value = str(text).partition("=")
    measure = measure.strip()
    if not sep or measure not in COST_MEASURES:
        raise ValueError(f"expected MEASURE=LIMIT with MEASURE one of {', '.join(COST_MEASURES)},"
                         f" got {text!r}")
    try:
        limit = float(value)
    except ValueError:
        limit = math.nan
    if not math.isfinite(limit):
        raise ValueError(f"the limit of {measure} must be a finite number, got {value!r}")
    return measure, limit
