"""What each attention layer costs in a backbone, measured side by side against a floor.

For every (backbone, placement, mode) it builds the bare backbone, the backbone with a
one-multiply layer at the same insertion points (``x * w``, ``w`` a per-channel variable: the
least any gate can cost, one read and one write of the map forward, a few backward), and one model
per attention type. After a warm-up (tracing) it times the steps round-robin, ``--steps`` per model
per round, so that drift on a shared machine hits every model alike, and prints the median step
time of each model and its ratio to the bare backbone as a markdown table.

    python benchmarks/layer_overhead.py                        # everything (~30 min on 2 CPU cores)
    python benchmarks/layer_overhead.py --backbone resnet50 --placement block --mode train
    python benchmarks/layer_overhead.py --backbone resnet20 --image-size 32 --batch-size 128
    python benchmarks/layer_overhead.py --image-size 224 --precision mixed_float16 --jit-compile
                                                               # the GPU setting of issue 10

Options (comma-separated lists run every combination):
    --backbone     resnet50,resnet20,mobilenetv2_cifar (default); any keras_attn.build_model name
    --placement    block,layer (default)
    --mode         train,inference (default): a train step (forward, backward, SGD update) or a
                   forward pass in inference mode (``model(x, training=False)`` in a tf.function)
    --attention    all (default) or names from keras_attn.available_attentions()
    --image-size   input height = width (default 64); --batch-size (default 16)
    --steps, --rounds   timed steps per model per round (5), rounds (3): 15 steps per model
    --precision    float32 (default), mixed_float16, mixed_bfloat16
    --jit-compile  XLA for every model (off by default: on the 2-core CPUs measured it made a
                   ResNet-50 train step 4.5-4.6x slower; benchmarks/README.md)
    --output FILE  also write the markdown to FILE
    --profile N    after the timing, trace 3 more steps of each model with TensorFlow's profiler
                   and print the N op types whose time differs most from the bare backbone's
                   (summed op durations per step): which ops an attention adds

Each ratio is the median of the timed steps of one model over the median of the bare backbone's,
from one process; "spread" is the half-width of the interquartile range of the per-round ratios,
a rough uncertainty. Not a test: timings are noisy, correctness lives in tests/.

The header names the CPU and whether TensorFlow's oneDNN kernels are on. TensorFlow turns them on
by default only on CPUs with AVX-512 (and similar); this script, like scripts/bootstrap.sh for the
search and the tests, turns them on unless TF_ENABLE_ONEDNN_OPTS is set
(``TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/layer_overhead.py`` for TensorFlow's own kernels).
On the 2-core AMD EPYC of 2026-11-30 they made the bare ResNet-50 train step 3.0x faster, which
moves every ratio: ratios from machines with different convolution kernels are not comparable.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile

# The same kernels as scripts/bootstrap.sh gives the search and the tests (oneDNN on, unless
# TF_ENABLE_ONEDNN_OPTS says otherwise); read by TensorFlow when it is imported, so set first.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_attn  # noqa: E402
from keras_attn.cost import step_function, step_times  # noqa: E402
from keras_attn.layers._base import AttentionLayer  # noqa: E402


@keras.saving.register_keras_serializable(package="keras_attn_benchmarks")
class ChannelScale(AttentionLayer):
    """The floor: ``x * w`` with one variable per channel, the cheapest possible gate."""

    def build(self, input_shape):
        self._set_axes(input_shape)
        self.scale = self.add_weight(name="scale", shape=(self.channels,), initializer="ones")
        self.built = True

    def call(self, inputs):
        return inputs * keras.ops.reshape(self.scale, self._channel_shape(len(inputs.shape)))


SMALL = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "mobilenetv2_cifar"}


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _onednn():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process, as a phrase."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        on = _pywrap_util_port.IsMklEnabled()
    except (ImportError, AttributeError):
        return "oneDNN state unknown"
    env = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")
    return f"oneDNN kernels {'on' if on else 'off'} (TF_ENABLE_ONEDNN_OPTS={env})"


def _op_times(step, n_steps, logdir):
    """Op time per step (ms) by TensorFlow op type, from a profiler trace: each op's duration as
    the executor saw it, summed, so that ops run side by side both count."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tf.profiler.experimental.start(logdir)
    for _ in range(n_steps):
        step()
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    paths = [os.path.join(d, f) for d, _, fs in os.walk(logdir) for f in fs if f.endswith(".xplane.pb")]
    with open(max(paths, key=os.path.getmtime), "rb") as f:
        space.ParseFromString(f.read())
    totals = {}
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                # Op events are named "scope/name:Type"; the executor's and the function
                # runtime's own events ("ExecutorState::Process", "EagerLocalExecute: f") are not.
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name and " " not in name:
                    kind = name.rsplit(":", 1)[1]
                    totals[kind] = totals.get(kind, 0.0) + event.duration_ps / 1e9 / n_steps
    return totals


def _profile_table(models, steps, top, out):
    with tempfile.TemporaryDirectory() as tmp:
        per_model = {name: _op_times(steps[name], 3, os.path.join(tmp, name)) for name in models}
    base = per_model["none"]
    for name, ops_ in per_model.items():
        if name == "none":
            continue
        diff = {k: ops_.get(k, 0.0) - base.get(k, 0.0) for k in set(ops_) | set(base)}
        rows = sorted(diff, key=lambda k: -abs(diff[k]))[:top]
        total = sum(ops_.values()) - sum(base.values())
        out.append(f"\nProfile of `{name}` minus the bare backbone (summed op durations, ms "
                   f"per step; all op types together {total:+.1f}):\n")
        out.append("| op type | bare | with attention | difference |")
        out.append("| --- | ---: | ---: | ---: |")
        for k in rows:
            out.append(f"| {k} | {base.get(k, 0.0):.1f} | {ops_.get(k, 0.0):.1f} | {diff[k]:+.1f} |")
        print("\n".join(out[-(len(rows) + 3):]), flush=True)


def _models(backbone, placement, names, shape, num_classes, jit):
    models = {}
    for name in ["none", "floor"] + names:
        attention = {"none": None, "floor": ChannelScale}.get(name, name)
        kwargs = {}
        if backbone.startswith("mobilenet") and backbone not in SMALL:
            kwargs["alpha"] = 0.35
        model = keras_attn.build_model(backbone, input_shape=shape, num_classes=num_classes,
                                       attention=attention, placement=placement, seed=0, **kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy",
                      jit_compile=jit)
        models[name] = model
    return models


def run(backbone, placement, mode, args, names, out):
    shape = (args.image_size, args.image_size, 3)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch_size, *shape), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, args.batch_size))
    models = _models(backbone, placement, names, shape, 10, args.jit_compile)
    steps, added = {}, {}
    base_params = models["none"].count_params()
    for name, model in models.items():
        steps[name] = step_function(model, mode, x, y, args.jit_compile)
        added[name] = model.count_params() - base_params
    # The method the search uses for its cost columns (keras_attn.cost.step_times).
    timed = step_times(steps, "none", n_steps=args.steps, rounds=args.rounds)
    for name, model in models.items():
        points = sum(isinstance(l, AttentionLayer) for l in model.layers)
        print(f"  built {name:<9} at {points:>3} points, warm-up "
              f"{timed[name]['warmup_seconds']:5.1f}s", file=sys.stderr, flush=True)

    points = sum(isinstance(l, AttentionLayer) for l in models["floor"].layers)
    out.append(f"\n### {backbone}, {placement} placement ({points} insertion points), {mode}\n")
    out.append("| model | params added | ms/step | ratio to bare | spread |")
    out.append("| --- | ---: | ---: | ---: | ---: |")
    for name in models:
        label = {"none": "bare backbone", "floor": "one multiply (floor)"}.get(name, name)
        t = timed[name]
        out.append(f"| {label} | {added[name]:,} | {t['seconds'] * 1e3:.1f} | {t['ratio']:.3f} | "
                   f"{t['spread']:.3f} |")
    print("\n".join(out[-(len(models) + 3):]), flush=True)
    if args.profile:
        _profile_table(models, steps, args.profile, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbone", default="resnet50,resnet20,mobilenetv2_cifar")
    p.add_argument("--placement", default="block,layer")
    p.add_argument("--mode", default="train,inference")
    p.add_argument("--attention", default="all")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--precision", default="float32",
                   choices=["float32", "mixed_float16", "mixed_bfloat16"])
    p.add_argument("--jit-compile", action="store_true")
    p.add_argument("--output", help="also write the markdown to this file")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="print the N op types whose profiled time differs most from the bare "
                        "backbone's, per model (0: no profile)")
    args = p.parse_args(argv)

    valid = keras_attn.available_attentions()
    names = valid if args.attention == "all" else args.attention.split(",")
    for n in names:
        if n not in valid:
            p.error(f"unknown attention {n!r}; valid: {', '.join(valid)}")
    for mode in args.mode.split(","):
        if mode not in ("train", "inference"):
            p.error(f"unknown mode {mode!r}; valid: train, inference")
    keras.mixed_precision.set_global_policy(args.precision)

    devices = tf.config.list_physical_devices("GPU")
    device = (tf.config.experimental.get_device_details(devices[0]).get("device_name", "GPU")
              if devices else f"CPU, {os.cpu_count()} cores ({_cpu_name()}), {_onednn()}")
    out = [
        "## keras-attn layer overhead",
        "",
        f"- date: {datetime.date.today().isoformat()}; device: {device}; TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}",
        f"- command: `python benchmarks/layer_overhead.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- input {args.image_size}x{args.image_size}x3, batch {args.batch_size}, {args.precision}, "
        f"jit_compile={args.jit_compile}; median of {args.steps * args.rounds} steps per model, "
        f"timed round-robin ({args.rounds} rounds of {args.steps}) in one process after 2 warm-up "
        f"steps; ratio = median step / bare backbone's median step; spread = half the "
        f"interquartile range of the per-round ratios",
    ]
    print("\n".join(out), flush=True)
    for backbone in args.backbone.split(","):
        for placement in args.placement.split(","):
            for mode in args.mode.split(","):
                keras.backend.clear_session()
                run(backbone, placement, mode, args, names, out)
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
