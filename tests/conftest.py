import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A user's KERAS_BACKEND must not switch the suite (search/ is TensorFlow-only); another backend
# is chosen on purpose with KERAS_ATTN_TEST_BACKEND (e.g. =jax for the layer tests).
os.environ["KERAS_BACKEND"] = os.environ.get("KERAS_ATTN_TEST_BACKEND", "tensorflow")
# On a GPU: the suite and every process it starts take GPU memory as they need it (TensorFlow
# takes it all by default, which leaves none to a subprocess), and float32 stays float32.
# NVIDIA_TF32_OVERRIDE=0 turns TF32 off inside cuBLAS/cuDNN for this process and every
# subprocess (the CLI, the workers), whatever the framework asks; below, TensorFlow is told too.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")

import keras  # noqa: E402
import pytest  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    # TF32 (on by default on Ampere/Hopper GPUs) rounds matmul/conv inputs to 10 mantissa bits:
    # errors of ~1e-3 against the suite's float32 NumPy references at 1e-5.
    tf.config.experimental.enable_tensor_float_32_execution(False)
elif keras.backend.backend() == "jax":
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")  # no TF32/bf16 passes
elif keras.backend.backend() == "torch":
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False  # on by default for convolutions


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts float32 with a fresh Keras session and a fixed seed."""
    keras.mixed_precision.set_global_policy("float32")
    # A user's ~/.keras/keras.json may say channels_first; layouts are explicit in the tests.
    keras.config.set_image_data_format("channels_last")
    # free_memory=False skips a gc.collect() that costs ~0.3 s per test.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(params=["float32", "mixed_float16", "mixed_bfloat16"])
def policy(request):
    """Run a test under each precision policy (set globally, restored afterwards)."""
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")
