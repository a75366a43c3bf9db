"""Gradients of a loss with respect to Keras variables on whichever backend the suite runs.

The layer tests run under TensorFlow and, in a second pytest process, under JAX
(``KERAS_ATTN_TEST_BACKEND=jax``); ``tf.GradientTape`` only sees TensorFlow variables, so the
gradient tests go through :func:`gradients`.
"""

import keras
import numpy as np


def gradients(loss_fn, variables):
    """``d loss_fn() / d variables`` as NumPy arrays (``None`` where TensorFlow finds no path).

    ``loss_fn`` takes no arguments, calls the layers (which read ``variables``) and returns a
    scalar built with ``keras.ops``.
    """
    variables = list(variables)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        # .numpy(), not np.asarray: a bfloat16 tf.Tensor's __array__ fails.
        return [None if g is None else g.numpy() for g in tape.gradient(loss, variables)]
    if backend == "jax":
        import jax

        def loss_of(values):
            # Layers read the traced values instead of the variables' stored ones.
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn()

        grads = jax.grad(loss_of)([v.value for v in variables])
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        if not variables:
            return []
        loss = loss_fn()
        grads = __import__("torch").autograd.grad(
            loss, [v.value for v in variables], allow_unused=True
        )
        return [None if g is None else g.detach().cpu().numpy() for g in grads]
    raise NotImplementedError(f"no gradient helper for backend {backend!r}")


def input_gradient(fn, x, upstream):
    """``d sum(fn(x) * upstream) / dx`` as a NumPy array (float32 accumulation of the sum)."""
    backend = keras.backend.backend()

    def loss_of(x):
        return keras.ops.sum(keras.ops.cast(fn(x), "float32") * upstream)

    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_of(x)
        return np.asarray(tape.gradient(loss, x))
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(loss_of)(keras.ops.convert_to_tensor(x)))
    raise NotImplementedError(f"no gradient helper for backend {backend!r}")
