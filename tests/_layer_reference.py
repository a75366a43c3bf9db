"""The cases of ``tests/test_layer_reference.py``: each layer's outputs and gradients on fixed
inputs and weights, computed by the public API alone (any backend), so that the same code made
the stored reference (``tests/data/layer_reference.npz``) from the layers as they were before the
speed work of issue 27 and checks today's against it.

One file per backend, ``tests/data/layer_reference_<backend>.npz`` (TensorFlow and JAX: the
backends differ in their last bits, and each is compared with itself). Regenerate only when a
layer's *values* change on purpose: ``KERAS_BACKEND=jax python tests/_layer_reference.py`` writes
the JAX file from the keras_attn first on ``PYTHONPATH`` (run it from outside the repository);
both were made at commit 7d91d41.
"""

import numpy as np

import keras

# name -> (registry name, constructor kwargs, input shapes (a list: the call's inputs), data format)
# The maps fold (keras_attn.layers._base.StatsView: C < 64 with a static size) or not (C = 64),
# in both layouts and at every rank the layers take.
CASES = {
    "simam_2d": ("simam", {}, [(1, 6, 6, 16)], "channels_last"),
    "simam_2d_cf": ("simam", {}, [(1, 16, 6, 6)], "channels_first"),
    "simam_1d": ("simam", {"e_lambda": 0.5}, [(2, 12, 8)], "channels_last"),
    "simam_3d": ("simam", {}, [(2, 3, 4, 2, 6)], "channels_last"),
    "simam_wide": ("simam", {}, [(1, 4, 4, 64)], "channels_last"),
    "simam_odd": ("simam", {}, [(3, 5, 3, 4)], "channels_last"),
    "sa_2d": ("sa", {"groups": 4}, [(1, 6, 6, 16)], "channels_last"),
    "sa_2d_cf": ("sa", {"groups": 4}, [(1, 16, 6, 6)], "channels_first"),
    "sa_1d": ("sa", {"groups": 2}, [(2, 12, 8)], "channels_last"),
    "sa_3d": ("sa", {"groups": 2}, [(2, 3, 4, 2, 8)], "channels_last"),
    "sa_wide": ("sa", {"groups": 8}, [(1, 4, 4, 64)], "channels_last"),
    "sa_c32": ("sa", {"groups": 4}, [(1, 6, 6, 32)], "channels_last"),
    "sb_block": ("sb", {}, [(3, 6, 6, 16)], "channels_last"),
    "sb_layer": ("sb", {}, [(3, 6, 6, 8), (3, 6, 6, 16)], "channels_last"),
    "sb_layer_cf": ("sb", {}, [(3, 6, 6, 8), (3, 16, 6, 6)], "channels_first"),
    "dca_se_first": ("dca_se", {"reduction": 4}, [(3, 6, 6, 16)], "channels_last"),
    "dca_se_connected": ("dca_se", {"reduction": 4}, [(3, 6, 6, 16), (3, 8)], "channels_last"),
    "dca_se_connected_cf": ("dca_se", {"reduction": 4}, [(3, 16, 6, 6), (3, 8)],
                            "channels_first"),
    "se_2d": ("se", {"reduction": 4}, [(3, 6, 6, 16)], "channels_last"),
}

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def reference_path(backend):
    """The stored reference of ``backend``."""
    import os

    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                        f"layer_reference_{backend}.npz")


def _inputs(shapes, data_format, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i, shape in enumerate(shapes):
        x = rng.normal(size=shape) * 3.0
        if len(shape) > 2:  # a per-channel offset: the statistics are not centred already
            axis = -1 if data_format == "channels_last" else 1
            offset_shape = [1] * len(shape)
            offset_shape[axis] = shape[axis]
            x = x + rng.normal(size=offset_shape) * 2.0
        out.append(x.astype("float32"))
    return out


def compute(case, policy):
    """``{"y": output, "dx<i>": input gradients, "dw<i>": variable gradients}`` (float32 NumPy)
    of ``case`` under ``policy``: the loss is ``sum(output * upstream)`` (every output of a DCA
    layer), in training mode; the variables are set to seeded random values first."""
    from _autodiff import gradients

    import keras_attn

    name, kwargs, shapes, data_format = CASES[case]
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = keras_attn.get_attention(name, data_format=data_format, **kwargs)
        xs = _inputs(shapes, data_format, seed=0)
        args = xs[0] if len(xs) == 1 else list(xs)
        layer(args)  # build
        rng = np.random.default_rng(1)
        for v in layer.weights:
            value = rng.uniform(0.5, 1.5, size=v.shape) if "variance" in v.name else \
                rng.normal(size=v.shape) * 0.5
            v.assign(np.asarray(value, dtype=keras.backend.standardize_dtype(v.dtype)))
        wrt = [keras.Variable(x, dtype="float32", trainable=True, name=f"x{i}")
               for i, x in enumerate(xs)]
        outputs = keras.tree.flatten(layer(xs[0] if len(xs) == 1 else list(xs), training=True))
        ups = [np.random.default_rng(2 + i).normal(size=tuple(o.shape)).astype("float32")
               for i, o in enumerate(outputs)]

        def loss():
            ins = [keras.ops.cast(w, layer.compute_dtype) for w in wrt]
            outs = keras.tree.flatten(layer(ins[0] if len(ins) == 1 else ins, training=True))
            return sum(keras.ops.sum(keras.ops.cast(o, "float32") * u) for o, u in zip(outs, ups))

        trainable = list(layer.trainable_weights)
        grads = gradients(loss, wrt + trainable)
        result = {f"y{i}": keras.ops.convert_to_numpy(keras.ops.cast(o, "float32"))
                  for i, o in enumerate(outputs)}
        for i, g in enumerate(grads):
            key = f"dx{i}" if i < len(wrt) else f"dw{i - len(wrt)}"
            result[key] = np.zeros(0, "float32") if g is None else np.asarray(g, "float32")
        return result
    finally:
        keras.mixed_precision.set_global_policy("float32")


if __name__ == "__main__":
    import os
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    import keras_attn

    keras.utils.set_random_seed(0)
    arrays = {}
    for case in CASES:
        for policy in POLICIES:
            keras.backend.clear_session()
            for key, value in compute(case, policy).items():
                arrays[f"{case}/{policy}/{key}"] = value
    path = reference_path(keras.backend.backend())
    np.savez_compressed(path, **arrays)
    print(f"wrote {len(arrays)} arrays to {path} from {keras_attn.__file__}")
