"""Attention on 1-D feature maps: a small Conv1D classifier of synthetic time series.

Every keras-attn layer takes 1-D maps ``(batch, steps, channels)`` as well as 2-D ones (the
statistics are taken over the time axis; CBAM's spatial gate is a Conv1D). This trains a small
1-D CNN (three Conv1D + BatchNorm + ReLU blocks, an attention layer after each block's ReLU,
max-pooling between blocks, global average pooling and a softmax) and the same CNN without
attention, from the same seed: the same backbone initial weights (seeded initialisers) and the
same data order, and prints both test accuracies.

The data are synthetic: no real time-series data set is available offline here. Three classes of
windows of length 128: a sine, a square wave and a sawtooth, each with a random frequency (2 to
8 periods per window), phase and amplitude, plus Gaussian noise; the classes differ only in the
wave's shape, which a model must tell apart under the noise.

    python examples/timeseries_1d.py                       # SimAM, about 15 s on 2 CPU cores
    python examples/timeseries_1d.py --attention cbam      # any registered name
    python examples/timeseries_1d.py --attention dca_se --epochs 8

Connected (DCA) layers hand their state from one block to the next; ShuffleAttention lowers
``groups`` to fit each block's channels (``adapt_to_channels``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __name__ == "__main__":  # run from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import keras  # noqa: E402
from keras_attn import available_attentions  # noqa: E402
from keras_attn.registry import get_attention_class, is_connected  # noqa: E402

CLASSES = ("sine", "square", "sawtooth")


def make_dataset(n, length=128, noise=0.8, seed=0):
    """``(x, y)``: ``n`` noisy windows ``(n, length, 1)`` float32 and labels in {0, 1, 2}.

    Each window is ``amplitude * wave(frequency * t + phase) + noise * N(0, 1)`` with the wave a
    sine, a square wave or a sawtooth (the label), 2 to 8 periods per window, a uniform phase and
    an amplitude in [0.5, 1.5].
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    t = np.arange(length)
    periods = rng.uniform(2.0, 8.0, n)
    phase = rng.uniform(0.0, 1.0, n)
    amplitude = rng.uniform(0.5, 1.5, n)
    u = (periods[:, None] * t[None, :] / length + phase[:, None]) % 1.0
    waves = np.stack(
        [np.sin(2 * np.pi * u), np.where(u < 0.5, 1.0, -1.0), 2.0 * u - 1.0], axis=1
    )[np.arange(n), labels]
    x = amplitude[:, None] * waves + noise * rng.normal(size=(n, length))
    return x[..., None].astype("float32"), labels.astype("int32")


def build_model(
    attention=None,
    length=128,
    num_classes=len(CLASSES),
    widths=(16, 32, 64),
    kernel_size=5,
    seed=0,
    attention_kwargs=None,
):
    """A 1-D CNN with ``attention`` (a registered name, or None) after each block's ReLU.

    The backbone's initialisers are seeded from ``seed``, so that models with and without
    attention start from the same backbone weights.
    """
    attention_kwargs = dict(attention_kwargs or {})
    cls = get_attention_class(attention) if attention else None
    inputs = keras.Input((length, 1))
    h, state = inputs, None
    for i, width in enumerate(widths):
        h = keras.layers.Conv1D(
            width,
            kernel_size,
            padding="same",
            use_bias=False,
            kernel_initializer=keras.initializers.HeNormal(seed=seed + i),
            name=f"conv{i}",
        )(h)
        h = keras.layers.BatchNormalization(name=f"bn{i}")(h)
        h = keras.layers.ReLU(name=f"relu{i}")(h)
        if cls is not None:
            kwargs = cls.adapt_to_channels(attention_kwargs, width, where=f"relu{i}")
            layer = cls(name=f"{attention}{i}", **kwargs)
            if is_connected(cls):
                h, state = layer(h if state is None else [h, state])
            else:
                h = layer(h)
        if i < len(widths) - 1:
            h = keras.layers.MaxPooling1D(2, name=f"pool{i}")(h)
    h = keras.layers.GlobalAveragePooling1D(name="gap")(h)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 100),
        name="head",
    )(h)
    return keras.Model(inputs, outputs, name=f"cnn1d_{attention or 'none'}")


def train_and_evaluate(attention, data, epochs=10, batch_size=64, learning_rate=3e-3, seed=0,
                       verbose=0):
    """Build, train and test one model; returns ``(test_accuracy, model, history)``."""
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    model = build_model(attention, length=x_train.shape[1], seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    keras.utils.set_random_seed(seed)  # the same data order for every model
    history = model.fit(
        x_train, y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose
    )
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    return accuracy, model, history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attention", default="simam", choices=available_attentions())
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--noise", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train = make_dataset(args.train_size, args.length, args.noise, seed=args.seed)
    test = make_dataset(args.test_size, args.length, args.noise, seed=args.seed + 1)
    data = (train, test)
    results = {}
    for attention in (None, args.attention):
        start = time.time()
        accuracy, model, _ = train_and_evaluate(attention, data, epochs=args.epochs,
                                                seed=args.seed)
        results[attention or "none"] = accuracy
        print(
            f"{attention or 'none':>10}: test accuracy {accuracy:.4f}  "
            f"({model.count_params()} parameters, {time.time() - start:.1f} s)"
        )
    diff = results[args.attention] - results["none"]
    print(f"{args.attention} - none: {diff:+.4f} (one seed; rerun with --seed for the spread)")
    return results


if __name__ == "__main__":
    main()
