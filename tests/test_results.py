"""search.results.rows directly, with a fake run store: one row per built model whichever stages
asked for it, the entry with the most epochs (a finished one before a failed one) speaking for
it, and the runs of its seeds: the finished ones scored, the diverged ones reported and left out.
"""

import pytest

from search.results import Entry, rows
from search.store import DIVERGED, FINISHED, RunKey, RunRecord


def entry(attention, stage="which", trial="0", status="COMPLETED", epochs=None, **hp):
    configuration = {"attention": attention, "attention_kwargs": hp}
    return Entry(configuration=configuration, attention=attention,
                 placement="" if attention == "none" else "block", hyperparameters=hp,
                 learning_rate=0.05, stage=stage, trial=trial, status=status, epochs=epochs)


def finished(seed, value, accuracy=0.9, wall=10.0, overhead=2.0, worker=None, params=100):
    return RunRecord(key=RunKey({}, {}, seed, 1), status=FINISHED,
                     metrics={"val_accuracy": value, "accuracy": accuracy}, history={},
                     timings={"wall_seconds": wall, "overhead_seconds": overhead},
                     facts={"params": params, "params_added": params - 90}, worker=worker)


def diverged(seed, reason="the loss became nan in epoch 2"):
    return RunRecord(key=RunKey({}, {}, seed, 1), status=DIVERGED, metrics={}, history={},
                     timings={"wall_seconds": 3.0}, facts={"params": 100}, reason=reason)


class FakeKeys:
    """What ``rows`` asks of the search's keys (duck-typed like search.runner.RunKeys): the model
    a configuration builds and the stored runs of a model."""

    def __init__(self, models, runs):
        self.models = models  # {attention, or (attention, groups): model id}
        self.runs = runs  # {model id: {seed: RunRecord}}
        self.looked_up = []

    def model_id(self, configuration):
        kwargs = configuration["attention_kwargs"]
        return self.models.get((configuration["attention"], kwargs.get("groups")),
                               self.models.get(configuration["attention"]))

    def lookup(self, configuration, seeds, epochs):
        model = self.model_id(configuration)
        self.looked_up.append((model, tuple(seeds), epochs))
        return {s: r for s, r in self.runs.get(model, {}).items() if s in seeds}


def by_attention(found):
    return {r["attention"]: r for r in found}


def test_one_row_per_model_whichever_stages_and_configurations_asked_for_it():
    # SA-Net's G = 64 and G = 32 build one model on a small network (the stages allow G <= 32):
    # asked by 'which' and 'where', it is one row, named by both stages.
    keys = FakeKeys({("sa", 64): "m-sa", ("sa", 32): "m-sa", "none": "m-base"},
                    {"m-sa": {0: finished(0, 0.82), 1: finished(1, 0.86)},
                     "m-base": {0: finished(0, 0.80), 1: finished(1, 0.84)}})
    entries = [entry("none", trial="0"), entry("sa", trial="1", groups=64),
               entry("none", stage="where", trial="0"),
               entry("sa", stage="where", trial="3", groups=32)]
    found = rows(entries, keys, seeds=(0, 1), epochs=2)
    assert len(found) == 2
    sa, base = by_attention(found)["sa"], by_attention(found)["none"]
    assert sa["stage"] == base["stage"] == "which+where"
    assert sa["config"] == "m-sa" and sa["trial"] == "1"  # the first asked speaks for it
    assert sa["same_model_as"] == 1  # two configurations asked for it
    assert base["same_model_as"] == 0  # one configuration, asked twice
    assert sa["val_accuracy"] == pytest.approx((0.82 + 0.86) / 2)
    assert sa["runs"] == {0: 0.82, 1: 0.86} and sa["diverged"] == {} and sa["error"] == ""
    assert sorted(keys.looked_up) == [("m-base", (0, 1), 2), ("m-sa", (0, 1), 2)]


def test_the_entry_with_the_most_epochs_counts_and_its_runs_are_looked_up_with_them():
    # Hyperband's rounds of one configuration: 1 epoch, then 3.
    keys = FakeKeys({"simam": "m"}, {"m": {0: finished(0, 0.7)}})
    found = rows([entry("simam", trial="4", epochs=1), entry("simam", trial="9", epochs=3),
                  entry("simam", trial="5", epochs=2)], keys, seeds=(0,), epochs=2)
    assert [r["trial"] for r in found] == ["9"] and found[0]["epochs"] == 3
    assert keys.looked_up == [("m", (0,), 3)]
    # Without epochs of its own an entry's runs have the recipe's.
    keys.looked_up.clear()
    rows([entry("simam")], keys, seeds=(0,), epochs=2)
    assert keys.looked_up == [("m", (0,), 2)]


def test_a_finished_entry_speaks_for_its_model_before_a_failed_one():
    keys = FakeKeys({"sb": "m"}, {"m": {0: finished(0, 0.75)}})
    failed = Entry(**{**entry("sb", trial="2", status="FAILED").to_json(), "error": "OOM"})
    found = rows([failed, entry("sb", trial="6")], keys, seeds=(0,), epochs=1)
    assert found[0]["trial"] == "6" and found[0]["status"] == "COMPLETED"
    assert found[0]["error"] == ""
    # Failed alone, it is the row, with its error.
    only = rows([failed], FakeKeys({"sb": "m"}, {}), seeds=(0,), epochs=1)[0]
    assert only["status"] == "FAILED" and only["error"] == "OOM"
    assert only["val_accuracy"] is None and only["params"] is None


def test_diverged_runs_are_reported_and_left_out_of_the_runs():
    keys = FakeKeys({"sa": "m", "simam": "d"},
                    {"m": {0: finished(0, 0.80, accuracy=0.91, wall=10.0, overhead=2.0,
                                       worker="worker-a"),
                           1: diverged(1),
                           2: finished(2, 0.90, accuracy=0.93, wall=20.5, overhead=4.0,
                                       worker="worker-b")},
                     "d": {0: diverged(0, "nan at step 5"), 1: diverged(1, "inf at step 9")}})
    found = by_attention(rows([entry("sa"), entry("simam")], keys, seeds=(0, 1, 2), epochs=1))
    sa = found["sa"]
    assert sa["runs"] == {0: 0.80, 2: 0.90} and sa["val_accuracy"] == pytest.approx(0.85)
    assert sa["diverged"] == {1: "the loss became nan in epoch 2"}
    assert sa["error"] == "seed 1 diverged: the loss became nan in epoch 2"
    assert sa["status"] == "COMPLETED"  # two seeds finished
    assert sa["train_accuracy"] == {0: 0.91, 2: 0.93}
    # Timings of the finished runs only: the mean overhead, the summed wall time.
    assert sa["overhead_seconds"] == pytest.approx(3.0) and sa["train_seconds"] == 30.5
    # Every worker that trained one of its finished runs.
    assert sa["tuner_id"] == "worker-a+worker-b" and sa["params"] == 100
    assert sa["params_added"] == 10
    # Every seed diverged: no score, FAILED, each seed's reason in seed order.
    simam = found["simam"]
    assert simam["status"] == "FAILED" and simam["val_accuracy"] is None
    assert simam["runs"] == {} and simam["train_seconds"] is None
    assert simam["error"] == "seed 0 diverged: nan at step 5; seed 1 diverged: inf at step 9"
    assert simam["params"] == 100  # a diverged run's model still has its facts


def test_only_the_asked_seeds_count():
    keys = FakeKeys({"sa": "m"}, {"m": {0: finished(0, 0.5), 1: finished(1, 0.7),
                                        2: finished(2, 0.9)}})
    row = rows([entry("sa")], keys, seeds=(1, 2), epochs=1)[0]
    assert row["runs"] == {1: 0.7, 2: 0.9} and row["val_accuracy"] == pytest.approx(0.8)


def test_a_row_has_what_the_report_reads():
    keys = FakeKeys({"none": "b"}, {})
    row = rows([Entry(configuration={"attention": "none", "attention_kwargs": {}},
                      attention="", placement=None, hyperparameters={}, learning_rate=None,
                      stage="which", trial="0")], keys, seeds=(0,), epochs=1)[0]
    assert row["attention"] == "none" and row["placement"] == ""
    assert row["runs"] == {} and row["val_accuracy"] is None and row["status"] == "COMPLETED"
