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
    python benchmarks/layer_overhead.py --search-default       # the search's default network

Options (comma-separated lists run every combination):
    --search-default   the network, input, batch, placement, attentions and recipe of the
                   search's default run (keras-attn-search with no options): ResNet-20 at
                   28x28x1, batch 64, paper placement, sa,simam,sb,dca_se, the search's SGD
                   recipe, 12 rounds of 4 steps (the other options still override it)
    --backbone     resnet50,resnet20,mobilenetv2_cifar (default); any keras_attn.build_model name
    --placement    block,layer (default), or paper (each attention where its paper puts it; one
                   floor row per placement the attentions use)
    --mode         train,inference (default): a train step (forward, backward, SGD update) or a
                   forward pass in inference mode (``model(x, training=False)`` in a tf.function)
    --attention    all (default) or names from keras_attn.available_attentions()
    --image-size   input height = width (default 64); --channels (default 3);
                   --batch-size (default 16)
    --recipe       plain (default: SGD without momentum) or search (the search's compile:
                   SGD with momentum 0.9, decoupled weight decay 5e-4, cosine schedule), which
                   changes what an update step costs
    --steps, --rounds   timed steps per model per round (5), rounds (3): 15 steps per model
    --precision    float32 (default), mixed_float16, mixed_bfloat16
    --threads N    TensorFlow's intra- and inter-op threads (default: its own, one per core);
                   with 1 on a machine others load, the CPU time is the work alone (no thread
                   waits for another), the steadiest measure of what a layer adds
    --jit-compile  XLA for every model (off by default: on the 2-core CPUs measured it made a
                   ResNet-50 train step 4.5-4.6x slower; benchmarks/README.md)
    --output FILE  also write the markdown to FILE
    --profile N    after the timing, trace 3 more steps of each model with TensorFlow's profiler
                   and print the N op types whose time differs most from the bare backbone's
                   (summed op durations per step): which ops an attention adds

Each ratio is the median of the timed steps of one model over the median of the bare backbone's,
from one process; "+-95%" is the half-width of the 95% Student-t interval of the per-round ratios
(their geometric mean, ``keras_attn.cost.step_times``): the run's own precision, what the
``--rounds`` buy. "CPU ms" and "CPU ratio" are the same for the process's CPU time per step (all
threads), which another process's load on a shared machine inflates much less than the wall
time. Not a test: timings are noisy, correctness lives in tests/.

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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/machine.py
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


def floor_class(placement):
    """The floor layer placed at ``placement`` by ``placement="paper"`` (one per attention
    placement in a paper-placement run)."""
    if placement == ChannelScale.paper_placement:
        return ChannelScale
    return type(f"ChannelScale_{placement}", (ChannelScale,), {"paper_placement": placement})


# The search's default run (keras-attn-search with no options; search/config.py, README).
SEARCH_DEFAULT = {"backbone": "resnet20", "image_size": 28, "channels": 1, "batch_size": 64,
                  "placement": "paper", "attention": "sa,simam,sb,dca_se", "recipe": "search",
                  "steps": 4, "rounds": 12}

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


def _floors(placement, names):
    """``{row name: floor layer class}``: one floor, or with ``placement="paper"`` one per paper
    placement of the attentions ``names``."""
    if placement != "paper":
        return {"floor": ChannelScale}
    places = []
    for name in names:
        where = keras_attn.get_attention(name).paper_placement
        if where not in places:
            places.append(where)
    return {f"floor@{where}": floor_class(where) for where in places}


def _compile(model, recipe, jit, steps_per_epoch):
    if recipe == "search":
        from search.training import compile_model

        # The search's default recipe (search/recipe.py): SGD, momentum 0.9, weight decay 5e-4,
        # cosine over 2 epochs.
        compile_model(model, epochs=2, steps_per_epoch=steps_per_epoch, jit_compile=jit)
    else:
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss="sparse_categorical_crossentropy", jit_compile=jit)


def _models(backbone, placement, names, shape, num_classes, args):
    models = {}
    floors = _floors(placement, names)
    for name in ["none", *floors, *names]:
        attention = floors.get(name, None if name == "none" else name)
        kwargs = {}
        if backbone.startswith("mobilenet") and backbone not in SMALL:
            kwargs["alpha"] = 0.35
        model = keras_attn.build_model(backbone, input_shape=shape, num_classes=num_classes,
                                       attention=attention, placement=placement, seed=0, **kwargs)
        _compile(model, args.recipe, args.jit_compile, 157)
        models[name] = model
    return models


def _label(name):
    if name == "none":
        return "bare backbone"
    if name == "floor":
        return "one multiply (floor)"
    if name.startswith("floor@"):
        return f"one multiply (floor) at {name[len('floor@'):]}"
    return name


def run(backbone, placement, mode, args, names, out):
    shape = (args.image_size, args.image_size, args.channels)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch_size, *shape), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, args.batch_size))
    models = _models(backbone, placement, names, shape, 10, args)
    steps, added, points = {}, {}, {}
    base_params = models["none"].count_params()
    for name, model in models.items():
        steps[name] = step_function(model, mode, x, y, args.jit_compile)
        added[name] = model.count_params() - base_params
        points[name] = sum(isinstance(l, AttentionLayer) for l in model.layers)
    # The method the search uses for its cost columns (keras_attn.cost.step_times).
    timed = step_times(steps, "none", n_steps=args.steps, rounds=args.rounds)
    for name in models:
        print(f"  built {name:<16} at {points[name]:>3} points, warm-up "
              f"{timed[name]['warmup_seconds']:5.1f}s", file=sys.stderr, flush=True)

    where = (f"{placement} placement" if placement == "paper" else
             f"{placement} placement ({points[next(n for n in models if n != 'none')]} "
             f"insertion points)")
    out.append(f"\n### {backbone}, {shape[0]}x{shape[1]}x{shape[2]}, batch {args.batch_size}, "
               f"{where}, {mode}\n")
    out.append("| model | params added | ms/step | ratio to bare | +-95% | spread | CPU ms/step "
               "| CPU ratio | CPU +-95% | points |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in models:
        t = timed[name]
        low, high = t["ci95"]
        cpu_low, cpu_high = t["cpu_ci95"]
        out.append(f"| {_label(name)} | {added[name]:,} | {t['seconds'] * 1e3:.1f} | "
                   f"{t['ratio']:.3f} | {(high - low) / 2:.3f} | {t['spread']:.3f} | "
                   f"{t['cpu_seconds'] * 1e3:.1f} | {t['cpu_ratio']:.3f} | "
                   f"{(cpu_high - cpu_low) / 2:.3f} | {points[name]} |")
    print("\n".join(out[-(len(models) + 3):]), flush=True)
    if mode == "train" and not tf.config.list_physical_devices("GPU"):
        out.append("\n" + _throughput(models["none"], timed["none"], args.batch_size))
        print(out[-1], flush=True)
    if args.profile:
        _profile_table(models, steps, args.profile, out)
    return timed


def _throughput(model, timed, batch_size):
    """The bare backbone's training throughput against the CPU's peak (benchmarks/machine.py),
    by the wall time (what the run got) and by the process's CPU time (what its cores did)."""
    from keras_attn.cost import forward_flops
    from machine import cpu_info, throughput_line

    flops = forward_flops(model).total
    if not flops:
        return "Throughput: the FLOP count is missing."
    wall = throughput_line(batch_size / timed["seconds"], flops)
    cores = cpu_info()["cores"]
    # CPU seconds spread over the cores: the rate the cores would give if the process had them.
    busy = batch_size / (timed["cpu_seconds"] / cores)
    return (f"Throughput of the bare backbone's training (train step, batch {batch_size}): by "
            f"wall time {wall}. By the process's CPU time over {cores} cores: "
            f"{busy:.0f} images/s = {busy * 3 * flops / 1e9:.1f} GFLOP/s.")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbone", default="resnet50,resnet20,mobilenetv2_cifar")
    p.add_argument("--placement", default="block,layer")
    p.add_argument("--mode", default="train,inference")
    p.add_argument("--attention", default="all")
    p.add_argument("--search-default", action="store_true",
                   help="the search's default network, input, placement and recipe")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--recipe", default="plain", choices=["plain", "search"])
    p.add_argument("--threads", type=int, default=0,
                   help="TensorFlow's intra- and inter-op threads (default 0: its own choice)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--precision", default="float32",
                   choices=["float32", "mixed_float16", "mixed_bfloat16"])
    p.add_argument("--jit-compile", action="store_true")
    p.add_argument("--output", help="also write the markdown to this file")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="print the N op types whose profiled time differs most from the bare "
                        "backbone's, per model (0: no profile)")
    if "--search-default" in (sys.argv[1:] if argv is None else argv):
        p.set_defaults(**SEARCH_DEFAULT)
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
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    devices = tf.config.list_physical_devices("GPU")
    device = (tf.config.experimental.get_device_details(devices[0]).get("device_name", "GPU")
              if devices else f"CPU, {os.cpu_count()} cores ({_cpu_name()}), {_onednn()}")
    out = [
        "## keras-attn layer overhead",
        "",
        f"- date: {datetime.date.today().isoformat()}; device: {device}; TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}",
        f"- command: `python benchmarks/layer_overhead.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- input {args.image_size}x{args.image_size}x{args.channels}, batch {args.batch_size}, "
        f"{args.precision}, jit_compile={args.jit_compile}, recipe {args.recipe}; median of "
        f"{args.steps * args.rounds} steps per model, timed round-robin ({args.rounds} rounds of "
        f"{args.steps}) in one process after 2 warm-up steps; ratio = median step / bare "
        f"backbone's median step; +-95% = half-width of the 95% t-interval of the per-round "
        f"ratios; spread = half their interquartile range; CPU = the process's CPU time per "
        f"step (all threads); threads: {args.threads or 'TensorFlow default'}",
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
