"""benchmarks/layer_overhead.py runs from a fresh checkout and prints what its README promises.

Speed is not asserted (timings are noisy): only that the script runs, prints the bare backbone,
the floor row and each attention with a ratio, the machine line and, with --profile, the op table.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

_ROOT = pathlib.Path(__file__).resolve().parent.parent
_SCRIPT = _ROOT / "benchmarks" / "layer_overhead.py"


def _run(*args, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, str(_SCRIPT), *args], capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=600,
    )


def test_prints_floor_ratios_and_profile(tmp_path):
    out = tmp_path / "overhead.md"
    result = _run(
        "--backbone", "resnet20", "--placement", "block", "--mode", "train",
        "--attention", "simam", "--image-size", "16", "--batch-size", "2",
        "--steps", "1", "--rounds", "2", "--profile", "3", "--output", str(out),
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    device = re.search(r"device: ([^;]+);", text)
    assert device, text
    if device.group(1).startswith("CPU"):  # the CPU line names the kernels TensorFlow used
        assert re.fullmatch(r"CPU, \d+ cores \(.+\), oneDNN kernels (on|off) "
                            r"\(TF_ENABLE_ONEDNN_OPTS=\w+\)", device.group(1)), device.group(1)
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| (bare backbone|one multiply \(floor\)|simam) \| [\d,]+ \| ([\d.]+) \| ([\d.]+) \|", line)
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    assert set(rows) == {"bare backbone", "one multiply (floor)", "simam"}, text
    assert rows["bare backbone"][1] == 1.0
    assert all(ms > 0 and ratio > 0 for ms, ratio in rows.values())
    # The profile: a table per model, its rows op types with a signed difference.
    assert "Profile of `simam` minus the bare backbone" in text
    assert re.search(r"^\| \w+ \| [\d.]+ \| [\d.]+ \| [+-][\d.]+ \|$", text, re.M), text
    # --output holds the same markdown.
    assert "| one multiply (floor) |" in out.read_text()


def test_unknown_attention_names_the_valid_ones(tmp_path):
    result = _run("--attention", "nope", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "unknown attention 'nope'" in result.stderr and "simam" in result.stderr


def test_error_rates_prints_a_seeded_markdown_table(tmp_path):
    script = _ROOT / "benchmarks" / "error_rates.py"
    env = dict(os.environ, PYTHONPATH=str(_ROOT))
    args = [sys.executable, str(script), "--tables", "30", "--case", "baseline 3x noisier",
            "--case", "cut off after one seed: chosen as best"]
    runs = [subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=300) for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr[-2000:]
    rows = [line for line in runs[0].stdout.splitlines() if line.startswith("| baseline 3x")]
    assert len(rows) == 1 and re.fullmatch(
        r"\| baseline 3x noisier \| family-wise error \| [\d.]+ \| [\d.]+ \| <= 0.05 \| (yes|NO) \|",
        rows[0]), rows
    # Seeded: the same rates again (the timing line aside).
    assert [l for l in runs[0].stdout.splitlines() if l.startswith("|")] == \
        [l for l in runs[1].stdout.splitlines() if l.startswith("|")]
    bad = subprocess.run([sys.executable, str(script), "--case", "nope"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr


def _load(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, _ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_run_breakdown_splits_a_made_up_event_log():
    # (event, wall, main-thread CPU, process CPU): two steps, one validation, and a 2 s gap at
    # the epoch's start during which the main thread used 0.1 s (idle) then one of 0.5 s (busy).
    rb = _load("run_breakdown")
    log = [("train_begin", 0.0, 0.0, 0.0), ("epoch_begin", 0.1, 0.05, 0.1),
           ("train_batch_begin", 2.1, 0.15, 2.0), ("train_batch_end", 5.1, 1.0, 8.0),
           ("train_batch_begin", 5.2, 1.05, 8.1), ("train_batch_end", 5.7, 1.1, 9.0),
           ("test_begin", 6.2, 1.6, 9.5), ("test_batch_begin", 6.3, 1.6, 9.5),
           ("test_batch_end", 7.0, 1.7, 10.0), ("test_end", 7.2, 1.7, 10.1),
           ("epoch_end", 7.3, 1.75, 10.2), ("train_end", 7.4, 1.8, 10.3)]
    s = rb.split_of(log, build=1.0, fit_wall=7.9, saving=0.25, wall=9.5)
    assert (s.first_step, s.steps, s.steps_count) == pytest.approx((3.0, 0.5, 1))
    assert s.validation == pytest.approx(1.0) and s.between_steps == pytest.approx(0.1)
    # Stalls: 0.1 + 2.0 (idle) + 0.5 (busy: 0.5 s of CPU) + 0.1 + 0.1 inside fit, 0.5 outside.
    assert s.stalls == pytest.approx(3.3) and s.stalls_idle == pytest.approx(2.1)
    assert s.other == pytest.approx(9.5 - (1.0 + 3.0 + 0.5 + 1.0 + 0.1 + 3.3 + 0.25))
    assert max(s.gaps)[1:] == ("epoch_begin", "train_batch_begin", True)


def test_gpu_check_report_says_when_it_was_not_a_gpu():
    gc = _load("gpu_check")
    rows = gc.parse_tables("| model | params added | ms/step | ratio to bare |\n"
                           "| bare backbone | 0 | 10.0 | 1.000 | 0.000 |\n"
                           "| sa | 54 | 12.5 | 1.250 | 0.010 |\n")
    assert rows == {"bare backbone": (10.0, 1.0), "sa": (12.5, 1.25)}
    step = {"ok": True, "summary": "1 passed", "seconds": 3.0}
    timings = {"resnet20 float32": {"ok": True, "summary": "ok", "rows": rows},
               "resnet20 mixed_float16": {"ok": False, "summary": "not run: out of time",
                                          "rows": {}}}
    text = gc.report(None, "TensorFlow x", step, step, timings, 12.0)
    assert "not measured on a GPU" in text.splitlines()[0]
    assert "| sa | 12.5 (1.250) |  |" in text
    assert "not measured on a GPU" not in gc.report("NVIDIA H100", "v", step, step, timings, 1.0)
