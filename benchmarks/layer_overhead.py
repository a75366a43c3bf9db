"""Train-step overhead of each attention layer in a backbone, measured side by side.

Builds the bare backbone and one model per attention type, warms each up (tracing), then times
train steps round-robin (bare, sa, simam, ..., bare, sa, ...) so that drift on a shared machine hits
all models alike, and prints the median step time of each and its ratio to the bare backbone.

    python benchmarks/layer_overhead.py                         # ResNet-50, 32x32, batch 32
    python benchmarks/layer_overhead.py --backbone mobilenetv2 --alpha 0.35 --placement layer
    python benchmarks/layer_overhead.py --attention sa,simam --image-size 224 --batch-size 16

Not a test: the ratios are for reading (goal: a few memory passes per layer, i.e. small ratios).
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

import keras_attn


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--alpha", type=float, default=None, help="MobileNet width multiplier")
    p.add_argument("--attention", default="all", help="comma-separated names, or all")
    p.add_argument("--placement", default="block")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--precision", default="float32")
    args = p.parse_args()

    keras.mixed_precision.set_global_policy(args.precision)
    names = keras_attn.available_attentions() if args.attention == "all" else args.attention.split(",")
    backbone_kwargs = {"alpha": args.alpha} if args.alpha else {}
    shape = (args.image_size, args.image_size, 3)
    x = tf.constant(np.random.rand(args.batch_size, *shape).astype("float32"))
    y = tf.constant(np.random.randint(0, 10, args.batch_size))

    models = {}
    for name in ["none"] + names:
        model = keras_attn.build_model(
            args.backbone, input_shape=shape, num_classes=10,
            attention=None if name == "none" else name, placement=args.placement,
            **backbone_kwargs,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
        t0 = time.time()
        model.train_on_batch(x, y)  # traces the train step
        print(f"built {name:<9} params={model.count_params():>10,}  warm-up {time.time() - t0:5.1f}s",
              flush=True)
        models[name] = model

    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            for _ in range(args.steps):
                t0 = time.perf_counter()
                model.train_on_batch(x, y)
                times[name].append(time.perf_counter() - t0)

    base = statistics.median(times["none"])
    base_params = models["none"].count_params()
    print(f"\n{args.backbone} {shape} batch {args.batch_size} placement={args.placement} "
          f"precision={args.precision}; median of {args.rounds * args.steps} steps")
    print(f"{'attention':<10} {'params added':>13} {'ms/step':>9} {'ratio':>7}")
    for name, ts in times.items():
        med = statistics.median(ts)
        added = models[name].count_params() - base_params
        print(f"{name:<10} {added:>13,} {med * 1e3:>9.1f} {med / base:>7.3f}")


if __name__ == "__main__":
    main()
