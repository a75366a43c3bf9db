"""Grad-CAM (keras_attn.gradcam): a model whose answer is known, shapes, range, class choice,
the default target layer, and the errors."""

import numpy as np
import pytest

import keras
import keras_attn
from keras_attn.gradcam import default_layer, grad_cam
from keras_attn.layers._base import AttentionLayer


class QuadrantMask(keras.layers.Layer):
    """Zeroes every position but the top-left quadrant of an (B, 8, 8, C) map."""

    def call(self, x):
        mask = np.zeros((1, 8, 8, 1), "float32")
        mask[:, :4, :4] = 1.0
        return x * mask


def top_left_model():
    """Class 0's logit grows with the top-left quadrant's activations, class 1's shrinks with
    them; nothing outside that quadrant reaches the head."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(3, 3, padding="same", kernel_initializer="ones", name="conv")(inputs)
    x = QuadrantMask(name="mask")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("head").set_weights([np.array([[1.0, -1.0]] * 3, "float32"),
                                         np.zeros(2, "float32")])
    return model


def images(n=4, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).uniform(0.1, 1.0, size=(n, *shape)).astype("float32")


def test_heatmap_mass_is_where_the_evidence_is():
    model = top_left_model()
    x = images()
    assert (np.argmax(model.predict(x, verbose=0), axis=1) == 0).all()
    cam = grad_cam(model, x)  # default: the last 4-D layer (the mask), the predicted class 0
    assert cam.shape == (4, 8, 8) and cam.dtype == np.float32
    top_left = cam[:, :4, :4].sum(axis=(1, 2)) / cam.sum(axis=(1, 2))
    assert (top_left > 0.9).all(), top_left
    assert np.allclose(cam.max(axis=(1, 2)), 1.0)
    # Class 1's score only falls with those activations: ReLU leaves nothing, and an all-zero map
    # stays zero (not NaN).
    np.testing.assert_array_equal(grad_cam(model, x, class_index=1), np.zeros((4, 8, 8)))


def test_heatmaps_that_are_not_finite_are_refused_naming_the_images():
    """Issue 29, case 16: a NaN image gave a NaN heatmap, though the docstring promises [0, 1]."""
    model = top_left_model()
    x = images(4)
    x[2, 1, 1, 0] = np.nan
    x[3, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"^Grad-CAM heatmaps of images \[2, 3\] \(of 4\) are not "
                                         r"finite: images \[2, 3\] hold NaN or Inf values\.$"):
        grad_cam(model, x)
    assert np.isfinite(grad_cam(model, x[:2])).all()  # the others, on their own, are fine
    # A diverged model: finite images, NaN weights.
    model.get_layer("conv").kernel.assign(np.full((3, 3, 1, 3), np.nan, "float32"))
    with pytest.raises(ValueError, match=r"images \[0, 1\] \(of 2\) are not finite: for images "
                                         r"\[0, 1\] the model's scores or gradients are not finite"):
        grad_cam(model, x[:2])


def test_class_index_int_sequence_and_default():
    model = top_left_model()
    x = images(3)
    np.testing.assert_allclose(grad_cam(model, x), grad_cam(model, x, class_index=0))
    mixed = grad_cam(model, x, class_index=[0, 1, 0])
    assert mixed[1].max() == 0.0 and mixed[0].max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="3 images"):
        grad_cam(model, x, class_index=[0, 1])
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        grad_cam(model, x, class_index=2)


def test_attention_model_default_layer_shapes_and_range():
    model = keras_attn.build_model("resnet20", input_shape=(16, 16, 3), num_classes=10,
                                   attention="simam", placement="block", seed=0)
    target = default_layer(model)
    assert isinstance(target, AttentionLayer)
    assert target is [l for l in model.layers if isinstance(l, AttentionLayer)][-1]
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    cam = grad_cam(model, x)
    assert cam.shape == (2, 16, 16)
    assert cam.min() >= 0.0 and cam.max() <= 1.0
    by_name = grad_cam(model, x, layer=target.name)
    np.testing.assert_allclose(cam, by_name, atol=1e-6)


def test_connected_dca_layer_uses_its_feature_map():
    model = keras_attn.build_model("resnet20", input_shape=(12, 12, 3), num_classes=4,
                                   attention="dca_se", placement="block", seed=0)
    assert default_layer(model).is_connected
    cam = grad_cam(model, np.random.default_rng(1).normal(size=(2, 12, 12, 3)))
    assert cam.shape == (2, 12, 12) and 0.0 <= cam.min() and cam.max() <= 1.0


def test_errors_name_what_is_needed():
    dense_only = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="4-D feature-map output"):
        grad_cam(dense_only, np.ones((1, 5)))
    model = top_left_model()
    with pytest.raises(ValueError, match="Unknown Grad-CAM layer 'nope'.*conv, mask"):
        grad_cam(model, images(1), layer="nope")
    np.testing.assert_allclose(grad_cam(model, images(1), layer=model.get_layer("mask")),
                               grad_cam(model, images(1)))


def test_score_is_the_class_logit_not_its_probability():
    # Three classes, two channels: the probability's gradient p_c (W[:, c] - W p) is not
    # proportional to the logit's W[:, c], so the two Grad-CAMs differ (with two classes and a
    # +-1 head they would not). The map is the input itself (an identity layer), so that the
    # reference is NumPy on x: GAP spreads each gradient evenly, and the 1/(HW) cancels in the
    # normalisation. (An identity 1x1 convolution: a linear Activation returns its input tensor,
    # which leaves nothing to differentiate.)
    w = np.array([[1.0, 0.0, 3.0], [0.5, 1.0, 0.0]], "float32")
    inputs = keras.Input((8, 8, 2))
    features = keras.layers.Conv2D(2, 1, use_bias=False, name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("head").set_weights([w, np.zeros(3, "float32")])
    model.get_layer("features").set_weights([np.eye(2, dtype="float32")[None, None]])
    x = images(3, shape=(8, 8, 2))

    def reference(channel_weights):  # Grad-CAM Eq. 1-2, then each map over its maximum
        cam = np.maximum(np.einsum("bhwk,bk->bhw", x, channel_weights), 0.0)
        peak = cam.max(axis=(1, 2), keepdims=True)
        return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)

    logit_cam = reference(np.tile(w[:, 0], (3, 1)))
    logits = x.mean(axis=(1, 2)) @ w
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    prob_cam = reference(p[:, :1] * (w[:, 0][None, :] - p @ w.T))
    assert np.abs(logit_cam - prob_cam).max() > 0.3  # the case tells the two apart

    cam = grad_cam(model, x, class_index=0, layer="features")
    np.testing.assert_allclose(cam, logit_cam, atol=1e-5)
