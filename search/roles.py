"""The three roles a ``keras-attn-search`` process can play (``--role``).

* :class:`Single`: the whole search in one process.
* :class:`Chief`: a distributed search's chief (KerasTuner's distributed tuning over gRPC): it
  serves the oracle to the workers, then analyses, tests, reports and exports, like a single
  process.
* :class:`Worker`: runs the trials the chief gives it, in the chief's ``--out`` (a shared
  directory); it writes no report.

``search.pipeline`` asks the role what differs (``role.serves``, ``role.reports``, ...) instead of
testing its name.
"""

from __future__ import annotations

import os
import socket
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
        host, _, port = address.rpartition(":")
        deadline = time.time() + config.run.worker_timeout
        while True:
            try:
                with socket.create_connection((host, int(port)), timeout=2):
                    return
            except OSError:
                if time.time() > deadline:
                    raise CLIError(
                        f"no chief is listening at {address} (waited "
                        f"{config.run.worker_timeout:.0f}s): start one with --role chief and the "
                        "same options") from None
                time.sleep(1)


ROLES = {role.name: role for role in (Single(), Chief(), Worker())}


def role_of(config):
    """The role object of ``config.run.role``."""
    return ROLES[config.run.role]
