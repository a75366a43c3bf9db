"""search.pipeline's own logic directly, without data or training: claiming --out (the lock, the
refusals, --overwrite's move aside and give-back, a made --out removed when the run does not
start), the data's arguments, and what the job has left after a stage (the [plan] line's input).
"""

import json
import os
from types import SimpleNamespace

import pytest

from search import cli, pipeline
from search.config import CLIError
from search.lock import LOCK_NAME, OutLock
from search.roles import role_of
from search.rundir import RunDir
from search.stages import StagePlan

ENVIRONMENT = {"precision": "float32", "replicas": 1,
               "versions": {"tensorflow": "2.21.0", "keras": "3.15.1", "backend": "tensorflow"}}


class Started:
    """What ``Claim.confirm`` reads of a started run."""

    def __init__(self, environment=ENVIRONMENT):
        self.environment = environment


def parse(out, *argv):
    return cli.parse_args(["--out", str(out), *argv])


def claim(config):
    return pipeline.claim_out_dir(config, RunDir(config.session.out), role_of(config))


def lock_is_free(out):
    try:
        OutLock(out).acquire().release()
    except CLIError:
        return False
    return True


def a_search(out, *argv):
    """A search recorded in ``out`` (as a run that started leaves it), lock released."""
    config = parse(out, *argv)
    first = claim(config)
    first.confirm(config, Started())
    first.lock.release()
    return config


def files(directory):
    return sorted(os.path.relpath(os.path.join(root, n), directory)
                  for root, _, names in os.walk(directory) for n in names)


# ------------------------------------------------------------------ the claim


def test_a_new_out_is_locked_and_removed_again_when_the_run_does_not_start(tmp_path):
    out = tmp_path / "new"
    taken = claim(parse(out))
    assert taken.created and taken.lock.held and taken.recorded == {}
    assert os.listdir(out) == [LOCK_NAME] and not lock_is_free(out)
    with pytest.raises(CLIError, match="is in use by another keras-attn-search"):
        claim(parse(out))
    taken.give_back()
    assert not out.exists() and not taken.lock.held


def test_a_started_run_is_recorded_and_its_out_kept(tmp_path):
    out = tmp_path / "o"
    config = parse(out, "--epochs", "3")
    taken = claim(config)
    taken.confirm(config, Started())
    record = json.loads((out / RunDir.config).read_text())
    assert record["identity"] == config.identity() and record["environment"] == ENVIRONMENT
    assert [r["plan"] for r in record["runs"]] == [config.plan_record()]
    assert (out / RunDir.marker).is_file()
    taken.lock.release()
    # The next run on it adds its record to the first's.
    again = claim(config)
    assert not again.created and again.recorded["identity"] == config.identity()
    again.confirm(config, Started())
    again.give_back()  # not made by this run: kept
    assert len(json.loads((out / RunDir.config).read_text())["runs"]) == 2
    assert lock_is_free(out)


def test_an_out_measured_with_other_numerics_is_refused_at_confirm(tmp_path):
    out = tmp_path / "o"
    config = a_search(out)
    taken = claim(config)
    other = dict(ENVIRONMENT, precision="mixed_float16", replicas=2)
    with pytest.raises(CLIError) as err:
        taken.confirm(config, Started(other))
    assert str(err.value) == (
        f"--out {out} holds runs measured with other numerics (precision: 'float32' -> "
        "'mixed_float16', replicas: 1 -> 2); they would not be comparable: use another --out")
    taken.give_back()


def test_a_different_search_is_refused_naming_each_difference_and_leaves_out_free(tmp_path):
    out = tmp_path / "o"
    a_search(out, "--epochs", "1", "--batch-size", "64")
    with pytest.raises(CLIError) as err:
        claim(parse(out, "--epochs", "2", "--batch-size", "128"))
    assert str(err.value) == (
        f"--out {out} holds a different search (batch_size: 64 -> 128, epochs: 1 -> 2, "
        "learning_rate: 0.05 -> 0.1: it measures something else); use another --out, the same "
        "options to add to it, or --overwrite to start afresh")
    # The refused run holds nothing: the right command may claim --out in the same process.
    assert lock_is_free(out)
    claim(parse(out, "--epochs", "1", "--batch-size", "64")).give_back()
    # Another plan of the same search (repeats, attentions, stages) is the same search.
    claim(parse(out, "--epochs", "1", "--repeats", "5", "--attention", "sa", "--stages",
                "which")).give_back()


@pytest.mark.parametrize("legacy", ["flat config", "trial repeats"])
def test_a_search_made_before_the_run_store_is_refused(tmp_path, legacy):
    out = tmp_path / "o"
    if legacy == "flat config":
        out.mkdir()
        identity = parse(out).identity()
        (out / RunDir.config).write_text(json.dumps({**identity, "runs": []}))
    else:
        a_search(out)
        (out / "tuner" / "trial_0").mkdir(parents=True)
        (out / "tuner" / "trial_0" / "keras_attn_repeats.json").write_text("{}")
    before = files(out)
    with pytest.raises(CLIError, match=r"was made by an earlier keras-attn-search .* cannot be "
                                       r"resumed by this version; use another --out, or "
                                       r"--overwrite"):
        claim(parse(out))
    # Nothing deleted or changed (the lock's own file may stay: it holds no lock).
    assert [f for f in files(out) if f != LOCK_NAME] == [f for f in before if f != LOCK_NAME]
    assert lock_is_free(out)


def test_overwrite_moves_the_search_aside_and_gives_it_back_if_the_run_does_not_start(tmp_path):
    out = tmp_path / "o"
    a_search(out, "--epochs", "1")
    (out / "leaderboard.md").write_text("the old answer")
    before = files(out)
    taken = claim(parse(out, "--epochs", "2", "--overwrite"))
    aside = taken.replaced
    assert os.path.basename(aside).startswith("o.old-") and files(aside) == before
    assert os.listdir(out) == [LOCK_NAME] and not lock_is_free(out)
    assert taken.recorded == {}  # a fresh search: nothing to compare with
    taken.give_back()
    assert files(out) == before and not os.path.exists(aside)
    assert (out / "leaderboard.md").read_text() == "the old answer" and lock_is_free(out)


def test_overwrite_deletes_the_search_once_the_new_run_has_started(tmp_path):
    out = tmp_path / "o"
    a_search(out, "--epochs", "1")
    config = parse(out, "--epochs", "2", "--overwrite")
    taken = claim(config)
    aside = taken.replaced
    taken.confirm(config, Started())
    assert not os.path.exists(aside) and taken.replaced is None
    runs = json.loads((out / RunDir.config).read_text())["runs"]
    assert len(runs) == 1  # a new search's first run
    assert json.loads((out / RunDir.config).read_text())["identity"]["epochs"] == 2
    taken.lock.release()


def test_overwrite_that_cannot_move_the_search_aside_keeps_it(tmp_path, monkeypatch):
    out = tmp_path / "o"
    a_search(out)
    before = files(out)

    def rename(src, dst):
        raise PermissionError(13, "Permission denied", src)

    monkeypatch.setattr(pipeline.os, "rename", rename)
    with pytest.raises(PermissionError):
        claim(parse(out, "--overwrite"))
    monkeypatch.undo()
    assert files(out) == before and lock_is_free(out)


@pytest.mark.parametrize("overwrite, match", [
    (True, r"is not a keras-attn search \(no .keras-attn-search or search_config.json\): "
           r"--overwrite deletes only a search"),
    (False, r"exists and is not a keras-attn search; use another --out"),
])
def test_a_directory_that_is_not_a_search_is_refused_and_kept(tmp_path, overwrite, match):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("...")
    with pytest.raises(CLIError, match=match):
        claim(parse(out, *(["--overwrite"] if overwrite else [])))
    assert files(out) == ["chapter1.tex"] and not list(tmp_path.glob("thesis.old-*"))


def test_an_empty_directory_or_one_with_only_a_workers_project_may_be_claimed(tmp_path):
    out = tmp_path / "o"
    (out / RunDir.project).mkdir(parents=True)  # a worker started before its chief
    taken = claim(parse(out, "--overwrite"))
    assert taken.replaced is None and not taken.created
    taken.give_back()
    assert out.is_dir()  # not made by this run: kept


def test_a_file_is_no_out(tmp_path):
    out = tmp_path / "f"
    out.write_text("x")
    with pytest.raises(CLIError, match=r"is a file, not a directory"):
        claim(parse(out))


def test_a_worker_takes_no_lock_and_needs_its_chiefs_search(tmp_path):
    out = tmp_path / "o"
    worker = ["--role", "worker", "--oracle", "127.0.0.1:9"]
    with pytest.raises(CLIError, match=r"holds no search started by a chief \(search_config"):
        claim(parse(out, *worker))
    assert not out.exists()
    a_search(out, "--role", "chief", "--oracle", "127.0.0.1:9")
    held = OutLock(out).acquire()  # the chief runs
    try:
        taken = claim(parse(out, *worker))
        assert taken.lock is None and taken.recorded["identity"]
        taken.give_back()
        assert (out / RunDir.config).is_file()
    finally:
        held.release()


# ------------------------------------------------------------------ the data's arguments


def test_load_kwargs_of_a_small_image_and_a_keras_applications_backbone(tmp_path):
    small = parse(tmp_path, "--train-size", "0", "--validation-split", "0.2", "--seed", "4",
                  "--data-dir", "/d", "--batch-size", "32")
    assert pipeline.load_kwargs(small) == {
        "name": "fashion_mnist", "data_dir": "/d", "image_size": None, "channels": None,
        "train_size": None, "validation_split": 0.2, "batch_size": 32, "seed": 4}
    # keras.applications backbones: 32 x 32 at least, three channels.
    big = parse(tmp_path, "--backbone", "mobilenetv2")
    kwargs = pipeline.load_kwargs(big)
    assert (kwargs["image_size"], kwargs["channels"], kwargs["train_size"]) == (32, 3, 10000)
    sized = parse(tmp_path, "--backbone", "mobilenetv2", "--image-size", "48")
    assert pipeline.load_kwargs(sized)["image_size"] == 48
    assert pipeline.load_kwargs(small, train_size=None, validation_split=0.0)[
        "validation_split"] == 0.0


# ------------------------------------------------------------------ what is left after a stage


def stage_plan(name, max_trials):
    return StagePlan(name=name, space={}, configurations=None, tuner="random",
                     max_trials=max_trials, seeds=(0, 1, 2))


def test_ahead_counts_the_later_stage_the_tests_and_the_retraining(tmp_path):
    config = parse(tmp_path, "--repeats", "3", "--where-trials", "4", "--final-epochs", "2",
                   "--final-repeats", "2", "--batch-size", "128")
    started = SimpleNamespace(splits=SimpleNamespace(source_train_size=60000,
                                                     sizes={"test": 10000}))
    after_which = pipeline._ahead(config, started, stage_plan("which", 5), t_start=100.0)
    # 'where' may train 4 configurations x 3 seeds; the final stage tests 2 x 3 search runs
    # (ceil(10000 / 128) = 79 batches each) and retrains 2 epochs x 2 seeds x ceil(60000 / 128)
    # = 469 steps; the costs of 5 + 4 configurations.
    assert after_which == pipeline_ahead(later_runs=12, final_steps=2 * 2 * 469, test_runs=6,
                                         test_batches=79, configurations=9, started=100.0)
    after_where = pipeline._ahead(config, started, stage_plan("where", 5), t_start=100.0)
    assert (after_where.later_runs, after_where.configurations) == (0, 5)
    only_which = parse(tmp_path, "--repeats", "3", "--stages", "which", "--final-epochs", "0")
    alone = pipeline._ahead(only_which, started, stage_plan("which", 5), t_start=1.0)
    assert (alone.later_runs, alone.final_steps, alone.configurations) == (0, 0, 5)


def pipeline_ahead(**kwargs):
    from search.projection import Ahead

    return Ahead(**kwargs)
