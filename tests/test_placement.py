"""Tests for keras_attn.placement: where attach puts attention, and what it keeps intact."""

import functools
import math
import re
import weakref

import keras
import numpy as np
import pytest

from keras_attn.layers._base import AttentionLayer
from keras_attn import get_attention_class
from keras_attn.placement import (
    PLACEMENTS,
    SUPPORTED_FAMILIES,
    Insertion,
    attach,
    attention_summary,
    insertion_points,
    insertion_record,
    print_attention_summary,
    record_insertions,
)

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def backbone(name, **kwargs):
    """A keras.applications backbone at 32x32 without weights, built once per test session.

    attach reuses layers without changing them, so sharing one backbone between tests is safe.
    """
    return getattr(keras.applications, name)(
        include_top=False, weights=None, input_shape=(32, 32, 3), **kwargs
    )


def mobilenet():
    return backbone("MobileNetV2", alpha=0.35)


def images(n=2, seed=0):
    return np.random.RandomState(seed).uniform(0, 255, size=(n, 32, 32, 3)).astype("float32")


@keras.saving.register_keras_serializable(package="keras_attn_tests")
class Identity(keras.layers.Layer):
    """A factory-made stand-in whose output is its input."""

    def call(self, inputs):
        return inputs


def identity_factory(channels):
    return Identity()


def inserted(model, cls=keras.layers.Layer, names=None):
    """The layers attach inserted (by class), in graph order."""
    layers = [layer for layer in model.layers if isinstance(layer, cls)]
    if names is not None:
        layers = [layer for layer in layers if layer.name in names]
    return layers


def run(model, x):
    """Eager inference: much cheaper than tracing `predict` for a one-off batch."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def _history_names(value, found):
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            found.append(value["config"]["keras_history"][0])
            return found
        for item in value.values():
            _history_names(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _history_names(item, found)
    return found


_CONNECTIVITY = weakref.WeakKeyDictionary()


def node_inputs(model, layer):
    """Names of the layers whose outputs ``layer`` reads in ``model``, from the model's config.

    (Backbone layers are shared by every model attach made from them, so their own inbound
    nodes span several models; the functional config lists this model's call only.)
    """
    if model not in _CONNECTIVITY:
        _CONNECTIVITY[model] = {
            entry["name"]: [_history_names(node, []) for node in entry["inbound_nodes"]]
            for entry in model.get_config()["layers"]
        }
    (names,) = _CONNECTIVITY[model][layer if isinstance(layer, str) else layer.name]
    return names


def anchors_of(model, label):
    """Anchor names of layers named f'{anchor}_{label}'."""
    suffix = f"_{label}"
    return [layer.name[: -len(suffix)] for layer in model.layers if layer.name.endswith(suffix)]


def tiny_model(data_format="channels_last"):
    shape = (8, 8, 6) if data_format == "channels_last" else (6, 8, 8)
    inputs = keras.Input(shape, name="img")
    x = keras.layers.Conv2D(16, 3, padding="same", data_format=data_format, name="c1")(inputs)
    x = keras.layers.BatchNormalization(
        axis=-1 if data_format == "channels_last" else 1, name="b1"
    )(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(8, 1, data_format=data_format, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="gap")(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs, name="tiny")


def is_conv(layer):
    return isinstance(layer, keras.layers.Conv2D)


# --------------------------------------------------------------------------------------------
# Insertion points per family
# --------------------------------------------------------------------------------------------

# (constructor, kwargs, block, layer). MobileNetV3/EfficientNet include their preprocessing layers.
SMALL_FAMILIES = [
    ("ResNet50", {}, 16, 48),
    ("ResNet50V2", {}, 16, 48),
    ("MobileNetV2", {"alpha": 0.35}, 17, 50),
    ("MobileNetV3Small", {}, 11, 32),
    ("MobileNetV3Large", {}, 15, 44),
    ("EfficientNetB0", {}, 16, 47),
]


@pytest.mark.parametrize(
    "name,kwargs,n_block,n_layer", SMALL_FAMILIES, ids=[c[0] for c in SMALL_FAMILIES]
)
def test_attach_counts_outputs_and_weights(name, kwargs, n_block, n_layer):
    base = backbone(name, **kwargs)
    x = images()
    reference = run(base, x)
    for placement, expected in (("block", n_block), ("layer", n_layer)):
        model = attach(base, identity_factory, placement)
        added = inserted(model, Identity)
        assert len(added) == expected
        assert len(model.layers) == len(base.layers) + expected
        # Identity insertions: the attached model computes exactly what the backbone did.
        np.testing.assert_array_equal(run(model, x), reference)
        # Backbone layers and their variables are reused as they are.
        assert {id(layer) for layer in base.layers[1:]} <= {id(layer) for layer in model.layers}
        assert {id(v) for v in base.weights} == {id(v) for v in model.weights}
    np.testing.assert_array_equal(run(base, x), reference)


def test_attach_leaves_backbone_weight_values_unchanged():
    base = mobilenet()
    before = [w.copy() for w in base.get_weights()]
    model = attach(base, "sa", "block")
    for old, new in zip(before, base.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    backbone_part = {id(v) for v in base.weights}
    assert [v for v in model.weights if id(v) in backbone_part] == list(base.weights)


def efficientnet_counts(depth_coefficient):
    """Blocks and block convolutions of EfficientNet-Bx from its depth coefficient.

    Base repeats (1, 2, 2, 3, 3, 4, 1), each scaled by ceil(depth_coefficient * r); stage 1 has
    expand ratio 1 (depthwise + project convs), the others expand (3 convs per block).
    """
    repeats = [int(math.ceil(depth_coefficient * r)) for r in (1, 2, 2, 3, 3, 4, 1)]
    return sum(repeats), 2 * repeats[0] + 3 * sum(repeats[1:])


# ResNet blocks: (3, 4, 6, 3), (3, 4, 23, 3), (3, 8, 36, 3); 3 convs each (no shortcut).
DEEP_VARIANTS = [
    ("ResNet101", 33, 99),
    ("ResNet152", 50, 150),
    ("ResNet101V2", 33, 99),
    ("ResNet152V2", 50, 150),
] + [
    (f"EfficientNetB{i}", *efficientnet_counts(dc))
    for i, dc in enumerate((1.0, 1.1, 1.2, 1.4, 1.8, 2.2, 2.6, 3.1))
    if i > 0
]


@pytest.mark.parametrize("name,n_block,n_layer", DEEP_VARIANTS, ids=[c[0] for c in DEEP_VARIANTS])
def test_insertion_point_counts_deeper_variants(name, n_block, n_layer):
    # Used once: not cached, so that the large models are freed after the test.
    base = backbone.__wrapped__(name)
    assert len(insertion_points(base, "block")) == n_block
    assert len(insertion_points(base, "layer")) == n_layer
    # SimAM's paper position: after the second conv of each block.
    assert len(insertion_points(base, "paper", "simam")) == n_block


def test_efficientnet_counts_formula_matches_b0():
    assert efficientnet_counts(1.0) == (16, 47)


def test_resnet50_block_is_on_the_residual_branch_before_the_add():
    model = attach(backbone("ResNet50"), identity_factory, "block")
    anchors = anchors_of(model, "identity")
    assert len(anchors) == 16
    assert all(re.fullmatch(r"conv\d_block\d_3_bn", a) for a in anchors)
    # Projection block: one Add input is the untouched shortcut BN, the other the inserted layer.
    assert sorted(node_inputs(model, "conv2_block1_add")) == [
        "conv2_block1_0_bn",
        "conv2_block1_3_bn_identity",
    ]
    # Identity block: shortcut is the previous block's output.
    assert sorted(node_inputs(model, "conv2_block2_add")) == [
        "conv2_block1_out",
        "conv2_block2_3_bn_identity",
    ]


def test_resnet50_layer_skips_stem_and_shortcut_projections():
    anchors = insertion_points(backbone("ResNet50"), "layer")
    assert len(anchors) == len(set(anchors)) == 48
    assert all(re.fullmatch(r"conv\d_block\d_[123]_bn", a) for a in anchors)
    assert "conv1_bn" not in anchors and not any("_0_" in a for a in anchors)


def test_resnet50v2_block_ends_with_the_unnormalised_last_conv():
    base = backbone("ResNet50V2")
    block = insertion_points(base, "block")
    assert all(re.fullmatch(r"conv\d_block\d_3_conv", a) for a in block)
    layer = insertion_points(base, "layer")
    # After the BN when one follows (1st and 2nd conv), else after the conv (3rd).
    assert layer[:3] == ["conv2_block1_1_bn", "conv2_block1_2_bn", "conv2_block1_3_conv"]
    assert not any("_0_conv" in a or "preact" in a or a.startswith("post") for a in layer)


def test_mobilenetv2_anchors():
    base = mobilenet()
    block = insertion_points(base, "block")
    assert block[0] == "expanded_conv_project_BN" and block[-1] == "block_16_project_BN"
    assert all(a.endswith("_project_BN") for a in block)
    layer = insertion_points(base, "layer")
    assert layer[:3] == [
        "expanded_conv_depthwise_BN",
        "expanded_conv_project_BN",
        "block_1_expand_BN",
    ]
    assert "bn_Conv1" not in layer and "Conv_1_bn" not in layer  # stem, head
    # SimAM: right after each block's second conv, before its BN (the first block has no
    # expansion, so its second conv is the projection).
    assert insertion_points(base, "paper", "simam") == ["expanded_conv_project"] + [
        f"block_{i}_depthwise" for i in range(1, 17)]
    # The position after the BN stays available as a role placement.
    assert insertion_points(base, ("depthwise",), "simam") == [
        a for a in layer if "depthwise" in a]


def test_mobilenetv3_skips_its_squeeze_excite_and_head():
    layer = insertion_points(backbone("MobileNetV3Small"), "layer")
    assert not any("squeeze_excite" in a for a in layer)
    assert "conv_bn" not in layer and "conv_1_bn" not in layer
    assert layer[:2] == ["expanded_conv_depthwise_bn", "expanded_conv_project_bn"]


def test_efficientnet_block_goes_after_the_branch_dropout():
    base = backbone("EfficientNetB0")
    block = insertion_points(base, "block")
    assert block[:4] == [
        "block1a_project_bn",
        "block2a_project_bn",
        "block2b_drop",
        "block3a_project_bn",
    ]
    # Every residual Add gets the attention on its dropout input.
    adds = [layer.name for layer in base.layers if isinstance(layer, keras.layers.Add)]
    assert {a.replace("_add", "_drop") for a in adds} <= set(block)
    layer = insertion_points(base, "layer")
    assert not any("_se_" in a or a.startswith(("stem", "top")) for a in layer)
    assert layer[:3] == ["block1a_bn", "block1a_project_bn", "block2a_expand_bn"]


# --------------------------------------------------------------------------------------------
# Placement "paper" and per-method behaviour
# --------------------------------------------------------------------------------------------


def test_paper_placement_per_method():
    base = backbone("ResNet50")
    block = insertion_points(base, "block")
    for name in ("sa", "se", "cbam", "eca", "dca_se", "dca_cbam"):
        assert insertion_points(base, "paper", name) == block
    assert insertion_points(base, "paper", "sb") == insertion_points(base, "layer")
    assert insertion_points(base, "paper", "dca_sb") == insertion_points(base, "layer")
    simam = insertion_points(base, "paper", "simam")
    assert simam[:2] == ["conv2_block1_2_conv", "conv2_block2_2_conv"] and len(simam) == 16
    # A factory has no paper of its own: block position.
    assert insertion_points(base, "paper", identity_factory) == block


def test_sa_on_resnet50_block_adds_708_parameters():
    base = backbone("ResNet50")
    model = attach(base, "sa", "block", groups=64)
    # 3 C / G per block: 3 x 12 + 4 x 24 + 6 x 48 + 3 x 96 (C = 256 ... 2048, G = 64).
    assert model.count_params() - base.count_params() == 708
    summary = attention_summary(model)
    assert summary.total_params == 708 and len(summary) == 16
    assert {row["config"]["groups"] for row in summary} == {64}


def test_simam_adds_no_parameters():
    base = mobilenet()
    model = attach(base, "simam", "layer")
    assert model.count_params() == base.count_params()
    assert attention_summary(model).total_params == 0


def brute_force_groups(channels, groups):
    return max(g for g in range(1, groups + 1) if channels % (2 * g) == 0)


def test_sa_groups_lowered_per_insertion_point_and_recorded():
    base = mobilenet()  # channels 8, 16, 24, 32, 56, 112 at the block ends
    model = attach(base, "sa", "block", groups=64)
    summary = attention_summary(model)
    assert len(summary) == 17
    for row, layer in zip(summary, inserted(model, get_attention_class("sa")), strict=True):
        assert row["name"] == layer.name
        assert layer.groups == row["config"]["groups"] == brute_force_groups(row["channels"], 64)
        assert row["params"] == 3 * row["channels"] // layer.groups
    assert {r["channels"]: r["config"]["groups"] for r in summary} == {
        8: 4,
        16: 8,
        24: 12,
        32: 16,
        56: 28,
        112: 56,
    }
    # Default groups (64) is lowered the same way.
    assert [r["config"]["groups"] for r in attention_summary(attach(base, "sa"))] == [
        r["config"]["groups"] for r in summary
    ]


def test_sa_odd_channels_is_a_clear_error():
    inputs = keras.Input((4, 4, 5))
    outputs = keras.layers.Conv2D(7, 1, name="odd_conv")(inputs)
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match=r"odd_conv.*7 channels"):
        attach(model, "sa", is_conv)


def test_sb_paper_is_layerwise_with_conv_input_and_output():
    base = mobilenet()
    reference = run(base, images())
    model = attach(base, "sb", "paper", lambda_init=0.0)
    sbs = inserted(model, get_attention_class("sb"))
    assert [layer.name for layer in sbs] == [f"{a}_sb" for a in insertion_points(base, "layer")]
    # control_factor = 0: SB is the identity, so the model is unchanged.
    np.testing.assert_array_equal(run(model, images()), reference)
    # [conv input, conv output (after BN)]; the conv input is taken before the conv's padding.
    assert node_inputs(model, sbs[0]) == ["Conv1_relu", "expanded_conv_depthwise_BN"]
    assert node_inputs(model, "block_1_depthwise_BN_sb") == [
        "block_1_expand_relu",  # not block_1_pad
        "block_1_depthwise_BN",
    ]
    # The next conv reads the previous insertion's output.
    assert node_inputs(model, "block_1_expand_BN_sb") == [
        "expanded_conv_project_BN_sb",
        "block_1_expand_BN",
    ]
    # The SB paper's branch width: 1/6 after depthwise convs, 1 after pointwise ones.
    for row in attention_summary(model):
        expected = 1.0 / 6.0 if "depthwise" in row["anchor"] else 1.0
        assert row["config"]["hidden_ratio"] == pytest.approx(expected), row["name"]


def test_sb_block_reads_the_block_output_only_and_kwargs_win():
    model = attach(mobilenet(), "sb", "block", hidden_ratio=0.5)
    sbs = inserted(model, get_attention_class("sb"))
    assert len(sbs) == 17
    assert all(len(node_inputs(model, layer)) == 1 for layer in sbs)
    assert {layer.hidden_ratio for layer in sbs} == {0.5}


# --------------------------------------------------------------------------------------------
# DCA threading
# --------------------------------------------------------------------------------------------


def check_threading(model, base, name, placement):
    """Each DCA layer after the first reads the state of the previous one, in graph order."""
    cls = get_attention_class(name)
    layers = inserted(model, cls)
    # Graph order = the order of the anchors in the backbone.
    assert [layer.name for layer in layers] == [
        f"{a}_{name}" for a in insertion_points(base, placement, name)
    ]
    dca_names = {layer.name for layer in layers}
    assert not dca_names & set(node_inputs(model, layers[0]))  # no previous state
    assert not layers[0].has_previous
    for previous, layer in zip(layers[:-1], layers[1:], strict=True):
        states = [p for p in node_inputs(model, layer) if p in dca_names]
        # The state input(s) come from exactly the previous DCA layer.
        assert states and set(states) == {previous.name}, layer.name
        assert layer.has_previous
    channels = {row["channels"] for row in attention_summary(model)}
    assert len(channels) > 3  # threaded across stages with different widths


@pytest.mark.parametrize("name", ["dca_se", "dca_cbam"])
def test_dca_state_threaded_in_graph_order(name):
    base = mobilenet()
    model = attach(base, name, "block")
    check_threading(model, base, name, "block")
    assert np.isfinite(run(model, images())).all()


def test_dca_sb_layerwise_threaded_identity_and_reloadable(tmp_path):
    base = backbone("MobileNetV3Small", alpha=0.75, minimalistic=True)  # the lightest family
    model = attach(base, "dca_sb", "layer", lambda_init=0.0)
    assert len(inserted(model, get_attention_class("dca_sb"))) == 32
    check_threading(model, base, "dca_sb", "layer")
    # After the first: [conv input, conv output, previous state].
    conv_input, conv_output, state = node_inputs(model, "expanded_conv_project_bn_dca_sb")
    assert conv_input.startswith("re_lu")  # auto-named activation before the project conv
    assert (conv_output, state) == ("expanded_conv_project_bn", "expanded_conv_depthwise_bn_dca_sb")
    reference = run(base, images())
    np.testing.assert_array_equal(run(model, images()), reference)
    path = tmp_path / "dca.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(run(reloaded, images()), reference)
    # The reloaded model's summary finds the anchors from its graph alone.
    assert [r["anchor"] for r in attention_summary(reloaded)] == insertion_points(base, "layer")


# --------------------------------------------------------------------------------------------
# Names, attention forms, callable placement, precision, layouts
# --------------------------------------------------------------------------------------------


def test_names_deterministic_and_unique():
    base = mobilenet()
    first = [
        layer.name
        for layer in inserted(attach(base, "simam", "layer"), get_attention_class("simam"))
    ]
    second = [
        layer.name
        for layer in inserted(attach(base, "simam", "layer"), get_attention_class("simam"))
    ]
    assert first == second
    assert first == [f"{a}_simam" for a in insertion_points(base, "layer")]
    model = attach(base, "simam", "layer")
    all_names = [layer.name for layer in model.layers]
    assert len(all_names) == len(set(all_names))
    # The model keeps its name and its input layer's name (clone_model alone would not).
    assert model.name == base.name and model.layers[0].name == base.layers[0].name


def test_name_clash_gets_a_suffix():
    # A model layer that already has the name an insertion would get. (Attaching to a model
    # that already has attention is refused: test_attach_refuses_a_model_that_already_has_...)
    inputs = keras.Input((8, 8, 6), name="img")
    x = keras.layers.Conv2D(16, 3, padding="same", name="c1")(inputs)
    x = keras.layers.ReLU(name="c1_simam")(x)
    x = keras.layers.Conv2D(8, 1, name="c2")(x)
    model = keras.Model(inputs, x, name="clash")
    attached = attach(model, "simam", is_conv)
    names = [layer.name for layer in attached.layers]
    assert "c1_simam_2" in names and "c2_simam" in names
    assert len(names) == len(set(names))


def test_attention_as_class_and_factory_kwargs():
    simam = get_attention_class("simam")
    model = attach(tiny_model(), simam, is_conv, e_lambda=0.5)
    assert [(layer.name, layer.e_lambda) for layer in inserted(model, simam)] == [
        ("c1_simam", 0.5),
        ("c2_simam", 0.5),
    ]
    seen = []

    def factory(channels, scale):
        seen.append((channels, scale))
        return Identity()

    attach(tiny_model(), factory, is_conv, scale=2)
    assert seen == [(16, 2), (8, 2)]


def test_callable_placement_on_any_functional_model():
    model = tiny_model()
    x = np.random.RandomState(1).normal(size=(2, 8, 8, 6)).astype("float32")
    reference = run(model, x)
    # Input layers are never selected; a callable picks after which layers to insert.
    attached = attach(
        model,
        identity_factory,
        lambda layer: not isinstance(layer, keras.layers.Dense) and layer.name != "gap",
    )
    assert [layer.name for layer in inserted(attached, Identity)] == [
        "c1_identity",
        "b1_identity",
        "r1_identity",
        "c2_identity",
    ]
    np.testing.assert_array_equal(run(attached, x), reference)


def test_sequential_model_with_callable_placement():
    seq = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="sc")])
    model = attach(seq, "simam", is_conv)
    assert [layer.name for layer in inserted(model, get_attention_class("simam"))] == ["sc_simam"]


def test_inserted_layers_follow_the_anchor_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = tiny_model()
    keras.mixed_precision.set_global_policy("float32")
    attached = attach(model, "sa", is_conv, groups=2)
    for layer in inserted(attached, get_attention_class("sa")):
        assert layer.dtype_policy.name == "mixed_float16"
        assert layer.compute_dtype == "float16" and layer.variable_dtype == "float32"
    out = run(attached, np.ones((2, 8, 8, 6), "float32"))
    assert np.isfinite(out).all()


def test_channels_first_models_get_channels_first_attention():
    model = tiny_model("channels_first")
    attached = attach(model, "sa", is_conv, groups=64)
    layers = inserted(attached, get_attention_class("sa"))
    assert [layer.data_format for layer in layers] == ["channels_first"] * 2
    # Channels read from axis 1: 16 -> groups 8, 8 -> groups 4.
    assert [layer.groups for layer in layers] == [8, 4]
    assert [row["channels"] for row in attention_summary(attached)] == [16, 8]


# --------------------------------------------------------------------------------------------
# attention_summary
# --------------------------------------------------------------------------------------------


def test_attention_summary_rows_total_and_table(tmp_path):
    base = mobilenet()
    model = attach(base, "sa", "block", groups=16)
    summary = attention_summary(model)
    row = summary[3]
    assert row == {
        "name": "block_3_project_BN_sa",
        "anchor": "block_3_project_BN",
        "attention": "sa",
        "class": "ShuffleAttention",
        "channels": 16,
        "params": 6,
        "config": row["config"],
    }
    assert row["config"]["groups"] == 8
    assert summary.total_params == model.count_params() - base.count_params()
    printed = []
    assert attention_summary(model, print_fn=printed.append) == summary
    (table,) = printed
    assert "block_3_project_BN_sa" in table and "groups=8" in table
    assert f"Total: 17 attention layers, {summary.total_params:,} parameters added." in table
    assert str(summary) == table
    # Also readable as a mapping of totals; printable in one call.
    assert summary["total_params"] == summary.total_params and summary["rows"] == list(summary)
    with pytest.raises(KeyError, match="total_params"):
        summary["params"]
    printed.clear()
    assert print_attention_summary(model, print_fn=printed.append) == summary
    assert printed == [table]
    # A reloaded model reports the same rows, anchors derived from its graph.
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert attention_summary(reloaded) == summary


def test_insertion_record_lives_on_the_attached_model_only(tmp_path):
    base = mobilenet()
    model = attach(base, identity_factory, "block")
    record = insertion_record(model)
    # Kept as given: Keras' attribute tracking would have turned dicts into TrackedDicts.
    assert type(record) is tuple and {type(i) for i in record} == {Insertion}
    assert [i.anchor for i in record] == insertion_points(base, "block")
    assert {i.attention for i in record} == {"identity"}
    assert [row["name"] for row in attention_summary(model)] == [i.name for i in record]
    assert insertion_record(base) == ()
    # A clone or a reloaded copy has no record: the summary reads the layers, and a factory's
    # Identity is no keras-attn class.
    clone = keras.models.clone_model(model)
    assert insertion_record(clone) == () and attention_summary(clone) == []
    np.testing.assert_array_equal(run(clone, images()), run(model, images()))
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert insertion_record(reloaded) == () and attention_summary(reloaded) == []
    np.testing.assert_array_equal(run(reloaded, images()), run(model, images()))


def test_attention_summary_reads_a_recorded_insertion():
    model = record_insertions(tiny_model(), [Insertion("r1", "b1", "gate")])
    (row,) = attention_summary(model)
    assert (row["name"], row["anchor"], row["attention"], row["class"]) == (
        "r1", "b1", "gate", "ReLU"
    )
    with pytest.raises(ValueError, match=r"takes Insertion items; got dict"):
        record_insertions(model, [{"name": "r1", "anchor": "b1", "attention": "gate"}])


def test_attention_summary_of_a_plain_model_is_empty():
    summary = attention_summary(tiny_model())
    assert summary == [] and summary.total_params == 0
    assert "Total: 0 attention layers, 0 parameters added." in str(summary)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_unknown_placement():
    with pytest.raises(
        ValueError,
        match=r"`placement` must be one of 'block', 'layer', 'paper'.*callable.*got 'stage'",
    ):
        attach(tiny_model(), "simam", "stage")
    assert PLACEMENTS == ("block", "layer", "paper")


def test_unknown_attention_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown attention 'nope'.*valid names:.*sa.*simam"):
        attach(mobilenet(), "nope")


@pytest.mark.parametrize("bad", [3, object, None])
def test_attention_of_the_wrong_kind(bad):
    with pytest.raises(ValueError, match=r"`attention` must be a registry name.*factory"):
        attach(tiny_model(), bad, is_conv)


def test_bad_attention_arguments_fail_before_the_graph_is_rebuilt():
    with pytest.raises(ValueError, match="e_lambda"):
        attach(tiny_model(), "simam", is_conv, e_lambda=-1.0)
    with pytest.raises(ValueError, match=r"SimAM.*colour"):
        attach(tiny_model(), "simam", is_conv, colour="red")
    with pytest.raises(ValueError, match=r"`name` cannot be passed"):
        attach(tiny_model(), "simam", is_conv, name="x")


def test_unsupported_model_with_named_placement():
    for placement in PLACEMENTS:
        with pytest.raises(ValueError) as info:
            attach(tiny_model(), "simam", placement)
        message = str(info.value)
        assert all(family in message for family in SUPPORTED_FAMILIES)
        assert "callable(layer) -> bool" in message and "'tiny'" in message


def test_efficientnetv2_is_not_mistaken_for_efficientnet():
    # Same block names (block4a_...), other structure (fused blocks, `dwconv2`): refused.
    model = backbone.__wrapped__("EfficientNetV2B0")
    with pytest.raises(ValueError, match="EfficientNetB0-B7"):
        attach(model, "simam", "block")
    assert len(insertion_points(model, is_conv)) > 0  # the callable form still works


def test_callable_selecting_a_non_feature_map():
    with pytest.raises(ValueError, match=r"'head'.*not a single 4-D feature map"):
        attach(tiny_model(), "simam", lambda layer: layer.name == "head")


def test_layer_instance_is_refused():
    with pytest.raises(ValueError, match=r"not the layer instance 'one'.*SimAM"):
        attach(tiny_model(), get_attention_class("simam")(name="one"), is_conv)


def test_factory_misuse():
    with pytest.raises(ValueError, match="must return a keras Layer"):
        attach(tiny_model(), lambda channels: "not a layer", is_conv)
    shared = Identity()
    with pytest.raises(ValueError, match="new, unbuilt layer"):
        attach(tiny_model(), lambda channels: shared, is_conv)


def test_not_a_functional_model():
    with pytest.raises(ValueError, match="functional keras.Model"):
        attach(object(), "simam", is_conv)
    with pytest.raises(ValueError, match="must be built"):
        attach(keras.Sequential([keras.layers.Dense(2)]), "simam", is_conv)


@keras.saving.register_keras_serializable(package="keras_attn_tests")
class PairGate(AttentionLayer):
    """A new attention class, unknown to placement: it only states facts about itself."""

    paper_placement = "layer"
    takes_layerwise_input = True

    def __init__(self, width=1.0, **kwargs):
        super().__init__(**kwargs)
        self.width = width

    @classmethod
    def role_defaults(cls, conv_kind):
        return {"width": {"depthwise": 2.0, "pointwise": 3.0}.get(conv_kind, 4.0)}

    @classmethod
    def adapt_to_channels(cls, kwargs, channels, where=None):
        return {**kwargs, "width": kwargs["width"] + channels / 1000.0}

    def call(self, inputs):
        return inputs[1]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])

    def get_config(self):
        return {**super().get_config(), "width": self.width}


def test_placement_asks_a_new_layer_class_not_its_name():
    base = mobilenet()
    model = attach(base, PairGate, "paper")
    layers = inserted(model, PairGate)
    assert [layer.name for layer in layers] == [
        f"{a}_pair_gate" for a in insertion_points(base, "layer")
    ]
    # Layer-wise form, per-role defaults and channel adaptation all came from the class.
    assert node_inputs(model, layers[0]) == ["Conv1_relu", "expanded_conv_depthwise_BN"]
    first = model.get_layer("expanded_conv_depthwise_BN_pair_gate")
    assert first.width == pytest.approx(2.0 + 16 / 1000.0)  # depthwise, 16 channels (alpha 0.35)
    project = model.get_layer("expanded_conv_project_BN_pair_gate")
    assert project.width == pytest.approx(3.0 + 8 / 1000.0)


def test_role_placement_mobilenetv2_sb_is_layerwise_with_role_defaults():
    # The SB paper's C1 (expand) + C3 (project), Table 5; the first block has no expand conv.
    base = mobilenet()
    reference = run(base, images())
    model = attach(base, "sb", ("expand", "project"), lambda_init=0.0)
    sbs = inserted(model, get_attention_class("sb"))
    assert len(sbs) == 16 + 17
    assert all(l.name.endswith(("_expand_BN_sb", "_project_BN_sb")) for l in sbs)
    np.testing.assert_array_equal(run(model, images()), reference)  # control factor 0
    assert node_inputs(model, "block_1_expand_BN_sb") == [
        "expanded_conv_project_BN_sb", "block_1_expand_BN"]
    only_dw = attach(base, "sb", ("depthwise",))
    for row in attention_summary(only_dw):  # role_defaults: 1/6 after depthwise convolutions
        assert row["config"]["hidden_ratio"] == pytest.approx(1.0 / 6.0), row["name"]


def test_role_placement_resnet50_and_bad_roles():
    base = backbone("ResNet50")
    assert len(insertion_points(base, ("conv1",))) == 16
    assert insertion_points(base, ("conv3",))[:2] == ["conv2_block1_3_bn", "conv2_block2_3_bn"]
    with pytest.raises(ValueError, match=r"roles \['expand'\] do not occur.*'conv1', 'conv2', 'conv3'"):
        insertion_points(base, ("expand",))
    with pytest.raises(ValueError, match=r"tuple of convolution roles.*got \('conv9',\)"):
        attach(base, "se", ("conv9",))


def test_attach_refuses_a_model_that_already_has_attention():
    base = mobilenet()
    once = attach(base, "simam")
    count = len(attention_summary(once))
    assert count > 0
    with pytest.raises(ValueError, match=rf"already has {count} attention layers \('") as info:
        attach(once, "se")
    message = str(info.value)
    assert repr(attention_summary(once)[0]["name"]) in message, message
    assert "without attention" in message and "attention=None" in message, message
    # Layers a factory made (of any class) are found through attach's records too.
    with pytest.raises(ValueError, match=r"already has \d+ attention layers"):
        attach(attach(base, identity_factory), "simam")
    # The backbone itself is unchanged and still takes attention.
    assert len(attention_summary(attach(base, "se"))) == count
