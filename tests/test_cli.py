"""The search CLI end to end: outputs, errors, resume after kill -9, distributed chief + workers.

The end-to-end runs use tiny Fashion-MNIST-format IDX files (written here) and --run-eagerly, so
that a trial costs seconds instead of the 20-40 s a MobileNetV2 graph takes to trace.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from importlib.util import find_spec

import numpy as np
import pytest

from search import cli, pipeline
from search.roles import role_of
from search.rundir import RunDir
from test_data import make_fake_mnist, write_idx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_ONNX = all(find_spec(m) is not None for m in ("tf2onnx", "onnx", "onnxruntime"))
# The CLI runs on the CPU: GPUs hidden, so that a chief and two workers (three TensorFlow
# processes, besides the suite's own) do not each claim a GPU's memory, and so that the exports
# compare with the model at 1e-4 in float32 on any machine.
CLI_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fmnist")
    make_fake_mnist(str(directory), n_train=300, n_test=60)
    return str(directory)


def tiny_args(data_dir, out, *extra, trials=2):
    return [
        "--data-dir", data_dir, "--train-size", "200", "--validation-split", "50",
        "--max-trials", str(trials),
        "--epochs", "1", "--final-epochs", "1", "--batch-size", "64", "--repeats", "2",
        "--attention", "none,simam,sa", "--placement", "block", "--precision", "float32",
        "--out", str(out), "--quiet", "--run-eagerly", "--stages", "which", *extra,
    ]


def run_cli(args, timeout=400, **kwargs):
    env = dict(os.environ, **CLI_ENV)
    return subprocess.run(
        [sys.executable, "-m", "search", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=timeout, **kwargs,
    )


def spawn_cli(args, log_path):
    env = dict(os.environ, **CLI_ENV)
    log = open(log_path, "w")
    return subprocess.Popen(
        [sys.executable, "-m", "search", *args], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )


def finished_repeats(out, trial_id, stage="which"):
    """``{str(seed): {"val_accuracy": value}}`` of the runs a stage's trial has stored (the
    search writes each run's record atomically as it ends)."""
    from search.store import RunStore

    store = RunStore(os.path.join(out, RunDir.store))
    found = {}
    for digest in store.digests():
        record = store.get(digest)
        if record.trial == str(trial_id) and record.stage == stage:
            found[str(record.seed)] = {"val_accuracy": record.value}
    return found


def kill_group(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def read_leaderboard(out):
    import csv

    with open(os.path.join(out, "leaderboard.csv")) as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--max-trials", "0"], "--max-trials: expected a positive integer, got '0'"),
        (["--epochs", "-2"], "--epochs: expected a positive integer"),
        (["--batch-size", "many"], "--batch-size: expected a positive integer"),
        (["--tuner", "grid"], "invalid choice: 'grid'"),
        (["--backbone", "vgg99"], "unknown --backbone 'vgg99'; valid: "),
        (["--attention", "sa,foo"], "unknown --attention 'foo'; valid: none, cbam"),
        (["--placement", "everywhere"], "unknown --placement 'everywhere'; valid: block"),
        (["--role", "worker"], "--role worker needs --oracle HOST:PORT"),
        (["--oracle", "127.0.0.1:8000"], "--oracle goes with --role chief or --role worker"),
        (["--oracle", "127.0.0.1:99999", "--role", "chief"], "port in 1..65535"),
        (["--validation-split", "1.5"], "expected a number in [0, 1)"),
        (["--repeats", "0"], "--repeats: expected a positive integer, got '0'"),
        (["--repeats", "-1"], "--repeats: expected a positive integer, got '-1'"),
        (["--repeats", "1.5"], "--repeats: expected a positive integer, got '1.5'"),
        (["--backbone", "resnet18"], "unknown --backbone 'resnet18'; valid: "),
        (["--learning-rate", "0"], "--learning-rate: expected a positive number"),
        (["--export", "tflite"],
         "--export: invalid choice: 'tflite' (choose from "),
        (["--hyperparameters", "random"], "--hyperparameters: invalid choice: 'random'"),
        (["--backbone", "mobilenetv2", "--image-size", "28"], "needs --image-size >= 32"),
        # Every value against its real range, at parse time, naming the option.
        (["--width", "nan"], "--width: expected a positive number, got 'nan'"),
        (["--width", "inf"], "--width: expected a positive number, got 'inf'"),
        (["--width", "-1"], "--width: expected a positive number, got '-1'"),
        (["--bn-momentum", "nan"], "--bn-momentum: expected a number in [0, 1), got 'nan'"),
        (["--epochs", "99999999999999999999"],
         "--epochs: expected an integer in [1, 2147483647], got '99999999999999999999'"),
        (["--batch-size", "1e20"], "--batch-size: expected a positive integer, got '1e20'"),
        (["--batch-size", "2147483648"], "--batch-size: expected an integer in [1, 2147483647]"),
        (["--max-trials", "2147483648"], "--max-trials: expected an integer in [1, 2147483647]"),
        (["--train-size", "2147483648"], "--train-size: expected an integer in [0, 2147483647]"),
        (["--validation-split", "2147483648"],
         "--validation-split: expected an integer in [1, 2147483647]"),
        (["--image-size", "1e20"], "--image-size: expected an integer >= 0, got '1e20'"),
        (["--image-size", "2147483648"], "--image-size: expected an integer in [0, 2147483647]"),
        (["--seed", "-1"], "--seed: expected an integer >= 0, got '-1'"),
        (["--seed", "4294967296"], "--seed: expected an integer in [0, 4294967295]"),
        (["--seed", "4294967295", "--repeats", "2"],
         "--seed: expected seed + max(--repeats, --final-repeats) - 1 <= 4294967295"),
        (["--seed", "4294967295", "--repeats", "1", "--final-repeats", "3"],
         "= 4294967297"),
        (["--repeats", "1e20"], "--repeats: expected a positive integer, got '1e20'"),
        (["--repeats", "2147483648"], "--repeats: expected an integer in [1, 2147483647]"),
        (["--final-epochs", "1e20"], "--final-epochs: expected an integer >= 0, got '1e20'"),
        (["--final-repeats", "2147483648"], "--final-repeats: expected an integer in [1, 2147483647]"),
        (["--learning-rate", "1e20"], "--learning-rate: expected a positive number <= 10, got"),
        (["--learning-rate", "nan"], "--learning-rate: expected a positive number <= 10, got"),
        (["--learning-rate", "inf"], "--learning-rate: expected a positive number <= 10, got"),
        (["--worker-timeout", "nan"], "--worker-timeout: expected a positive number, got 'nan'"),
        (["--worker-timeout", "inf"], "--worker-timeout: expected a positive number, got 'inf'"),
        # Issue 29, case 6: Hyperband at --epochs 1 trained the baseline alone and exited 0.
        (["--tuner", "hyperband", "--epochs", "1"],
         "--tuner hyperband needs --epochs >= 2: at --epochs 1 each of its brackets holds one "
         "configuration, so only the baseline would train"),
        (["--tuner", "hyperband", "--epochs", "9", "--max-trials", "2"],
         "--max-trials does not apply to --tuner hyperband: at --epochs 9 it tries 17 "
         "configurations (brackets of 9, 5, 3), set by --epochs; drop --max-trials"),
    ],
)
def test_bad_options_one_line_and_exit_2(argv, match, capsys, tmp_path):
    code = cli.main(argv + ["--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("keras-attn-search: error: ")
    assert match in err
    assert "Traceback" not in err


def test_missing_data_files_say_how_to_get_them(capsys, tmp_path):
    code = cli.main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "dataset-fashion-mnist" in err and "Traceback" not in err


def test_unknown_tfds_dataset(capsys, tmp_path):
    code = cli.main(["--dataset", "no_such_dataset_xyz", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "no_such_dataset_xyz" in err and "Traceback" not in err


def test_out_from_a_different_search_is_refused(capsys, tmp_path, tiny_data):
    out = tmp_path / "out"
    out.mkdir()
    ident = cli.parse_args(tiny_args(tiny_data, out)).identity()
    RunDir(out).write_config({**ident, "epochs": 7}, {}, [])
    code = cli.main(tiny_args(tiny_data, out))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "holds a different search (epochs: 7 -> 1: it measures something else)" in err
    assert "--overwrite" in err


def test_out_from_the_previous_version_is_refused_and_kept(capsys, tmp_path, tiny_data):
    # Before the run store: a flat search_config.json and the runs in the trial directories.
    out = tmp_path / "out"
    trial = out / "tuner" / "trial_0"
    trial.mkdir(parents=True)
    (trial / "keras_attn_repeats.json").write_text('{"0": {"val_accuracy": 0.8}}')
    ident = cli.parse_args(tiny_args(tiny_data, out)).identity()
    (out / RunDir.config).write_text(json.dumps({**ident, "runs": []}))
    code = cli.main(tiny_args(tiny_data, out))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "made by an earlier keras-attn-search" in err and "--overwrite" in err
    assert (trial / "keras_attn_repeats.json").is_file()  # nothing deleted


def test_out_that_is_not_a_search_is_refused(capsys, tmp_path, tiny_data):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    code = cli.main(tiny_args(tiny_data, out))
    assert code == 2 and "is not a keras-attn search" in capsys.readouterr().err
    assert (out / "thesis.tex").exists()


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--dataset", "--data-dir", "--backbone", "--image-size", "--train-size",
                   "--attention", "--placement", "--tuner", "--max-trials", "--epochs",
                   "--batch-size", "--precision", "--strategy", "--seed", "--out", "--overwrite",
                   "--role", "--oracle", "--worker-id", "--repeats", "--learning-rate",
                   "--search-learning-rate", "--final-epochs", "--final-repeats",
                   "--validation-split", "--export", "--hyperparameters"):
        assert option in text


# ------------------------------------------------------------------------------- end to end


def test_end_to_end_outputs(tmp_path, tiny_data):
    out = tmp_path / "run"
    # ONNX needs the [export] extras; without them the rest runs and the test ends skipped.
    onnx = ["--export", "onnx"] if HAVE_ONNX else []
    result = run_cli(tiny_args(tiny_data, out, *onnx, "--export", "litert"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    done = [l for l in lines if l.startswith("[trial ") and "COMPLETED" in l]
    assert len(done) == 2 and all("mean val_accuracy=" in l for l in done)
    assert "attention=none" in done[0]  # the baseline first
    seeds = [l for l in lines if l.startswith("[trial ") and " seed " in l]
    assert [l.split(":")[0] for l in seeds] == ["[trial 0] seed 0", "[trial 0] seed 1",
                                                "[trial 1] seed 0", "[trial 1] seed 1"]

    plots = ("val_accuracy_by_configuration.png", "delta_vs_baseline.png",
             "grad_cam_best_vs_baseline.png")
    for name in ("leaderboard.csv", "leaderboard.md", "best_model.keras", "summary.json",
                 "baseline_model.keras", "best_search_model.keras", "export/best.tflite",
                 *(["export/best.onnx"] if HAVE_ONNX else []),
                 "final.json", "search_config.json", *plots):
        assert (out / name).is_file(), name
    for png in plots:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "tuner").is_dir()
    assert any(f.startswith("events") for _, _, fs in os.walk(out / "logs") for f in fs)

    rows = read_leaderboard(str(out))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"COMPLETED"}
    assert {r["repeats"] for r in rows} == {"2"}
    for r in rows:
        runs = json.loads(r["runs"])
        assert sorted(runs) == ["0", "1"]
        assert float(r["val_accuracy_mean"]) == pytest.approx(sum(runs.values()) / 2, abs=1e-4)
        # ddof=1 over two runs: |a - b| / sqrt(2)
        assert float(r["val_accuracy_std"]) == pytest.approx(
            abs(runs["0"] - runs["1"]) / 2 ** 0.5, abs=1e-4)
    base = next(r for r in rows if r["attention"] == "none")
    other = next(r for r in rows if r["attention"] != "none")
    assert base["verdict"] == "baseline" and float(base["delta_vs_baseline"]) == 0.0
    deltas = [json.loads(other["runs"])[s] - json.loads(base["runs"])[s] for s in ("0", "1")]
    assert float(other["delta_vs_baseline"]) == pytest.approx(sum(deltas) / 2, abs=1e-4)
    # Two configurations x two seeds: one residual df; the simultaneous interval of a single
    # comparison is the paired one at the first look's level, 1 - 0.04 (search.looks).
    from scipy import stats as sps

    delta = float(other["delta_vs_baseline"])
    for key in ("sim_ci95_low", "paired_ci95_low"):
        assert float(other[key]) <= delta
    assert (delta - float(other["sim_ci95_low"])) == pytest.approx(
        (delta - float(other["paired_ci95_low"])) * sps.t.ppf(0.98, 1) / sps.t.ppf(0.975, 1),
        rel=0.02, abs=3e-4)
    assert other["wins"] in ("0/2", "1/2", "2/2") and 0 <= float(other["p_adjusted"]) <= 1
    # Costs, measured once per configuration: FLOPs from the profiler, step ratios to the
    # baseline's (1 for the baseline itself), and each configuration's place on the front.
    assert float(base["train_step"]) == 1.0 and int(base["flops"]) > 0
    assert int(other["flops_added"]) == int(other["flops"]) - int(base["flops"])
    assert {other["pareto_train_step"], base["pareto_params_added"]} <= {"yes", "no"}
    assert (out / "costs.json").is_file() and (out / "pareto_train_step.png").is_file()
    md = (out / "leaderboard.md").read_text()
    assert md.count("\n") == 6 and "| rank |" in md and "simultaneous 95% CI" in md
    assert "1 residual df" in md and "minimum detectable effect" in md

    summary = json.loads((out / "summary.json").read_text())
    for key in ("best", "baseline", "analysis", "test", "best_model", "test_accuracy",
                "baseline_test_accuracy", "test_delta_vs_baseline", "how", "timings_seconds",
                "versions", "config", "overhead_seconds_per_run"):
        assert key in summary, key
    assert summary["best"]["attention"] in ("simam", "sa")
    assert summary["baseline"]["val_accuracy_runs"].keys() == {"0", "1"}
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    # The test split answers over the same seeds as the validation split, paired.
    test = summary["test"]
    assert test["best"]["runs"].keys() == test["baseline"]["runs"].keys() == {"0", "1"}
    assert summary["test_delta_vs_baseline"] == pytest.approx(
        test["best"]["test_accuracy"] - summary["baseline_test_accuracy"])
    assert test["paired_ci95_low"] <= test["delta_vs_baseline"] <= test["paired_ci95_high"]
    assert summary["analysis"]["residual_df"] == 1
    assert set(summary["costs"]["configurations"]) == {r["config"] for r in rows}
    assert "round-robin" in summary["costs"]["how"]
    assert "full training split" in summary["best_model"]["how"]
    assert summary["config"]["repeats"] == 2
    assert "what this budget could find" in result.stdout and "[plan]" in result.stdout

    import keras

    import keras_attn  # noqa: F401

    model = keras.models.load_model(out / "best_model.keras", safe_mode=True)
    assert model.output_shape == (None, 10) and model.input_shape == (None, 28, 28, 1)
    assert model.count_params() == summary["best_model"]["params"]

    # The exported best model loads and computes what best_model.keras computes.
    import numpy as np

    from test_export import run_litert

    assert sorted(summary["files"]["exports"]) == (
        ["export/best.onnx"] if HAVE_ONNX else []) + ["export/best.tflite"]
    x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype("float32")
    expected = np.asarray(model(x, training=False))
    if HAVE_ONNX:
        import onnxruntime

        assert str(out / "export" / "best.onnx") in result.stdout
        session = onnxruntime.InferenceSession(str(out / "export" / "best.onnx"))
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        assert np.abs(got - expected).max() <= 1e-4
    assert np.abs(run_litert(str(out / "export" / "best.tflite"), x) - expected).max() <= 1e-4

    # Re-running the finished search changes nothing and retrains nothing.
    again = run_cli(tiny_args(tiny_data, out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[trial " not in again.stdout and "[final]" not in again.stdout, again.stdout
    assert json.loads((out / "summary.json").read_text())["test_accuracy"] == summary["test_accuracy"]
    if not HAVE_ONNX:
        pytest.skip("the ONNX export was not checked: tf2onnx, onnx or onnxruntime is not "
                    "installed (pip install keras-attn[export]); everything else passed")


def test_kill_9_mid_trial_then_rerun_keeps_the_finished_repeats(tmp_path, tiny_data):
    out = tmp_path / "run"
    args = tiny_args(tiny_data, out, trials=3)
    log = tmp_path / "first.log"
    proc = spawn_cli(args, log)
    try:
        # Killed as soon as trial 1 has one finished repeat on disk: the state the rerun sees
        # is that file, not a line of the log (printed after it); the second repeat, a whole
        # training run, is the margin.
        deadline = time.time() + 300
        while time.time() < deadline and not finished_repeats(out, 1):
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
    finally:
        kill_group(proc)
    kept = finished_repeats(out, 1)
    assert sorted(kept) == ["0"], (kept, log.read_text()[-2000:])  # one repeat done, not two
    first = log.read_text()
    assert "[trial 1] COMPLETED" not in first and "[trial 1] seed 1:" not in first, first[-2000:]

    result = run_cli(args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[trial 0]" not in result.stdout  # finished: not run again
    assert "[trial 1] seed 0:" not in result.stdout  # its finished repeat is kept ...
    assert "[trial 1] seed 1:" in result.stdout  # ... and only the other one runs
    rows = read_leaderboard(str(out))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"COMPLETED"}
    trial1 = next(r for r in rows if r["trial"] == "1")
    assert json.loads(trial1["runs"])["0"] == pytest.approx(kept["0"]["val_accuracy"], abs=1e-4)
    assert (out / "summary.json").is_file()


def _seed_lines(stdout):
    return [l.split(":")[0] for l in stdout.splitlines() if l.startswith("[trial ") and " seed " in l]


def test_a_search_grows_without_training_anything_twice(tmp_path, tiny_data):
    out = tmp_path / "run"

    def args(*extra, repeats="1", attention="none,simam"):
        a = tiny_args(tiny_data, out, "--final-epochs", "0", "--cost-steps", "0", *extra)
        a[a.index("--repeats") + 1] = repeats
        a[a.index("--attention") + 1] = attention
        a.remove("--max-trials")
        a.remove("2")
        return a

    first = run_cli(args())
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert _seed_lines(first.stdout) == ["[trial 0] seed 0", "[trial 1] seed 0"]
    # One more seed and a second stage: seed 1 only in 'which'; in 'where' the baseline's runs
    # are reused, whatever it draws for SimAM is trained with both seeds.
    grown = run_cli(args("--stages", "which,where", "--where-trials", "2", repeats="2"))
    assert grown.returncode == 0, grown.stdout[-3000:] + grown.stderr[-3000:]
    lines = _seed_lines(grown.stdout)
    assert lines[:2] == ["[trial 0] seed 1", "[trial 1] seed 1"], grown.stdout[-3000:]
    assert "[trial where-0] none (baseline): 2 of 2 run(s) in the store, reused; 0 to train" \
        in grown.stdout
    assert not [l for l in lines if l.startswith("[trial where-0]")]
    assert "stage 'where'" in grown.stdout and "simam ranked highest" in grown.stdout
    rows = read_leaderboard(str(out))
    stages = {r["stage"] for r in rows}  # the baseline, asked by both: "which+where"
    assert "which+where" in stages and "where" in stages, stages
    assert {r["repeats"] for r in rows} == {"2"}
    # Another attention in the first stage: SA's runs only.
    more = run_cli(args("--stages", "which", repeats="2", attention="none,simam,sa"))
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    assert [l.split("]")[1] for l in _seed_lines(more.stdout)] == [" seed 0", " seed 1"]
    assert "sa/block groups=64: 0 of 2 run(s) in the store, reused; 2 to train" in more.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_chief(make_args, tmp_path, attempts=3, wait=120):
    """Start a chief on a free port; another process may take the port between the probe and the
    chief's bind, so a chief that dies before it listens is retried on a new port. Bounded."""
    for attempt in range(attempts):
        port = _free_port()
        log = tmp_path / f"chief{attempt}.log"
        proc = spawn_cli(make_args(port) + ["--role", "chief"], log)
        deadline = time.time() + wait
        while time.time() < deadline and proc.poll() is None and not _listening(port):
            time.sleep(0.2)
        if proc.poll() is None and _listening(port):
            return proc, port, log
        kill_group(proc)
    raise AssertionError(f"no chief listened in {attempts} attempts: {log.read_text()[-2000:]}")


def test_chief_and_two_workers_complete_a_search(tmp_path, tiny_data):
    out = tmp_path / "dist"

    def make_args(port):
        return tiny_args(tiny_data, out, "--oracle", f"127.0.0.1:{port}", trials=3)

    procs = []
    try:
        chief, port, chief_log = start_chief(make_args, tmp_path)
        procs.append(chief)
        logs = [chief_log]
        for i in range(2):
            logs.append(tmp_path / f"worker{i}.log")
            procs.append(spawn_cli(make_args(port) + ["--role", "worker", "--worker-id", str(i)],
                                   logs[-1]))
        deadline = time.time() + 420
        while time.time() < deadline and any(p.poll() is None for p in procs):
            time.sleep(1)
        for p, log in zip(procs, logs):
            assert p.poll() == 0, log.read_text()[-3000:]
    finally:
        for p in procs:
            kill_group(p)
    rows = read_leaderboard(str(out))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"COMPLETED"}
    assert {r["tuner_id"] for r in rows} <= {"worker-0", "worker-1"}
    assert (out / "summary.json").is_file() and (out / "best_model.keras").is_file()


def test_worker_killed_mid_trial_its_trial_is_run_by_another(tmp_path, tiny_data):
    out = tmp_path / "dist"

    def make_args(port):
        # A live worker beats the heartbeat every 2 s while it trains and before each repeat's
        # build (search/tuning.py); 30 s leaves a loaded 2-core machine a wide margin.
        return tiny_args(tiny_data, out, "--oracle", f"127.0.0.1:{port}", "--worker-timeout",
                         "30", trials=3)

    procs = []
    try:
        chief, port, chief_log = start_chief(make_args, tmp_path)
        procs.append(chief)
        logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
        workers = [spawn_cli(make_args(port) + ["--role", "worker", "--worker-id", str(i)], log)
                   for i, log in enumerate(logs)]
        procs += workers
        # Kill worker 0 with SIGKILL right after the first repeat of one of its trials (its
        # log names the trial; the trial's repeats file, written before that line, must then
        # hold exactly that one repeat).
        deadline = time.time() + 300
        while time.time() < deadline and " seed 0:" not in logs[0].read_text():
            assert workers[0].poll() is None, logs[0].read_text()[-3000:]
            time.sleep(0.05)
        kill_group(workers[0])
        killed = logs[0].read_text()
        line = [l for l in killed.splitlines() if " seed 0:" in l][0]
        trial_id = line.split("]")[0].split()[-1]
        assert f"[trial {trial_id}] COMPLETED" not in killed  # killed mid-trial
        kept = finished_repeats(out, trial_id)
        assert sorted(kept) == ["0"], kept
        deadline = time.time() + 420
        while time.time() < deadline and (chief.poll() is None or workers[1].poll() is None):
            time.sleep(1)
        assert workers[1].poll() == 0, logs[1].read_text()[-3000:]
        assert chief.poll() == 0, chief_log.read_text()[-3000:]
    finally:
        for p in procs:
            kill_group(p)
    assert f"[chief] trial {trial_id}: no heartbeat" in chief_log.read_text()
    rows = read_leaderboard(str(out))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"COMPLETED"}
    redone = next(r for r in rows if r["trial"] == trial_id)
    # Seed 0 by the worker that was killed (kept), seed 1 by the other.
    assert redone["tuner_id"] == "worker-0+worker-1" and redone["repeats"] == "2"
    # The repeat worker 0 finished was kept, not run again.
    assert f"[trial {trial_id}] seed 0:" not in logs[1].read_text()
    assert json.loads(redone["runs"])["0"] == pytest.approx(kept["0"]["val_accuracy"], abs=1e-4)


@pytest.mark.slow
def test_worker_whose_chief_is_killed_stops_in_one_line_keeping_its_runs(tmp_path, tiny_data):
    """Issue 29, case 8, replayed: the chief killed while its one worker trains; the worker
    stops within --worker-timeout in one line (it hung for >= 600 s), its finished runs kept.
    (tests/test_worker_watchdog.py covers the same in seconds with a fake chief and search.)"""
    out = tmp_path / "dist"

    def make_args(port):
        return tiny_args(tiny_data, out, "--oracle", f"127.0.0.1:{port}", "--worker-timeout",
                         "10", trials=3)

    procs = []
    try:
        chief, port, chief_log = start_chief(make_args, tmp_path)
        procs.append(chief)
        log = tmp_path / "worker.log"
        worker = spawn_cli(make_args(port) + ["--role", "worker", "--worker-id", "0"], log)
        procs.append(worker)
        deadline = time.time() + 300
        while time.time() < deadline and " seed 0:" not in log.read_text():
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        kill_group(chief)
        killed = time.time()
        worker.wait(timeout=120)
        waited = time.time() - killed
    finally:
        for p in procs:
            kill_group(p)
    text = log.read_text()
    assert worker.returncode == 2, text[-3000:]
    assert 8 <= waited < 120, waited  # counted from its last poll (every 2 s) that heard it
    assert text.splitlines()[-1] == (
        f"keras-attn-search: error: the chief at 127.0.0.1:{port} has not listened for 10s "
        f"(--worker-timeout): this worker stops; the runs it finished are kept in {out} (start "
        "the chief again with the same options, then the workers, to resume)")
    trial_id = [l for l in text.splitlines() if " seed 0:" in l][0].split("]")[0].split()[-1]
    assert "0" in finished_repeats(out, trial_id)


class _Started:
    """What pipeline.start would have made, as far as the claim reads it."""

    environment = {"precision": "float32", "replicas": 1,
                   "versions": {"tensorflow": "x", "keras": "y", "backend": "tensorflow"}}


def _claim(config):
    """Claim --out as a run that started would (its record written), then let it go."""
    claim = pipeline.claim_out_dir(config, RunDir(config.session.out), role_of(config))
    claim.confirm(config, _Started())
    if claim.lock is not None:
        claim.lock.release()
    return claim


def test_worker_without_chief_or_with_other_options_is_refused(tmp_path, tiny_data, capsys):
    out = tmp_path / "dist"
    lonely = tiny_args(tiny_data, out, "--oracle", f"127.0.0.1:{_free_port()}", "--role",
                       "worker", "--worker-timeout", "1")
    assert cli.main(lonely) == 2
    assert "no chief is listening at 127.0.0.1:" in capsys.readouterr().err
    with pytest.raises(cli.CLIError, match="holds no search started by a chief"):
        _claim(cli.parse_args(lonely))
    chief = tiny_args(tiny_data, out, "--oracle", "127.0.0.1:9", "--role", "chief")
    _claim(cli.parse_args(chief))
    other = tiny_args(tiny_data, out, "--oracle", "127.0.0.1:9", "--role", "worker")
    other[other.index("--epochs") + 1] = "3"
    with pytest.raises(cli.CLIError, match=r"holds a different search \(epochs: 1 -> 3: .*; "
                       "give the worker the chief's options"):
        _claim(cli.parse_args(other))
    # The plan (repeats, attentions, stages) is the chief's: a worker follows the stages the
    # chief serves, whatever its own --repeats say.
    plan = tiny_args(tiny_data, out, "--oracle", "127.0.0.1:9", "--role", "worker")
    plan[plan.index("--repeats") + 1] = "3"
    _claim(cli.parse_args(plan))


@pytest.mark.parametrize("option,value", [("--data-dir", "/elsewhere"),
                                          ("--precision", "mixed_bfloat16"),
                                          ("--epochs", "3")])
def test_resume_with_an_option_that_changes_what_is_measured_is_refused(tmp_path, tiny_data,
                                                                          option, value):
    out = tmp_path / "out"
    _claim(cli.parse_args(tiny_args(tiny_data, out)))
    args = tiny_args(tiny_data, out)
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    with pytest.raises(cli.CLIError, match=f"holds a different search \\({option[2:].replace('-', '_')}"):
        _claim(cli.parse_args(args))


def test_resume_may_change_how_it_runs_and_each_run_is_recorded(tmp_path, tiny_data):
    out = tmp_path / "out"
    _claim(cli.parse_args(tiny_args(tiny_data, out, trials=2)))
    _claim(cli.parse_args(
        tiny_args(tiny_data, out, "--final-epochs", "3", "--strategy", "one_device", trials=5)))
    runs = json.loads((out / RunDir.config).read_text())["runs"]
    assert [(r["max_trials"], r["final_epochs"], r["strategy"]) for r in runs] == [
        (2, 1, "auto"), (5, 3, "one_device")]


def test_space_file(tmp_path, capsys):
    good = tmp_path / "space.json"
    good.write_text(json.dumps({"attention": ["sa"], "placement": "block",
                                "use_norm": [True, False], "shuffle": False}))
    config = cli.parse_args(["--space", str(good), "--out", str(tmp_path / "o")])
    # --hyperparameters paper (the default) fixes what the file leaves open at the paper value
    # (SA-Net's G = 64); --hyperparameters search leaves it to the tuner.
    assert config.space.space_values == {"attention": ["none", "sa"], "placement": "block",
                                 "use_norm": [True, False], "shuffle": False, "groups": 64}
    searched = cli.parse_args(["--space", str(good), "--hyperparameters", "search",
                               "--out", str(tmp_path / "o")])
    assert "groups" not in searched.space.space_values
    assert config.run.max_trials == 2  # the baseline and sa/block: every configuration once
    # Another space is another plan of the same search: what is measured is the same, the runs
    # the two share are one run in the store.
    assert config.identity_differences(searched.identity()) == {}
    assert config.plan_record()["space_values"] != searched.plan_record()["space_values"]

    cases = [
        ("missing.json", None, "--space .*missing.json: cannot read it"),
        ("bad.json", "{not json", "not valid JSON"),
        ("list.json", "[1, 2]", "expected a JSON object, got list"),
        ("unknown.json", json.dumps({"attention": ["sa"], "fusion": "multiply"}),
         "--space: Unknown search-space key 'fusion': no attention in the choices \\(none, sa\\)"),
    ]
    for name, text, match in cases:
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        code = cli.main(["--space", str(path), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert __import__("re").search(match, err), err
    both = ["--space", str(good), "--attention", "sb", "--out", str(tmp_path / "o")]
    assert cli.main(both) == 2
    assert "given both by --attention and in --space" in capsys.readouterr().err


def test_a_huge_space_is_refused_at_once(tmp_path, tiny_data, capsys):
    """Issue 29, case 9: a --space listing 10^6 values gave no trial and no message in 5 minutes
    (every value's layers constructed, duplicates dropped in O(n^2)), and a 24 MB
    search_config.json. Refused while the options are read, --max-trials given or not."""
    import time

    path = tmp_path / "huge.json"
    path.write_text(json.dumps({"attention": ["simam"], "placement": "block",
                                "e_lambda": [1e-9 * (i + 1) for i in range(10**6)]}))
    def without(args, *options):  # each option and its value
        drop = {i + k for i, a in enumerate(args) if a in options for k in (0, 1)}
        return [a for i, a in enumerate(args) if i not in drop]

    args = without(tiny_args(tiny_data, tmp_path / "o", "--space", str(path)), "--attention",
                   "--placement")
    for options in (args, without(args, "--max-trials")):
        start = time.perf_counter()
        assert cli.main(options) == 2
        err = capsys.readouterr().err
        assert time.perf_counter() - start < 30
        assert err.count("\n") == 1 and "--space: space['e_lambda'] lists 1,000,000 values; at " \
            "most 1,000 per key (a search trains each configuration --repeats times" in err, err
    assert not (tmp_path / "o").exists()


def test_final_stage_without_and_then_with_retraining(tmp_path, tiny_data):
    out = tmp_path / "final"
    args = tiny_args(tiny_data, out)
    args[args.index("--final-epochs") + 1] = "0"
    result = run_cli(args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    kept, test = summary["best_model"], summary["test"]
    # --final-epochs 0: the kept model is the best configuration's first search run, whose test
    # accuracy is that run's in the paired test comparison.
    assert "no retraining" in kept["how"] and kept["runs"] == {"0": test["best"]["runs"]["0"]}
    assert (out / "best_model.keras").is_file()

    # The same search with a retraining over two seeds: the search and its test evaluations are
    # reused, the kept model is trained twice and its mean and spread reported.
    args[args.index("--final-epochs") + 1] = "1"
    again = run_cli(args + ["--final-repeats", "2"])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "[trial " not in again.stdout and "search run seed" not in again.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test"]["best"]["runs"] == test["best"]["runs"]
    kept = summary["best_model"]
    assert sorted(kept["runs"]) == ["0", "1"] and kept["test_accuracy_std"] is not None
    assert "full training split" in kept["how"] and set(kept["train_loss"]) == {"0", "1"}


def test_preset_runs_a_paper_table_as_a_paired_search(tmp_path, tiny_data, capsys):
    assert cli.main(["--list-presets"]) == 0
    listed = capsys.readouterr().out
    assert "sb-table9-x035/sigmoid" in listed and "simam-table2-resnet20-cifar10/simam" in listed
    assert cli.main(["--preset", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "Unknown preset 'nope'. Valid tables: " in capsys.readouterr().err
    assert cli.main(["--preset", "sb-table9-x035", "--attention", "sa",
                     "--out", str(tmp_path / "x")]) == 2
    assert "drop --attention" in capsys.readouterr().err
    # A table without a static row still gets its baseline, the same network without attention.
    gates = cli.parse_args(["--preset", "sb-table9-x035", "--out", str(tmp_path / "g")])
    assert gates.space.configurations[0] == ("sb-table9-x035/no-attention", {
        "backbone": "mobilenetv2_cifar", "alpha": 0.35, "attention": None})
    assert gates.run.max_trials == len(gates.space.configurations) == 6

    out = tmp_path / "preset"
    args = [a for a in tiny_args(tiny_data, out) if a not in ("none,simam,sa", "block")]
    args.remove("--attention")
    args.remove("--placement")
    # One row of a table brings the table's baseline along: a two-configuration search.
    result = run_cli(args + ["--preset", "simam-table2-resnet20-cifar10/simam"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = read_leaderboard(str(out))
    assert sorted(json.loads(r["hyperparameters"])["configuration"] for r in rows) == [
        "simam-table2-resnet20-cifar10/baseline", "simam-table2-resnet20-cifar10/simam"]
    base = next(r for r in rows if r["attention"] == "none")
    simam = next(r for r in rows if r["attention"] == "simam")
    assert base["verdict"] == "baseline" and simam["placement"] == "paper"
    assert simam["repeats"] == "2" and simam["sim_ci95_low"] != ""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["preset"] == "simam-table2-resnet20-cifar10/simam"
    assert summary["best"]["attention"] == "simam"


def test_one_spelling_per_backbone_and_an_unknown_one_lists_the_valid(tmp_path, capsys):
    out = str(tmp_path / "o")
    config = cli.parse_args(["--backbone", "MobileNetV2-CIFAR", "--out", out])
    assert config.model.backbone == "mobilenetv2_cifar" and config.model.width == 0.35
    assert cli.main(["--backbone", "resnet21", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "unknown --backbone 'resnet21'" in err and "resnet20" in err and "mobilenetv2_cifar" in err


def test_help_loads_no_tensorflow_and_takes_its_choices_from_their_owners():
    code = ("import sys; from search import cli; p = cli.build_parser(); "
            "p.format_help(); assert 'tensorflow' not in sys.modules, 'tensorflow loaded'; "
            "from search import training, tuning; "
            "chosen = {a.dest: tuple(a.choices) for a in p._actions if a.choices}; "
            "assert chosen['precision'] == training.PRECISIONS, chosen; "
            "assert chosen['strategy'] == training.SUPPORTED_STRATEGIES, chosen; "
            "assert chosen['optimizer'] == training.OPTIMIZERS, chosen; "
            "assert chosen['tuner'] == tuple(tuning.TUNER_CLASSES), chosen")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_unknown_export_format_names_the_choices(capsys, tmp_path):
    assert cli.main(["--export", "pb", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--export" in err and all(f in err for f in ("saved_model", "litert", "onnx"))


def test_export_formats_are_keras_attn_exports(tmp_path, capsys, monkeypatch):
    # The CLI has no copy of the list: a format keras_attn.export adds is taken at once.
    from keras_attn import export

    monkeypatch.setitem(export.FORMATS, "newformat", "newformat")
    config = cli.parse_args(["--export", "newformat", "--out", str(tmp_path / "o")])
    assert config.run.export == ("newformat",)


def test_export_onnx_without_the_extras_is_refused_before_the_search(tmp_path, tiny_data,
                                                                       capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):  # the extras not installed, whether or not they are
        if name in ("tf2onnx", "onnx"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    out = tmp_path / "out"
    assert cli.main(tiny_args(tiny_data, out, "--export", "onnx")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("keras-attn-search: error: --export onnx: ")
    assert "tf2onnx and onnx" in err and "pip install keras-attn[export]" in err
    assert not out.exists()  # refused before anything was written or trained


# ------------------------------------------------------------------------------- the loaded data


def test_empty_splits_are_refused_before_training(tmp_path, tiny_data, capsys):
    """Issue 29, case 10: an empty test split ran the whole search, then failed with an
    IndexError. Every split the search needs is checked once the data are loaded."""
    config = cli.parse_args(tiny_args(tiny_data, tmp_path / "o"))
    pipeline.check_splits(config, {"train": 200, "val": 50, "test": 60})  # fine
    with pytest.raises(cli.CLIError) as info:
        pipeline.check_splits(config, {"train": 200, "val": 0, "test": 0})
    message = str(info.value)
    assert message.startswith("empty val split (--validation-split 50 gives none") \
        and " and test split (the fashion_mnist data in " in message and "\n" not in message
    # Through the command: data whose test files hold no image, refused before any trial.
    empty = tmp_path / "no_test"
    empty.mkdir()
    make_fake_mnist(str(empty), n_train=300)
    write_idx(str(empty / "t10k-images-idx3-ubyte.gz"), np.zeros((0, 28, 28), np.uint8))
    write_idx(str(empty / "t10k-labels-idx1-ubyte.gz"), np.zeros((0,), np.uint8))
    out = tmp_path / "out"
    # (Without --run-eagerly, which would stay set in this process for the tests after it.)
    assert cli.main([a for a in tiny_args(str(empty), out) if a != "--run-eagerly"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"empty test split (the fashion_mnist data in {empty} has " \
        "no test images" in err
    assert not (out / "tuner").exists()  # no trial started


def test_a_batch_larger_than_the_training_set_is_refused(tmp_path, tiny_data):
    """Issue 29, case 7b: --batch-size 4096 with 256 training images scaled the learning rate
    to 3.2 for a batch that never existed."""
    args = tiny_args(tiny_data, tmp_path / "o")
    args[args.index("--batch-size") + 1] = "4096"
    config = cli.parse_args(args)
    assert config.recipe.learning_rate == pytest.approx(3.2)  # 0.1 x 4096 / 128
    with pytest.raises(cli.CLIError, match=r"^--batch-size 4096 is larger than the 256 training "
                       r"images of a search run: every epoch would be one batch of 256, not "
                       r"4096 \(and the default learning rate scales with --batch-size\); give "
                       r"--batch-size 256 or less"):
        pipeline.check_splits(config, {"train": 256, "val": 50, "test": 60})
    pipeline.check_splits(config, {"train": 4096, "val": 50, "test": 60})  # a full batch: fine
