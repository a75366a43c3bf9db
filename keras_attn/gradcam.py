"""Grad-CAM heatmaps: where in the image a classifier's evidence for a class comes from.

The recipe of Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization" (ICCV 2017, arXiv 1610.02391), Eq. 1-2: for a feature map
``A`` (channels ``k``) of a chosen layer and the class score ``y^c``,

    alpha_k^c = mean over (i, j) of d y^c / d A^k_ij          (Eq. 1, global-average-pooled)
    L^c       = ReLU(sum_k alpha_k^c A^k)                      (Eq. 2)

``y^c`` is the score *before* the softmax, as in the paper: when the model ends in a ``Dense``
layer with a softmax activation (as :func:`keras_attn.build_model`'s head does), its logits are
recomputed from that layer's input and weights; any other model's output is used as the score.
The map is resized (bilinear) to the input's height and width and scaled per image to [0, 1] by
its maximum (a map that is zero everywhere stays zero). A map that is not finite (a NaN or Inf in
its image, or in the model: a diverged model's weights or statistics) cannot be scaled: rather
than return it as NaN, :func:`grad_cam` raises a ValueError naming those images.

This is the short recipe written here with a ``tf.GradientTape`` (the TensorFlow backend, the one
the search uses): the maintained visualisation library for Keras, ``tf-keras-vis`` (0.8.7,
2024), targets ``tf.keras`` (Keras 2), not Keras 3.
"""

from __future__ import annotations

import numpy as np

import keras


def _output_of(layer):
    """A layer's feature-map output: the first of a DCA layer's ``(y, state)``."""
    out = layer.output
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out


def _is_feature_map(layer):
    if isinstance(layer, keras.layers.InputLayer):
        return False
    try:
        out = _output_of(layer)
    except (AttributeError, ValueError):  # unbuilt, or called more than once
        return False
    return len(getattr(out, "shape", ())) == 4


def _is_attention(layer):
    from keras_attn.layers._base import AttentionLayer

    return isinstance(layer, AttentionLayer)


def candidate_layers(model):
    """The layers Grad-CAM can target: every layer of ``model`` (top level) with a 4-D output."""
    return [layer for layer in model.layers if _is_feature_map(layer)]


def default_layer(model):
    """The last keras-attn attention layer of ``model``; else its last layer with a 4-D output.

    Raises:
        ValueError: the model has no layer with a 4-D feature-map output.
    """
    candidates = candidate_layers(model)
    attention = [layer for layer in candidates if _is_attention(layer)]
    if attention:
        return attention[-1]
    if candidates:
        return candidates[-1]
    raise ValueError(
        f"Grad-CAM needs a layer with a 4-D feature-map output (batch, height, width, channels) "
        f"in the model; {model.name!r} has none (a convolutional model is needed)."
    )


def _resolve_layer(model, layer):
    if layer is None:
        return default_layer(model)
    candidates = candidate_layers(model)
    names = [c.name for c in candidates]
    if isinstance(layer, str):
        for c in candidates:
            if c.name == layer:
                return c
        raise ValueError(
            f"Unknown Grad-CAM layer {layer!r}; the model's layers with a 4-D output are: "
            f"{', '.join(names) if names else '(none)'}."
        )
    if any(c is layer for c in candidates):
        return layer
    raise ValueError(
        f"Grad-CAM layer {getattr(layer, 'name', layer)!r} is not a layer of this model with a "
        f"4-D output; candidates: {', '.join(names) if names else '(none)'}."
    )


def _class_indices(class_index, predicted, num_classes):
    batch = len(predicted)
    if class_index is None:
        indices = np.asarray(predicted, dtype="int64")
    elif np.ndim(class_index) == 0:
        indices = np.full((batch,), int(class_index), dtype="int64")
    else:
        indices = np.asarray(class_index, dtype="int64").reshape(-1)
        if len(indices) != batch:
            raise ValueError(
                f"class_index has {len(indices)} entries for {batch} images; give one per image "
                f"or a single int."
            )
    if ((indices < 0) | (indices >= num_classes)).any():
        raise ValueError(f"class_index must be in [0, {num_classes}); got {indices.tolist()}.")
    return indices


def _data_format(layer):
    fmt = getattr(layer, "data_format", None)
    return fmt if fmt in ("channels_last", "channels_first") else keras.config.image_data_format()


def grad_cam(model, images, class_index=None, layer=None):
    """Grad-CAM heatmaps of ``model`` for ``images`` (see the module docstring for the recipe).

    Args:
        model: a functional ``keras.Model`` classifier, output ``(batch, num_classes)``.
        images: ``(batch, height, width, channels)`` array or tensor (``(batch, channels,
            height, width)`` when the target layer is ``channels_first``), preprocessed as the
            model expects.
        class_index: ``None`` (default: each image's predicted class), one int for every image,
            or a sequence of one int per image.
        layer: the target layer: ``None`` (default: the model's last keras-attn attention layer,
            whose output, for a DCA layer its ``y``, is the map; a model without one: its last
            layer with a 4-D output), a layer name, or a layer object of ``model``.

    Returns:
        ``numpy`` float32 array ``(batch, height, width)`` at the input's spatial size, each
        map in [0, 1] (its maximum 1 unless the map is all zero).

    Raises:
        ValueError: no layer with a 4-D output in the model; an unknown ``layer`` (the message
            lists the candidate names); ``class_index`` of the wrong length or out of range;
            ``images`` not 4-D; a heatmap that is not finite (the message names the images, and
            which of them hold NaN or Inf; none: the model's scores or gradients are not finite,
            e.g. a diverged model).
        NotImplementedError: a Keras backend other than TensorFlow.
    """
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(
            f"grad_cam uses tf.GradientTape and needs the TensorFlow backend; the Keras backend "
            f"is {keras.backend.backend()!r}."
        )
    import tensorflow as tf

    target = _resolve_layer(model, layer)
    x = tf.convert_to_tensor(images, dtype="float32")
    if x.shape.rank != 4:
        raise ValueError(f"images must be 4-D (batch, height, width, channels); got {x.shape}.")
    last = model.layers[-1]
    softmax_dense = (
        isinstance(last, keras.layers.Dense)
        and getattr(last, "activation", None) is keras.activations.softmax
        and len(model.outputs) == 1
        and model.outputs[0] is last.output
    )
    head_input = last.input if softmax_dense else model.outputs[0]
    sub = keras.Model(model.inputs, [_output_of(target), head_input])

    with tf.GradientTape() as tape:
        feature_map, head = sub(x, training=False)
        tape.watch(feature_map)
        if softmax_dense:
            scores = tf.matmul(tf.cast(head, last.kernel.dtype), last.kernel)
            if last.use_bias:
                scores = scores + last.bias
        else:
            scores = head
        scores = tf.cast(scores, "float32")
        indices = _class_indices(class_index, np.argmax(scores.numpy(), axis=-1),
                                 int(scores.shape[-1]))
        chosen = tf.gather(scores, indices, axis=1, batch_dims=1)
    grads = tape.gradient(chosen, feature_map)

    channels_first = _data_format(target) == "channels_first"
    a = tf.cast(feature_map, "float32")
    g = tf.cast(grads, "float32")
    if channels_first:
        a, g = tf.transpose(a, (0, 2, 3, 1)), tf.transpose(g, (0, 2, 3, 1))
    weights = tf.reduce_mean(g, axis=(1, 2), keepdims=True)  # Eq. 1
    cam = tf.nn.relu(tf.reduce_sum(weights * a, axis=-1))  # Eq. 2
    size = x.shape[2:4] if channels_first else x.shape[1:3]
    cam = tf.image.resize(cam[..., None], size, method="bilinear")[..., 0]
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    cam = tf.math.divide_no_nan(cam, peak).numpy()
    _check_finite(cam, x.numpy())
    return np.clip(cam, 0.0, 1.0).astype("float32")


def _check_finite(cam, images):
    """Raise a ValueError naming the images whose heatmap in ``cam`` is not finite."""
    bad = np.flatnonzero(~np.isfinite(cam).all(axis=(1, 2)))
    if not len(bad):
        return
    in_image = [int(i) for i in bad if not np.isfinite(images[i]).all()]
    why = (f"images {in_image} hold NaN or Inf values" if in_image else "")
    rest = [int(i) for i in bad if i not in in_image]
    if rest:
        why += ("; " if why else "") + (f"for images {rest} the model's scores or gradients are "
                                        "not finite (a diverged model?)")
    raise ValueError(f"Grad-CAM heatmaps of images {bad.tolist()} (of {len(cam)}) are not "
                     f"finite: {why}.")
