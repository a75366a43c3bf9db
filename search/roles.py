"""The three roles a ``keras-attn-search`` process can play (``--role``).

* :class:`Single`: the whole search in one process.
* :class:`Chief`: a distributed search's chief (KerasTuner's distributed tuning over gRPC): it
  serves the oracle to the workers, then analyses, tests, reports and exports, like a single
  process.
* :class:`Worker`: runs the trials the chief gives it, in the chief's ``--out`` (a shared
  directory); it writes no report. While it searches, a :class:`ChiefWatchdog` checks that the
  chief still listens: KerasTuner's client waits up to an hour for a chief that is gone.

``search.pipeline`` asks the role what differs (``role.serves``, ``role.reports``, ...) instead of
testing its name.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

from search.config import PROG, CLIError

# KerasTuner's distributed tuning reads these (its documented environment).
_KT_ENV = ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID")


class Single:
    """One process: searches, analyses, tests, reports."""

    name = "single"
    #: Owns --out: may --overwrite it, writes its marker, config record and report.
    owns_out = True
    #: Analyses, tests and reports once the search is done.
    reports = True
    #: Trains trials itself (and so needs the validation split).
    trains = True

    def configure_environment(self, session):
        """Set (or clear) the environment KerasTuner's distributed tuning reads."""
        for key in _KT_ENV:
            os.environ.pop(key, None)

    def before_start(self, config):
        """What to check or wait for before --out is touched."""

    def search(self, tuner, splits, config, callbacks, verbose):
        """Run one stage's search (KerasTuner's ``search``)."""
        tuner.search(splits.train, validation_data=splits.val, epochs=config.recipe.epochs,
                     callbacks=callbacks, verbose=verbose)

    def stage_plans(self, config, rundir, plan_of):
        """The stages to run, in order: ``plan_of(name)`` (a :class:`search.stages.StagePlan`,
        or None for a stage that does not apply), computed when the stage before has ended."""
        for name in config.space.stages:
            plan = plan_of(name)
            if plan is not None:
                yield plan

    def announce_stage(self, rundir, plan):
        """A stage is about to be searched (a chief tells its workers)."""

    def finish_stages(self, rundir):
        """Every stage is done (a chief tells its workers)."""


class _Distributed(Single):
    def configure_environment(self, session):
        host, _, port = session.oracle.rpartition(":")
        os.environ["KERASTUNER_ORACLE_IP"] = host
        os.environ["KERASTUNER_ORACLE_PORT"] = port
        os.environ["KERASTUNER_TUNER_ID"] = self.tuner_id_for(session)

    def tuner_id_for(self, session):
        raise NotImplementedError


class Chief(_Distributed):
    """Serves the oracle to the workers (and trains nothing itself), then reports."""

    name = "chief"
    trains = False

    def tuner_id_for(self, session):
        return "chief"

    def search(self, tuner, splits, config, callbacks, verbose):
        from search import tuning

        print(f"[{PROG}] chief: serving the oracle of stage {tuner.stage!r} on "
              f"{config.session.oracle}; waiting for workers", flush=True)
        tuning.serve_oracle(tuner, worker_timeout=config.run.worker_timeout)

    def announce_stage(self, rundir, plan):
        """Write the stage's plan where the workers read it (``stages/serving.json``) before
        serving its oracle: a worker builds the same stage from it, not from its own reading of
        the results."""
        from search.rundir import write_json

        os.makedirs(rundir.stages, exist_ok=True)
        write_json(rundir.serving, {"serving": plan.to_json()})

    def finish_stages(self, rundir):
        from search.rundir import write_json

        write_json(rundir.serving, {"done": True})


class Worker(_Distributed):
    """Runs the chief's trials in the chief's --out; writes no report."""

    name = "worker"
    owns_out = False
    reports = False

    def tuner_id_for(self, session):
        return f"worker-{session.worker_id or os.getpid()}"

    def stage_plans(self, config, rundir, plan_of):
        """The stages the chief serves, as it announces them (``stages/serving.json``), until it
        says the search is done; a stage not announced within --worker-timeout ends the worker
        with one line."""
        from search.rundir import read_json
        from search.stages import StagePlan

        seen = set()
        while True:
            deadline = time.time() + config.run.worker_timeout
            while True:
                data = read_json(rundir.serving, missing={}, kind=dict)
                plan = data.get("serving")
                if data.get("done") or (plan and plan.get("project") not in seen):
                    break
                if time.time() > deadline:
                    raise CLIError(
                        f"the chief announced no further stage in {config.run.worker_timeout:.0f}s "
                        f"({rundir.serving}); is it still running at {config.session.oracle}?")
                time.sleep(1)
            if data.get("done"):
                return
            seen.add(plan["project"])
            yield StagePlan.from_json(plan)

    def before_start(self, config):
        """Wait (bounded by --worker-timeout) until the chief listens: it has then also written
        the search's options for the worker to compare its own with."""
        address = config.session.oracle
        deadline = time.time() + config.run.worker_timeout
        while not chief_listens(address):
            if time.time() > deadline:
                raise CLIError(
                    f"no chief is listening at {address} (waited "
                    f"{config.run.worker_timeout:.0f}s): start one with --role chief and the "
                    "same options")
            time.sleep(1)

    def search(self, tuner, splits, config, callbacks, verbose):
        """KerasTuner's ``search``, stopped by a :class:`ChiefWatchdog` if the chief goes."""
        address, timeout = config.session.oracle, config.run.worker_timeout
        message = (
            f"{PROG}: error: the chief at {address} has not listened for {timeout:.0f}s "
            f"(--worker-timeout): this worker stops; the runs it finished are kept in "
            f"{config.session.out} (start the chief again with the same options, then the "
            "workers, to resume)")
        with ChiefWatchdog(address, timeout, lambda: stop_worker(message)):
            super().search(tuner, splits, config, callbacks, verbose)


def chief_listens(address, timeout=2.0):
    """Whether a process accepts TCP connections at ``address`` (``HOST:PORT``)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def stop_worker(message, status=2):
    """End this worker process now: ``message`` (one line) on stderr, exit ``status``.

    From the watchdog's thread, while the main thread may be inside KerasTuner's client (which
    waits for the chief) or inside a training step: ``os._exit``, as a kill would. Every file of
    the search is written atomically (``search.rundir``), so the runs finished are whole and a
    resumed search keeps them; only the run in progress is lost.
    """
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)
    os._exit(status)


class ChiefWatchdog:
    """``with ChiefWatchdog(address, timeout, on_gone):`` checks, every ``poll`` seconds (default
    2, or half of a shorter ``timeout``) in a daemon thread, that the chief at ``address``
    (``HOST:PORT``) accepts connections, and calls ``on_gone()`` once it has not for ``timeout``
    seconds (``--worker-timeout``). A chief that comes back within ``timeout`` (a resumed chief
    on the same address) is waited for."""

    def __init__(self, address, timeout, on_gone, poll=None):
        self.address, self.timeout, self.on_gone = address, timeout, on_gone
        self.poll = min(2.0, timeout / 2) if poll is None else poll
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="chief-watchdog", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def _watch(self):
        last_heard = time.monotonic()
        while not self._done.wait(self.poll):
            if chief_listens(self.address, timeout=min(2.0, self.timeout)):
                last_heard = time.monotonic()
            elif time.monotonic() - last_heard >= self.timeout and not self._done.is_set():
                self.on_gone()
                return


ROLES = {role.name: role for role in (Single(), Chief(), Worker())}


def role_of(config):
    """The role object of ``config.run.role``."""
    return ROLES[config.run.role]
