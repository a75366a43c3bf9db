"""The few KerasTuner internals this package relies on, each behind one small function.

Everything else in :mod:`search` uses KerasTuner's public API (``keras_tuner.*`` and the hooks
its classes document). What is here has no public equivalent in KerasTuner 1.4; each function
says why it is needed, and ``tests/test_kt_private.py`` fails if KerasTuner renames, removes or
changes one of them, so an upgrade breaks a test, not a search.
"""

from __future__ import annotations

import contextlib


def trial_display_class():
    """KerasTuner's trial display (``keras_tuner.src.engine.oracle.Display``): the oracle prints
    each trial's banner and its end through it; KerasTuner exports no display class nor any
    hook to number the banner differently, so :class:`search.oracles.TrialIdDisplay` extends
    this one."""
    from keras_tuner.src.engine.oracle import Display

    return Display


def set_display(oracle, display):
    """Make ``display`` (a :func:`trial_display_class` instance) the one ``oracle`` prints
    through: KerasTuner's ``Oracle.__init__`` makes its own in ``oracle._display``, with no
    argument or hook to choose another."""
    oracle._display = display


def copy_callbacks(tuner, callbacks):
    """A deep copy of ``callbacks`` for one run (``Tuner._deepcopy_callbacks``), raising
    KerasTuner's ``FatalValueError`` for callbacks that cannot be copied: our ``run_trial``
    trains several runs per trial, each with fresh callbacks, as KerasTuner's does."""
    return tuner._deepcopy_callbacks(callbacks)


def configure_tensorboard(tuner, callbacks, trial, execution):
    """Point each TensorBoard callback of ``callbacks`` at the run's own directory
    (``<log_dir>/<trial_id>/execution<execution>``) and add KerasTuner's HParams callback
    (``Tuner._configure_tensorboard_dir``): the layout KerasTuner's own runs write, so
    TensorBoard shows ours the same way."""
    tuner._configure_tensorboard_dir(callbacks, trial, execution)


def add_oracle_servicer(oracle, server):
    """Serve ``oracle`` to the workers of a distributed search on the gRPC ``server``
    (KerasTuner's ``oracle_chief.OracleServicer``, the only implementation of its gRPC
    protocol; ``oracle_chief.start_server`` serves it too but cannot requeue a dead worker's
    trial). Returns the servicer: its ``stop_triggered`` turns True once a worker was told that
    the search is over."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    return servicer


def chief_may_exit(oracle):
    """Whether the chief may stop serving ``oracle``: no trial running and no worker waiting
    (``oracle_chief.exit_chief``, KerasTuner's own test in ``start_server``)."""
    from keras_tuner.src.distribute import oracle_chief

    return oracle_chief.exit_chief(oracle)


def tried_already(oracle, values):
    """Whether a trial of ``oracle`` had ``values`` (a dict; active values only), by KerasTuner's
    own record of the values tried (``Oracle._duplicate``): new values must not repeat one, and
    KerasTuner exports no test for it."""
    return oracle._duplicate(values)


def trials_with_values(oracle, values):
    """The ids of ``oracle``'s trials recorded with ``values`` (as :func:`tried_already` counts
    them: KerasTuner's hash of the active values, ``_compute_values_hash`` and ``_id_to_hash``),
    so a sampler can be told the result of the trial it asked for again."""
    same = oracle._compute_values_hash(values)
    return {trial_id for trial_id, known in oracle._id_to_hash.items() if known == same}


def max_collisions(oracle):
    """How many draws of values already tried ``oracle`` allows before it counts its space as
    exhausted (``Oracle._max_collisions``, 20): an oracle of our own keeps KerasTuner's limit."""
    return oracle._max_collisions


def queue_again(oracle, trial_id):
    """Queue trial ``trial_id`` of ``oracle`` to run again: KerasTuner's own retry queue
    (``Oracle._retry_queue``; ``create_trial`` hands its trials out first), where KerasTuner's
    ``reload`` puts the trials that were running. KerasTuner has no public way to requeue one."""
    oracle._retry_queue.append(trial_id)


def hyperband_new_configurations(max_epochs, factor):
    """The number of new configurations in each bracket of KerasTuner's Hyperband with these
    arguments (one iteration), in the order it runs them: each bracket's first-round size
    (``HyperbandOracle._get_num_brackets`` and ``_get_size``). KerasTuner documents that
    Hyperband sizes itself from ``max_epochs`` and ``factor`` but exports no way to count its
    configurations, which a search must know before it starts (at ``max_epochs=1`` there is one
    bracket of one configuration)."""
    import keras_tuner as kt

    oracle = kt.oracles.HyperbandOracle(objective=kt.Objective("score", "max"),
                                        max_epochs=max_epochs, factor=factor)
    return [oracle._get_size(bracket, 0)
            for bracket in reversed(range(oracle._get_num_brackets()))]


@contextlib.contextmanager
def failed_trial_tracebacks(show):
    """Within the block, KerasTuner prints a failed trial's traceback to stderr only if ``show``
    (a bool). KerasTuner prints it when ``keras_tuner.src.config.DEBUG`` is set (its default;
    that print is the flag's only use), right after ``run_trial`` raises, with no hook around
    the print; the traceback is kept in ``trial.message`` either way."""
    from keras_tuner.src import config

    previous, config.DEBUG = config.DEBUG, bool(show)
    try:
        yield
    finally:
        config.DEBUG = previous


class RandomValuesHook:
    """Mixed in before a KerasTuner oracle: its new values (``Oracle._random_values``, which
    random search, Bayesian optimisation's initial points and Hyperband's new models draw
    through, with no public hook) come from ``self.draw_values(draw)``, ``draw`` being
    KerasTuner's own draw. :class:`search.oracles.PairedOracleMixin` implements it."""

    def _random_values(self):
        return self.draw_values(super()._random_values)

    def draw_values(self, draw):
        return draw()


class InitialSpaceHook:
    """Mixed in before a KerasTuner tuner: the space is declared by ``self.declare_space()``
    (return False to keep KerasTuner's own discovery, ``BaseTuner._populate_initial_space``,
    which builds the model again and again until each conditional scope was active once).
    KerasTuner documents no public hook for a space known otherwise."""

    def _populate_initial_space(self):
        if not self.declare_space():
            return super()._populate_initial_space()
        return None

    def declare_space(self):
        return False


def running_trials(oracle):
    """``{tuner_id: trial}`` of the trials ``oracle`` has handed out and not yet ended
    (``Oracle.ongoing_trials``, a plain attribute KerasTuner's own methods keep)."""
    return dict(oracle.ongoing_trials)


def take_back(oracle, tuner_id):
    """Forget that ``tuner_id`` runs a trial and that it asked for one (``ongoing_trials`` and
    ``tuner_ids``): what KerasTuner's ``end_trial`` does for a finished trial, for a trial whose
    worker is presumed dead."""
    oracle.ongoing_trials.pop(tuner_id, None)
    oracle.tuner_ids.discard(tuner_id)


def wait_for_a_trial(oracle, tuner_id, trial):
    """Tell ``tuner_id`` to ask again later (the trial ``create_trial`` made becomes ``IDLE``,
    and KerasTuner's ``tuner_ids`` remembers the worker as one still searching, which keeps a
    chief from exiting while it waits)."""
    import keras_tuner as kt

    oracle.tuner_ids.add(tuner_id)
    trial.status = kt.engine.trial.TrialStatus.IDLE
