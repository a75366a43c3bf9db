"""keras_attn under another Keras backend (JAX): same outputs, and `.keras` files that cross over.

The suite runs under TensorFlow; these tests start one JAX process (tests/_backend_worker.py) that
loads the models saved here, computes their outputs, and saves models of its own for this side
to load. The registry-wide layer tests also run whole under JAX: see scripts/test.sh.
"""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_attn
from _backend_worker import perturb

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="drives the other backend from TensorFlow"
)

# The backend the worker runs: JAX (a test dependency). KERAS_ATTN_OTHER_BACKEND=torch runs the
# same checks against PyTorch where it is installed (it is not a dependency; see the README).
OTHER = os.environ.get("KERAS_ATTN_OTHER_BACKEND", "jax")
pytestmark = [pytestmark, pytest.mark.skipif(
    importlib.util.find_spec(OTHER) is None, reason=f"the other backend, {OTHER}, is not installed")]
NAMES = keras_attn.available_attentions()
# placement="paper": SB at its layer-wise positions, DCA connected across blocks, SimAM after
# the second convolution: every insertion form `attach` has, under the other backend too.
MODELS = {
    name: dict(backbone="resnet20", input_shape=(16, 16, 3), num_classes=10, attention=name,
               placement="paper", seed=0)
    for name in NAMES
}
MODELS["none"] = dict(MODELS[NAMES[0]], attention=None)
TOL = 1e-5


@pytest.fixture(scope="module")
def exchanged(tmp_path_factory):
    root = tmp_path_factory.mktemp("backends")
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype("float32")
    np.save(root / "x.npy", x)
    for name, kwargs in MODELS.items():
        model = keras_attn.build_model(**kwargs)
        perturb(model, seed=3)
        model.save(root / f"{name}.tf.keras")
        np.save(root / f"{name}.tf.npy", keras.ops.convert_to_numpy(model(x, training=False)))
    (root / "spec.json").write_text(json.dumps({"models": MODELS}))
    worker = os.path.join(os.path.dirname(__file__), "_backend_worker.py")
    env = dict(os.environ, KERAS_BACKEND=OTHER, PYTHONPATH=os.pathsep.join(sys.path))
    run = subprocess.run([sys.executable, worker, str(root)], env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"backend {OTHER} done" in run.stdout, run.stdout
    return root, x


def _spread(probs):
    """Smallest per-sample gap between the largest and smallest class probability."""
    return float(np.min(np.max(probs, axis=1) - np.min(probs, axis=1)))


@pytest.mark.parametrize("name", list(MODELS))
def test_tensorflow_file_gives_the_same_outputs_under_jax(exchanged, name):
    root, _ = exchanged
    expected = np.load(root / f"{name}.tf.npy")
    assert _spread(expected) > 0.1, "outputs too uniform to show an error"
    np.testing.assert_allclose(np.load(root / f"{name}.tf_loaded.npy"), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", list(MODELS))
def test_jax_file_gives_the_same_outputs_under_tensorflow(exchanged, name):
    root, x = exchanged
    expected = np.load(root / f"{name}.other.npy")
    assert _spread(expected) > 0.1, "outputs too uniform to show an error"
    loaded = keras.saving.load_model(root / f"{name}.other.keras", safe_mode=True)
    got = keras.ops.convert_to_numpy(loaded(x, training=False))
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
