"""The papers' small-image backbones (keras_attn.cifar_backbones) and build_model(seed=...)."""

import keras
import numpy as np
import pytest

from keras_attn import attention_summary, build_model
from keras_attn.cifar_backbones import ChannelPadding, mobilenetv2_cifar, resnet_cifar
from keras_attn.placement import insertion_points


def trainable(model):
    # PyTorch's parameters(), which the papers count: BatchNorm's moving statistics excluded.
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("depth, millions", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85),
                                             (110, 1.7)])
def test_resnet_parameters_match_he_et_al_table_6(depth, millions):
    model = build_model(f"resnet{depth}", (32, 32, 3), 10)
    digits = 1 if depth == 110 else 2
    assert round(trainable(model) / 1e6, digits) == millions


def test_resnet20_layout_and_option_a_shortcuts():
    model = resnet_cifar(20, (32, 32, 3))
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 19  # 1 + 3 stages x 3 blocks x 2: no projection shortcuts (option A)
    assert [c.filters for c in convs[::6]] == [16, 16, 32, 64]
    assert model.output_shape == (None, 8, 8, 64)
    pads = [l for l in model.layers if isinstance(l, ChannelPadding)]
    assert [(p.before, p.after) for p in pads] == [(8, 8), (16, 16)]


def test_option_a_shortcut_subsamples_and_pads_zero_channels():
    x = np.arange(2 * 4 * 4 * 2, dtype="float32").reshape(2, 4, 4, 2)
    pool = keras.layers.MaxPooling2D(1, 2, padding="same")
    y = keras.ops.convert_to_numpy(ChannelPadding(1, 3)(pool(x)))
    expected = np.pad(x[:, ::2, ::2, :], [(0, 0), (0, 0), (0, 0), (1, 3)])
    np.testing.assert_array_equal(y, expected)
    layer = ChannelPadding.from_config(ChannelPadding(1, 3).get_config())
    assert (layer.before, layer.after) == (1, 3)
    assert layer.compute_output_shape((None, 2, 2, 2)) == (None, 2, 2, 6)
    with pytest.raises(ValueError, match="`before` must be an integer >= 0"):
        ChannelPadding(-1)


def test_mobilenetv2_cifar_matches_kuangliu_and_the_sb_paper():
    # kuangliu/pytorch-cifar MobileNetV2 (10 classes): 2,296,922 parameters.
    assert trainable(build_model("mobilenetv2_cifar", (32, 32, 3), 10)) == 2_296_922
    model = mobilenetv2_cifar((32, 32, 3))
    assert model.output_shape == (None, 4, 4, 1280)  # strides 1, 1, 1, 2, 2, 1, 2, 1
    assert model.get_layer("Conv1").strides == (1, 1)
    assert model.get_layer("block_1_depthwise").strides == (1, 1)  # 2 -> 1 for CIFAR
    assert model.get_layer("block_0_expand").filters == 32  # expansion 1 still has its conv
    # Stride-1 blocks whose channels change get a 1x1 conv + BN shortcut; stride-2 ones none.
    shortcuts = {l.name for l in model.layers if l.name.endswith("_shortcut")}
    assert shortcuts == {"block_0_shortcut", "block_1_shortcut", "block_10_shortcut",
                         "block_16_shortcut"}
    assert not any(l.name.startswith("block_3_") and l.name.endswith("_add")
                   for l in model.layers)


@pytest.mark.parametrize("roles, hidden_multiplier, millions", [
    (("expand",), 1, 1.091),                           # SB paper Table 5, C1
    (("expand", "project"), 1, 1.243),                 # C1 + C3
    (("expand", "depthwise", "project"), 1, 1.441),    # C1 + C2 + C3, Table 10 x1
    (("expand", "depthwise", "project"), 2, 2.447),    # Table 10 x2
    (("expand", "depthwise", "project"), 4, 4.460),    # Table 10 x4
])
def test_shift_and_balance_parameters_match_sb_tables_5_and_10(roles, hidden_multiplier,
                                                                millions):
    model = build_model("mobilenetv2_cifar", (32, 32, 3), 10, alpha=0.35, attention="sb",
                        placement=roles, attention_kwargs={"hidden_multiplier": hidden_multiplier})
    assert round(trainable(model) / 1e6, 3) == millions


@pytest.mark.parametrize("backbone, block, layer", [("resnet20", 9, 18), ("resnet110", 54, 108),
                                                    ("mobilenetv2_cifar", 17, 51)])
def test_placement_recognises_the_small_backbones(backbone, block, layer):
    model = build_model(backbone, (28, 28, 1), 10)
    assert len(insertion_points(model, "block")) == block
    assert len(insertion_points(model, "layer")) == layer
    with_sb = build_model(backbone, (28, 28, 1), 10, attention="sb", placement="layer")
    assert len(attention_summary(with_sb)) == layer


def test_resnet_block_position_is_before_the_add():
    points = insertion_points(build_model("resnet20", (28, 28, 1), 10), "block")
    assert points[0] == "stack1_block1_2_bn" and points[-1] == "stack3_block3_2_bn"
    roles = insertion_points(build_model("resnet20", (28, 28, 1), 10), ("conv1",))
    assert roles[0] == "stack1_block1_1_bn" and len(roles) == 9


def test_native_fashion_mnist_input_trains():
    model = build_model("resnet20", (28, 28, 1), 10, attention="simam", seed=0)
    assert model.input_shape == (None, 28, 28, 1)
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(8, 28, 28, 1)).astype("float32")
    # Eight images to memorise (one batch): the loss must fall over a few steps, not just be finite.
    losses = model.fit(x, np.arange(8) % 10, epochs=4, batch_size=8, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def _weights(model, names):
    return {n: [np.array(w) for w in model.get_layer(n).get_weights()] for n in names}


def test_same_seed_same_backbone_and_head_whatever_the_attention():
    names = ["conv1_conv", "stack2_block1_1_conv", "stack3_block3_2_conv", "stack3_block3_2_bn",
             "predictions"]
    ref = _weights(build_model("resnet20", (28, 28, 1), 10, seed=7), names)
    for attention, placement in (("sa", "block"), ("sb", "layer"), ("dca_se", "block")):
        other = _weights(build_model("resnet20", (28, 28, 1), 10, attention=attention,
                                     placement=placement, seed=7), names)
        for n in names:
            for a, b in zip(ref[n], other[n]):
                np.testing.assert_array_equal(a, b, err_msg=f"{attention}: {n}")
    different = _weights(build_model("resnet20", (28, 28, 1), 10, seed=8), names)
    assert not np.array_equal(ref["conv1_conv"][0], different["conv1_conv"][0])
    assert not np.array_equal(ref["predictions"][0], different["predictions"][0])


def test_attention_weights_are_seeded_too():
    a = build_model("resnet20", (28, 28, 1), 10, attention="sb", seed=3)
    b = build_model("resnet20", (28, 28, 1), 10, attention="sb", seed=3)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.array(wa), np.array(wb))


def test_seed_does_not_disturb_the_callers_random_state():
    import random

    random.seed(1)
    expected = random.random()
    random.seed(1)
    build_model("resnet20", (28, 28, 1), 10, seed=5)
    assert random.random() == expected


@pytest.mark.parametrize("bad, match", [
    ({"seed": 1.5}, "`seed` must be an integer or None"),
    ({"weights": "imagenet"}, "'resnet20' has no pretrained weights"),
    ({"input_shape": (28, 28)}, "`input_shape` must be a tuple of three"),
])
def test_small_backbone_errors(bad, match):
    kwargs = {"backbone": "resnet20", "input_shape": (28, 28, 1), **bad}
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)


def test_unknown_resnet_depth():
    with pytest.raises(ValueError, match=r"`depth` must be one of 20, 32, 44, 56, 110; got 18"):
        resnet_cifar(18)


def test_simam_paper_position_is_after_the_second_conv_before_its_bn():
    # simam.txt Sec. 3: "after second convolutional layer within each block".
    model = build_model("resnet20", (28, 28, 1), 10, attention="simam", placement="paper")
    simams = [l for l in model.layers if type(l).__name__ == "SimAM"]
    assert len(simams) == 9
    bn = model.get_layer("stack1_block1_2_bn")
    # Layers are shared with the bare backbone (attach reuses them): the last call is this model.
    producer = bn._inbound_nodes[-1].input_tensors[0]._keras_history.operation
    assert type(producer).__name__ == "SimAM"
    conv_call = producer._inbound_nodes[-1].input_tensors[0]._keras_history.operation
    assert conv_call is model.get_layer("stack1_block1_2_conv")
