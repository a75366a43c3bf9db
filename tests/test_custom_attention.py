"""A layer defined outside keras_attn: registered, it is attached, built and searched over its own
searchable argument with no edit in keras_attn or search."""

import keras
import keras_tuner as kt
import numpy as np
import pytest
from keras import ops

import keras_attn
from keras_attn import ArgumentChoices, AttentionLayer, register_attention, unregister_attention
from keras_attn.registry import registered_attentions
from keras_attn.validation import check_number
from search.hypermodel import AttentionHyperModel, describe_hyperparameters, trial_row
from search.space import hyperparameter_names

NAME = "test_channel_scale"


class ChannelScale(AttentionLayer):
    """``x * scale``, one learnt scale per channel starting at ``scale_init``."""

    search_space = {"scale_init": ArgumentChoices((0.5, 2.0), 0.5, "this test")}

    def __init__(self, scale_init=0.5, **kwargs):
        super().__init__(**kwargs)
        self.scale_init = check_number("scale_init", scale_init, minimum=0.0, strict=True)

    def build(self, input_shape):
        self._set_axes(input_shape)
        self.scale = self.add_weight(name="scale", shape=(self.channels,),
                                     initializer=keras.initializers.Constant(self.scale_init))

    def call(self, inputs):
        scale = ops.reshape(ops.cast(self.scale, inputs.dtype), self._channel_shape(inputs.ndim))
        return inputs * scale

    def get_config(self):
        config = super().get_config()
        config.update({"scale_init": self.scale_init})
        return config


@pytest.fixture
def registered():
    register_attention(NAME)(ChannelScale)
    yield NAME
    unregister_attention(NAME)
    assert NAME not in registered_attentions()


def scales(model):
    return [layer for layer in model.layers if isinstance(layer, ChannelScale)]


def test_attach_and_build_model(registered):
    base = keras_attn.build_model(backbone="resnet20", input_shape=(16, 16, 1), num_classes=10)
    attached = keras_attn.attach(base, registered, placement="block", scale_init=2.0)
    assert scales(attached) and all(layer.scale_init == 2.0 for layer in scales(attached))
    built = keras_attn.build_model(backbone="resnet20", input_shape=(16, 16, 1), num_classes=10,
                                   attention=registered)
    assert len(scales(built)) == len(scales(attached))
    assert built.count_params() == base.count_params() + sum(
        layer.count_params() for layer in scales(built))


def test_search_over_the_layers_argument(registered, tmp_path):
    assert hyperparameter_names()[-2:] == ("scale_init", "learning_rate")
    hm = AttentionHyperModel(backbone="resnet20", input_shape=(16, 16, 1), num_classes=10,
                             space={"attention": [registered]}, steps_per_epoch=4)
    declared = kt.HyperParameters()
    hm.declare(declared)
    space = {p.name: p for p in declared.space}
    assert space["scale_init"].values == [0.5, 2.0] and space["scale_init"].default == 0.5
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16, 16, 1)).astype("float32")
    y = rng.integers(0, 10, 64).astype("int32")
    tuner = kt.RandomSearch(hm, objective="val_accuracy", max_trials=1, seed=0,
                            directory=str(tmp_path), project_name="custom")
    tuner.search(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=1, batch_size=16,
                 verbose=0)
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "COMPLETED", trial.message
    values = trial.hyperparameters.values
    assert values["attention"] == registered and values["scale_init"] in (0.5, 2.0)
    assert trial_row(trial)["scale_init"] == values["scale_init"]
    assert f"scale_init={values['scale_init']}" in describe_hyperparameters(trial)
    model = hm.build(trial.hyperparameters)
    assert scales(model) and all(layer.scale_init == values["scale_init"]
                                 for layer in scales(model))
    # The non-default choice reaches the layers too, whichever value the trial drew.
    other = kt.HyperParameters()
    other.values.update(attention=registered, placement="block", scale_init=2.0)
    assert {layer.scale_init for layer in scales(hm.build(other))} == {2.0}


def test_bad_value_names_the_valid_kind(registered):
    with pytest.raises(ValueError, match=r"space\['scale_init'\]: -1.0 is not a number >= 0"):
        AttentionHyperModel(space={"attention": [registered], "scale_init": [0.5, -1.0]})
    with pytest.raises(ValueError, match=r"space\['scale_init'\]: 0.0 is rejected by "
                                         rf"'{registered}': `scale_init` must be a number > 0"):
        AttentionHyperModel(space={"attention": [registered], "scale_init": 0.0})
    with pytest.raises(ValueError, match=rf"is not one of none, .*, {registered}\."):
        AttentionHyperModel(space={"attention": ["nonexistent"]})


def test_unregister_unknown_name():
    with pytest.raises(ValueError, match=r"Unknown attention 'no_such_layer'; valid names: "):
        unregister_attention("no_such_layer")
