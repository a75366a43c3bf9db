"""A search's output directory under real faults: --overwrite on what is not a search or with a
run that cannot start, damaged files (truncated), a full disk (injected ENOSPC and a real 3 MB
tmpfs), a failing trial, TensorFlow's start-up lines."""

import errno
import gzip
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from search import cli, final, pipeline, report
from search.lock import LOCK_NAME
from search.rundir import DamagedFileError, RunDir, TrialDir, read_json, write_json
from search.store import RunStore
from test_cli import run_cli, tiny_args
from test_data import make_fake_mnist


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fmnist")
    make_fake_mnist(str(directory), n_train=300, n_test=60)
    return str(directory)


def small_args(data_dir, out, *extra):
    """One configuration besides the baseline, one seed, no retraining: the cheapest search."""
    args = tiny_args(data_dir, out, *extra, trials=2)
    for option, value in (("--repeats", "1"), ("--final-epochs", "0")):
        args[args.index(option) + 1] = value
    return args


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_data):
    """A finished tiny search (copied by each test that changes it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = run_cli(small_args(tiny_data, out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def copy_search(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def snapshot(directory):
    """``{relative path: sha256}`` of every file under ``directory`` (the lock file, which each
    process that takes the lock rewrites with its PID, left out)."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            if name == LOCK_NAME:
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return files


def one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("keras-attn-search: error: "), err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------ 1, 2: --overwrite


def test_overwrite_refuses_a_directory_that_is_not_a_search(tmp_path, tiny_data, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "thesis.txt").write_text("precious\n")
    assert cli.main(small_args(tiny_data, out, "--overwrite")) == 2
    err = one_error_line(capsys)
    assert "is not a keras-attn search" in err and "--overwrite deletes only a search" in err
    assert (out / "thesis.txt").read_text() == "precious\n"
    # Without --overwrite the refusal no longer recommends it.
    assert cli.main(small_args(tiny_data, out)) == 2
    err = one_error_line(capsys)
    assert "exists and is not a keras-attn search" in err and "--overwrite" not in err


def test_a_search_has_its_marker(finished):
    assert (finished / RunDir.marker).is_file() and (finished / RunDir.config).is_file()


@pytest.mark.parametrize("fault", ["broken data", "batch size"])
def test_overwrite_keeps_the_finished_search_when_the_new_run_cannot_start(
        finished, tmp_path, capsys, fault):
    out = copy_search(finished, tmp_path)
    before = snapshot(out)
    if fault == "broken data":
        broken = tmp_path / "broken"
        broken.mkdir()
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            with gzip.open(broken / name, "wb") as f:
                f.write(b"\x00\x00\x08\x03 not an IDX file")
        argv = small_args(str(broken), out, "--overwrite")
    else:
        argv = small_args(str(tmp_path), out, "--overwrite", "--batch-size", "1e20")
    assert cli.main(argv) == 2
    one_error_line(capsys)
    assert snapshot(out) == before  # every old file, unchanged
    assert not [p for p in os.listdir(tmp_path) if ".old-" in p]


def test_overwrite_replaces_the_search_once_the_new_run_has_started(
        finished, tmp_path, tiny_data, monkeypatch):
    out = copy_search(finished, tmp_path)
    started = []

    def search(config, rundir, role, start, **kwargs):  # the search stage, reached: stop there
        started.append(start.splits)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "search", search)
    assert cli.main(small_args(tiny_data, out, "--overwrite")) == 130
    assert started and sorted(os.listdir(out)) == sorted([RunDir.marker, RunDir.config,
                                                          LOCK_NAME])
    assert not [p for p in os.listdir(tmp_path) if ".old-" in p]


# ------------------------------------------------------------------------------ 3: damaged


def test_read_json_tells_missing_from_damaged(tmp_path):
    path = tmp_path / "x.json"
    assert read_json(str(path), missing={}) == {}
    write_json(str(path), {"a": 1})
    assert read_json(str(path)) == {"a": 1}
    path.write_text('{"a": ')  # truncated
    with pytest.raises(DamagedFileError, match=r"x\.json is damaged \(not valid JSON.*; do this"):
        read_json(str(path), fix="do this")
    path.write_text("")
    with pytest.raises(DamagedFileError, match="empty"):
        read_json(str(path))
    path.write_text("[1]")
    with pytest.raises(DamagedFileError, match="expected a JSON dict, got list"):
        read_json(str(path), kind=dict)


def _truncate(path):
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def project_of(out):
    """The KerasTuner project of a one-stage search (``tuner/which-<hash>``)."""
    (name,) = os.listdir(out / "tuner")
    return out / "tuner" / name


def a_stored_run(out):
    store = RunStore(out / RunDir.store)
    return out / RunDir.store / f"{store.digests()[0]}.json"


def test_every_reader_refuses_a_truncated_file(finished, tmp_path):
    out = copy_search(finished, tmp_path)
    trial = project_of(out) / "trial_0"
    record = a_stored_run(out)
    _truncate(record)
    with pytest.raises(DamagedFileError, match=f"{record.name} is damaged.*delete it"):
        RunStore(out / RunDir.store).get(record.name[:-5])
    _truncate(trial / TrialDir.INFO)
    with pytest.raises(DamagedFileError, match=f"{TrialDir.INFO} is damaged"):
        TrialDir(trial).load_info()
    _truncate(out / RunDir.final)
    with pytest.raises(DamagedFileError, match="final.json is damaged.*final stage again"):
        final._load(str(out / RunDir.final))


@pytest.mark.parametrize("name", ["a stored run", RunDir.config, "tuner0.json", "oracle.json",
                                  "trial_1/trial.json", RunDir.final])
def test_resuming_with_a_damaged_file_is_refused_naming_it(finished, tmp_path, tiny_data,
                                                           capsys, name):
    out = copy_search(finished, tmp_path)
    if name == "a stored run":
        name = os.path.relpath(a_stored_run(out), out)
    elif name not in (RunDir.config, RunDir.final):
        name = os.path.relpath(project_of(out) / name, out)
    _truncate(out / name)
    before = (out / "leaderboard.csv").read_text()
    assert cli.main(small_args(tiny_data, out)) == 2
    err = one_error_line(capsys)
    assert f"{os.path.join(str(out), name)} is damaged" in err, err
    # What to do: delete the run (it is trained again), or start afresh.
    assert ("delete it (and its .weights.h5) to train that run again" in err
            if name.startswith(RunDir.store) else "--overwrite" in err), err
    if name != RunDir.final:  # the leaderboard is not rewritten from a damaged record
        assert (out / "leaderboard.csv").read_text() == before


# ------------------------------------------------------------------- 4, 5: atomic, ENOSPC


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "final.json"
    write_json(str(path), {"kept": True})
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(OSError) as exc:
        write_json(str(path), {"kept": False})
    assert exc.value.errno == errno.ENOSPC and exc.value.filename == str(path)
    assert json.loads(path.read_text()) == {"kept": True}
    assert os.listdir(tmp_path) == ["final.json"]


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, tiny_data, monkeypatch, capsys):
    def run(config):
        raise OSError(errno.ENOSPC, "No space left on device",
                      os.path.join(config.session.out, "tuner", "tuner0.json"))

    monkeypatch.setattr(pipeline, "run", run)
    assert cli.main(small_args(tiny_data, tmp_path / "out")) == 2
    err = one_error_line(capsys)
    assert err == (f"keras-attn-search: error: no space left on device: "
                   f"{tmp_path / 'out' / 'tuner' / 'tuner0.json'}\n")


def _mount_tmpfs(directory, size):
    directory.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(directory)], capture_output=True, text=True)
    return done.returncode == 0, done.stderr.strip()


def test_a_full_disk_then_the_same_command_resumes(tmp_path, tiny_data):
    disk = tmp_path / "disk"
    ok, why = _mount_tmpfs(disk, "4m")  # one seed's weights (2.3 MB) fit, two do not
    if not ok:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {why}")
    try:
        out = disk / "run"
        args = small_args(tiny_data, out)
        full = run_cli(args)
        assert full.returncode == 2, full.stdout[-2000:] + full.stderr[-2000:]
        assert "Traceback" not in full.stderr
        last = full.stderr.strip().splitlines()[-1]
        assert last.startswith("keras-attn-search: error: no space left on device: "), \
            full.stderr[-2000:]
        assert "[trial 0] seed 0:" in full.stdout  # the baseline's repeat finished
        assert os.path.getsize(project_of(out) / "tuner0.json") > 0
        assert not [f for _, _, fs in os.walk(out) for f in fs if f.startswith(".tmp")]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        again = run_cli(args)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "[trial 0] seed 0:" not in again.stdout  # kept, not trained again
        rows = {r["trial"]: r for r in __import__("test_cli").read_leaderboard(str(out))}
        assert {r["status"] for r in rows.values()} == {"COMPLETED"}
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# ----------------------------------------------------------------------- 7: a failing trial


def _failing_tuner(tmp_path, debug):
    from search.hypermodel import AttentionHyperModel
    from search.protocol import Protocol
    from search.tuning import tuner_class
    from test_hypermodel import tiny_builder, tiny_datasets

    def builder(*args, attention=None, **kwargs):
        if attention is not None:
            raise ValueError("the loss diverged")
        return tiny_builder(*args, attention=attention, **kwargs)

    hm = AttentionHyperModel(backbone="tiny", input_shape=(8, 8, 3), num_classes=3,
                             model_builder=builder, steps_per_epoch=2,
                             space={"attention": ["none", "simam"], "e_lambda": 1e-4})
    tuner = tuner_class("random")(hypermodel=hm, objective="val_accuracy", max_trials=2,
                                  directory=str(tmp_path), project_name="p", seed=0,
                                  protocol=Protocol.with_repeats(1), debug=debug)
    return tuner, tiny_datasets()


@pytest.mark.parametrize("debug", [False, True])
def test_a_failed_trial_is_one_line_and_its_reason_reaches_the_leaderboard(tmp_path, capsys,
                                                                           debug):
    tuner, (train, val) = _failing_tuner(tmp_path, debug)
    tuner.search(train, validation_data=val, epochs=1, verbose=0)
    captured = capsys.readouterr()
    assert ("Traceback" in captured.err) is debug
    failed = [l for l in captured.out.splitlines() if l.startswith("[trial 1] FAILED")]
    assert failed and "(ValueError: the loss diverged)" in failed[0], captured.out
    rows = {r["trial"]: r for r in report.collect_trials(tuner)}
    assert rows["1"]["status"] == "FAILED"
    assert rows["1"]["error"] == "ValueError: the loss diverged"


# ------------------------------------------------------------- 8: start-up lines, --help


def test_tensorflow_start_up_lines_are_filtered(tmp_path):
    code = ("import sys; from search import cli; cli._import_tensorflow_quietly(); "
            "print('tensorflow' in sys.modules)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="1")
    done = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True,
                          text=True, env=env, cwd=os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__))), timeout=300)
    assert done.stdout.strip() == "True", done.stderr[-2000:]
    for noise in ("oneDNN custom operations", "Could not find cuda drivers",
                  "absl::InitializeLog"):
        assert noise not in done.stderr, done.stderr


def test_help_has_no_doubled_percent(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "95% interval" in text and "%%" not in text


# --------------------------------------------------- schema of the search's records, start


@pytest.mark.parametrize("section,problem", [
    ({"search_test": {"best": {"runs": {"0": "high"}}}}, "'search_test' section"),
    ({"search_test": {"baseline": {"runs": {"0": float("nan")}}}}, "'search_test' section"),
    ({"best_model": {"runs": ["0.9"]}}, "'best_model' section"),
    ({"best_model": [1, 2]}, "'best_model' section"),
    ({"train_seconds": "long"}, "'train_seconds' is not a number"),
    ({"test_evaluations": {"abc@2": {"0": 1.5}}}, "'test_evaluations'"),
    ({"test_evaluations": ["abc"]}, "'test_evaluations'"),
])
def test_final_json_of_the_wrong_types_is_refused_naming_it(tmp_path, section, problem):
    path = tmp_path / RunDir.final
    path.write_text(json.dumps(section))
    with pytest.raises(DamagedFileError) as err:
        final._load(str(path))
    assert str(path) in str(err.value) and problem in str(err.value)
    assert "run the final stage again" in str(err.value)


@pytest.mark.parametrize("configurations", [
    {"abc": {"train_step": float("nan")}}, {"abc": {"flops": "many"}}, {"abc": [1]}, [1]])
def test_costs_json_of_the_wrong_types_is_refused_naming_it(tmp_path, configurations):
    from search.costs import _read_costs

    path = tmp_path / RunDir.costs
    path.write_text(json.dumps({"settings": {}, "configurations": configurations}))
    with pytest.raises(DamagedFileError, match=r"costs.json is damaged.*measure the costs again"):
        _read_costs(str(path))


def test_a_run_that_cannot_start_records_nothing(tmp_path, tiny_data, capsys):
    out = tmp_path / "out"
    # No validation split: refused once the data are loaded, before any record is written.
    assert cli.main(small_args(tiny_data, out, "--validation-split", "0")) == 2
    assert "needs validation images" in one_error_line(capsys)
    assert not out.exists()  # made by this run, removed again
    # The corrected command (any options) is a new search, not "a different search".
    config = cli.parse_args(small_args(tiny_data, out, "--epochs", "2"))
    claim = pipeline.claim_out_dir(config, RunDir(out), __import__("search.roles").roles.role_of(
        config))
    claim.give_back()
