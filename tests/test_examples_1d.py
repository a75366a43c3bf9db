"""examples/timeseries_1d.py: the 1-D CNN with attention builds for every layer and learns."""

import importlib.util
import pathlib

import numpy as np
import pytest

import keras
import keras_attn

_PATH = pathlib.Path(__file__).resolve().parent.parent / "examples" / "timeseries_1d.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("timeseries_1d_example", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


def test_dataset_is_balanced_and_shaped():
    x, y = example.make_dataset(300, length=64, seed=0)
    assert x.shape == (300, 64, 1) and x.dtype == np.float32
    assert set(np.unique(y)) == {0, 1, 2}
    assert np.all(np.bincount(y) > 60)
    x2, y2 = example.make_dataset(300, length=64, seed=0)
    np.testing.assert_array_equal(x, x2)  # deterministic in the seed


@pytest.mark.parametrize("attention", [None] + keras_attn.available_attentions())
def test_model_builds_with_every_registered_attention(attention):
    model = example.build_model(attention, length=32, widths=(8, 16))
    x, _ = example.make_dataset(4, length=32)
    probs = keras.ops.convert_to_numpy(model(x))
    assert probs.shape == (4, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    if attention:
        cls = keras_attn.get_attention_class(attention)
        assert sum(isinstance(layer, cls) for layer in model.layers) == 2


def test_same_seed_same_backbone_initial_weights():
    plain, attended = example.build_model(None, seed=3), example.build_model("cbam", seed=3)
    for name in ("conv0", "conv1", "conv2", "head"):
        for a, b in zip(plain.get_layer(name).get_weights(), attended.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_one_epoch_learns():
    train = example.make_dataset(512, length=64, noise=0.3, seed=0)
    x, y = train
    keras.utils.set_random_seed(0)
    model = example.build_model("simam", length=64, widths=(8, 16))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    loss = keras.losses.SparseCategoricalCrossentropy()

    def training_loss():
        # Batch statistics, as in training: after 16 steps BatchNorm's moving averages (momentum
        # 0.99) are still near their initial values, so an inference-mode loss says little yet.
        return float(loss(y, model(x, training=True)))

    before = training_loss()
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    after = training_loss()
    assert after < 0.8 * before, (before, after)
    assert history.history["accuracy"][-1] > 0.45  # chance is 1/3
