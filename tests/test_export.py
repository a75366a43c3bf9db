"""Export parity: every registered attention exports to SavedModel, LiteRT and ONNX with Keras' own
``model.export``, and each artifact computes what the Keras model computes (one small residual
network holds them all; a ResNet-20 with SA trained under mixed precision is exported too).

The weights are perturbed (noise on every variable) so that the softmax outputs are far from
uniform: a near-uniform output could hide a wrong attention branch inside the tolerance.
"""

import warnings
from importlib.util import find_spec

import numpy as np
import pytest

import keras
import keras_attn
from keras_attn import export as kexport

import tensorflow as tf  # noqa: E402

# Only the ONNX tests need the [export] extras; SavedModel and LiteRT need TensorFlow alone.
needs_onnx = pytest.mark.skipif(
    not all(find_spec(m) is not None for m in ("tf2onnx", "onnx", "onnxruntime")),
    reason="ONNX export needs tf2onnx, onnx and onnxruntime (pip install keras-attn[export])")

SHAPE = (16, 16, 3)
ATOL = 1e-4


def perturb(model, rng):
    """Add noise to every weight but the BatchNorm moving variances (which must stay positive)."""
    for v in model.weights:
        if "moving_variance" not in v.path:
            v.assign(v.numpy() + rng.normal(0.0, 0.02, v.shape).astype("float32"))
    return model


def perturbed_model(attention, seed=0):
    model = keras_attn.build_model("resnet20", input_shape=SHAPE, num_classes=10,
                                   attention=attention, placement="block", seed=seed)
    rng = np.random.default_rng(seed)
    return perturb(model, rng)


def inputs(n=3, seed=1):
    return np.random.default_rng(seed).normal(size=(n, *SHAPE)).astype("float32")


def run_saved_model(path, x):
    loaded = tf.saved_model.load(path)  # keep a reference: serve() needs its variables
    return np.asarray(loaded.serve(x))


def run_litert(path, x):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = Interpreter(model_path=path)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def run_onnx(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


RUNNERS = {"saved_model": run_saved_model, "litert": run_litert, "onnx": run_onnx}


def export_and_run(model, tmp_path, fmt, x, stem="model"):
    path = kexport.export_model(model, kexport.default_path(str(tmp_path / stem), fmt), fmt)
    return RUNNERS[fmt](path, x)


def every_attention_model(seed=0, channels=16):
    """A small residual network with every registered attention on a block's residual branch
    (SB also in its layer-wise ``[conv input, conv output]`` form; each DCA kind as a connected
    pair), so that one export covers every layer: exporting one ResNet-20 per attention took
    ~100 s, this takes ~12 s."""
    from keras_attn.registry import get_attention_class

    layers = keras.layers
    rng = np.random.default_rng(seed)
    inp = keras.Input(SHAPE)
    x = layers.Conv2D(channels, 3, padding="same")(inp)

    def block(x, attend):
        t = layers.Conv2D(channels, 3, padding="same")(x)
        t = layers.BatchNormalization()(t)
        t = attend(x, t)
        return layers.ReLU()(layers.Add()([x, t]))

    for name in keras_attn.available_attentions():
        cls = get_attention_class(name)
        kwargs = cls.adapt_to_channels({}, channels)
        if cls.is_connected:
            first, second = cls(**kwargs), cls(**kwargs)
            state = {}

            def attend_first(_, t, first=first, state=state):
                y, state["s"] = first(t)
                return y

            def attend_second(_, t, second=second, state=state):
                return second([t, state["s"]])[0]

            x = block(x, attend_first)
            x = block(x, attend_second)
        else:
            x = block(x, lambda _, t, cls=cls, kwargs=kwargs: cls(**kwargs)(t))
        if cls.takes_layerwise_input and not cls.is_connected:
            x = block(x, lambda source, t, cls=cls, kwargs=kwargs: cls(**kwargs)([source, t]))
    y = layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, y)
    return perturb(model, rng)


@pytest.mark.parametrize("fmt", ["saved_model", "litert", pytest.param("onnx", marks=needs_onnx)])
def test_every_attention_exports_with_parity(fmt, tmp_path):
    model = every_attention_model()
    from keras_attn.layers._base import AttentionLayer

    present = {type(l) for l in model.layers if isinstance(l, AttentionLayer)}
    assert len(present) == len(keras_attn.available_attentions())
    x = inputs()
    expected = np.asarray(model(x, training=False))
    spread = expected.max(axis=1) - expected.min(axis=1)
    assert (spread > 0.1).all(), spread  # outputs differ across classes
    got = export_and_run(model, tmp_path, fmt, x)
    assert got.shape == expected.shape, fmt
    diff = float(np.abs(got - expected).max())
    assert diff <= ATOL, f"{fmt}: max abs difference {diff:.2e}"


@pytest.mark.parametrize("fmt", ["litert", pytest.param("onnx", marks=needs_onnx)])
def test_mixed_float16_model_exports_as_its_float32_clone(fmt, tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = perturbed_model("sa")
    keras.mixed_precision.set_global_policy("float32")
    assert kexport.is_mixed_precision(model)
    clone = kexport.float32_clone(model)
    assert not kexport.is_mixed_precision(clone)
    assert keras.config.dtype_policy().name == "float32"
    for a, b in zip(model.weights, clone.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = inputs()
    mixed = np.asarray(model(x, training=False), dtype="float32")
    exact = np.asarray(clone(x, training=False))
    assert ((exact.max(axis=1) - exact.min(axis=1)) > 0.1).all()
    got = export_and_run(model, tmp_path, fmt, x)
    assert np.abs(got - exact).max() <= ATOL, fmt
    # The mixed model's activations are float16 (eps 9.8e-4): over ResNet-20's 19 convolutions
    # its probabilities move by a few 1e-3 from the float32 ones (1.7e-3 measured); 1e-2 bounds
    # that with margin and still catches a wrong layer (differences of order 0.1 and more).
    assert np.abs(got - mixed).max() <= 1e-2, fmt


def test_unknown_format_names_the_valid_ones(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="valid formats: saved_model, litert, onnx"):
        kexport.export_model(model, str(tmp_path / "m"), "tflite")
    with pytest.raises(ValueError, match=r"must end with '\.tflite'"):
        kexport.export_model(model, str(tmp_path / "m.bin"), "litert")


def test_missing_onnx_packages_name_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name in ("tf2onnx", "onnx"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ImportError, match=r"pip install keras-attn\[export\]"):
        kexport.export_model(model, str(tmp_path / "m.onnx"), "onnx")


@needs_onnx
def test_a_model_never_called_exports_to_onnx(tmp_path):
    # Keras' ONNX export alone refuses a built-but-never-called model ("has never called").
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    x = np.ones((2, 4), "float32")
    got = export_and_run(model, tmp_path, "onnx", x)
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-6)
