"""The CLI's tuners: balanced random search, cheap space discovery, per-trial facts."""

import collections
import json
import os
import types

import pytest

import keras_tuner as kt

from search import tuning
from search.hypermodel import DEFAULT_ATTENTIONS, AttentionHyperModel
from search.oracles import ProtocolOracleMixin, TrialIdDisplay
from search.protocol import Protocol
from search.report import collect_trials
from search.rundir import TrialDir
from search.tuner_names import TUNERS
from search.tuning import BalancedRandomSearch, ReportingMixin


TRIAL_SLEEP = 0.2


class _ScoringSearch(BalancedRandomSearch):
    def run_trial(self, trial, *args, **kwargs):
        # A score without training: the oracle and the reporting are under test, not a model.
        # The known duration (a different one per trial) lets the test check that
        # train_seconds times the trial itself; search.tuning's clock, which a test may fake.
        tuning.time.sleep(TRIAL_SLEEP * (1 + int(trial.trial_id)))
        attention = trial.hyperparameters.get("attention")
        return {"val_accuracy": 0.5 + 0.01 * DEFAULT_ATTENTIONS.index(attention)}


class _Scoring(ReportingMixin, _ScoringSearch):
    pass


def _scoring_tuner(tmp_path, max_trials, **kwargs):
    return _Scoring(hypermodel=AttentionHyperModel(**kwargs), objective="val_accuracy",
                    max_trials=max_trials, directory=str(tmp_path), project_name="p", seed=3)


def test_balanced_random_search_covers_every_pair_before_repeating(tmp_path):
    # (The protocol's version, with placements, is in test_protocol.py.) Here only attention
    # varies: the baseline once (it has one configuration), then each type in turn.
    tuner = _scoring_tuner(tmp_path, max_trials=9, space={"placement": "block"})
    tuner.search()
    ordered = [tuner.oracle.trials[k].hyperparameters.get("attention")
               for k in sorted(tuner.oracle.trials)]
    assert ordered[0] == "none"
    others = [a for a in DEFAULT_ATTENTIONS if a != "none"]
    assert sorted(ordered[1:5]) == sorted(others) and sorted(ordered[5:]) == sorted(others)


def test_conditional_values_match_the_attention_drawn(tmp_path):
    tuner = _scoring_tuner(tmp_path, max_trials=10)
    tuner.search()
    drawn = {t.hyperparameters.get("attention") for t in tuner.oracle.trials.values()}
    # Ten trials of the balanced draw cover every attention: each branch below is checked.
    assert len(tuner.oracle.trials) == 10 and {"sa", "sb", "dca_se", "none"} <= drawn
    for trial in tuner.oracle.trials.values():
        hp = trial.hyperparameters
        attention = hp.get("attention")
        assert hp.is_active("groups") == (attention == "sa")
        assert hp.is_active("lambda_init") == (attention == "sb")
        assert hp.is_active("connection") == (attention == "dca_se")


def test_restricted_space_is_plain_random_over_what_is_left(tmp_path):
    tuner = _scoring_tuner(tmp_path, max_trials=4, space={"attention": "sb"})
    tuner.search()
    assert {t.hyperparameters.get("attention") for t in tuner.oracle.trials.values()} == {"sb"}


def test_space_discovery_declares_without_building(tmp_path, monkeypatch):
    builds = []
    monkeypatch.setattr(AttentionHyperModel, "_builder",
                        lambda self: (lambda **kw: builds.append(kw)))
    tuner = _scoring_tuner(tmp_path, max_trials=1)
    names = {p.name for p in tuner.oracle.hyperparameters.space}
    assert {"attention", "placement", "groups", "e_lambda", "lambda_init", "gate", "connection",
            "learning_rate"} <= names
    assert builds == []


def _space(oracle):
    return [(p.__class__.__name__, p.get_config()) for p in oracle.hyperparameters.space]


@pytest.mark.parametrize("kwargs", [
    {},
    {"space": {"attention": ["none", "sb"], "placement": "block"}, "search_learning_rate": True},
    {"configurations": [("t/static", {"backbone": "tiny"}),
                        ("t/sa", {"backbone": "tiny", "attention": "sa"})]},
], ids=["default", "restricted", "configurations"])
def test_declared_space_is_the_one_kerastuner_discovers_by_building(tmp_path, kwargs):
    # KerasTuner's own discovery (build, activate the scopes never active, build again), with a
    # build that only declares: the same hyperparameters, conditions and order as ours.
    hypermodel = AttentionHyperModel(**kwargs)

    class Declaring(kt.HyperModel):
        def build(self, hp):
            hypermodel.declare(hp)

    theirs = kt.RandomSearch(hypermodel=Declaring(), objective="val_accuracy", max_trials=1,
                             directory=str(tmp_path), project_name="kt")
    ours = tuning.tuner_class("random")(hypermodel=hypermodel, objective="val_accuracy",
                                        max_trials=1, directory=str(tmp_path), project_name="p")
    assert _space(ours.oracle) == _space(theirs.oracle) and len(_space(ours.oracle)) >= 2


def test_tuner_names_have_one_class_each():
    import subprocess
    import sys

    from search import cli

    assert cli.TUNERS is TUNERS
    assert tuple(tuning.TUNER_CLASSES) == TUNERS == tuple(tuning.REPORTING_TUNER_CLASSES)
    for name in TUNERS:
        cls = tuning.tuner_class(name)
        assert issubclass(cls, ReportingMixin) and issubclass(cls, tuning.TUNER_CLASSES[name])
    # The names alone, for the CLI's --help: no KerasTuner, no TensorFlow.
    code = ("import sys, search.tuner_names; "
            "print(sorted({'keras_tuner', 'tensorflow', 'keras'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name, kt_oracle, args", [
    ("random", kt.oracles.RandomSearchOracle, {"max_trials": 3}),
    ("bayesian", kt.oracles.BayesianOptimizationOracle,
     {"max_trials": 3, "num_initial_points": 2, "alpha": 1e-3, "beta": 3.0}),
    ("hyperband", kt.oracles.HyperbandOracle,
     {"max_epochs": 4, "factor": 2, "hyperband_iterations": 2}),
])
@pytest.mark.parametrize("with_protocol", [False, True])
def test_each_tuner_builds_its_protocol_oracle(tmp_path, name, kt_oracle, args, with_protocol):
    tuner = tuning.tuner_class(name)(
        hypermodel=AttentionHyperModel(), objective="val_accuracy", directory=str(tmp_path),
        project_name="p", seed=5, protocol=Protocol.with_repeats(2) if with_protocol else None,
        max_retries_per_trial=1, **args)
    oracle = tuner.oracle
    assert isinstance(oracle, ProtocolOracleMixin) and isinstance(oracle, kt_oracle)
    # Random search is balanced always; the others when the tuner has a protocol.
    assert oracle.paired == (with_protocol or name == "random")
    assert oracle.keras_attn_state_file == os.path.join(tuner.project_dir, tuning.ORACLE_FILE)
    assert isinstance(oracle._display, TrialIdDisplay)
    for key, value in {**args, "seed": 5, "max_retries_per_trial": 1}.items():
        assert getattr(oracle, key) == value, key
    assert oracle.objective.name == "val_accuracy"


def test_a_protocol_with_another_kerastuner_tuner_is_refused(tmp_path):
    class Plain(ReportingMixin, kt.BayesianOptimization):
        pass

    with pytest.raises(ValueError, match="BayesianOptimizationOracle has not the protocol's "
                                         "trial order.*ProtocolBayesianOptimization"):
        Plain(hypermodel=AttentionHyperModel(), objective="val_accuracy", max_trials=2,
              directory=str(tmp_path), project_name="p", protocol=Protocol.with_repeats(1))
    plain = Plain(hypermodel=AttentionHyperModel(), objective="val_accuracy", max_trials=2,
                  directory=str(tmp_path), project_name="q")  # reporting alone
    assert plain.protocol is None


def test_a_failed_trial_shows_one_line_unless_debug(tmp_path, capsys):
    class Failing(_Scoring):
        def run_trial(self, trial, *args, **kwargs):
            if trial.trial_id == "1":
                raise ValueError("boom")
            return super().run_trial(trial, *args, **kwargs)

    for debug in (False, True):
        tuner = Failing(hypermodel=AttentionHyperModel(space={"placement": "block"}),
                        objective="val_accuracy", max_trials=2, seed=3, debug=debug,
                        directory=str(tmp_path), project_name=f"p{debug}")
        capsys.readouterr()
        tuner.search(verbose=0)
        out, err = capsys.readouterr()
        assert "[trial 1] FAILED (ValueError: boom) " in out
        assert "[trial 0] COMPLETED" in out
        assert ("Traceback" in err) == debug
        assert "ValueError: boom" in tuner.oracle.trials["1"].message  # the reason, kept


class FakeClock:
    """search.tuning's clock: time passes only when the code under test sleeps, and between
    trials (``gap`` seconds at each trial's start), so durations are exact, not raced."""

    def __init__(self, gap=100.0):
        self.now, self.gap = 1000.0, gap

    def time(self):
        return self.now

    perf_counter = time

    def sleep(self, seconds):
        self.now += seconds


def test_trial_facts_written_and_collected(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(tuning, "time", types.SimpleNamespace(
        time=clock.time, perf_counter=clock.perf_counter, sleep=clock.sleep))
    begin = _Scoring.on_trial_begin

    def on_trial_begin(self, trial):  # time spent in the search outside any trial's run
        clock.now += clock.gap
        return begin(self, trial)

    monkeypatch.setattr(_Scoring, "on_trial_begin", on_trial_begin)
    tuner = _scoring_tuner(tmp_path, max_trials=3)
    tuner.search()
    assert sorted(tuner.oracle.trials) == ["0", "1", "2"]
    for trial_id in tuner.oracle.trials:
        with open(TrialDir(tuner.get_trial_dir(trial_id)).info) as f:
            info = json.load(f)
        assert info["tuner_id"] == "tuner0"
        # The trial's own run time: not 0, not the search's so far (which has the gaps and the
        # earlier trials' runs), exactly what this trial slept.
        assert info["train_seconds"] == pytest.approx(TRIAL_SLEEP * (1 + int(trial_id)))
    # The scores come from the run store, not the trials: these trials stored no run.
    rows = collect_trials(tuner)
    assert [r["rank"] for r in rows] == [1, 2, 3] and len({r["config"] for r in rows}) == 3
    assert all(r["status"] == "COMPLETED" and r["val_accuracy"] is None for r in rows)


def test_make_tuner_called_directly(tmp_path):
    from search.protocol import Protocol

    protocol = Protocol.with_repeats(2, seed=5)
    tuner, hypermodel = tuning.make_tuner(
        backbone="resnet20", input_shape=[16, 16, 3], num_classes=10, out=str(tmp_path),
        epochs=3, steps_per_epoch=7, max_trials=4, seed=11, protocol=protocol,
        space={"attention": ["none", "sa"], "placement": "block"})
    assert isinstance(tuner, ReportingMixin) and isinstance(tuner, BalancedRandomSearch)
    assert tuner.hypermodel is hypermodel and isinstance(hypermodel, AttentionHyperModel)
    assert hypermodel.input_shape == (16, 16, 3) and hypermodel.num_classes == 10
    assert hypermodel.precision == "float32" and hypermodel.track_build_info
    assert tuner.protocol is protocol and protocol.seeds == (5, 6)
    assert tuner.oracle.max_trials == 4 and tuner.oracle.objective.name == "val_accuracy"
    assert tuner.distribution_strategy is None  # none given
    assert tuner.project_dir == os.path.join(str(tmp_path), "tuner")
    space = {p.name: p for p in tuner.oracle.hyperparameters.space}
    assert list(space["attention"].values) == ["none", "sa"]  # the space given, baseline first

    hyperband, _ = tuning.make_tuner(
        backbone="resnet20", input_shape=(16, 16, 3), num_classes=10, out=str(tmp_path),
        epochs=9, steps_per_epoch=7, tuner="hyperband", project_name="hb")
    # Without a protocol: one run per configuration (seed 0), through the run store.
    assert isinstance(hyperband, ReportingMixin) and hyperband.protocol.seeds == (0,)
    assert hyperband.oracle.max_epochs == 9 and hyperband.oracle.factor == 3
    assert hyperband.project_dir == os.path.join(str(tmp_path), "hb")
    with pytest.raises(ValueError, match="Unknown tuner 'grid'; valid: random, bayesian"):
        tuning.make_tuner(backbone="resnet20", input_shape=(16, 16, 3), num_classes=10,
                          out=str(tmp_path), epochs=1, steps_per_epoch=1, tuner="grid")


def test_one_trial_numbering_in_every_line(tmp_path, capsys):
    # KerasTuner's banner counts from 1 ("Running Trial #2" for trial "1"); ours uses the trial id
    # that the directories, the leaderboard and the "[trial N]" lines use.
    tuner = _scoring_tuner(tmp_path, max_trials=2, space={"placement": "block"})
    tuner.search(verbose=1)
    out = capsys.readouterr().out
    assert "Running Trial #" not in out
    for trial_id in sorted(tuner.oracle.trials):
        assert f"Search: running trial {trial_id}\n" in out
        assert f"Trial {trial_id} Complete" in out
        assert f"[trial {trial_id}] COMPLETED" in out
        assert os.path.isdir(tuner.get_trial_dir(trial_id))


def test_fit_verbosity_is_one_line_per_epoch_off_a_terminal():
    from search.training import fit_verbosity

    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    assert fit_verbosity(stream=Stream(True)) == 1  # Keras' progress bar
    assert fit_verbosity(stream=Stream(False)) == 2  # a file or a pipe: one line per epoch
    assert fit_verbosity(quiet=True, stream=Stream(True)) == 0
    assert fit_verbosity(stream=object()) == 2
