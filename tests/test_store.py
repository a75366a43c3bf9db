"""The run store (search.store): keys, records, atomic writes from two processes, damaged
entries; the --out lock (search.lock); racing as a pure function (search.schedule); and a
search that grows (more seeds, a new plan) training only what is missing."""

import json
import multiprocessing
import os
import socket

import numpy as np
import pytest

from search import cli
from search.config import CLIError
from search.lock import OutLock
from search.rundir import DamagedFileError, RunDir, TrialDir
from search.schedule import Schedule, behind_leader
from search.store import FINISHED, RunKey, RunRecord, RunStore

MEASURED = {"dataset": "fashion_mnist", "backbone": "resnet20", "precision": "float32"}
CONFIG = {"attention": "sa", "placement": "block", "attention_kwargs": {"groups": 64},
          "learning_rate": 0.05}


def record(seed=0, value=0.8, measured=MEASURED, configuration=CONFIG, epochs=2, **kwargs):
    return RunRecord(key=RunKey(measured, configuration, seed, epochs), status=FINISHED,
                     metrics={"val_accuracy": value, "loss": 0.5}, history={"loss": [0.9, 0.5]},
                     timings={"fit_seconds": 1.5}, facts={"params": 10}, **kwargs)


# ------------------------------------------------------------------------------- keys


def test_a_key_is_its_content_not_its_spelling():
    a = RunKey(MEASURED, CONFIG, 0, 2)
    # The same content in another order, tuples for lists: the same key.
    b = RunKey(dict(reversed(list(MEASURED.items()))),
               {**CONFIG, "attention_kwargs": {"groups": 64}}, 0, 2)
    assert a.digest == b.digest and len(a.digest) == 64
    for other in (RunKey(MEASURED, CONFIG, 1, 2), RunKey(MEASURED, CONFIG, 0, 3),
                  RunKey({**MEASURED, "precision": "mixed_float16"}, CONFIG, 0, 2),
                  RunKey(MEASURED, {**CONFIG, "attention_kwargs": {"groups": 32}}, 0, 2)):
        assert other.digest != a.digest


def _measured(argv):
    config = cli.parse_args(argv)
    return config.measured("float32", 1, {"tensorflow": "2.21.0", "keras": "3.15.1"})


@pytest.mark.parametrize("option,value,changes", [
    # The plan, how far and where it runs, and what it shows: the same runs.
    ("--max-trials", "9", False), ("--repeats", "5", False), ("--attention", "sa", False),
    ("--placement", "block,layer", False), ("--stages", "which", False),
    ("--tuner", "bayesian", False), ("--final-epochs", "0", False), ("--quiet", None, False),
    ("--cost-steps", "0", False), ("--schedule", "race", False),
    ("--hyperparameters", "search", False), ("--validate-every-epoch", None, False),
    # What is measured: other runs.
    ("--train-size", "5000", True), ("--validation-split", "5000", True),
    ("--batch-size", "128", True), ("--backbone", "resnet32", True),
    ("--learning-rate", "0.1", True), ("--seed", "100", True), ("--data-dir", "/x", True),
    ("--bn-momentum", "0.99", True), ("--optimizer", "adam", True),
])
def test_a_key_changes_when_what_is_measured_changes_and_only_then(option, value, changes,
                                                                    tmp_path):
    base = ["--out", str(tmp_path / "o")]
    other = base + [option] + ([value] if value is not None else [])
    assert (_measured(base) != _measured(other)) == changes


def test_the_environment_is_measured():
    config = cli.parse_args([])
    one = config.measured("float32", 1, {"tensorflow": "2.21.0"})
    assert one != config.measured("mixed_float16", 1, {"tensorflow": "2.21.0"})
    assert one != config.measured("float32", 2, {"tensorflow": "2.21.0"})
    assert one != config.measured("float32", 1, {"tensorflow": "2.22.0"})
    assert "epochs" not in one  # a run's epochs are in its key


# ------------------------------------------------------------------------------- records


def test_round_trip_and_lookup(tmp_path):
    store = RunStore(tmp_path / "store")
    assert store.get(RunKey(MEASURED, CONFIG, 0, 2)) is None
    written = store.put(record(label="sa/block", stage="which", trial="3"))
    back = store.get(written.key)
    assert back == written and back.value == 0.8 and back.created
    assert store.digests() == [written.digest]
    assert not [n for n in os.listdir(store.root) if n.startswith(".tmp")]


def _bad(path, mutate):
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("mutate,problem", [
    (lambda d: d.update(metrics={"val_accuracy": "high"}), "metric 'val_accuracy' is 'high'"),
    (lambda d: d.update(metrics={"val_accuracy": float("nan")}), "not a finite number"),
    (lambda d: d.update(metrics={"loss": 0.5}), "a finished run's val_accuracy is None"),
    (lambda d: d.update(metrics={"val_accuracy": 1.5}), "expected a number in [0, 1]"),
    (lambda d: d.update(history=[1, 2]), "'history' is list, expected dict"),
    (lambda d: d.update(status="maybe"), "status 'maybe'"),
    (lambda d: d["key"].update(seed=1), "does not match its name"),
    (lambda d: d.update(format=99), "format 99"),
    (lambda d: d.update(weights="gone.weights.h5"), "its weights file gone.weights.h5 is missing"),
    (lambda d: d.update(timings={"fit_seconds": "slow"}), "'fit_seconds' is 'slow'"),
])
def test_a_damaged_record_is_refused_in_one_line_naming_it(tmp_path, mutate, problem):
    store = RunStore(tmp_path / "store")
    written = store.put(record())
    path = tmp_path / "store" / f"{written.digest}.json"
    _bad(path, mutate)
    with pytest.raises(DamagedFileError) as err:
        store.get(written.key)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and problem in message
    assert "delete it" in message


def test_a_truncated_record_is_refused(tmp_path):
    store = RunStore(tmp_path / "store")
    written = store.put(record())
    path = tmp_path / "store" / f"{written.digest}.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(DamagedFileError, match="not valid JSON"):
        store.get(written.key)


def _writer(root, worker, seeds):
    store = RunStore(root)
    for seed in seeds:
        # Both processes write seeds 0-9 (the same runs) and their own seeds 100+.
        store.put(record(seed=seed, value=0.5 + seed / 1000, worker=worker))
        store.put(record(seed=100 + 10 * int(worker) + seed % 10, value=0.6, worker=worker))


def test_two_processes_writing_one_store_lose_and_mix_nothing(tmp_path):
    root = str(tmp_path / "store")
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_writer, args=(root, str(w), range(10))) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = RunStore(root)
    records = [store.get(d) for d in store.digests()]
    assert len(records) == 10 + 20  # the shared runs once, each process's own ones
    for r in records:  # every record whole and under its own key
        expected = 0.5 + r.seed / 1000 if r.seed < 100 else 0.6
        assert r.value == pytest.approx(expected)
    assert not [n for n in os.listdir(root) if n.startswith(".tmp")]


# ------------------------------------------------------------------------------- the lock


def test_a_second_owner_is_refused_naming_the_first(tmp_path):
    first = OutLock(tmp_path / "out").acquire()
    try:
        with pytest.raises(CLIError) as err:
            OutLock(tmp_path / "out").acquire()
        message = str(err.value)
        assert f"PID {os.getpid()} on {socket.gethostname()}" in message
        assert "\n" not in message and "in use by another keras-attn-search" in message
    finally:
        first.release()
    OutLock(tmp_path / "out").acquire().release()  # free again once released


def test_overwrite_of_a_running_search_is_refused_and_keeps_it(tmp_path, capsys):
    from test_cli import tiny_args

    out = tmp_path / "out"
    out.mkdir()
    RunDir(out).write_config({}, {}, [])
    (out / RunDir.marker).write_text("a search")
    held = OutLock(out).acquire()  # a search running in --out
    try:
        code = cli.main(tiny_args(str(tmp_path / "nodata"), out, "--overwrite"))
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and f"PID {os.getpid()}" in err
        assert (out / RunDir.config).is_file() and not list(tmp_path.glob("out.old-*"))
    finally:
        held.release()


def test_a_worker_may_not_overwrite(tmp_path):
    with pytest.raises(CLIError, match="--overwrite is the chief's"):
        cli.parse_args(["--role", "worker", "--oracle", "127.0.0.1:9", "--overwrite",
                        "--out", str(tmp_path)])


def test_search_config_with_wrong_types_is_refused_naming_it(tmp_path):
    rundir = RunDir(tmp_path)
    rundir.write_config({"epochs": 1}, {}, [])
    data = json.loads((tmp_path / RunDir.config).read_text())
    data["runs"] = "abc"  # a string would have been split into characters
    (tmp_path / RunDir.config).write_text(json.dumps(data))
    with pytest.raises(DamagedFileError, match=r"search_config.json is damaged \('runs' is str"):
        rundir.read_config()


# ------------------------------------------------------------------------------- racing


def _table(means, seeds, sd=0.002, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    block = rng.normal(0, 0.005, size=len(seeds))
    return {c: {s: m + b + rng.normal(0, sd) for s, b in zip(seeds, block)}
            for c, m in means.items()}


def test_a_race_drops_what_is_clearly_behind_the_leader_and_keeps_the_baseline():
    seeds = (0, 1, 2, 3, 4)
    # "bad" is 5 points behind the leader, "close" within noise of it.
    truth = _table({"base": 0.85, "lead": 0.87, "close": 0.869, "bad": 0.80}, seeds)
    schedule = Schedule(["base", "lead", "close", "bad"], seeds, "base", mode="race")
    done, runs = {}, 0
    while True:
        todo = schedule.ask(done)
        if not todo:
            break
        assert len({s for _, s in todo}) == 1 or all(s in seeds[:2] for _, s in todo)
        for c, s in todo:
            done.setdefault(c, {})[s] = truth[c][s]
            runs += 1
    assert sorted(done["bad"]) == [0, 1]  # dropped after the first two seeds
    assert sorted(done["base"]) == sorted(done["lead"]) == list(seeds)
    assert runs == 20 - 3 and schedule.runs_saved(done) == 3
    # Asked again, the race gives the same answer: nothing is left to do.
    assert schedule.ask(done) == []


def test_a_full_schedule_asks_for_every_missing_run_and_a_race_starts_like_it():
    seeds = (0, 1, 2)
    full = Schedule(["base", "a"], seeds, "base")
    assert full.ask({"base": {0: 0.8}}) == [("base", 1), ("base", 2), ("a", 0), ("a", 1),
                                            ("a", 2)]
    race = Schedule(["base", "a", "b"], seeds, "base", mode="race")
    assert race.ask({}) == [(c, s) for c in ("base", "a", "b") for s in (0, 1)]
    with pytest.raises(ValueError, match="Unknown schedule 'fast'; valid: full, race"):
        Schedule(["base"], seeds, "base", mode="fast")


def test_behind_leader_needs_the_data_to_separate():
    # Two seeds of three configurations within noise: nothing is separated.
    table = _table({"base": 0.85, "a": 0.851, "b": 0.849}, (0, 1), sd=0.005)
    assert behind_leader(table, "base") == set()
    # A NaN run (a run that diverged) is left out, not taken as a value.
    table["b"][1] = float("nan")
    assert behind_leader(table, "base") == set()


# ------------------------------------------------------------------------------- growth


def test_more_seeds_and_a_new_plan_train_only_what_is_missing(tmp_path, capsys):
    from search.protocol import Protocol
    from test_protocol import _protocol_tuner

    first, train, val = _protocol_tuner(tmp_path, repeats=2)
    first.search(train, validation_data=val, epochs=1, verbose=0)
    trained = capsys.readouterr().out.count(" seed ")
    assert trained == 4  # 2 configurations x seeds 4, 5
    store = first.store
    # --repeats 3 (another plan: another KerasTuner project) on the same store.
    grown = type(first)(hypermodel=first.hypermodel, objective="val_accuracy", max_trials=2,
                        directory=str(tmp_path), project_name="q", seed=0,
                        protocol=Protocol.with_repeats(3, seed=4), store=store)
    grown.search(train, validation_data=val, epochs=1, verbose=0)
    out = capsys.readouterr().out
    assert out.count(" seed 6:") == 2 and " seed 4:" not in out and " seed 5:" not in out
    assert out.count("2 of 3 run(s) in the store, reused; 1 to train (seeds [6])") == 2
    assert len(store.digests()) == 6
    # Asked a third time (another project), every run is in the store: nothing trains, and the
    # trials' facts come from the runs' records (issue 29, case 2: they went blank).
    again = type(first)(hypermodel=first.hypermodel, objective="val_accuracy", max_trials=2,
                        directory=str(tmp_path), project_name="r", seed=0,
                        protocol=Protocol.with_repeats(3, seed=4), store=store)
    again.search(train, validation_data=val, epochs=1, verbose=0)
    assert " seed " not in capsys.readouterr().out.replace("to train (seeds", "")
    for trial_id in again.oracle.trials:
        with open(TrialDir(again.get_trial_dir(trial_id)).info) as f:
            info = json.load(f)
        assert info["params"] > 0 and "params_added" in info, info


def test_a_damaged_weights_file_is_refused_naming_it(tmp_path):
    import keras

    store = RunStore(tmp_path / "store")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    written = store.put(record(), model=model)
    path = tmp_path / "store" / written.weights
    path.write_bytes(b"not an HDF5 file")
    with pytest.raises(DamagedFileError) as err:
        store.load_weights(model, written)
    assert str(path) in str(err.value) and "cannot load it" in str(err.value)
    assert "\n" not in str(err.value)


def test_validating_once_at_the_end_gives_the_last_epochs_validation(tmp_path):
    # Issue 27: validation changes no weight, so a run validated once after its last epoch
    # (the default) stores the metrics of one validated every epoch, with one evaluation.
    from search.runner import RunTrainer
    from test_protocol import _protocol_tuner

    tuner, train, val = _protocol_tuner(tmp_path)
    configuration = tuner.hypermodel.configuration(_simam_hp(tuner.hypermodel))
    got = {}
    for every in (False, True):
        trainer = RunTrainer(tuner.hypermodel, RunStore(tmp_path / f"store_{every}"), MEASURED,
                             train_data=lambda seed: train, validation_data=val, epochs=3,
                             validate_every_epoch=every)
        got[every] = trainer.train(configuration, (0,), log=lambda *a: None).records[0]
    once, every = got[False], got[True]
    assert set(every.history) >= {"loss", "val_loss", "val_accuracy"}
    assert len(every.history["val_loss"]) == 3
    assert not any(k.startswith("val_") for k in once.history)  # no per-epoch validation
    np.testing.assert_allclose(once.history["loss"], every.history["loss"], rtol=1e-5)
    for name in ("val_loss", "val_accuracy", "loss"):
        assert once.metrics[name] == pytest.approx(every.metrics[name], rel=1e-5)
    assert once.timings["validation_seconds"] > 0


def _simam_hp(hypermodel):
    import keras_tuner as kt

    hp = kt.HyperParameters()
    hp.Fixed("attention", "simam")
    hypermodel.declare(hp)
    return hp
