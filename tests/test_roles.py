"""search.roles directly: the stages each role runs (a single process computes them one after the
other; a worker follows what its chief announces in ``stages/serving.json`` and gives up in one
line after --worker-timeout), what the chief writes for it, and the role of a config. The clock
is a fake one: no test waits."""

import os

import pytest

from search import roles
from search.config import CLIError, DataSpec, ModelSpec, RunOptions, SearchConfig, Session, \
    SpaceSpec
from search.rundir import RunDir, write_json
from search.stages import StagePlan


def make_config(role="single", timeout=5.0, stages=("which", "where"), worker_id=None):
    return SearchConfig(data=DataSpec(), model=ModelSpec(), recipe=None,
                        space=SpaceSpec(stages=stages),
                        run=RunOptions(role=role, worker_timeout=timeout),
                        session=Session(oracle="127.0.0.1:9" if role != "single" else None,
                                        worker_id=worker_id))


def stage(name="which", seeds=(0, 1)):
    return StagePlan(name=name, space={"attention": ["none", "sa"]}, configurations=None,
                     tuner="random", max_trials=2, seeds=tuple(seeds), why=f"{name} stage")


class FakeClock:
    """``time.time``/``time.sleep`` for search.roles: sleeping advances the clock (and may run
    what the chief does meanwhile)."""

    def __init__(self, meanwhile=None):
        self.now = 1000.0
        self.slept = 0
        self.meanwhile = list(meanwhile or [])

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.slept += 1
        if self.meanwhile:
            self.meanwhile.pop(0)()


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(roles, "time", fake)
    return fake


# ------------------------------------------------------------------ single


def test_a_single_process_plans_each_stage_when_the_one_before_has_ended():
    asked = []

    def plan_of(name):
        asked.append(name)
        return stage(name)

    plans = roles.Single().stage_plans(make_config(), RunDir("unused"), plan_of)
    assert next(plans).name == "which" and asked == ["which"]  # 'where' not planned yet
    assert next(plans).name == "where" and asked == ["which", "where"]
    assert next(plans, None) is None


def test_a_stage_that_does_not_apply_is_skipped():
    plans = roles.Single().stage_plans(make_config(), RunDir("unused"),
                                       lambda name: stage(name) if name == "which" else None)
    assert [p.name for p in plans] == ["which"]


# ------------------------------------------------------------------ chief and worker


def test_a_worker_runs_what_the_chief_announces_once_each_until_it_is_done(tmp_path, clock):
    rundir = RunDir(tmp_path)
    chief, worker = roles.Chief(), roles.Worker()
    first, second = stage("which"), stage("where")
    chief.announce_stage(rundir, first)
    assert os.path.isfile(rundir.serving)  # stages/ made for it
    # The worker's own reading of the results is never asked for.
    plans = worker.stage_plans(make_config("worker"), rundir, plan_of=None)
    got = next(plans)
    assert got == first and got.project == first.project
    # While the same stage is announced the worker waits; the chief announces the next one.
    clock.meanwhile = [lambda: None, lambda: chief.announce_stage(rundir, second)]
    assert next(plans) == second and clock.slept == 2
    clock.meanwhile = [lambda: chief.finish_stages(rundir)]
    assert next(plans, None) is None


def test_a_worker_before_any_announcement_waits_for_the_first(tmp_path, clock):
    rundir = RunDir(tmp_path)
    clock.meanwhile = [lambda: roles.Chief().announce_stage(rundir, stage())]
    plans = roles.Worker().stage_plans(make_config("worker"), rundir, plan_of=None)
    assert next(plans) == stage() and clock.slept == 1


def test_a_worker_stops_at_once_when_the_chief_is_done(tmp_path, clock):
    rundir = RunDir(tmp_path)
    os.makedirs(rundir.stages)
    write_json(rundir.serving, {"done": True, "serving": stage().to_json()})
    assert list(roles.Worker().stage_plans(make_config("worker"), rundir, None)) == []
    assert clock.slept == 0


@pytest.mark.parametrize("announced", [False, True])
def test_a_worker_gives_up_in_one_line_after_the_timeout(tmp_path, clock, announced):
    rundir = RunDir(tmp_path)
    if announced:  # one stage announced and run, then nothing new
        roles.Chief().announce_stage(rundir, stage())
    plans = roles.Worker().stage_plans(make_config("worker", timeout=5.0), rundir, None)
    if announced:
        next(plans)
    start = clock.now
    with pytest.raises(CLIError) as err:
        next(plans)
    message = str(err.value)
    assert "\n" not in message
    assert message == (f"the chief announced no further stage in 5s ({rundir.serving}); is it "
                       "still running at 127.0.0.1:9?")
    # It waited the timeout (checking once a second), not less, not much more.
    assert 5.0 < clock.now - start <= 7.0


def test_what_the_chief_writes_is_the_plan_the_worker_reads(tmp_path):
    from search.rundir import read_json

    rundir = RunDir(tmp_path)
    plan = stage("where", seeds=(3, 4, 5))
    roles.Chief().announce_stage(rundir, plan)
    assert read_json(rundir.serving) == {"serving": plan.to_json()}
    roles.Chief().finish_stages(rundir)
    assert read_json(rundir.serving) == {"done": True}
    # A single process announces nothing.
    other = RunDir(tmp_path / "single")
    roles.Single().announce_stage(other, plan)
    roles.Single().finish_stages(other)
    assert not os.path.exists(other.root)


# ------------------------------------------------------------------ which role


@pytest.mark.parametrize("name, owns_out, reports, trains", [
    ("single", True, True, True),
    ("chief", True, True, False),  # serves the oracle, trains nothing itself, reports
    ("worker", False, False, True),
])
def test_role_of_a_config(name, owns_out, reports, trains):
    role = roles.role_of(make_config(name))
    assert role.name == name and role is roles.ROLES[name]
    assert (role.owns_out, role.reports, role.trains) == (owns_out, reports, trains)


def test_the_environment_kerastuner_reads(monkeypatch):
    for key in roles._KT_ENV:
        monkeypatch.setenv(key, "stale")
    roles.Worker().configure_environment(make_config("worker", worker_id="w7").session)
    assert (os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"],
            os.environ["KERASTUNER_TUNER_ID"]) == ("127.0.0.1", "9", "worker-w7")
    roles.Chief().configure_environment(make_config("chief").session)
    assert os.environ["KERASTUNER_TUNER_ID"] == "chief"
    assert roles.Worker().tuner_id_for(Session()) == f"worker-{os.getpid()}"
    roles.Single().configure_environment(Session())
    assert not any(key in os.environ for key in roles._KT_ENV)
