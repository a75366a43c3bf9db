"""Export a Keras model (with or without keras-attn layers) for serving: SavedModel, LiteRT, ONNX.

A thin wrapper over Keras' own :meth:`keras.Model.export` (no converter of this package's own):

- ``"saved_model"`` -> ``model.export(path, format="tf_saved_model")``: a directory; load with
  ``tf.saved_model.load(path)`` and call its ``serve(x)`` endpoint.
- ``"litert"`` -> ``format="litert"`` (TensorFlow Lite): one ``.tflite`` file; run it with
  ``tf.lite.Interpreter`` (or ``ai_edge_litert.interpreter.Interpreter``).
- ``"onnx"`` -> ``format="onnx"`` (through ``tf2onnx``): one ``.onnx`` file; run it with
  ``onnxruntime.InferenceSession``. Needs the ``export`` extra:
  ``pip install keras-attn[export]`` (tf2onnx, onnx, onnxruntime).

**Mixed precision.** Keras documents that ONNX export needs a ``float32`` dtype policy, and a
float16 graph on a CPU runtime is slower and less accurate than a float32 one. A model whose
layers compute under a ``mixed_*`` policy (as the search trains on a GPU) is therefore exported
as a float32 *clone*: the same architecture rebuilt from its config with every ``mixed_*``
dtype policy replaced by ``float32``, then given the model's weights (a mixed policy keeps its
variables in float32, so nothing is rounded). The artifact computes in float32: its outputs equal
the float32 clone's to float rounding and differ from the mixed model's own (float16 activations)
by float16's rounding (about 1e-3 relative per layer). Layers with an explicit ``float32`` policy
(e.g. the float32 softmax head) are unchanged either way.

Every keras-attn layer is written in ``keras.ops`` that all three formats convert; the tests
(``tests/test_export.py``) check each registered attention's artifact against the Keras model.
"""

from __future__ import annotations

import os

import keras

#: format name accepted here -> the name ``keras.Model.export`` uses.
FORMATS = {"saved_model": "tf_saved_model", "litert": "litert", "onnx": "onnx"}

#: the file extension (or, for SavedModel, none: a directory) each format is written with.
EXTENSIONS = {"saved_model": "", "litert": ".tflite", "onnx": ".onnx"}

EXTRA_HINT = "pip install keras-attn[export]"


def _check_format(format):
    if format not in FORMATS:
        raise ValueError(
            f"Unknown export format {format!r}; valid formats: {', '.join(FORMATS)}."
        )
    return format


def default_path(stem, format):
    """``stem`` with the format's extension: ``best`` -> ``best.onnx`` / ``best.tflite`` /
    ``best`` (a SavedModel directory)."""
    return stem + EXTENSIONS[_check_format(format)]


def is_mixed_precision(model):
    """True when the model or any of its layers computes under a ``mixed_*`` dtype policy."""
    def mixed(obj):
        policy = getattr(obj, "dtype_policy", None)
        return str(getattr(policy, "name", "")).startswith("mixed_")

    if mixed(model):
        return True
    return any(mixed(layer) for layer in _all_layers(model))


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _float32_config(obj):
    """A copy of a (nested) model config with every ``mixed_*`` dtype policy set to float32."""
    if isinstance(obj, dict):
        if obj.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(
            obj.get("config"), dict
        ):
            name = str(obj["config"].get("name", ""))
            if name.startswith("mixed_"):
                return {**obj, "config": {**obj["config"], "name": "float32"}}
            return obj
        return {k: _float32_config(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_float32_config(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_float32_config(v) for v in obj)
    if isinstance(obj, str) and obj.startswith("mixed_"):
        return "float32"
    return obj


def float32_clone(model):
    """The model rebuilt with float32 dtype policies and the same weights (see module doc).

    Args:
        model: a functional or sequential ``keras.Model``.

    Returns:
        A new model computing in float32 whose weights equal ``model``'s.

    Raises:
        ValueError: the model cannot be rebuilt from its config (e.g. a subclassed model
            without ``get_config``); rebuild it in float32 yourself.
    """
    import keras_attn  # noqa: F401  (registers the layers' classes for from_config)

    try:
        config = _float32_config(model.get_config())
    except NotImplementedError as err:
        raise ValueError(
            f"cannot rebuild {type(model).__name__} in float32 for export: {err}"
        ) from None
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        clone = model.__class__.from_config(config)
    finally:
        keras.config.set_dtype_policy(previous)
    clone.set_weights(model.get_weights())
    return clone


def check_onnx_available():
    """Raise ImportError (naming what to install) when ``format="onnx"`` cannot run here."""
    missing = []
    for module in ("tf2onnx", "onnx"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(
            f"ONNX export needs {' and '.join(missing)}, which are not installed: "
            f"{EXTRA_HINT} (tf2onnx, onnx, and onnxruntime to run the artifact)."
        )


def _ensure_called(model):
    """Keras' ONNX export refuses a model that was never called (it reads its input signature
    from the first call): call it once on zeros, which changes no state in inference mode."""
    if getattr(model, "_called", True):
        return
    import numpy as np

    def zeros(tensor):
        shape = [1 if d is None else int(d) for d in tensor.shape]
        return np.zeros(shape, dtype=keras.backend.standardize_dtype(tensor.dtype))

    inputs = [zeros(t) for t in model.inputs]
    model(inputs[0] if len(inputs) == 1 else inputs, training=False)


def export_model(model, path, format="saved_model", verbose=False):
    """Export ``model`` to ``path`` with Keras' ``model.export``.

    Args:
        model: a built ``keras.Model`` (TensorFlow backend).
        path: the artifact's path: a directory for ``"saved_model"``, a ``.tflite`` file for
            ``"litert"`` (Keras requires that suffix), a file (conventionally ``.onnx``) for
            ``"onnx"``.
        format: ``"saved_model"`` (default), ``"litert"`` or ``"onnx"``.
        verbose: passed to ``model.export``.

    Returns:
        ``path``.

    A model under a ``mixed_*`` dtype policy is exported as its float32 clone
    (:func:`float32_clone`; see the module docstring for why and what it changes numerically).

    Raises:
        ValueError: an unknown ``format`` (the message lists the valid ones), or a ``"litert"``
            path that does not end in ``.tflite``.
        ImportError: ``"onnx"`` without tf2onnx/onnx installed (names ``keras-attn[export]``).
    """
    _check_format(format)
    path = os.fspath(path)
    if format == "litert" and not path.endswith(".tflite"):
        raise ValueError(f"a LiteRT export path must end with '.tflite', got {path!r}")
    if format == "onnx":
        check_onnx_available()
    if is_mixed_precision(model):
        model = float32_clone(model)
    _ensure_called(model)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    model.export(path, format=FORMATS[format], verbose=verbose)
    return path
