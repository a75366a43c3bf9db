"""The comparison protocol: statistics by hand, the leaderboard's rows, repeats and resume,
baseline-first balanced coverage, seeded data order."""

import collections
import math
import os

import keras_tuner as kt
import numpy as np
import pytest

from search import stats
from search.hypermodel import AttentionHyperModel
from search.protocol import Protocol
from search.report import configuration_rows, write_leaderboard
from search.tuning import BalancedRandomSearch, ReportingMixin, tuner_class
from test_hypermodel import tiny_builder, tiny_datasets

# t(0.975, df): scipy-independent values from a printed table.
T975 = {1: 12.706204736174707, 2: 4.302652729911275, 4: 2.7764451051977987}


# ------------------------------------------------------------------------------- statistics


def test_mean_std_and_interval_by_hand():
    mean, std = stats.mean_std([0.80, 0.82, 0.85])
    assert mean == pytest.approx(0.823333333333)
    assert std == pytest.approx(math.sqrt(((0.8 - mean) ** 2 + (0.82 - mean) ** 2
                                           + (0.85 - mean) ** 2) / 2))
    assert stats.mean_std([0.7]) == (0.7, None)
    with pytest.raises(ValueError, match="at least one"):
        stats.mean_std([])


def test_paired_difference_by_hand():
    a = {0: 0.80, 1: 0.82, 2: 0.85, 7: 0.99}  # seed 7 has no partner: not paired
    b = {0: 0.79, 1: 0.80, 2: 0.81}
    d = [0.01, 0.02, 0.04]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = T975[2] * sd / math.sqrt(3)
    got = stats.paired_difference(a, b)
    assert got["pairs"] == 3
    assert got["delta"] == pytest.approx(mean)
    assert (got["low"], got["high"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert got["low"] < 0 < got["high"]  # -0.0146 .. 0.0613: no significant difference
    assert stats.verdict(got["low"], got["high"]) == "no significant difference"
    # One pair: a difference, no interval.
    one = stats.paired_difference({0: 0.9}, {0: 0.8, 1: 0.7})
    assert one["delta"] == pytest.approx(0.1) and one["low"] is None and one["pairs"] == 1
    assert stats.paired_difference({0: 0.9}, {1: 0.8})["delta"] is None


def test_pairing_removes_the_seed_effect():
    # Seed luck (+-3 points) shared by both, a constant +0.5 point effect: the unpaired spread is
    # large, the paired interval is tight and excludes 0.
    luck = {0: 0.03, 1: -0.03, 2: 0.0, 3: 0.02, 4: -0.02}
    jitter = {0: 0.001, 1: -0.001, 2: 0.0005, 3: 0.0, 4: -0.0005}
    base = {s: 0.85 + v for s, v in luck.items()}
    att = {s: 0.855 + v + jitter[s] for s, v in luck.items()}
    got = stats.paired_difference(att, base)
    assert got["delta"] == pytest.approx(0.005)
    assert 0 < got["low"] < got["high"] < 0.01
    assert stats.verdict(got["low"], got["high"]) == "better"
    assert stats.mean_std(att.values())[1] > 0.02


# ------------------------------------------------------------------------------- leaderboard


def _trial_row(trial, attention, placement, runs, status="COMPLETED", **hp):
    return {"trial": trial, "status": status, "val_accuracy": np.mean(list(runs.values())),
            "attention": attention, "placement": placement, "hyperparameters": hp,
            "learning_rate": 0.05, "epochs": None, "runs": runs,
            "train_accuracy": {s: 0.9 for s in runs}, "overhead_seconds": 2.0, "params": 100,
            "params_added": 0 if attention == "none" else 10, "train_seconds": 5.0,
            "tuner_id": "tuner0", "error": "", "rank": 0}


def test_configuration_rows_statistics_against_hand_computation(tmp_path):
    rows = configuration_rows([
        _trial_row("0", "none", "", {0: 0.80, 1: 0.84}),
        _trial_row("1", "sa", "block", {0: 0.83, 1: 0.86}, groups=8),
        _trial_row("2", "sb", "layer", {0: 0.79}, status="RUNNING", gate="tanh"),
    ], num_classes=10)
    by_trial = {r["trial"]: r for r in rows}
    sa = by_trial["1"]
    assert sa["repeats"] == 2
    assert sa["val_accuracy_mean"] == pytest.approx(0.845)
    assert sa["val_accuracy_std"] == pytest.approx(math.sqrt(2 * 0.015 ** 2))
    # Own paired interval: differences 0.03 and 0.02 -> mean 0.025, sd 0.00707, t(0.975, 1).
    assert sa["delta_vs_baseline"] == pytest.approx(0.025)
    half = T975[1] * math.sqrt(((0.03 - 0.025) ** 2 + (0.02 - 0.025) ** 2) / 1) / math.sqrt(2)
    assert sa["paired_ci95_low"] == pytest.approx(0.025 - half)
    assert sa["paired_ci95_high"] == pytest.approx(0.025 + half)
    assert sa["wins"] == "2/2"
    # Blocked model over 5 runs (3 configurations, 2 seeds): 5 - 3 - 2 + 1 = 1 residual df,
    # all of it from the sa-vs-none square, whose residual variance is var(d) / 2.
    sigma2 = ((0.03 - 0.025) ** 2 + (0.02 - 0.025) ** 2) / 2
    assert sa["delta_se"] == pytest.approx(math.sqrt(sigma2), rel=1e-6)
    assert sa["sim_ci95_high"] - sa["delta_vs_baseline"] > 0
    assert sa["verdict"] == "no significant difference"
    sb = by_trial["2"]
    assert sb["repeats"] == 1 and sb["val_accuracy_std"] is None
    assert sb["paired_ci95_low"] is None and sb["wins"] == "0/1"
    # sb's one run is compared with the baseline's fitted seed-0 value: 0.80 minus that cell's
    # residual in the 2x2 square (0.80 - 0.82 - 0.815 + 0.8325 = -0.0025), i.e. 0.8025.
    assert sb["delta_vs_baseline"] == pytest.approx(0.79 - 0.8025)
    assert by_trial["0"]["verdict"] == "baseline" and by_trial["0"]["delta_vs_baseline"] == 0.0
    assert rows.analysis.residual_df == 1
    assert [r["trial"] for r in rows] == ["1", "0", "2"] and [r["rank"] for r in rows] == [1, 2, 3]

    write_leaderboard(rows, str(tmp_path))
    import csv

    with open(tmp_path / "leaderboard.csv") as f:
        csv_rows = list(csv.DictReader(f))
    first = csv_rows[0]
    for col in ("val_accuracy_mean", "val_accuracy_std", "repeats", "delta_vs_baseline",
                "sim_ci95_low", "sim_ci95_high", "p_adjusted", "paired_ci95_low", "wins", "mde",
                "flags", "verdict_reason", "noise_p", "left_out"):
        assert col in first
    assert first["val_accuracy_mean"] == "0.8450" and first["repeats"] == "2"
    assert csv_rows[2]["paired_ci95_low"] == "" and csv_rows[2]["paired_ci95_high"] == ""
    md = (tmp_path / "leaderboard.md").read_text()
    assert "0.8450 +- 0.0212" in md and "+0.0250 [" in md


def test_a_nan_run_is_left_out_and_the_analysis_says_the_true_reason():
    # Issue 29: a NaN in a repeats file gave "delta +0.0000" and "(one seed)".
    from search.report import analysis_text, best_and_baseline, leaderboard_text

    nan = float("nan")
    broken = _trial_row("1", "sa", "block", {0: 0.81, 1: nan, 2: nan})
    broken["train_accuracy"] = {0: 0.15, 1: 0.05, 2: 0.05}  # mean below twice chance
    rows = configuration_rows([_trial_row("0", "none", "", {0: 0.80, 1: 0.81, 2: 0.80}),
                               broken], num_classes=10)
    sa = next(r for r in rows if r["attention"] == "sa")
    assert sa["val_accuracy_mean"] == pytest.approx(0.81) and sa["repeats"] == 3
    assert sa["delta_vs_baseline"] == pytest.approx(0.01) and sa["verdict"] == ""
    assert sa["verdict_reason"].startswith("every comparison rests on one seed (0)")
    assert sa["left_out"] == "seed 1: nan (did not train); seed 2: nan (did not train)"
    text = analysis_text(rows)
    assert "No interval: every comparison rests on one seed (0)" in text
    assert "2 run(s) left out" in text and "(one seed)." not in text
    assert "no verdict: every comparison rests on one seed" in leaderboard_text(rows)
    assert best_and_baseline(rows)[0] is sa


def test_the_leaderboard_ranks_by_the_blocked_estimate_and_the_best_has_the_most_seeds():
    # "cut" won its one seed by a lot (the highest mean); "sa" won all three by a little.
    rows = configuration_rows([
        _trial_row("0", "none", "", {0: 0.80, 1: 0.84, 2: 0.82}),
        _trial_row("1", "sa", "block", {0: 0.81, 1: 0.85, 2: 0.83}),
        _trial_row("2", "simam", "block", {0: 0.80, 1: 0.845, 2: 0.815}),
        _trial_row("3", "cut", "block", {0: 0.83})])
    from search.report import best_and_baseline

    assert [r["attention"] for r in rows] == ["sa", "simam", "none", "cut"]
    assert best_and_baseline(rows)[0]["attention"] == "sa"
    assert [key[0] for key in rows.analysis.ranking] == ["sa", "simam"]
    assert rows[3]["delta_vs_baseline"] == pytest.approx(0.03)


def test_a_run_that_did_not_train_is_flagged():
    untrained = _trial_row("1", "sa", "block", {0: 0.1, 1: 0.1})
    untrained["train_accuracy"] = {0: 0.11, 1: 0.09}
    rows = configuration_rows([_trial_row("0", "none", "", {0: 0.8, 1: 0.8}), untrained],
                              num_classes=10)
    assert {r["trial"]: r["note"] for r in rows} == {"0": "", "1": "did not train"}


# ------------------------------------------------------------------------------- oracle


class _Scoring(ReportingMixin, BalancedRandomSearch):
    def run_trial(self, trial, *args, **kwargs):
        return {"val_accuracy": 0.5}


def test_baseline_first_then_every_attention_placement_pair_before_any_twice(tmp_path):
    hm = AttentionHyperModel(backbone="resnet20", input_shape=(28, 28, 1))
    tuner = _Scoring(hypermodel=hm, objective="val_accuracy", max_trials=17,
                     directory=str(tmp_path), project_name="p", seed=5)
    tuner.search()
    trials = [tuner.oracle.trials[k].hyperparameters.values for k in sorted(tuner.oracle.trials)]
    assert trials[0]["attention"] == "none"
    pairs = [(v["attention"], v["placement"]) for v in trials[1:]]
    expected = {(a, p) for a in ("sa", "simam", "sb", "dca_se") for p in ("block", "layer")}
    assert set(pairs[:8]) == expected
    assert collections.Counter(pairs) == {pair: 2 for pair in expected}
    assert all(v["learning_rate"] == 0.1 for v in trials)  # the recipe's, not searched


def test_learning_rate_is_searched_only_on_request():
    def rate(**kwargs):
        spec = AttentionHyperModel(**kwargs).space["learning_rate"]
        return (spec.kind, spec.values, spec.min, spec.max, spec.default)

    assert rate() == ("fixed", (0.1,), None, None, 0.1)
    assert rate(learning_rate=0.02) == ("fixed", (0.02,), None, None, 0.02)
    assert rate(search_learning_rate=True) == ("range", (), 0.01, 0.2, 0.1)
    assert rate(space={"learning_rate": [0.01, 0.1]})[0] == "choice"


# ------------------------------------------------------------------------------- repeats


def _protocol_tuner(tmp_path, repeats=2, max_trials=2, **kwargs):
    hm = AttentionHyperModel(backbone="tiny", input_shape=(8, 8, 3), num_classes=3,
                             model_builder=tiny_builder, steps_per_epoch=2,
                             space={"attention": ["none", "simam"], "e_lambda": 1e-4})
    train, val = tiny_datasets()
    protocol = Protocol.with_repeats(repeats, seed=4)
    tuner = tuner_class("random")(hypermodel=hm, objective="val_accuracy", max_trials=max_trials,
                                  directory=str(tmp_path), project_name="p", seed=0,
                                  protocol=protocol, **kwargs)
    return tuner, train, val


def stored_runs(tuner, trial_id, seeds, epochs=1):
    """``{seed: RunRecord}`` of a trial's configuration in the tuner's run store."""
    hp = tuner.oracle.trials[trial_id].hyperparameters
    return tuner.run_keys().lookup(tuner.hypermodel.configuration(hp), seeds, epochs)


def test_each_configuration_runs_once_per_seed_and_scores_the_mean(tmp_path):
    tuner, train, val = _protocol_tuner(tmp_path)
    tuner.search(train, validation_data=val, epochs=1, verbose=0)
    assert len(tuner.oracle.trials) == 2
    for trial_id, trial in tuner.oracle.trials.items():
        records = stored_runs(tuner, trial_id, (4, 5))
        assert sorted(records) == [4, 5]
        values = [records[s].value for s in (4, 5)]
        assert trial.score == pytest.approx(np.mean(values))
        for seed in (4, 5):
            assert os.path.isfile(tuner.store.weights_path(records[seed].key))
            assert records[seed].key.epochs == 1 and records[seed].timings["fit_seconds"] > 0
            assert records[seed].trial == trial_id and records[seed].history["loss"]


def test_a_resumed_trial_keeps_its_finished_repeats(tmp_path):
    # As after a kill -9 in the middle of trial 0: seed 4 finished (its record is in the store),
    # seed 5 did not. The trial runs again and trains seed 5 only.
    from search.store import FINISHED, RunRecord

    tuner, train, val = _protocol_tuner(tmp_path, max_trials=1)
    configuration = tuner.hypermodel.configuration(_baseline_hp(tuner))
    kept = RunRecord(key=tuner.run_keys().key(configuration, 4, 1), status=FINISHED,
                     metrics={"val_accuracy": 0.123, "accuracy": 0.5}, history={}, timings={},
                     facts={"params": 1})
    tuner.store.put(kept)
    tuner.search(train, validation_data=val, epochs=1, verbose=0)
    records = stored_runs(tuner, "0", (4, 5))
    assert records[4].value == 0.123 and records[4].timings == {}
    assert records[5].timings["fit_seconds"] > 0
    trial = tuner.oracle.trials["0"]
    assert trial.score == pytest.approx((0.123 + records[5].value) / 2)


def _baseline_hp(tuner):
    hp = kt.HyperParameters()
    tuner.hypermodel.declare(hp)
    hp.values["attention"] = "none"
    return hp


@pytest.mark.parametrize("repeats", [0, -1, 1.5, True])
def test_bad_repeats_are_a_clear_error(repeats):
    with pytest.raises(ValueError, match="`repeats` must be"):
        Protocol.with_repeats(repeats)


def test_hyperband_rounds_train_from_scratch_with_their_epochs(tmp_path):
    tuner, train, val = _protocol_tuner(tmp_path, repeats=1)
    hm = tuner.hypermodel
    hb = tuner_class("hyperband")(hypermodel=hm, objective="val_accuracy", max_epochs=3,
                                  factor=3, directory=str(tmp_path), project_name="hb", seed=0,
                                  protocol=Protocol.with_repeats(1, seed=0))
    hb.search(train, validation_data=val, epochs=3, verbose=0)
    trials = list(hb.oracle.trials.values())
    assert trials[0].hyperparameters.values["attention"] == "none"
    for trial in trials:
        epochs = trial.hyperparameters.values["tuner/epochs"]
        record = stored_runs(hb, trial.trial_id, (0,), epochs=epochs)[0]
        assert record.key.epochs == epochs == len(record.history["loss"])


def test_bayesian_tuner_runs_the_baseline_first(tmp_path):
    hm = AttentionHyperModel(backbone="resnet20", input_shape=(28, 28, 1))
    cls = type("S", (tuner_class("bayesian"),),
               {"run_trial": lambda self, trial, *a, **k: {"val_accuracy": 0.5}})
    tuner = cls(hypermodel=hm, objective="val_accuracy", max_trials=3, directory=str(tmp_path),
                project_name="b", seed=0, protocol=Protocol.with_repeats(1))
    assert isinstance(tuner, kt.BayesianOptimization)
    tuner.search()
    first = tuner.oracle.trials[sorted(tuner.oracle.trials)[0]]
    assert first.hyperparameters.values["attention"] == "none"


def test_a_restarted_model_trains_exactly_like_a_fresh_one(tmp_path):
    # Seeds 4 and 5 in one trial reuse the traced model for seed 5 (restarted from seed 5's
    # initial weights and a fresh optimizer state); seed 5 alone builds it afresh. Same result.
    both, train, val = _protocol_tuner(tmp_path / "a", max_trials=1)
    both.search(train, validation_data=val, epochs=2, verbose=0)
    hm = both.hypermodel
    alone = tuner_class("random")(hypermodel=hm, objective="val_accuracy", max_trials=1,
                                  directory=str(tmp_path / "b"), project_name="p", seed=0,
                                  protocol=Protocol((5,)))
    alone.search(train, validation_data=val, epochs=2, verbose=0)
    reused = stored_runs(both, "0", (5,), epochs=2)[5].metrics
    fresh = stored_runs(alone, "0", (5,), epochs=2)[5].metrics
    for key in ("val_accuracy", "val_loss", "loss", "accuracy"):
        assert reused[key] == pytest.approx(fresh[key], rel=1e-5, abs=1e-6), key
    # The restart must not carry seed 4's training over: seed 5 differs from seed 4.
    again = stored_runs(both, "0", (4,), epochs=2)[4].metrics
    assert again["loss"] != pytest.approx(reused["loss"])


def test_named_configurations_run_as_a_paired_search(tmp_path):
    # A paper table's rows as named configurations (keras_attn.presets): the first is the baseline.
    configurations = [("table/static", {"backbone": "tiny"}),
                      ("table/simam", {"backbone": "tiny", "attention": "simam",
                                       "attention_kwargs": {"e_lambda": 1e-4}}),
                      ("table/sa", {"backbone": "tiny", "attention": "sa",
                                    "attention_kwargs": {"groups": 2}})]
    hm = AttentionHyperModel(input_shape=(8, 8, 3), num_classes=3, model_builder=tiny_builder,
                             steps_per_epoch=2, configurations=configurations,
                             track_build_info=True)
    train, val = tiny_datasets()
    tuner = tuner_class("random")(hypermodel=hm, objective="val_accuracy", max_trials=3,
                                  directory=str(tmp_path), project_name="p", seed=1,
                                  protocol=Protocol.with_repeats(2))
    tuner.search(train, validation_data=val, epochs=1, verbose=0)
    order = [tuner.oracle.trials[k].hyperparameters.values["configuration"]
             for k in sorted(tuner.oracle.trials)]
    assert order[0] == "table/static" and sorted(order) == sorted(n for n, _ in configurations)
    from search.report import collect_trials

    rows = configuration_rows(collect_trials(tuner), num_classes=3)
    by_name = {r["configuration"]["configuration"]: r for r in rows}
    assert by_name["table/static"]["attention"] == "none"
    assert by_name["table/static"]["verdict"] == "baseline"
    assert by_name["table/sa"]["attention"] == "sa" and by_name["table/sa"]["repeats"] == 2
    # The tiny models score the same on every run: the rows have their differences, and no
    # interval of rounding noise.
    assert by_name["table/sa"]["delta_vs_baseline"] is not None
    assert by_name["table/sa"]["sim_ci95_low"] is not None or \
        "floating-point tolerance" in by_name["table/sa"]["verdict_reason"]
    with pytest.raises(ValueError, match="`configurations` or `space`, not both"):
        AttentionHyperModel(configurations=configurations, space={"attention": "sa"})
    with pytest.raises(ValueError, match="come from the data"):
        AttentionHyperModel(configurations=[("a", {"backbone": "tiny", "seed": 1})])
