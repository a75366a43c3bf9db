"""search.config directly: how ``from_options`` resolves the defaults that depend on other options
and refuses combinations no search can run, and what a config says it measures (its identity),
plans and records. The options come from the CLI's own parser; nothing is trained or loaded."""

import dataclasses

import pytest

from search import config as config_mod
from search.cli import build_parser
from search.config import SEED_MAX, CLIError, SearchConfig, from_options


def options(*argv):
    """The parsed namespace of ``argv`` (the parser's checks only: ``from_options`` is the one
    under test)."""
    return build_parser().parse_args(list(argv))


def resolve(*argv):
    return from_options(options(*argv))


# ------------------------------------------------------------------ resolved defaults


@pytest.mark.parametrize("argv, expected", [
    # SGD: the papers' 0.1 at batch 128, scaled linearly: 0.1 x 64 / 128, 0.1 x 256 / 128.
    ((), 0.05),
    (("--batch-size", "256"), 0.2),
    (("--batch-size", "32"), 0.025),
    # Adam: 3e-3 whatever the batch size.
    (("--optimizer", "adam"), 3e-3),
    (("--optimizer", "adam", "--batch-size", "256"), 3e-3),
    # A given rate wins; a searched one is left to the space (None).
    (("--learning-rate", "0.07", "--batch-size", "256"), 0.07),
    (("--search-learning-rate",), None),
])
def test_the_learning_rate_default_follows_the_batch_size_and_the_optimizer(argv, expected):
    recipe = resolve(*argv).recipe
    assert recipe.learning_rate == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("argv, width", [
    (("--backbone", "mobilenetv2_cifar"), 0.35),
    (("--backbone", "mobilenetv2", "--image-size", "32"), 0.35),
    (("--backbone", "mobilenetv2_cifar", "--width", "0.5"), 0.5),
    (("--backbone", "resnet20"), None),  # no alpha: a ResNet has no width
    # A preset's rows carry their own width (alpha): none is added to the model.
    (("--preset", "sb-table9-x05"), None),
])
def test_the_mobilenet_width_defaults_to_035_unless_given_or_a_preset(argv, width):
    assert resolve(*argv).model.width == width


def test_max_trials_defaults_to_the_baseline_and_each_attention_placement_pair():
    # The default space: the baseline and sa, simam, sb, dca_se at their paper placement.
    assert resolve().run.max_trials == 1 + 4
    # Two attentions at two placements: 1 + 2 x 2.
    assert resolve("--attention", "sa,simam", "--placement", "block,layer").run.max_trials == 5
    # The baseline is always added, given or not.
    assert resolve("--attention", "none,sb", "--placement", "layer").run.max_trials == 2
    assert resolve("--attention", "sa", "--max-trials", "7").run.max_trials == 7


def test_a_preset_without_its_own_baseline_row_gets_one_first():
    # SB Table 9 compares five gates and has no static row: the same network without attention
    # runs first, named after the table.
    config = resolve("--preset", "sb-table9-x05")
    names = [name for name, _ in config.space.configurations]
    assert names[0] == "sb-table9-x05/no-attention" and len(names) == 6
    assert config.space.configurations[0][1] == {"backbone": "mobilenetv2_cifar", "alpha": 0.5,
                                                 "attention": None}
    assert config.run.max_trials == 6 and config.model.backbone == "mobilenetv2_cifar"
    assert config.space.space_values is None


def test_a_preset_with_a_baseline_row_puts_it_first():
    config = resolve("--preset", "simam-table2-resnet20-cifar10")
    first_name, first = config.space.configurations[0]
    assert first_name.endswith("/baseline") and first["attention"] is None


@pytest.mark.parametrize("option", ["--attention", "--placement", "--space"])
def test_a_preset_refuses_the_options_it_defines(option):
    with pytest.raises(CLIError, match=f"--preset defines the configurations: drop {option}"):
        resolve("--preset", "sb-table9-x05", option, "sa" if option != "--space" else "x.json")


def test_other_options_are_passed_through_as_tuples():
    config = resolve("--dataset", "CIFAR10", "--export", "litert", "--export", "onnx",
                     "--max-cost", "train_step=1.1", "--max-cost", "params_added=100")
    assert config.data.dataset == "cifar10"
    assert config.run.export == ("litert", "onnx")
    assert config.run.max_cost == (("train_step", 1.1), ("params_added", 100.0))
    hash(config.run)  # no list left inside: the run options hash


# ------------------------------------------------------------------ stages


@pytest.mark.parametrize("argv, stages", [
    ((), ("which", "where")),
    (("--stages", "which"), ("which",)),
    (("--stages", "which,where"), ("which", "where")),
    # A preset's table is compared as it is: 'which' only, by default or when asked.
    (("--preset", "sb-table9-x05"), ("which",)),
    (("--preset", "sb-table9-x05", "--stages", "which"), ("which",)),
    # A race in one process.
    (("--schedule", "race"), ("which", "where")),
])
def test_stages_resolved(argv, stages):
    assert resolve(*argv).space.stages == stages


@pytest.mark.parametrize("argv, match", [
    (("--stages", "which,how"), r"unknown --stages 'how'; valid: which, where"),
    (("--stages", "where"), r"--stages must start with which and keep the order which,where, "
                            r"got where$"),
    (("--stages", "where,which"), r"keep the order which,where, got where,which"),
    (("--stages", "which,which"), r"got which,which"),
    (("--preset", "sb-table9-x05", "--stages", "which,where"),
     r"--preset runs its table as the stage 'which' only; drop --stages which,where"),
    (("--schedule", "race", "--role", "chief", "--oracle", "127.0.0.1:8000"),
     r"--schedule race runs in one process: it is not offered with --role chief"),
    (("--schedule", "race", "--role", "worker", "--oracle", "127.0.0.1:8000"),
     r"not offered with --role worker"),
])
def test_stages_refused(argv, match):
    with pytest.raises(CLIError, match=match):
        resolve(*argv)


# ------------------------------------------------------------------ seeds and roles


def _namespace(**changes):
    ns = options()
    for key, value in changes.items():
        setattr(ns, key, value)
    return ns


@pytest.mark.parametrize("seed, repeats, final_repeats, last", [
    (SEED_MAX, 1, 1, None),
    (SEED_MAX - 2, 3, 1, None),  # seeds SEED_MAX - 2 .. SEED_MAX
    (SEED_MAX - 2, 1, 3, None),
    (SEED_MAX - 2, 4, 1, SEED_MAX + 1),
    (SEED_MAX - 2, 2, 5, SEED_MAX + 2),  # the larger of the two counts
])
def test_the_last_seed_must_be_one_tensorflow_takes(seed, repeats, final_repeats, last):
    ns = _namespace(seed=seed, repeats=repeats, final_repeats=final_repeats)
    if last is None:
        config_mod._check_seeds(ns)
        return
    runs = max(repeats, final_repeats)
    with pytest.raises(CLIError) as err:
        config_mod._check_seeds(ns)
    assert f"got {seed} + {runs} - 1 = {last}" in str(err.value)
    assert str(SEED_MAX) in str(err.value)


@pytest.mark.parametrize("role, oracle, overwrite, match", [
    ("single", None, True, None),
    ("chief", "127.0.0.1:8000", True, None),  # the chief may replace its search
    ("worker", "host.example:65535", False, None),
    ("chief", "::1:8000", False, None),  # the port is after the last colon
    ("chief", None, False, r"--role chief needs --oracle HOST:PORT, got None"),
    ("worker", "localhost", False, r"--role worker needs --oracle HOST:PORT, got 'localhost'"),
    ("chief", ":8000", False, r"--oracle must be HOST:PORT with a port in 1..65535, got ':8000'"),
    ("chief", "host:0", False, r"port in 1..65535, got 'host:0'"),
    ("chief", "host:65536", False, r"port in 1..65535, got 'host:65536'"),
    ("chief", "host:http", False, r"port in 1..65535, got 'host:http'"),
    ("single", "host:80", False, r"--oracle goes with --role chief or --role worker"),
    ("worker", "host:80", True, r"--overwrite is the chief's"),
])
def test_roles_and_their_oracle(role, oracle, overwrite, match):
    ns = _namespace(role=role, oracle=oracle, overwrite=overwrite)
    if match is None:
        config_mod._check_role(ns)
    else:
        with pytest.raises(CLIError, match=match):
            config_mod._check_role(ns)


# ------------------------------------------------------------------ identity, plan, measured


def test_the_identity_is_every_field_of_data_model_and_recipe_and_the_seed():
    config = resolve("--seed", "7", "--batch-size", "32", "--data-dir", "/d")
    identity = config.identity()
    fields = {f.name for part in (config.data, config.model, config.recipe)
              for f in dataclasses.fields(part)}
    assert set(identity) == fields | {"seed"}
    assert identity["seed"] == 7 and identity["batch_size"] == 32 and identity["data_dir"] == "/d"
    assert identity["learning_rate"] == pytest.approx(0.025)
    # The plan is not in it.
    assert not {"attention", "repeats", "stages", "max_trials"} & set(identity)


def test_the_plan_is_the_space_less_a_presets_rows_and_the_repeats():
    config = resolve("--attention", "sa", "--placement", "block,layer", "--repeats", "4")
    plan = config.plan_record()
    space_fields = {f.name for f in dataclasses.fields(config.space)}
    assert set(plan) == space_fields - {"configurations"} | {"repeats"}
    assert plan["repeats"] == 4
    # As JSON gives it back (a recorded plan compares equal): lists, not tuples.
    assert plan["attention"] == ["sa"] and plan["placement"] == ["block", "layer"]
    assert plan["stages"] == ["which", "where"]


def test_measured_is_the_identity_with_the_device_and_without_the_epochs():
    config = resolve("--epochs", "3")
    measured = config.measured("mixed_float16", 2.0, {"tensorflow": "2.21.0", "keras": "3.15"})
    expected = {k: v for k, v in config.identity().items() if k != "epochs"}
    expected.update(precision="mixed_float16", replicas=2,
                    versions={"tensorflow": "2.21.0", "keras": "3.15"})
    assert measured == expected and type(measured["replicas"]) is int


def test_identity_differences_name_what_changed_and_take_a_missing_field_as_its_default():
    config = resolve("--epochs", "3")
    recorded = config.identity()
    assert config.identity_differences(recorded) == {}
    # An identity written before bn_momentum existed: the default (0.9) is what it measured.
    older = {k: v for k, v in recorded.items() if k != "bn_momentum"}
    assert config.identity_differences(older) == {}
    assert resolve("--epochs", "3", "--bn-momentum", "0.99").identity_differences(older) == {
        "bn_momentum": (0.9, 0.99)}
    # A field only the recorded identity has (a removed option) is not a difference.
    assert config.identity_differences({**recorded, "gone": 1}) == {}
    # The seed too: its default is 0.
    assert config.identity_differences({k: v for k, v in recorded.items() if k != "seed"}) == {}
    changed = {**recorded, "epochs": 2, "seed": 5}
    assert config.identity_differences(changed) == {"epochs": (2, 3), "seed": (5, 0)}


def test_seeds_and_final_seeds():
    config = resolve("--seed", "10", "--repeats", "3", "--final-repeats", "2")
    assert config.seeds == (10, 11, 12) and config.final_seeds == (10, 11)
    assert isinstance(config, SearchConfig)
