"""What a model costs: forward FLOPs from TensorFlow's graph profiler, and step times measured side
by side.

Two measures, each with how it was obtained:

* :func:`forward_flops`: the floating-point operations of one forward pass (inference mode) per
  example, counted by TensorFlow's own graph profiler
  (``tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()``) on the model's concrete
  function with its variables frozen to constants. It counts every op type for which TensorFlow
  registers a FLOP statistic (convolutions, matrix products, BiasAdd, the elementwise arithmetic
  Add/Sub/Mul/RealDiv/Square/Rsqrt..., reductions such as Mean) at the convention of that
  statistic (a multiply-add counts 2); ops without one (e.g. Sigmoid, Tanh, Relu, Transpose,
  Max/Min reductions) count 0 and are listed in ``uncounted``, so a number is never silently
  smaller than the work. TensorFlow backend only; elsewhere the count is missing, with the reason.
* :func:`step_times`: the median step time of several models and its ratio to a reference model,
  timed round-robin in one process (``rounds`` rounds of ``steps`` steps each, after two warm-up
  steps that trace), so that drift on a shared machine hits every model alike; ``spread`` is half
  the interquartile range of the per-round ratios, a rough uncertainty, and ``ci95`` a 95%
  Student-t interval of the ratio from the per-round ratios (on their logarithms, so the interval
  is of their geometric mean). Beside the wall time it measures the process's CPU time per step
  (every thread of the process; ``time.process_time``): on a machine shared with other work a
  wall-time ratio absorbs their load, a CPU-time ratio much less. The method of
  ``benchmarks/layer_overhead.py``, which calls it.
"""

from __future__ import annotations

import dataclasses
import statistics
import time


@dataclasses.dataclass(frozen=True)
class Flops:
    """Forward FLOPs per example.

    Attributes:
        total: the profiler's total (None when it could not be measured).
        uncounted: op types in the graph that have no FLOP statistic (counted as 0).
        reason: why ``total`` is None ("" when measured).
    """

    total: int | None
    uncounted: tuple = ()
    reason: str = ""


# Op types that move or select data, or are bookkeeping, rather than compute: not reported as
# "uncounted" (their FLOP count is 0 by any convention).
_NO_ARITHMETIC = {
    "Const", "Identity", "NoOp", "Placeholder", "Reshape", "Shape", "StridedSlice", "Pack",
    "Unpack", "ConcatV2", "Split", "SplitV", "Squeeze", "ExpandDims", "Cast", "Fill", "Range",
    "GatherV2", "Pad", "PadV2", "Slice", "Tile", "Transpose", "IdentityN", "StopGradient",
    "ZerosLike", "OnesLike", "BroadcastTo", "BroadcastArgs", "Size", "Rank", "Select", "SelectV2",
}


def forward_flops(model):
    """Forward FLOPs per example of ``model`` in inference mode (see the module docstring).

    Args:
        model: a built Keras model with one input of known non-batch shape.

    Returns:
        a :class:`Flops`; ``total`` is None, with ``reason``, on a non-TensorFlow backend, for a
        model with several or dynamic-shape inputs, or when the profiler fails.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return Flops(None, reason=f"FLOPs are counted by TensorFlow's profiler; backend is "
                                  f"{keras.backend.backend()}")
    if len(model.inputs) != 1 or any(d is None for d in model.inputs[0].shape[1:]):
        return Flops(None, reason="needs one input of fixed (height, width, channels)")
    try:
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2_as_graph,
        )

        spec = tf.TensorSpec((1, *model.inputs[0].shape[1:]), model.inputs[0].dtype)
        concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        frozen, _ = convert_variables_to_constants_v2_as_graph(concrete)
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        info = tf.compat.v1.profiler.profile(graph=frozen.graph, cmd="op", options=options,
                                             run_meta=tf.compat.v1.RunMetadata())
        from tensorflow.python.framework import ops as tf_ops

        # An op type is counted when TensorFlow registers a "flops" statistic for it (the
        # profiler sums those); an unregistered one has the value None.
        uncounted = {op.type for op in frozen.graph.get_operations()
                     if op.type not in _NO_ARITHMETIC and tf_ops.get_stats_for_node_def(
                         frozen.graph, op.node_def, "flops").value is None}
    except Exception as exc:  # noqa: BLE001  (a cost must be missing with its reason, not 0)
        return Flops(None, reason=f"TensorFlow's profiler failed: {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''}")
    return Flops(int(info.total_float_ops), uncounted=tuple(sorted(uncounted)))


def step_function(model, mode, x, y=None, jit_compile=False):
    """A callable running one step of ``model`` and waiting for its result.

    Args:
        model: a compiled Keras model (``mode="train"``) or any Keras model.
        mode: ``"train"`` (``train_on_batch``: forward, backward, optimizer update) or
            ``"inference"`` (``model(x, training=False)`` in a ``tf.function``).
        x, y: one batch (``y`` needed for ``"train"``).
        jit_compile: XLA for the inference function (the train step follows ``model.compile``).

    Raises:
        ValueError: an unknown ``mode``.
    """
    if mode == "train":
        return lambda: model.train_on_batch(x, y)
    if mode != "inference":
        raise ValueError(f"`mode` must be 'train' or 'inference'; got {mode!r}.")
    import tensorflow as tf

    fn = tf.function(lambda: model(x, training=False), jit_compile=jit_compile)
    return lambda: fn().numpy()  # .numpy(): wait for the result


def step_times(steps, reference, n_steps=5, rounds=3, warmup=2):
    """Median step time (wall and CPU) of each step function and its ratio to ``reference``'s.

    Args:
        steps: ``{name: callable}``, one step each (see :func:`step_function`).
        reference: the name in ``steps`` the ratios are taken to.
        n_steps: timed steps per function per round (default 5); rounds: rounds (default 3).
        warmup: untimed steps per function first (default 2: the first traces).

    Returns:
        ``{name: {"seconds": median wall time of a step in seconds, "ratio": median / reference's
        median, "spread": half the interquartile range of the per-round ratios, "ci95": ``(low,
        high)``, the 95% Student-t interval of the geometric mean of the per-round ratios
        (``(ratio, ratio)`` with one round), "cpu_seconds": median CPU time of the process per
        step (all threads), "cpu_ratio": its ratio to the reference's, "cpu_ci95": the interval
        of the per-round CPU-time ratios, "warmup_seconds"}}``.
        A round's ratio is the median of its steps over the median of the reference's steps in
        the same round.

    Raises:
        ValueError: ``reference`` not in ``steps``, or counts below 1 (``warmup`` below 0).
    """
    if reference not in steps:
        raise ValueError(f"`reference` {reference!r} is not one of {', '.join(map(str, steps))}.")
    if n_steps < 1 or rounds < 1 or warmup < 0:
        raise ValueError(f"n_steps and rounds must be >= 1 and warmup >= 0; got {n_steps}, "
                         f"{rounds}, {warmup}.")
    warm = {}
    for name, fn in steps.items():
        t0 = time.perf_counter()
        for _ in range(warmup):
            fn()
        warm[name] = time.perf_counter() - t0
    times = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    per_round = {name: [] for name in steps}
    cpu_round = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            ts, cs = [], []
            for _ in range(n_steps):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                ts.append(time.perf_counter() - t0)
                cs.append(time.process_time() - c0)
            times[name] += ts
            cpu[name] += cs
            per_round[name].append(statistics.median(ts))
            cpu_round[name].append(statistics.median(cs))
    base = statistics.median(times[reference])
    base_cpu = statistics.median(cpu[reference])
    out = {}
    for name in steps:
        ratios = [r / b for r, b in zip(per_round[name], per_round[reference])]
        cpu_ratios = [r / b for r, b in zip(cpu_round[name], cpu_round[reference]) if b > 0 < r]
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        med = statistics.median(times[name])
        med_cpu = statistics.median(cpu[name])
        out[name] = {"seconds": med, "ratio": med / base, "spread": (q[2] - q[0]) / 2,
                     "ci95": _ratio_interval(ratios), "cpu_seconds": med_cpu,
                     "cpu_ratio": med_cpu / base_cpu if base_cpu > 0 else float("nan"),
                     "cpu_ci95": _ratio_interval(cpu_ratios) if cpu_ratios else
                     (float("nan"), float("nan")),
                     "warmup_seconds": warm[name]}
    return out


def _ratio_interval(ratios, level=0.95):
    """``(low, high)``: the Student-t interval of the geometric mean of positive ``ratios``."""
    import math

    from scipy import stats

    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return (math.exp(mean), math.exp(mean))
    t = stats.t.ppf(0.5 + level / 2, len(logs) - 1)
    half = t * statistics.stdev(logs) / math.sqrt(len(logs))
    return (math.exp(mean - half), math.exp(mean + half))
