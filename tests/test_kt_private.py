"""The KerasTuner internals of search.kt_private behave as this package assumes: a KerasTuner
upgrade that renames, removes or changes one fails here, not in the middle of a search."""

import types

import keras
import keras_tuner as kt
import pytest

from search import kt_private


def _hypermodel(hp):
    hp.Choice("units", [2, 4, 8])
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(hp.get("units"))])
    model.compile(loss="mse")
    return model


def _random_search(tmp_path, **kwargs):
    return kt.RandomSearch(hypermodel=_hypermodel, objective="loss", max_trials=1,
                           directory=str(tmp_path), project_name="p", seed=1, **kwargs)


@pytest.mark.parametrize("max_epochs, factor, expected", [
    (1, 3, [1]), (2, 3, [2]), (3, 3, [3, 2]), (9, 3, [9, 5, 3]), (4, 2, [4, 3, 3]),
])
def test_hyperband_new_configurations_are_what_its_oracle_creates(tmp_path, max_epochs, factor,
                                                                  expected):
    # ``expected`` by hand from KerasTuner's sizes: bracket b of B = floor(log_f E) + 1 starts
    # ceil(ceil(1 + log_f E) / (b + 1) * f^b) configurations, the most aggressive bracket first.
    assert kt_private.hyperband_new_configurations(max_epochs, factor) == expected

    def hypermodel(hp):
        hp.Int("x", 0, 10**6)
        return _hypermodel(hp)

    tuner = kt.Hyperband(hypermodel=hypermodel, objective="loss", max_epochs=max_epochs,
                         factor=factor, hyperband_iterations=1, seed=0,
                         directory=str(tmp_path), project_name="hb")
    oracle, new = tuner.oracle, {}
    while True:  # KerasTuner's oracle run to its end, every trial finishing at once
        trial = oracle.create_trial("tuner0")
        if trial.status == "STOPPED":
            break
        values = trial.hyperparameters.values
        if values["tuner/round"] == 0:
            new[values["tuner/bracket"]] = new.get(values["tuner/bracket"], 0) + 1
        oracle.update_trial(trial.trial_id, {"loss": float(values["x"])})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert [new[b] for b in sorted(new, reverse=True)] == expected


def test_the_display_class_is_the_oracles_and_set_display_replaces_it(tmp_path, capsys):
    display_class = kt_private.trial_display_class()
    oracle = _random_search(tmp_path).oracle
    assert isinstance(oracle._display, display_class)  # what KerasTuner made in __init__

    class Recording(display_class):
        def on_trial_begin(self, trial):
            print(f"recorded {trial.trial_id}")

    display = Recording(oracle=oracle)
    kt_private.set_display(oracle, display)
    oracle.verbose = 0  # the oracle's verbose is its display's
    assert display.verbose == 0
    oracle.create_trial("tuner0")  # the oracle prints through the display it was given
    assert "recorded 0" in capsys.readouterr().out
    # What search.oracles.TrialIdDisplay reads and writes besides on_trial_begin.
    for name in ("trial_start", "trial_number", "search_start", "col_width"):
        assert hasattr(display, name)
    assert callable(display.show_hyperparameter_table) and callable(display.on_trial_end)


def test_copy_callbacks_copies_and_refuses_what_cannot_be_copied(tmp_path):
    tuner = _random_search(tmp_path)
    early = keras.callbacks.EarlyStopping(patience=3)
    copied = kt_private.copy_callbacks(tuner, [early])
    assert len(copied) == 1 and copied[0] is not early and copied[0].patience == 3

    class Uncopyable(keras.callbacks.Callback):
        def __deepcopy__(self, memo):
            raise TypeError("no copy")

    with pytest.raises(kt.errors.FatalValueError, match="deep-copyable"):
        kt_private.copy_callbacks(tuner, [Uncopyable()])


def test_configure_tensorboard_gives_each_run_its_directory(tmp_path):
    tuner = _random_search(tmp_path)
    hp = kt.HyperParameters()
    hp.Choice("units", [2, 4])
    trial = kt.engine.trial.Trial(hyperparameters=hp, trial_id="03")
    board = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "logs"))
    callbacks = [board]
    kt_private.configure_tensorboard(tuner, callbacks, trial, 2)
    assert board.log_dir == str(tmp_path / "logs" / "03" / "execution2")
    assert len(callbacks) == 2  # and KerasTuner's HParams callback for the run


def test_the_servicer_serves_the_oracle_and_says_when_a_worker_was_stopped(tmp_path):
    import grpc
    from concurrent import futures

    oracle = _random_search(tmp_path).oracle
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = kt_private.add_oracle_servicer(oracle, server)
    assert servicer.stop_triggered is False
    servicer.CreateTrial(types.SimpleNamespace(tuner_id="worker-1"), None)
    assert servicer.stop_triggered is False and "worker-1" in oracle.ongoing_trials
    servicer.CreateTrial(types.SimpleNamespace(tuner_id="worker-2"), None)  # max_trials=1
    assert servicer.stop_triggered is True


def test_the_chief_may_exit_only_with_no_trial_running_and_no_worker_waiting(tmp_path):
    oracle = _random_search(tmp_path).oracle
    assert kt_private.chief_may_exit(oracle)
    trial = oracle.create_trial("worker-1")
    assert not kt_private.chief_may_exit(oracle)
    trial.status = kt.engine.trial.TrialStatus.COMPLETED
    oracle.update_trial(trial.trial_id, {"loss": 1.0})
    oracle.end_trial(trial)
    assert not kt_private.chief_may_exit(oracle)  # worker-1 not yet told to stop
    oracle.create_trial("worker-1")  # STOPPED: max_trials reached
    assert kt_private.chief_may_exit(oracle)


@pytest.mark.parametrize("show", [False, True])
def test_failed_trial_tracebacks_on_and_off(tmp_path, capsys, show):
    class Failing(kt.RandomSearch):
        def run_trial(self, trial, *args, **kwargs):
            raise ValueError("boom")

    tuner = Failing(hypermodel=_hypermodel, objective="loss", max_trials=1,
                    directory=str(tmp_path), project_name="p", seed=1)
    capsys.readouterr()
    with kt_private.failed_trial_tracebacks(show):
        tuner.search(verbose=0)
    err = capsys.readouterr().err
    assert ("Traceback" in err and "boom" in err) == show
    trial = tuner.oracle.trials["0"]
    assert trial.status == kt.engine.trial.TrialStatus.FAILED and "boom" in trial.message


def test_failed_trial_tracebacks_restores_the_setting():
    from keras_tuner.src import config

    before = config.DEBUG
    with pytest.raises(RuntimeError):
        with kt_private.failed_trial_tracebacks(not before):
            assert config.DEBUG is (not before)
            raise RuntimeError
    assert config.DEBUG is before


def test_maybe_distribute_is_public():
    # Public (keras_tuner.engine.tuner), used by search.tuning for the builds of each run: no
    # strategy enters no scope (variables go to the default strategy); a strategy enters its own
    # scope for the block and leaves it after.
    import tensorflow as tf

    with kt.engine.tuner.maybe_distribute(None):
        assert not tf.distribute.has_strategy()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with kt.engine.tuner.maybe_distribute(strategy):
        assert tf.distribute.has_strategy() and tf.distribute.get_strategy() is strategy
    assert not tf.distribute.has_strategy()


def test_the_record_of_values_tried(tmp_path):
    oracle = _random_search(tmp_path).oracle
    assert not kt_private.tried_already(oracle, {"units": 4})
    trial = oracle.create_trial("tuner0")
    values = dict(trial.hyperparameters.values)
    assert kt_private.tried_already(oracle, values)
    assert kt_private.trials_with_values(oracle, values) == {trial.trial_id}
    other = {"units": next(u for u in (2, 4, 8) if u != values["units"])}
    assert not kt_private.tried_already(oracle, other)
    assert kt_private.trials_with_values(oracle, other) == set()
    assert kt_private.max_collisions(oracle) == 20  # KerasTuner's limit, an int


def test_a_trial_queued_again_is_the_next_one_handed_out(tmp_path):
    oracle = kt.RandomSearch(hypermodel=_hypermodel, objective="loss", max_trials=3,
                             directory=str(tmp_path), project_name="p", seed=1).oracle
    first = oracle.create_trial("worker-1")
    oracle.ongoing_trials.pop("worker-1")  # its worker is gone
    kt_private.queue_again(oracle, first.trial_id)
    again = oracle.create_trial("worker-2")
    assert again.trial_id == first.trial_id and len(oracle.trials) == 1
    assert oracle.ongoing_trials["worker-2"] is again


def test_the_random_values_hook_is_how_kerastuner_draws(tmp_path):
    # RandomSearch's create_trial draws through Oracle._random_values: the hook sees each draw.
    seen = []

    class Hooked(kt_private.RandomValuesHook, kt.oracles.RandomSearchOracle):
        def draw_values(self, draw):
            values = draw()
            seen.append(values)
            return {**values, "units": 8}

    oracle = Hooked(objective="loss", max_trials=2, seed=1)
    tuner = kt.Tuner(oracle=oracle, hypermodel=_hypermodel, directory=str(tmp_path),
                     project_name="p")
    trial = tuner.oracle.create_trial("tuner0")
    assert len(seen) == 1 and trial.hyperparameters.values["units"] == 8


def test_the_initial_space_hook_replaces_kerastuners_discovery(tmp_path):
    built = []

    def hypermodel(hp):
        built.append(1)
        return _hypermodel(hp)

    class Declared(kt_private.InitialSpaceHook, kt.RandomSearch):
        def declare_space(self):
            hp = self.oracle.get_space()
            hp.Choice("units", [2, 4, 8])
            self.oracle.update_space(hp)
            return True

    tuner = Declared(hypermodel=hypermodel, objective="loss", max_trials=1,
                     directory=str(tmp_path), project_name="p", seed=1)
    tuner._populate_initial_space()  # what search() calls first
    assert not built and [p.name for p in tuner.oracle.get_space().space] == ["units"]

    class Kept(kt_private.InitialSpaceHook, kt.RandomSearch):
        pass  # declare_space() is False: KerasTuner's own discovery builds the model

    kept = Kept(hypermodel=hypermodel, objective="loss", max_trials=1,
                directory=str(tmp_path), project_name="q", seed=1)
    kept._populate_initial_space()
    assert built and [p.name for p in kept.oracle.get_space().space] == ["units"]


def test_running_trials_take_back_and_wait(tmp_path):
    tuner = _random_search(tmp_path)
    tuner._populate_initial_space()
    trial = tuner.oracle.create_trial("worker-a")
    assert list(kt_private.running_trials(tuner.oracle)) == ["worker-a"]
    assert kt_private.running_trials(tuner.oracle)["worker-a"] is trial
    kt_private.take_back(tuner.oracle, "worker-a")
    assert kt_private.running_trials(tuner.oracle) == {}
    assert "worker-a" not in tuner.oracle.tuner_ids
    waiting = kt.engine.trial.Trial(tuner.oracle.get_space(), trial_id="9",
                                    status=kt.engine.trial.TrialStatus.STOPPED)
    kt_private.wait_for_a_trial(tuner.oracle, "worker-b", waiting)
    assert waiting.status == kt.engine.trial.TrialStatus.IDLE
    assert "worker-b" in tuner.oracle.tuner_ids
