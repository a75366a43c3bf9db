"""Tests for keras_attn.backbones.build_model: backbone + attention + float32 head."""

import keras
import numpy as np
import pytest

from keras_attn import SUPPORTED_BACKBONES, attention_summary, build_model, get_attention_class
from keras_attn.backbones import _backbone_key

SMALL = {"backbone": "mobilenetv2", "alpha": 0.35}  # the cheapest supported backbone


def run(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def data(n=16, classes=10, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.uniform(0, 255, size=(n, 32, 32, 3)).astype("float32")
    y = rng.randint(0, classes, size=(n,))
    return x, y


def test_supported_backbones_map_to_keras_applications():
    assert SUPPORTED_BACKBONES == (
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet50v2",
        "resnet101v2",
        "resnet152v2",
        "mobilenetv2",
        "mobilenetv3small",
        "mobilenetv3large",
        "efficientnetb0",
        "efficientnetb1",
        "efficientnetb2",
        "efficientnetb3",
        "efficientnetb4",
        "efficientnetb5",
        "efficientnetb6",
        "efficientnetb7",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
        "mobilenetv2_cifar",
    )
    for name in (
        "ResNet50",
        "resnet_101_v2",
        "MobileNetV3-Small",
        "EFFICIENTNETB7",
        "mobilenet_v2",
    ):
        assert _backbone_key(name) in SUPPORTED_BACKBONES


def test_default_model_head():
    model = build_model()
    assert model.name == "mobilenetv2"
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    head = model.get_layer("predictions")
    assert isinstance(head, keras.layers.Dense) and head.dtype_policy.name == "float32"
    assert head.activation is keras.activations.softmax
    assert isinstance(model.get_layer("avg_pool"), keras.layers.GlobalAveragePooling2D)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
    assert attention_summary(model) == []
    probabilities = run(model, data(2)[0])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_attention_dropout_and_backbone_kwargs():
    plain = build_model(**SMALL, num_classes=3)
    model = build_model(
        **SMALL,
        num_classes=3,
        attention="sa",
        placement="block",
        attention_kwargs={"groups": 8},
        dropout=0.25,
    )
    assert model.name == "mobilenetv2_sa_block"
    assert model.get_layer("top_dropout").rate == 0.25
    summary = attention_summary(model)
    assert len(summary) == 17
    assert all(row["config"]["groups"] <= 8 for row in summary)
    # alpha reached the constructor: 8 channels in the first block.
    assert summary[0]["channels"] == 8
    assert model.count_params() - plain.count_params() == summary.total_params
    assert model.output_shape == (None, 3)


@pytest.mark.parametrize("attention", [None, "none", "None"])
def test_no_attention(attention):
    model = build_model(**SMALL, attention=attention, placement="layer")
    assert model.name == "mobilenetv2"
    assert attention_summary(model) == []


class Passthrough(keras.layers.Layer):
    """A non-keras-attn layer made by a factory."""

    def call(self, inputs):
        return inputs


def test_factory_and_callable_placement():
    model = build_model(
        **SMALL,
        attention=lambda channels: Passthrough(),
        placement=lambda layer: layer.name.endswith("_project_BN"),
    )
    assert model.name == "mobilenetv2_custom_custom"
    summary = attention_summary(model)
    assert len(summary) == 17 and summary.total_params == 0
    assert summary[0]["name"] == "expanded_conv_project_BN_passthrough"
    assert {(row["attention"], row["class"]) for row in summary} == {("passthrough", "Passthrough")}


@pytest.mark.parametrize(
    "policy,attention,placement",
    [("float32", "dca_se", "block"), ("mixed_float16", "sa", "block")],
)
def test_fits_and_reloads_identically(policy, attention, placement, tmp_path):
    keras.mixed_precision.set_global_policy(policy)  # conftest restores float32
    model = build_model(**SMALL, attention=attention, placement=placement)
    inserted = [
        layer for layer in model.layers if isinstance(layer, get_attention_class(attention))
    ]
    assert len(inserted) == 17
    compute = "float16" if policy == "mixed_float16" else "float32"
    assert {layer.compute_dtype for layer in inserted} == {compute}
    assert model.get_layer("predictions").compute_dtype == "float32"
    x, y = data()
    # Eager: tracing the train step of even the plain backbone takes ~20 s on a shared 2-core CPU.
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    out = run(model, x[:4])
    assert out.dtype == np.float32 and np.isfinite(out).all()
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(run(reloaded, x[:4]), out)
    assert attention_summary(reloaded) == attention_summary(model)


def test_backbone_weights_from_a_file_survive_attaching(tmp_path):
    source = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.35
    )
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    model = build_model(**SMALL, weights=str(path), attention="sb", placement="layer")
    checked = 0
    for layer in source.layers:
        if layer.weights:
            actual = model.get_layer(layer.name).get_weights()
            for a, expected in zip(actual, layer.get_weights(), strict=True):
                np.testing.assert_array_equal(a, expected)
            checked += 1
    assert checked > 100


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_unknown_backbone_lists_valid_ones():
    with pytest.raises(
        ValueError, match=r"Unknown `backbone` 'vgg16'; valid.*resnet50.*efficientnetb7"
    ):
        build_model("vgg16")


def test_input_shape_rejected_by_the_backbone():
    with pytest.raises(
        ValueError, match=r"Backbone 'resnet50' rejects input_shape=\(16, 16, 3\).*at least 32x32"
    ) as info:
        build_model("resnet50", input_shape=(16, 16, 3))
    assert "It accepts input_shape=(height, width, channels)" in str(info.value)


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 0), "32x32x3", (32.0, 32, 3), (32, 32, None)])
def test_malformed_input_shape(shape):
    with pytest.raises(
        ValueError, match=r"`input_shape` must be a tuple of three positive integers"
    ):
        build_model(input_shape=shape)


@pytest.mark.parametrize("num_classes", [1, 0, True, 2.5, "10"])
def test_bad_num_classes(num_classes):
    with pytest.raises(
        ValueError, match=rf"`num_classes` must be an integer >= 2; got {num_classes!r}"
    ):
        build_model(num_classes=num_classes)


@pytest.mark.parametrize("dropout", [1.0, -0.1, "0.5"])
def test_bad_dropout(dropout):
    with pytest.raises(ValueError, match=r"`dropout` must be a number in \[0.0, 1.0\)"):
        build_model(dropout=dropout)


def test_bad_attention_or_placement_fails_before_building(monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("the backbone should not be built")

    monkeypatch.setattr(keras.applications, "MobileNetV2", no_build)
    with pytest.raises(ValueError, match=r"Unknown attention 'nope'.*valid names"):
        build_model(attention="nope")
    with pytest.raises(ValueError, match=r"`placement` must be one of 'block', 'layer', 'paper'"):
        build_model(attention="sa", placement="everywhere")
    with pytest.raises(ValueError, match=r"`placement` must be one of"):
        build_model(placement="everywhere")
    with pytest.raises(ValueError, match=r"`groups`"):
        build_model(attention="sa", attention_kwargs={"groups": 0})
    with pytest.raises(ValueError, match=r"`attention_kwargs` must be a dict"):
        build_model(attention="sa", attention_kwargs=[("groups", 8)])


def test_backbone_kwargs_the_constructor_does_not_take():
    with pytest.raises(
        ValueError, match=r"Backbone 'resnet50' does not take the arguments \['alpha'\]"
    ):
        build_model("resnet50", alpha=0.5)


def test_bn_momentum_sets_every_backbone_batchnorm_and_survives_saving(tmp_path):
    model = build_model("mobilenetv2", alpha=0.35, attention="simam", bn_momentum=0.9)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.momentum == 0.9 for l in bns)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert all(
        l.momentum == 0.9 for l in loaded.layers if isinstance(l, keras.layers.BatchNormalization)
    )
    default = build_model("mobilenetv2", alpha=0.35)
    assert {l.momentum for l in default.layers
            if isinstance(l, keras.layers.BatchNormalization)} == {0.999}


@pytest.mark.parametrize("momentum", [1.0, -0.1, "0.9", True])
def test_bad_bn_momentum(momentum):
    with pytest.raises(ValueError, match="bn_momentum"):
        build_model("mobilenetv2", bn_momentum=momentum)


def test_attention_arguments_passed_as_backbone_kwargs_point_at_attention_kwargs():
    with pytest.raises(
        ValueError,
        match=r"groups is an argument of ShuffleAttention: pass attention_kwargs=\{'groups': 64\}",
    ):
        build_model("resnet20", attention="sa", groups=64)
    # Merged with the attention_kwargs already given; other unknown keywords still named.
    with pytest.raises(
        ValueError,
        match=r"attention_kwargs=\{'epsilon': 0.001, 'groups': 8\} .*not take \['foo'\]",
    ):
        build_model(
            "resnet20", attention="sa", attention_kwargs={"epsilon": 1e-3}, groups=8, foo=1
        )
    with pytest.raises(ValueError, match=r"reduction is an argument of SqueezeExcite"):
        build_model("resnet50", attention="se", reduction=8)
    # Without attention: the registered layers that take it, and a pointer to `attention=`.
    with pytest.raises(ValueError, match=r"ShuffleAttention: .*together with `attention=`"):
        build_model("resnet20", groups=64)
