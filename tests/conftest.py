import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A user's KERAS_BACKEND must not switch the suite (search/ is TensorFlow-only); another backend
# is chosen on purpose with KERAS_ATTN_TEST_BACKEND (e.g. =jax for the layer tests).
os.environ["KERAS_BACKEND"] = os.environ.get("KERAS_ATTN_TEST_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402


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
