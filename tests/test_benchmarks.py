"""benchmarks/layer_overhead.py runs from a fresh checkout and prints what its README promises.

Speed is not asserted (timings are noisy): only that the script runs, prints the bare backbone,
the floor row and each attention with a ratio, the machine line and, with --profile, the op table.
"""

import os
import pathlib
import re
import subprocess
import sys

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
