"""search.hypermodel: the search space, build under a precision policy, fit, and real tuner runs."""

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

import keras_attn
from search import hypermodel as hm_module
from search import training
from search.hypermodel import AttentionHyperModel, describe_hyperparameters, trial_row
from search.recipe import Recipe
from search.space import HyperparameterSpec

# Every built-in attention, and the attentions each layer hyperparameter applies to.
ALL_ATTENTIONS = ["none", "sa", "simam", "sb", "dca_se", "dca_cbam", "dca_sb", "se", "cbam", "eca"]
USERS = {"groups": ("sa",), "e_lambda": ("simam",), "lambda_init": ("sb", "dca_sb"),
         "gate": ("sb", "dca_sb"), "connection": ("dca_se", "dca_cbam", "dca_sb"),
         "connection_form": ("dca_se", "dca_cbam")}

MOBILENET = dict(backbone="mobilenetv2", input_shape=(32, 32, 3), num_classes=10,
                 backbone_kwargs={"alpha": 0.35})


def tiny_builder(backbone, input_shape, num_classes, attention=None, placement="block",
                 attention_kwargs=None, weights=None, dropout=0.0, **backbone_kwargs):
    """build_model's signature on a 2-conv network without BatchNorm (fast trials)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    if attention is not None:
        x = keras_attn.get_attention(attention, **(attention_kwargs or {}))(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                 name="predictions")(x)
    return keras.Model(inputs, outputs)


def tiny_datasets(n_train=32, n_val=16, shape=(8, 8, 3), batch_size=16, num_classes=3):
    rng = np.random.default_rng(0)

    def make(n):
        x = rng.normal(size=(n, *shape)).astype("float32")
        y = rng.integers(0, num_classes, n).astype("int32")
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)

    return make(n_train), make(n_val)


def with_values(**values):
    hp = kt.HyperParameters()
    hp.values.update(values)  # declared hyperparameters keep a value set beforehand
    return hp


def active(hp):
    return {k for k in hp.values if hp.is_active(k)}


# ------------------------------------------------------------------------------------ the space


def test_default_space_declared_with_defaults():
    hm = AttentionHyperModel(**MOBILENET)
    hp = kt.HyperParameters()
    config = hm.declare(hp)
    assert config == {"attention": "none", "placement": None, "attention_kwargs": {},
                      "learning_rate": 0.1}
    space = {p.name: p for p in hp.space}
    assert list(space) == ["attention", "placement", "groups", "e_lambda", "lambda_init", "gate",
                           "connection", "connection_form", "learning_rate"]
    assert space["attention"].values == ["none", "sa", "simam", "sb", "dca_se"]
    assert space["placement"].values == ["block", "layer"]
    assert space["groups"].values == [8, 16, 32, 64] and space["groups"].default == 64
    assert space["e_lambda"].values == [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    assert space["e_lambda"].default == 1e-4
    assert space["lambda_init"].values == [0.01, 0.05, 0.1, 0.5, 1.0]
    assert space["lambda_init"].default == 0.1
    assert space["gate"].values == ["tanh", "sigmoid", "softmax", "relu", "none"]
    assert space["connection"].values == ["direct", "weighted", "softmax"]
    assert space["connection_form"].values == ["paper", "official"]
    assert space["connection_form"].default == "paper"
    # The recipe's learning rate, the same for every trial (the SB paper's SGD 0.1 at batch 128).
    assert isinstance(space["learning_rate"], kt.engine.hyperparameters.Fixed)
    assert space["learning_rate"].value == 0.1
    searched = AttentionHyperModel(search_learning_rate=True).space["learning_rate"]
    assert searched == HyperparameterSpec.log_range("learning_rate", 0.01, 0.2, 0.1)
    assert (searched.kind, searched.min, searched.max, searched.default) == ("range", 0.01, 0.2,
                                                                             0.1)
    # Every hyperparameter has an explicit default (hp.Choice would otherwise take the first).
    assert all(p.default is not None for p in hp.space)
    assert active(hp) == {"attention", "learning_rate"}  # no placement without attention
    assert AttentionHyperModel(optimizer="adam").space["learning_rate"] == \
        HyperparameterSpec.fixed("learning_rate", 3e-3)
    assert AttentionHyperModel(optimizer="adam", search_learning_rate=True).space[
        "learning_rate"] == HyperparameterSpec.log_range("learning_rate", 1e-3, 1e-2, 3e-3)


@pytest.mark.parametrize(
    "attention, expected",
    [
        ("none", {}),
        ("sa", {"groups": 64}),
        ("simam", {"e_lambda": 1e-4}),
        ("sb", {"lambda_init": 0.1, "gate": "tanh"}),
        ("dca_se", {"connection": "direct", "connection_form": "paper"}),
        ("dca_cbam", {"connection": "direct", "connection_form": "paper"}),
        ("dca_sb", {"lambda_init": 0.1, "gate": "tanh", "connection": "direct"}),
        ("se", {}),
        ("cbam", {}),
        ("eca", {}),
    ],
)
def test_conditional_hyperparameters(attention, expected):
    hm = AttentionHyperModel(space={"attention": ALL_ATTENTIONS})
    hp = with_values(attention=attention)
    config = hm.declare(hp)
    assert config["attention_kwargs"] == expected
    base = {"attention", "learning_rate"} | (set() if attention == "none" else {"placement"})
    assert active(hp) == base | set(expected)
    assert config["placement"] == (None if attention == "none" else "block")


def test_oracle_samples_only_active_hyperparameters():
    hm = AttentionHyperModel(space={"attention": ALL_ATTENTIONS,
                                    "placement": ["block", "layer", "paper"]},
                             search_learning_rate=True)
    hp = kt.HyperParameters()
    hm.declare(hp)
    oracle = kt.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=100, seed=1,
                                           hyperparameters=hp)
    users = USERS
    seen = set()
    for _ in range(60):
        values = oracle.populate_space("t")["values"]
        attention = values["attention"]
        seen.add(attention)
        for name, attentions in users.items():
            assert (name in values) == (attention in attentions), (attention, values)
        assert ("placement" in values) == (attention != "none")
        assert 0.01 <= values["learning_rate"] <= 0.2
        # The sampled values build the matching layer arguments.
        sample = with_values(**values)
        config = hm.declare(sample)
        assert set(config["attention_kwargs"]) <= set(values)
    assert len(seen) >= 8


def test_any_constructor_argument_can_be_searched_or_fixed():
    # SA-Net Table 2's ablations and SB's Table 7/10 knobs, beyond the built-in keys.
    hm = AttentionHyperModel(space={"attention": ["none", "sa", "sb"], "placement": "block",
                                    "use_norm": [True, False], "transform": "conv",
                                    "hidden_multiplier": [1.0, 2.0], "dropout": 0.2})
    hp = kt.HyperParameters()
    hm.declare(hp)
    space = {p.name: p for p in hp.space}
    assert space["use_norm"].values == [True, False]
    assert isinstance(space["transform"], kt.engine.hyperparameters.Fixed)
    sa = hm.declare(with_values(attention="sa", use_norm=False))
    assert sa["attention_kwargs"] == {"groups": 64, "use_norm": False, "transform": "conv"}
    sb = hm.declare(with_values(attention="sb", hidden_multiplier=2.0))
    assert sb["attention_kwargs"] == {"lambda_init": 0.1, "gate": "tanh",
                                      "hidden_multiplier": 2.0, "dropout": 0.2}
    none = with_values(attention="none")
    assert hm.declare(none)["attention_kwargs"] == {}
    assert not none.is_active("use_norm") and not none.is_active("hidden_multiplier")
    model = AttentionHyperModel(backbone="resnet20", input_shape=(28, 28, 1),
                                space={"attention": "sa", "placement": "block",
                                       "use_norm": False}).build(kt.HyperParameters())
    sas = [l for l in model.layers if isinstance(l, keras_attn.ShuffleAttention)]
    assert sas and all(l.use_norm is False for l in sas)


def test_space_restriction():
    hm = AttentionHyperModel(space={"attention": ["sb"], "placement": "layer",
                                    "gate": ["tanh", "sigmoid"], "learning_rate": [0.02, 0.1]})
    hp = kt.HyperParameters()
    config = hm.declare(hp)
    space = {p.name: p for p in hp.space}
    assert list(space) == ["attention", "placement", "lambda_init", "gate", "learning_rate"]
    assert isinstance(space["attention"], kt.engine.hyperparameters.Fixed)
    assert isinstance(space["placement"], kt.engine.hyperparameters.Fixed)
    assert space["gate"].values == ["tanh", "sigmoid"] and space["gate"].default == "tanh"
    assert space["learning_rate"].values == [0.02, 0.1]
    assert config == {"attention": "sb", "placement": "layer",
                      "attention_kwargs": {"lambda_init": 0.1, "gate": "tanh"},
                      "learning_rate": 0.1}
    fixed = AttentionHyperModel(space={"attention": "simam", "e_lambda": 0.01,
                                       "learning_rate": {"min": 0.001, "max": 0.01}})
    hp = kt.HyperParameters()
    config = fixed.declare(hp)
    assert config["attention_kwargs"] == {"e_lambda": 0.01}
    lr = {p.name: p for p in hp.space}["learning_rate"]
    assert (lr.min_value, lr.max_value) == (0.001, 0.01)
    assert lr.default == pytest.approx(0.001 ** 0.5 * 0.01 ** 0.5)
    only_none = AttentionHyperModel(space={"attention": ["none"]})
    hp = kt.HyperParameters()
    only_none.declare(hp)
    assert [p.name for p in hp.space] == ["attention", "learning_rate"]


@pytest.mark.parametrize(
    "space, match",
    [
        ({"attn": ["sa"]}, r"Unknown search-space key 'attn': no attention in the choices "
                           r"\(none, sa, simam, sb, dca_se\) takes it; valid keys: .*connection, "
                           r".*hidden_multiplier, .*use_norm"),
        ({"attention": ["sa"], "fusion": "multiply"},
         r"Unknown search-space key 'fusion': no attention in the choices \(sa\)"),
        ({"attention": ["sb"], "fusion": ["add", "concat"]},
         r"space\['fusion'\]: 'concat' is rejected by 'sb': .*fusion"),
        ({"attention": ["sa"], "use_norm": [[1]]}, r"is not a number, string or boolean"),
        ({"attention": ["sa", "transformer"]}, r"space\['attention'\]: 'transformer' is not one of "
                                               r"none, sa, simam, sb, se, cbam, eca, dca_se, dca_cbam, dca_sb"),
        ({"attention": []}, r"space\['attention'\] is an empty list"),
        ({"placement": "everywhere"}, r"space\['placement'\]: 'everywhere' is not one of block, layer, paper"),
        ({"gate": ["tanh", "gelu"]}, r"space\['gate'\]: 'gelu' is not one of tanh, sigmoid, softmax, relu, none"),
        ({"connection": "sum"}, r"'sum' is not one of direct, weighted, softmax"),
        ({"attention": ["dca_se"], "connection_form": ["paper", "conv"]},
         r"space\['connection_form'\]: 'conv' is not one of paper, official"),
        ({"attention": ["dca_sb"], "connection_form": "official"},
         r"space\['connection_form'\] applies to attention dca_se, dca_cbam, none of which is in "
         r"the attention choices \(dca_sb\)"),
        ({"groups": [8, 0]}, r"space\['groups'\]: 0 is not a positive integer"),
        ({"e_lambda": -1.0}, r"space\['e_lambda'\]: -1.0 is not a number >= 0"),
        ({"learning_rate": 0}, r"space\['learning_rate'\]: 0 is not a positive number"),
        ({"learning_rate": {"min": 0.1}}, r"needs 'min' and 'max'"),
        ({"learning_rate": {"min": 0.1, "max": 0.01}}, r"min 0.1 must be < max 0.01"),
        ({"attention": ["sa"], "gate": "tanh"}, r"space\['gate'\] applies to attention sb, dca_sb, "
                                                r"none of which is in the attention choices \(sa\)"),
        ({"attention": "none", "placement": "block"}, r"the only attention is 'none'"),
        (["sa"], "`space` must be a dict or None; got list"),
    ],
)
def test_space_errors(space, match):
    with pytest.raises(ValueError, match=match):
        AttentionHyperModel(space=space)


def test_a_key_lists_at_most_max_values_and_duplicates_are_dropped_in_order():
    from search.space import MAX_VALUES, normalize_space

    rates = [0.001 * (i + 1) for i in range(MAX_VALUES)]
    spec = normalize_space({"learning_rate": rates[:995] + rates[:5]})["learning_rate"]
    assert spec.values == tuple(rates[:995])  # 1,000 listed, 995 distinct, in the order given
    with pytest.raises(ValueError, match=r"space\['learning_rate'\] lists 1,001 values; at most "
                                         r"1,000 per key"):
        normalize_space({"learning_rate": rates + rates[:1]})
    # Equal values are one value (as KerasTuner's Choice compares them): 1 and 1.0, True and 1.
    assert normalize_space({"attention": "sa", "groups": [8, 8, 16, 8]})["groups"].values == (8, 16)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(precision="fp16"), "`precision` must be one of 'auto', 'float32', 'mixed_float16', "
                                 "'mixed_bfloat16'; got 'fp16'"),
        (dict(optimizer="lamb"), "`optimizer` must be one of 'sgd', 'adam'; got 'lamb'"),
        (dict(schedule="poly"), "`schedule` must be one of 'cosine', 'step', 'constant'"),
        (dict(input_shape=(32, 32)), r"`input_shape \(height, width, channels\)` must be a tuple of length 3"),
        (dict(num_classes=1), "`num_classes` must be an integer >= 2; got 1"),
        (dict(backbone="vgg16"), r"Unknown `backbone` 'vgg16'; valid .*mobilenetv2"),
        (dict(steps_per_epoch=0), "`steps_per_epoch` must be an integer >= 1 or None"),
        (dict(label_smoothing=2), r"`label_smoothing` must be a number in \[0, 1\); got 2"),
        (dict(bn_momentum=1.0), r"`bn_momentum` must be a number in \[0.0, 1.0\) or None; got 1.0"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionHyperModel(**kwargs)


def test_recipe_or_its_keywords():
    recipe = Recipe(optimizer="adam", schedule="constant", epochs=3)
    hm = AttentionHyperModel(recipe=recipe)
    assert hm.recipe is recipe and hm.space["learning_rate"].default == 3e-3
    # The old keywords build the same recipe (epochs_hint is its epochs).
    assert AttentionHyperModel(optimizer="adam", schedule="constant", epochs_hint=3).recipe == recipe
    with pytest.raises(ValueError, match=r"Give `recipe` or the recipe keywords \(optimizer\), "
                                         r"not both"):
        AttentionHyperModel(recipe=recipe, optimizer="sgd")
    with pytest.raises(ValueError, match="`recipe` must be a search.recipe.Recipe or None; got dict"):
        AttentionHyperModel(recipe={"optimizer": "adam"})
    with pytest.raises(TypeError, match="unexpected keyword argument 'optimiser'"):
        AttentionHyperModel(optimiser="adam")
    model = AttentionHyperModel(
        backbone="tiny", input_shape=(8, 8, 3), num_classes=3, model_builder=tiny_builder,
        space={"attention": "none"},
        recipe=Recipe(momentum=0.5, nesterov=True, steps_per_epoch=2, epochs=3),
    ).build(kt.HyperParameters())
    assert model.optimizer.momentum == 0.5 and model.optimizer.nesterov
    assert model.optimizer._learning_rate.decay_steps == 6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(momentum=1.0), r"`momentum` must be a number in \[0, 1\); got 1.0"),
        (dict(nesterov=1), "`nesterov` must be True or False; got 1"),
        (dict(warmup_epochs=-1), "`warmup_epochs` must be a number >= 0; got -1"),
        (dict(weight_decay=-1e-4), "`weight_decay` must be a number >= 0"),
        (dict(learning_rate=0), "`learning_rate` must be a number > 0 or None; got 0"),
        (dict(epochs=0), "`epochs` must be an integer >= 1 or None; got 0"),
        (dict(optimizer="lamb"), "`optimizer` must be one of 'sgd', 'adam'; got 'lamb'"),
    ],
)
def test_recipe_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Recipe(**kwargs)


def test_describe_and_rows():
    hm = AttentionHyperModel(space={"attention": ["none", "sb"]})
    hp = with_values(attention="sb", gate="relu", learning_rate=0.0412345)
    hm.declare(hp)
    line = describe_hyperparameters(hp)
    assert line == "attention=sb placement=block lambda_init=0.1 gate=relu learning_rate=0.0412"
    hp.values["tuner/epochs"] = 2
    assert describe_hyperparameters(hp) == line
    assert describe_hyperparameters(hp, include_tuner=True).endswith("tuner/epochs=2")
    assert describe_hyperparameters({"attention": "none", "placement": None}) == "attention=none"
    row = trial_row(hp)
    assert list(row) == list(hm_module.HP_NAMES) == [
        "attention", "placement", "groups", "e_lambda", "lambda_init", "gate", "connection",
        "connection_form", "learning_rate"]
    assert row["gate"] == "relu" and row["groups"] is None and row["placement"] == "block"


# ------------------------------------------------------------------------------------ build


def test_build_default_hp_gives_compiled_model():
    hm = AttentionHyperModel(**MOBILENET, steps_per_epoch=5, epochs_hint=2)
    model = hm.build(kt.HyperParameters())
    assert isinstance(model, keras.Model) and model.compiled
    assert model.output_shape == (None, 10)
    assert model.count_params() == keras_attn.build_model(**{k: v for k, v in MOBILENET.items()
                                                             if k != "backbone_kwargs"},
                                                          alpha=0.35).count_params()
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert schedule.decay_steps == 10 and schedule.initial_learning_rate == 0.1
    assert hm.last_build_info == {}  # not tracked by default
    # keras.applications' BN momentum 0.999 leaves the moving statistics at their initial values
    # after a short trial (validation at chance level): 0.9 unless asked otherwise.
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 52 and {layer.momentum for layer in bns} == {0.9}
    keep = AttentionHyperModel(**MOBILENET, bn_momentum=None, schedule="constant")
    kept = keep.build(kt.HyperParameters())
    assert {layer.momentum for layer in kept.layers
            if isinstance(layer, keras.layers.BatchNormalization)} == {0.999}
    # A longer run for the same configuration (e.g. retraining the best trial).
    model = hm.build(kt.HyperParameters(), epochs=4, steps_per_epoch=3)
    assert model.optimizer._learning_rate.decay_steps == 12


def test_build_passes_attention_arguments():
    hm = AttentionHyperModel(**MOBILENET, space={"attention": ["sb", "sa"]},
                             track_build_info=True)
    model = hm.build(with_values(attention="sb", placement="layer", gate="sigmoid",
                                 lambda_init=0.5))
    sbs = [layer for layer in model.layers if isinstance(layer, keras_attn.ShiftAndBalance)]
    assert len(sbs) == 50  # MobileNetV2, per layer
    assert all(layer.gate == "sigmoid" and layer.lambda_init == 0.5 for layer in sbs)
    info = hm.last_build_info
    assert info["params"] == model.count_params() and info["attention_layers"] == 50
    assert info["params_added"] == sum(layer.count_params() for layer in sbs)
    assert info["build_seconds"] > 0
    # The BatchNorms inside the attention branches get the momentum too.
    nested = [layer for sb in sbs for layer in sb._flatten_layers(include_self=False)
              if isinstance(layer, keras.layers.BatchNormalization)]
    assert nested and {layer.momentum for layer in nested} == {0.9}
    model = hm.build(with_values(attention="sa", placement="block", groups=8))
    sas = [layer for layer in model.layers if isinstance(layer, keras_attn.ShuffleAttention)]
    assert len(sas) == 17 and all(layer.groups <= 8 for layer in sas)


def test_searched_connection_form_builds_the_official_layers():
    # DCANet's official connection, declared by the DCA layers' search_space: a trial that draws
    # it builds every DCA layer with it (the state threaded by the placement).
    hm = AttentionHyperModel(backbone="resnet20", input_shape=(16, 16, 1),
                             space={"attention": ["dca_se", "dca_cbam"], "placement": "block",
                                    "connection_form": ["paper", "official"]})
    hp = kt.HyperParameters()
    hm.declare(hp)
    assert {p.name: p for p in hp.space}["connection_form"].values == ["paper", "official"]
    model = hm.build(with_values(attention="dca_cbam", connection_form="official"))
    dcas = [layer for layer in model.layers if isinstance(layer, keras_attn.DCACBAM)]
    assert len(dcas) == 9 and {layer.connection_form for layer in dcas} == {"official"}
    assert sum(layer.has_previous for layer in dcas) == 8


def test_build_sets_policy_after_clear_session():
    hm = AttentionHyperModel(**MOBILENET, precision="mixed_float16",
                             space={"attention": "simam", "placement": "block"})
    keras.mixed_precision.set_global_policy("mixed_float16")
    keras.backend.clear_session()  # what KerasTuner does before every trial
    assert keras.mixed_precision.global_policy().name == "float32"
    model = hm.build(kt.HyperParameters())
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    assert {v.dtype for v in model.variables} == {"float32"}
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == "float16" for layer in convs)
    simams = [layer for layer in model.layers if isinstance(layer, keras_attn.SimAM)]
    assert len(simams) == 17 and all(layer.compute_dtype == "float16" for layer in simams)
    head = model.get_layer("predictions")
    assert head.dtype_policy.name == "float32" and model.output.dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    assert np.all(np.isfinite(model.predict(x, verbose=0)))


# ------------------------------------------------------------------------------------ fit


def test_fit_matches_schedule_to_the_run():
    hm = AttentionHyperModel(backbone="tiny", input_shape=(8, 8, 3), num_classes=3,
                             model_builder=tiny_builder, warmup_epochs=1,
                             space={"attention": "none", "learning_rate": 0.1})
    hp = kt.HyperParameters()
    model = hm.build(hp)
    # Steps unknown when building: a constant rate until fit knows the run.
    assert isinstance(model.optimizer.learning_rate.numpy().item(), float)
    train, val = tiny_datasets()
    history = hm.fit(hp, model, train, validation_data=val, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    # 2 batches per epoch, 3 epochs, 1 of warm-up.
    assert (schedule.warmup_steps, schedule.decay_steps, schedule.warmup_target) == (2, 4, 0.1)
    # Hyperband's later rounds: the schedule spans epochs - initial_epoch.
    model = hm.build(hp)
    hm.fit(hp, model, train, epochs=4, initial_epoch=2, verbose=0)
    assert model.optimizer._learning_rate.decay_steps == 2
    # Data of unknown length: a configuration error that must stop the search.
    model = hm.build(hp)
    with pytest.raises(kt.errors.FatalValueError, match="needs the number of training batches"):
        hm.fit(hp, model, train.filter(lambda x, y: True), epochs=1, verbose=0)
    model = hm.build(hp)
    hm.fit(hp, model, train.filter(lambda x, y: True).repeat(), epochs=2, steps_per_epoch=2,
           verbose=0)
    assert model.optimizer._learning_rate.decay_steps == 2


def test_fit_schedule_spans_the_fits_own_steps():
    # The constructor's steps_per_epoch (a trial's length) must not size the schedule of a fit on
    # longer data, e.g. the final retraining on the full training split (issue 8, bug 1).
    hm = AttentionHyperModel(backbone="tiny", input_shape=(8, 8, 3), num_classes=3,
                             model_builder=tiny_builder, steps_per_epoch=1, schedule="cosine",
                             space={"attention": "none", "learning_rate": 0.1})
    hp = kt.HyperParameters()
    model = hm.build(hp)
    train, _ = tiny_datasets(n_train=64)  # 4 batches per epoch
    hm.fit(hp, model, train, epochs=2, verbose=0)
    schedule = model.optimizer._learning_rate
    assert schedule.decay_steps == 8
    assert not hasattr(model, "_keras_attn_search")  # the hypermodel keeps its compile state
    # Cosine over 2 x 4 steps: half the peak rate at step 4, zero only at step 8.
    np.testing.assert_allclose(float(schedule(4)), 0.05, rtol=1e-4)
    assert float(schedule(7)) > 0.0


def test_fit_adds_stop_on_nan():
    hm = AttentionHyperModel(backbone="tiny", input_shape=(8, 8, 3), num_classes=3,
                             model_builder=tiny_builder, space={"attention": "none"})
    hp = kt.HyperParameters()
    model = hm.build(hp)
    train, _ = tiny_datasets()
    # A NaN sample weight makes the loss itself NaN through multiplications only. NaN *inputs* are
    # not certain to reach the loss: some CPU kernels (oneDNN on AVX-512) turn NaN into 0 at ReLU or
    # max, giving a finite loss (ln 3 here).
    bad = train.map(lambda x, y: (x, y, tf.fill(tf.shape(y)[:1], float("nan"))))
    with pytest.raises(kt.errors.FailedTrialError, match="loss became nan"):
        hm.fit(hp, model, bad, epochs=1, verbose=0)


# ------------------------------------------------------------------------------------ tuners


def run_tuner(tuner_cls, hm, tmp_path, epochs=1, **kwargs):
    train, val = tiny_datasets()
    tuner = tuner_cls(hm, objective="val_accuracy", directory=str(tmp_path), project_name="p",
                      seed=0, **kwargs)
    tuner.search(train, validation_data=val, epochs=epochs, verbose=0)
    return tuner, list(tuner.oracle.trials.values())


def test_random_search_two_tiny_trials(tmp_path):
    hm = AttentionHyperModel(backbone="tiny", input_shape=(8, 8, 3), num_classes=3,
                             model_builder=tiny_builder,
                             space={"attention": ["none", "simam"], "e_lambda": 1e-4,
                                    "learning_rate": 0.05})
    tuner, trials = run_tuner(kt.RandomSearch, hm, tmp_path, epochs=2, max_trials=2)
    assert len(trials) == 2 and all(t.status == "COMPLETED" for t in trials)
    assert {t.hyperparameters.values["attention"] for t in trials} == {"none", "simam"}
    assert all(np.isfinite(t.score) for t in trials)
    assert tuner.get_best_models(1)[0].output_shape == (None, 3)


@pytest.mark.slow
def test_random_search_two_mobilenet_trials(tmp_path):
    # ~40 s per trial here: tracing MobileNetV2's train step dominates tiny data.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, 64).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x[:48], y[:48])).batch(16)
    val = tf.data.Dataset.from_tensor_slices((x[48:], y[48:])).batch(16)
    hm = AttentionHyperModel(**MOBILENET, space={"attention": ["none", "simam"], "e_lambda": 1e-4,
                                                 "placement": "block", "learning_rate": 0.05})
    tuner = kt.RandomSearch(hm, objective="val_accuracy", max_trials=2, seed=0,
                            directory=str(tmp_path), project_name="real")
    tuner.search(train, validation_data=val, epochs=1, verbose=0)
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 2 and all(t.status == "COMPLETED" for t in trials)
    assert {t.hyperparameters.values["attention"] for t in trials} == {"none", "simam"}
    assert all(np.isfinite(t.score) for t in trials)
    best = tuner.get_best_models(1)[0]
    assert best.output_shape == (None, 10)


def test_nan_trial_fails_and_search_goes_on(tmp_path):
    hm = AttentionHyperModel(backbone="tiny", input_shape=(8, 8, 3), num_classes=3,
                             model_builder=tiny_builder,
                             space={"attention": "none", "learning_rate": [0.01, 1e30, 0.02]})
    tuner, trials = run_tuner(kt.GridSearch, hm, tmp_path, epochs=2, max_trials=3)
    status = {t.hyperparameters.values["learning_rate"]: t.status for t in trials}
    assert status == {0.01: "COMPLETED", 1e30: "FAILED", 0.02: "COMPLETED"}
    failed = next(t for t in trials if t.status == "FAILED")
    assert "FailedTrialError" in failed.message and "loss became" in failed.message
    assert tuner.get_best_hyperparameters()[0].values["learning_rate"] in (0.01, 0.02)


@pytest.mark.parametrize("tuner_name", ["bayesian", "hyperband"])
def test_other_tuners_with_conditional_space(tmp_path, tuner_name):
    hm = AttentionHyperModel(backbone="tiny", input_shape=(8, 8, 3), num_classes=3,
                             model_builder=tiny_builder,
                             space={"attention": ["none", "simam", "sb"], "placement": "block"})
    if tuner_name == "bayesian":
        tuner, trials = run_tuner(kt.BayesianOptimization, hm, tmp_path, max_trials=4,
                                  num_initial_points=2)
        assert len(trials) == 4
    else:
        tuner, trials = run_tuner(kt.Hyperband, hm, tmp_path, max_epochs=2, factor=2,
                                  hyperband_iterations=1)
        assert any(t.hyperparameters.values.get("tuner/initial_epoch") for t in trials)
    assert all(t.status == "COMPLETED" for t in trials), [t.message for t in trials]
    for t in trials:
        values = t.hyperparameters
        if values.values["attention"] == "simam":
            assert values.is_active("e_lambda") and not values.is_active("gate")
        if values.values["attention"] == "none":
            assert not values.is_active("placement")


def test_every_build_model_backbone_name_is_accepted():
    # The hypermodel checks names with build_model's own rule (underscores, case).
    for name in keras_attn.SUPPORTED_BACKBONES + ("MobileNetV2_CIFAR", "ResNet-20"):
        assert AttentionHyperModel(backbone=name).backbone == name
