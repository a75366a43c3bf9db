"""Run by tests/test_backends.py in a fresh process under another Keras backend.

    KERAS_BACKEND=jax python tests/_backend_worker.py DIR

For each ``DIR/<name>.tf.keras`` (saved under TensorFlow) it writes the loaded model's outputs on
``DIR/x.npy`` to ``DIR/<name>.tf_loaded.npy``. Then it builds the same model under this backend,
gives it fixed NumPy weights, and saves it to ``DIR/<name>.other.keras`` with its outputs in
``DIR/<name>.other.npy``, for the TensorFlow side to load and compare.
"""

import json
import os
import sys

import keras
import numpy as np

import keras_attn


def full_float32_precision():
    """No TF32 (on by default for GPU matmuls/convolutions in TensorFlow and JAX, for GPU
    convolutions in PyTorch): the outputs are compared across backends at 1e-5."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def perturb(model, seed):
    """Move every trainable variable off its initial value and sharpen the softmax.

    An untrained model's near-uniform softmax would hide errors of 1e-3 in the features; with
    the classifier's kernel scaled up, the outputs differ across classes.
    """
    rng = np.random.default_rng(seed)
    for var in model.trainable_variables:
        var.assign(keras.ops.convert_to_numpy(var)
                   + 0.1 * rng.normal(size=var.shape).astype("float32"))
    head = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    head.kernel.assign(keras.ops.convert_to_numpy(head.kernel) * 20.0)


def main(root):
    full_float32_precision()
    spec = json.load(open(os.path.join(root, "spec.json")))
    x = np.load(os.path.join(root, "x.npy"))
    for name, kwargs in spec["models"].items():
        model = keras.saving.load_model(os.path.join(root, f"{name}.tf.keras"), safe_mode=True)
        np.save(os.path.join(root, f"{name}.tf_loaded.npy"),
                keras.ops.convert_to_numpy(model(x, training=False)))

        model = keras_attn.build_model(**kwargs)
        perturb(model, seed=7)
        model.save(os.path.join(root, f"{name}.other.keras"))
        np.save(os.path.join(root, f"{name}.other.npy"),
                keras.ops.convert_to_numpy(model(x, training=False)))
    print("backend", keras.backend.backend(), "done", len(spec["models"]))


if __name__ == "__main__":
    main(sys.argv[1])
