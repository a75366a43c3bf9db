"""--tuner nsga2 / tpe: Optuna's samplers behind a KerasTuner oracle (told every trial, resumed,
baseline first, a one-line message without Optuna)."""

import json
import os
import sys

import pytest

optuna = pytest.importorskip("optuna", reason="the Optuna tuners need optuna (keras-attn[optuna])")

from search.hypermodel import AttentionHyperModel  # noqa: E402
from search.protocol import Protocol  # noqa: E402
from search.rundir import TrialDir  # noqa: E402
from search.tuning import tuner_class  # noqa: E402
from test_hypermodel import tiny_builder, tiny_datasets  # noqa: E402


def _hypermodel(builds):
    def builder(*args, **kwargs):
        builds.append(kwargs.get("attention"))
        return tiny_builder(*args, **kwargs)

    # A searched learning rate (a Float): no two trials draw the same configuration.
    return AttentionHyperModel(backbone="tiny", input_shape=(8, 8, 3), num_classes=3,
                               model_builder=builder, steps_per_epoch=2, track_build_info=True,
                               search_learning_rate=True,
                               space={"attention": ["none", "simam", "sb"], "placement": "block"})


def _search(tmp_path, max_trials, builds, name="nsga2"):
    tuner = tuner_class(name)(hypermodel=_hypermodel(builds), objective="val_accuracy",
                              max_trials=max_trials, directory=str(tmp_path), project_name="p",
                              seed=1, protocol=Protocol.with_repeats(1, seed=4),
                              cost="params_added")
    train, val = tiny_datasets()
    tuner.search(train, validation_data=val, epochs=1, verbose=0)
    return tuner


def _study_row(trial):
    return trial.state, tuple(trial.values or ()), trial.params


def test_the_sampler_is_told_every_trial_score_and_cost(tmp_path):
    builds = []
    tuner = _search(tmp_path, 4, builds)
    oracle = tuner.oracle
    study = oracle.study
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE,
                                optuna.study.StudyDirection.MINIMIZE]
    for frozen in study.trials:
        trial_id = frozen.user_attrs["keras_tuner_trial_id"]
        trial = oracle.trials[trial_id]
        with open(TrialDir(tuner.get_trial_dir(trial_id)).info) as f:
            info = json.load(f)
        assert frozen.values == [pytest.approx(trial.score), info["params_added"]]
        # Define-by-run: Optuna saw the active hyperparameters only.
        active = {k for k in trial.hyperparameters.values if trial.hyperparameters.is_active(k)}
        assert set(frozen.params) <= active
        assert ("lambda_init" in frozen.params) == (frozen.params["attention"] == "sb")
    first = oracle.trials[sorted(oracle.trials)[0]].hyperparameters.values
    assert first["attention"] == "none" and study.trials[0].params["attention"] == "none"
    assert builds[0] is None and len(builds) == 4


def test_a_resumed_search_continues_the_same_study(tmp_path):
    builds = []
    first = _search(tmp_path, 2, builds)
    before = [_study_row(t) for t in first.oracle.study.trials]
    assert len(before) == 2 and len(builds) == 2
    again = _search(tmp_path, 4, builds)
    study = again.oracle.study
    assert len(study.trials) == 4
    assert [_study_row(t) for t in study.trials[:2]] == before
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len(builds) == 4  # the two finished trials were not trained again
    assert sorted(again.oracle.trials) == ["0", "1", "2", "3"]


@pytest.mark.parametrize("name", ["nsga2", "tpe"])
def test_sampled_conditionals_follow_the_attention_and_duplicates_stop(tmp_path, name):
    # No training: a score from the values, a cost from a callable. A population of 2 makes the
    # sampler model the trials after the first two; the space has 1 + 2 + 5
    # configurations (none; simam x e_lambda; sb x lambda_init).
    class Scoring(tuner_class(name)):
        def run_trial(self, trial, *args, **kwargs):
            values = trial.hyperparameters.values
            return {"val_accuracy": 0.5 + 0.1 * values.get("lambda_init", 0.0)}

    hm = AttentionHyperModel(backbone="tiny", input_shape=(8, 8, 3), model_builder=tiny_builder,
                             space={"attention": ["none", "simam", "sb"], "placement": "block",
                                    "gate": "tanh", "e_lambda": [1e-4, 1e-3]})
    tuner = Scoring(hypermodel=hm, objective="val_accuracy", max_trials=30,
                    directory=str(tmp_path), project_name="p", seed=2, population_size=2,
                    protocol=Protocol.with_repeats(1), cost=lambda trial_id: float(trial_id))
    tuner.search()
    trials = [tuner.oracle.trials[k].hyperparameters for k in sorted(tuner.oracle.trials)]
    assert trials[0].values["attention"] == "none"
    for hp in trials:
        attention = hp.values["attention"]
        assert hp.is_active("lambda_init") == (attention == "sb")
        assert hp.is_active("e_lambda") == (attention == "simam")
    seen = [tuple(sorted((k, v) for k, v in hp.values.items() if hp.is_active(k)))
            for hp in trials]
    assert len(seen) == len(set(seen)) <= 8  # no configuration twice; stops when all are tried
    told = [r for r in tuner.oracle._records if r["trial_id"] is not None]
    assert len(told) == len(trials)


def test_a_failed_trial_is_told_as_failed(tmp_path):
    builds = []

    class Failing(tuner_class("tpe")):
        def run_trial(self, trial, *args, **kwargs):
            if trial.trial_id == "1":
                raise ValueError("boom")
            return super().run_trial(trial, *args, **kwargs)

    tuner = Failing(hypermodel=_hypermodel(builds), objective="val_accuracy", max_trials=2,
                    directory=str(tmp_path), project_name="p", seed=1,
                    protocol=Protocol.with_repeats(1, seed=4), cost="params_added")
    train, val = tiny_datasets()
    tuner.search(train, validation_data=val, epochs=1, verbose=0)
    states = {t.user_attrs["keras_tuner_trial_id"]: t.state for t in tuner.oracle.study.trials}
    assert states == {"0": optuna.trial.TrialState.COMPLETE, "1": optuna.trial.TrialState.FAIL}


def test_without_optuna_the_tuner_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ValueError) as err:
        tuner_class("nsga2")(hypermodel=_hypermodel([]), objective="val_accuracy",
                             max_trials=2, directory=str(tmp_path), project_name="p")
    assert str(err.value) == "--tuner nsga2 needs Optuna: pip install keras-attn[optuna]"
    assert isinstance(err.value, ImportError)


@pytest.mark.parametrize("name", ["nsga2", "tpe"])
def test_the_oracle_has_the_protocols_save_and_banners(tmp_path, name):
    from search.optuna_oracle import OptunaOracle
    from search.oracles import TrialIdDisplay
    from search.tuning import ORACLE_FILE

    for protocol in (None, Protocol.with_repeats(1, seed=4)):
        tuner = tuner_class(name)(hypermodel=_hypermodel([]), objective="val_accuracy",
                                  max_trials=2, directory=str(tmp_path),
                                  project_name=f"p{protocol is None}", seed=1, protocol=protocol)
        oracle = tuner.oracle
        assert isinstance(oracle, OptunaOracle) and oracle.sampler_name == name
        assert oracle.paired == (protocol is not None)  # a distributed search's waiting workers
        assert oracle.keras_attn_state_file == os.path.join(tuner.project_dir, ORACLE_FILE)
        assert isinstance(oracle._display, TrialIdDisplay)
