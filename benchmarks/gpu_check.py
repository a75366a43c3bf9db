"""The GPU check of issue 27, in one script: run it whenever a machine with an NVIDIA GPU is lent.

    python benchmarks/gpu_check.py                 # on the GPU machine: about 7 minutes
    python benchmarks/gpu_check.py --budget 300    # a shorter check (fewer timings)

In order, each step in its own subprocess with a time limit taken from ``--budget`` (seconds,
default 420: under the 8 minutes a lent machine's session allows, with its start-up), so that a
step that fails or runs out of time is reported and the others still run:

1. **tests**: the suite's tests that touch precision and distribution (``-k`` on mixed
   precision, policies, float16, strategies, MirroredStrategy; ``tests/test_layer_reference.py``
   and ``tests/test_training.py`` whole), on the GPU (``tests/conftest.py`` turns TF32 off);
2. **search**: ``python -m search --strategy mirrored --precision mixed_float16`` of two tiny
   configurations (the baseline and SimAM, one seed, one epoch of 1,024 images, batch 64), end to
   end, and
   a check that every loss and accuracy it wrote is finite;
3. **timings**: ``benchmarks/layer_overhead.py`` train steps, float32 against mixed_float16, of the
   search's default network (ResNet-20, 28x28x1, batch 64, paper placement, every attention),
   then ResNet-50 (224x224x3, batch 32, block placement, every attention), then both with
   ``--jit-compile`` (XLA) for the search's four attentions; as many as the budget allows, in
   that order (each run prints its table as it goes, so a run cut short still reports the
   models it timed).

It writes ``benchmarks/gpu_check_<date>.md`` (``--output``): the device, the versions, each step's
outcome, and one table per backbone of the median train step (ms) and its ratio to the bare
backbone for each model, precision and compilation.

On a machine without a GPU it runs the same steps at toy size (the tests' float32 reference
cases, a search of 128 random images in Fashion-MNIST's files, timings at 16x16, batch 4, 2
steps) and says, in its output and
in the file's title, **not measured on a GPU**: the toy run checks the script, not the numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERHEAD = os.path.join(ROOT, "benchmarks", "layer_overhead.py")
SEARCH_ATTENTIONS = "sa,simam,sb,dca_se"
TEST_FILES = [
    "tests/test_layer_reference.py", "tests/test_training.py", "tests/test_distributed.py",
    "tests/test_simam.py", "tests/test_shuffle_attention.py", "tests/test_squeeze_excite.py",
    "tests/test_shift_and_balance.py", "tests/test_deep_connected.py", "tests/test_cbam.py",
    "tests/test_eca.py", "tests/test_layers_common.py", "tests/test_hypermodel.py",
]
TEST_FILTER = "mixed or precision or policy or float16 or strategy or mirrored or reference"


def _gpu():
    """The first GPU's name, or None (asked in a subprocess: this process stays TF-free)."""
    code = ("import tensorflow as tf; g = tf.config.list_physical_devices('GPU'); "
            "print(tf.config.experimental.get_device_details(g[0]).get('device_name', 'GPU') "
            "if g else '')")
    out = _run([sys.executable, "-c", code], 120)
    name = out["stdout"].strip().splitlines()[-1] if out["stdout"].strip() else ""
    return name or None


def _run(cmd, timeout, env=None):
    """Run ``cmd`` with a time limit; ``{"rc", "seconds", "stdout", "stderr", "timed_out"}``."""
    t0 = time.perf_counter()
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
                    PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
                    **(env or {}))
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True,
                              timeout=max(1, timeout))
        rc, out, err, timed_out = proc.returncode, proc.stdout, proc.stderr, False
    except subprocess.TimeoutExpired as exc:
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        rc, out, err, timed_out = None, text(exc.stdout), text(exc.stderr), True
    return {"rc": rc, "seconds": time.perf_counter() - t0, "stdout": out, "stderr": err,
            "timed_out": timed_out}


class Budget:
    def __init__(self, seconds):
        self.end = time.perf_counter() + seconds

    def left(self):
        return self.end - time.perf_counter()


def step_tests(gpu, budget, cap):
    if gpu:
        cmd = [sys.executable, "-m", "pytest", *TEST_FILES, "-q", "-x", "-k", TEST_FILTER,
               "-p", "no:cacheprovider"]
    else:  # toy: the float32 reference cases only
        cmd = [sys.executable, "-m", "pytest", "tests/test_layer_reference.py", "-q", "-x",
               "-k", "float32 and (simam_2d or sa_2d)", "-p", "no:cacheprovider"]
    out = _run(cmd, min(cap, budget.left()))
    last = (out["stdout"].strip().splitlines() or [""])[-1]
    ok = out["rc"] == 0
    return {"ok": ok, "summary": "timed out" if out["timed_out"] else last,
            "seconds": out["seconds"],
            "tail": "" if ok else (out["stdout"] + out["stderr"])[-3000:]}


def _toy_fashion_mnist(directory, n_train=320, n_test=64):
    """Four small IDX files in Fashion-MNIST's layout (random images and labels): on a CPU the
    search's test evaluations of the full 10,000 test images would outlast the toy check."""
    import gzip

    import numpy as np

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                            ("labels-idx1", (np.arange(n) % 10).astype(np.uint8))):
            header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
                int(d).to_bytes(4, "big") for d in array.shape)
            with gzip.open(os.path.join(directory, f"{split}-{kind}-ubyte.gz"), "wb") as f:
                f.write(header + array.tobytes())


def step_search(gpu, budget, cap):
    """A MirroredStrategy + mixed_float16 search of the baseline and SimAM, checked for NaN."""
    with tempfile.TemporaryDirectory() as tmp:
        if gpu:
            size = ["--train-size", "1024", "--validation-split", "512"]
        else:
            _toy_fashion_mnist(tmp)
            size = ["--train-size", "128", "--validation-split", "64", "--data-dir", tmp]
        cmd = [sys.executable, "-m", "search", "--strategy", "mirrored",
               "--precision", "mixed_float16", "--attention", "simam", "--max-trials", "2",
               "--repeats", "1", "--epochs", "1", "--final-epochs", "0", "--batch-size", "64",
               "--cost-steps", "0", "--quiet", "--out", os.path.join(tmp, "run"), *size]
        out = _run(cmd, min(cap, budget.left()))
        summary = os.path.join(tmp, "run", "summary.json")
        values = []
        for root, _, files in os.walk(os.path.join(tmp, "run")):
            for f in files:
                if f == "keras_attn_repeats.json":
                    with open(os.path.join(root, f)) as fh:
                        for record in json.load(fh).values():
                            values += [v for k, v in record.items() if
                                       ("loss" in k or "accuracy" in k) and
                                       isinstance(v, (int, float))]
        finite = bool(values) and all(math.isfinite(v) for v in values)
        ok = out["rc"] == 0 and os.path.exists(summary) and finite
        what = (f"{len(values)} losses and accuracies recorded, "
                f"{'all finite' if finite else 'NOT all finite (or none)'}")
        return {"ok": ok, "summary": "timed out" if out["timed_out"] else what,
                "seconds": out["seconds"],
                "tail": "" if ok else (out["stdout"] + out["stderr"])[-3000:]}


def timing_runs(gpu):
    """``(label, layer_overhead arguments)`` in priority order."""
    if not gpu:
        toy = ["--image-size", "16", "--batch-size", "4", "--steps", "1", "--rounds", "2"]
        return [(f"resnet20 {p}", ["--backbone", "resnet20", "--placement", "block",
                                   "--attention", "simam", "--precision", p, "--mode", "train",
                                   "--channels", "1", *toy])
                for p in ("float32", "mixed_float16")]
    runs = []
    nets = {"resnet20": ["--search-default", "--attention", "all", "--steps", "5",
                         "--rounds", "4"],
            "resnet50": ["--backbone", "resnet50", "--placement", "block", "--image-size", "224",
                         "--batch-size", "32", "--steps", "5", "--rounds", "3"]}
    for jit in (False, True):
        for net, args in nets.items():
            for precision in ("float32", "mixed_float16"):
                extra = ["--jit-compile", "--attention", SEARCH_ATTENTIONS] if jit else []
                label = f"{net} {precision}{' XLA' if jit else ''}"
                runs.append((label, [*args, "--mode", "train", "--precision", precision,
                                     *extra]))
    return runs


_ROW = re.compile(r"^\| (.+?) \| [\d,]+ \| ([\d.]+) \| ([\d.]+) \|")


def parse_tables(text):
    """``{model label: (ms/step, ratio)}`` from layer_overhead's markdown rows."""
    rows = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if m and m.group(1) != "model":
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return rows


def step_timings(gpu, budget, reserve):
    results = {}
    for label, args in timing_runs(gpu):
        left = budget.left() - reserve
        if left < 30:
            results[label] = {"ok": False, "summary": "not run: out of time", "rows": {}}
            continue
        out = _run([sys.executable, OVERHEAD, *args], left)
        rows = parse_tables(out["stdout"])
        status = ("timed out" if out["timed_out"] else
                  "ok" if out["rc"] == 0 else f"failed (rc {out['rc']})")
        results[label] = {"ok": out["rc"] == 0, "summary": f"{status}, {len(rows)} models, "
                          f"{out['seconds']:.0f}s", "rows": rows,
                          "tail": "" if out["rc"] == 0 else out["stderr"][-2000:]}
    return results


def report(gpu, versions, tests, search, timings, seconds):
    title = (f"GPU check, {datetime.date.today().isoformat()}: {gpu}" if gpu else
             f"GPU check, {datetime.date.today().isoformat()}: not measured on a GPU "
             f"(toy sizes on a CPU)")
    device = gpu or ("no GPU visible: CPU, toy sizes; the numbers below check the script, they "
                     "are not GPU measurements")
    lines = [f"# {title}", "",
             f"- command: `python benchmarks/gpu_check.py {' '.join(sys.argv[1:])}`",
             f"- device: {device}",
             f"- versions: {versions}", f"- wall time: {seconds:.0f} s", "",
             "| step | outcome | seconds |", "| --- | --- | ---: |",
             f"| tests (precision, strategy) | {'ok' if tests['ok'] else 'FAILED'}: "
             f"{tests['summary']} | {tests['seconds']:.0f} |",
             f"| search (MirroredStrategy, mixed_float16, 2 configurations) | "
             f"{'ok' if search['ok'] else 'FAILED'}: {search['summary']} | "
             f"{search['seconds']:.0f} |"]
    for label, r in timings.items():
        lines.append(f"| timing {label} | {r['summary']} | |")
    by_net = {}
    for label, r in timings.items():
        net, rest = label.split(" ", 1)
        by_net.setdefault(net, {})[rest] = r["rows"]
    for net, runs in by_net.items():
        models = []
        for rows in runs.values():
            models += [m for m in rows if m not in models]
        if not models:
            continue
        lines += ["", f"## {net}: train step, ms (ratio to the bare backbone)", "",
                  "| model | " + " | ".join(runs) + " |",
                  "| --- | " + " | ".join("---:" for _ in runs) + " |"]
        for m in models:
            cells = [f"{rows[m][0]:.1f} ({rows[m][1]:.3f})" if m in rows else "" for rows in
                     runs.values()]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for name, r in (("tests", tests), ("search", search),
                    *((f"timing {k}", v) for k, v in timings.items())):
        if r.get("tail"):
            lines += ["", f"### {name}: output tail", "", "```", r["tail"], "```"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget", type=float, default=420.0,
                   help="seconds for all steps together (default 420)")
    p.add_argument("--output", help="markdown file (default benchmarks/gpu_check_<date>.md)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    budget = Budget(args.budget)
    gpu = _gpu()
    print(f"device: {gpu or 'no GPU: toy sizes, not measured on a GPU'}", flush=True)
    versions = _run([sys.executable, "-c", "import tensorflow as tf, keras; "
                     "print(f'TensorFlow {tf.__version__}, Keras {keras.__version__}')"],
                    120)["stdout"].strip().splitlines()[-1:]
    tests = step_tests(gpu, budget, cap=0.3 * args.budget)
    print(f"tests: {tests['summary']}", flush=True)
    search = step_search(gpu, budget, cap=0.25 * args.budget)
    print(f"search: {search['summary']}", flush=True)
    timings = step_timings(gpu, budget, reserve=5)
    for label, r in timings.items():
        print(f"timing {label}: {r['summary']}", flush=True)
    text = report(gpu, versions[0] if versions else "?", tests, search, timings,
                  time.perf_counter() - t0)
    path = args.output or os.path.join(
        ROOT, "benchmarks", f"gpu_check_{datetime.date.today().isoformat()}.md")
    with open(path, "w") as f:
        f.write(text)
    print(text, flush=True)
    print(f"wrote {path}", flush=True)
    return 0 if tests["ok"] and search["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
