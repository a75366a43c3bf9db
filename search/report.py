"""The search report: leaderboard (CSV, Markdown), summary.json and plots (matplotlib).

Everything here reads what KerasTuner keeps (the oracle's trials) plus the small files the search
leaves in each trial's directory (:func:`write_trial_info`: parameters, train time;
``search.protocol.REPEATS_FILE``: one record per finished seed), so a report can be rebuilt from an
output directory at any time, also after a resumed or a distributed search.

The leaderboard has one row per configuration (:func:`configuration_rows`): the mean and standard
deviation of its runs, and its paired difference to the baseline with a Student-t 95% interval
(:mod:`search.stats`). :func:`write_summary` writes the answer (the best attention configuration
against the baseline, on validation and test) with how each number was obtained.
"""

from __future__ import annotations

import csv
import json
import math
import os

TRIAL_INFO = "keras_attn_trial.json"
STATUS_ORDER = {"COMPLETED": 0, "RUNNING": 1, "IDLE": 2, "FAILED": 3, "INVALID": 4, "STOPPED": 5}


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically (a killed run never leaves half a file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


def write_trial_info(trial_dir, info):
    """Store per-trial facts KerasTuner does not keep (``params_added``, ``train_seconds``...)."""
    os.makedirs(trial_dir, exist_ok=True)
    write_json(os.path.join(trial_dir, TRIAL_INFO), info)


def _read_trial_info(trial_dir):
    try:
        with open(os.path.join(trial_dir, TRIAL_INFO)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def collect_trials(tuner, objective="val_accuracy"):
    """One dict per trial of ``tuner``: id, status, score, hyperparameters, sidecar facts and the
    finished repeats of the comparison protocol (``runs``: ``{seed: objective value}``).

    Sorted best first; trials without a score (failed, running) come last.
    """
    from search.protocol import load_repeats

    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        hps = trial.hyperparameters
        declared = {p.name for p in hps.space}
        hp = {
            k: v
            for k, v in hps.values.items()
            if not k.startswith("tuner/") and (k not in declared or hps.is_active(k))
        }
        # A fixed learning rate is the recipe's, not part of the configuration.
        fixed_lr = any(p.name == "learning_rate" and type(p).__name__ == "Fixed"
                       for p in hps.space)
        learning_rate = hp.pop("learning_rate") if fixed_lr else hp.get("learning_rate")
        trial_dir = tuner.get_trial_dir(trial_id)
        info = _read_trial_info(trial_dir)
        repeats = load_repeats(trial_dir)
        score = trial.score
        if score is None and trial.metrics.exists(objective):
            score = trial.metrics.get_best_value(objective)
        status = str(getattr(trial.status, "value", trial.status))
        message = (trial.message or "").strip().splitlines()
        runs = {int(k): float(r[objective]) for k, r in repeats.items() if objective in r}
        overheads = [r["overhead_seconds"] for r in repeats.values()
                     if r.get("overhead_seconds") is not None]
        rows.append(
            {
                "trial": trial_id,
                "status": status,
                objective: None if score is None else float(score),
                # Named configurations (presets) record their attention when built.
                "attention": hp.pop("attention", info.get("attention", "none")),
                "placement": hp.pop("placement", info.get("placement", "")) or "",
                "hyperparameters": hp,
                "learning_rate": learning_rate,
                "epochs": hps.values.get("tuner/epochs"),
                "runs": runs,
                "train_accuracy": {int(k): r.get("accuracy") for k, r in repeats.items()},
                "overhead_seconds": (sum(overheads) / len(overheads)) if overheads else None,
                "params": info.get("params"),
                "params_added": info.get("params_added"),
                "train_seconds": info.get("train_seconds"),
                "tuner_id": info.get("tuner_id"),
                "error": message[-1] if message and status != "COMPLETED" else "",
            }
        )

    def key(row):
        score = row[objective]
        missing = score is None or (isinstance(score, float) and math.isnan(score))
        return (missing, STATUS_ORDER.get(row["status"], 9), -(score or 0.0), row["trial"])

    rows.sort(key=key)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def _config_key(row):
    return (row["attention"], row["placement"],
            tuple(sorted((k, repr(v)) for k, v in row["hyperparameters"].items())))


def configuration_rows(trial_rows, objective="val_accuracy", num_classes=None):
    """The leaderboard: one row per configuration, with the statistics of its repeats.

    Trials of one configuration (Hyperband's rounds) are represented by the one with the most
    epochs, then the most repeats. Each row adds to the trial's fields:

    * ``repeats``: finished runs; ``val_accuracy_mean``, ``val_accuracy_std`` (ddof=1, None for
      one run), computed over the runs' last-epoch values;
    * ``delta_vs_baseline``: mean over the seeds both ran of (this run - the baseline's run),
      ``delta_ci95_low``/``delta_ci95_high``: its Student-t 95% interval (None with < 2 pairs),
      ``verdict``: better / worse / no significant difference (see :mod:`search.stats`);
    * ``note``: ``"did not train"`` when the mean final training accuracy is below twice chance
      (``num_classes`` given): such a score is not a measurement of the attention.

    The baseline is the configuration with ``attention == "none"``. Sorted by mean, best first
    (rows without runs last); ``rank`` numbers them.
    """
    from search import stats

    groups = {}
    for row in trial_rows:
        groups.setdefault(_config_key(row), []).append(row)
    rows = []
    for members in groups.values():
        chosen = max(members, key=lambda r: (r.get("epochs") or 0, len(r["runs"]),
                                             r["status"] == "COMPLETED"))
        row = dict(chosen)
        runs = row["runs"]
        if not runs and row[objective] is not None and row["status"] == "COMPLETED":
            runs = {None: row[objective]}  # a trial run without the protocol: one value
        mean, std = stats.mean_std(runs.values()) if runs else (None, None)
        row.update({"repeats": len(runs), f"{objective}_mean": mean, f"{objective}_std": std,
                    "runs": runs})
        train = [a for a in (row.get("train_accuracy") or {}).values() if a is not None]
        row["note"] = ""
        if num_classes and train and sum(train) / len(train) < 2.0 / num_classes:
            row["note"] = "did not train"
        rows.append(row)
    baseline = next((r for r in rows if r["attention"] == "none"), None)
    for row in rows:
        if baseline is None or row is baseline:
            diff = {"delta": 0.0 if row is baseline else None, "low": None, "high": None}
        else:
            diff = stats.paired_difference(row["runs"], baseline["runs"])
        row.update({"delta_vs_baseline": diff["delta"], "delta_ci95_low": diff["low"],
                    "delta_ci95_high": diff["high"],
                    "verdict": "baseline" if row is baseline else
                    stats.verdict(diff["low"], diff["high"])})

    mean_key = f"{objective}_mean"
    rows.sort(key=lambda r: (r[mean_key] is None, -(r[mean_key] or 0.0), str(r["trial"])))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


def _hp_text(hp):
    return " ".join(f"{k}={format(v, '.3g') if isinstance(v, float) else v}" for k, v in sorted(hp.items()))


LEADERBOARD_COLUMNS = (
    "rank",
    "attention",
    "placement",
    "hyperparameters",
    "repeats",
    "val_accuracy_mean",
    "val_accuracy_std",
    "delta_vs_baseline",
    "delta_ci95_low",
    "delta_ci95_high",
    "verdict",
    "runs",
    "trial",
    "status",
    "params",
    "params_added",
    "train_seconds",
    "overhead_seconds",
    "tuner_id",
    "note",
    "error",
)


def _fmt(value, spec=".4f"):
    return "" if value is None else format(value, spec)


def _signed(value):
    return "" if value is None else f"{value:+.4f}"


def write_leaderboard(rows, out_dir):
    """Write ``leaderboard.csv`` and ``leaderboard.md`` from :func:`configuration_rows`."""
    csv_path = os.path.join(out_dir, "leaderboard.csv")
    with open(csv_path + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LEADERBOARD_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row["rank"],
                    row["attention"],
                    row["placement"],
                    json.dumps(row["hyperparameters"], sort_keys=True),
                    row["repeats"],
                    _fmt(row["val_accuracy_mean"]),
                    _fmt(row["val_accuracy_std"]),
                    _fmt(row["delta_vs_baseline"]),
                    _fmt(row["delta_ci95_low"]),
                    _fmt(row["delta_ci95_high"]),
                    row["verdict"],
                    json.dumps({str(k): round(v, 4) for k, v in row["runs"].items()}),
                    row["trial"],
                    row["status"],
                    "" if row["params"] is None else row["params"],
                    "" if row["params_added"] is None else row["params_added"],
                    _fmt(row["train_seconds"], ".1f"),
                    _fmt(row["overhead_seconds"], ".1f"),
                    row["tuner_id"] or "",
                    row["note"],
                    row["error"],
                ]
            )
    os.replace(csv_path + ".tmp", csv_path)

    md = [
        "Validation accuracy over the repeats (mean +- std, ddof=1); the difference to the "
        "baseline is paired by seed (same initial backbone weights and data order), with a "
        "Student-t 95% interval. An interval that contains 0: no significant difference.",
        "",
        "| rank | attention | placement | hyperparameters | repeats | val accuracy "
        "| delta vs baseline [95% CI] | verdict | params added | trial | status |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for row in rows:
        mean, std = row["val_accuracy_mean"], row["val_accuracy_std"]
        acc = "" if mean is None else f"{mean:.4f}" + ("" if std is None else f" +- {std:.4f}")
        delta = _signed(row["delta_vs_baseline"])
        if row["delta_ci95_low"] is not None:
            delta += f" [{row['delta_ci95_low']:+.4f}, {row['delta_ci95_high']:+.4f}]"
        status = row["status"] + (f" ({row['note']})" if row["note"] else "")
        md.append(
            f"| {row['rank']} | {row['attention']} | {row['placement']} "
            f"| {_hp_text(row['hyperparameters']).replace('|', chr(92) + '|')} "
            f"| {row['repeats']} | {acc} | {delta} | {row['verdict']} "
            f"| {'' if row['params_added'] is None else format(row['params_added'], ',')} "
            f"| {row['trial']} | {status} |"
        )
    md_path = os.path.join(out_dir, "leaderboard.md")
    with open(md_path + ".tmp", "w") as f:
        f.write("\n".join(md) + "\n")
    os.replace(md_path + ".tmp", md_path)
    return csv_path, md_path


def configuration_label(row):
    """``"sb/layer gate=tanh lambda_init=0.1"``-style name of a leaderboard row."""
    if row["attention"] == "none":
        return "none (baseline)"
    hp = {k: v for k, v in row["hyperparameters"].items() if k != "learning_rate"}
    return " ".join(filter(None, [f"{row['attention']}/{row['placement']}", _hp_text(hp)]))


def plot_configurations(rows, out_dir):
    """Two PNGs with error bars (matplotlib): each configuration's validation accuracy (mean +-
    std, every run as a dot), and its paired difference to the baseline (95% interval).

    Returns the list of files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["val_accuracy_mean"] is not None]
    paths = []
    if not done:
        return paths
    labels = [configuration_label(r) for r in done]
    height = 1.2 + 0.35 * len(done)

    fig, ax = plt.subplots(figsize=(8, height))
    ys = list(range(len(done)))[::-1]
    for y, r in zip(ys, done):
        color = "gray" if r["attention"] == "none" else "C0"
        ax.errorbar(r["val_accuracy_mean"], y, xerr=r["val_accuracy_std"] or 0, fmt="o",
                    color=color, capsize=4)
        ax.scatter(list(r["runs"].values()), [y] * len(r["runs"]), s=12, color=color, alpha=0.5)
    paths.append(_save_rows_plot(plt, fig, ax, ys, labels, os.path.join(
        out_dir, "val_accuracy_by_configuration.png"), "Configurations",
        "validation accuracy (mean +- std over seeds; dots: single runs)"))

    others = [r for r in done if r["attention"] != "none" and r["delta_vs_baseline"] is not None]
    if others:
        fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * len(others)))
        ys = list(range(len(others)))[::-1]
        for y, r in zip(ys, others):
            low, high = r["delta_ci95_low"], r["delta_ci95_high"]
            err = None if low is None else [[r["delta_vs_baseline"] - low],
                                            [high - r["delta_vs_baseline"]]]
            ax.errorbar(r["delta_vs_baseline"], y, xerr=err, fmt="o", capsize=4,
                        color="C2" if low is not None and low > 0 else
                        "C3" if high is not None and high < 0 else "C0")
        ax.axvline(0.0, color="gray", lw=1)
        paths.append(_save_rows_plot(
            plt, fig, ax, ys, [configuration_label(r) for r in others],
            os.path.join(out_dir, "delta_vs_baseline.png"), "Attention vs no attention, same seeds",
            "paired difference to the baseline, validation accuracy (95% CI)"))
    return paths


GRAD_CAM_FILE = "grad_cam_best_vs_baseline.png"


def plot_grad_cam(best_model, baseline_model, images, labels, class_names, path,
                  names=("best", "baseline")):
    """One PNG comparing where two models look: Grad-CAM (:func:`keras_attn.grad_cam`, each
    model's own predicted class, its default target layer: the last attention layer, or the
    baseline's last 4-D feature map) on the same images.

    A grid with one row per image and three columns: the image, the best model's heatmap over
    it, the baseline's; titles give the true class and each model's predicted class and
    probability.

    Args:
        best_model, baseline_model: classifiers taking ``images``.
        images: ``(n, height, width, channels)`` float array, preprocessed as the models expect
            (each image is min-max scaled for display only).
        labels: ``n`` integer class labels.
        class_names: one name per class.
        path: the PNG to write.
        names: the two models' names in the titles.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from keras_attn.gradcam import grad_cam

    images = np.asarray(images, dtype="float32")
    labels = np.asarray(labels).reshape(-1).astype(int)
    n = len(images)
    columns = []
    for model in (best_model, baseline_model):
        probs = np.asarray(model.predict(images, verbose=0), dtype="float32")
        columns.append((grad_cam(model, images), probs))

    def name(i):
        return class_names[i] if 0 <= i < len(class_names) else str(i)

    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n + 0.4), squeeze=False)
    for row in range(n):
        image = images[row]
        low, high = float(image.min()), float(image.max())
        shown = (image - low) / (high - low) if high > low else np.zeros_like(image)
        gray = shown.shape[-1] == 1
        shown = shown[..., 0] if gray else shown
        cmap = "gray" if gray else None
        ax = axes[row][0]
        ax.imshow(shown, cmap=cmap)
        ax.set_title(f"true: {name(labels[row])}", fontsize=8)
        for col, (model_name, (cams, probs)) in enumerate(zip(names, columns), start=1):
            ax = axes[row][col]
            pred = int(np.argmax(probs[row]))
            ax.imshow(shown, cmap=cmap)
            ax.imshow(cams[row], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
            ax.set_title(f"{model_name}: {name(pred)} ({probs[row][pred]:.2f})", fontsize=8,
                         color="black" if pred == labels[row] else "red")
        for ax in axes[row]:
            ax.axis("off")
    fig.suptitle("Grad-CAM on the test images: best model vs baseline (red: wrong class)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _save_rows_plot(plt, fig, ax, ys, labels, path, title, xlabel):
    """Label a one-row-per-configuration plot, save it as PNG, close it; returns the path."""
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def best_and_baseline(rows):
    """``(best, baseline)`` rows of :func:`configuration_rows`: the best-ranked configuration with
    attention that finished a run (None if none did), and the baseline (None if absent)."""
    baseline = next((r for r in rows if r["attention"] == "none"), None)
    best = next((r for r in rows if r["attention"] != "none" and r["repeats"]), None)
    return best, baseline


def leaderboard_text(rows):
    """The leaderboard as aligned plain text, for the terminal."""
    lines = [f"{'rank':>4}  {'configuration':<44} {'n':>2}  {'val acc mean +- std':<19}  "
             f"{'delta vs baseline [95% CI]':<30} verdict"]
    for r in rows:
        mean, std = r["val_accuracy_mean"], r["val_accuracy_std"]
        acc = "" if mean is None else f"{mean:.4f}" + ("" if std is None else f" +- {std:.4f}")
        delta = _signed(r["delta_vs_baseline"]) if r["attention"] != "none" else ""
        if r["delta_ci95_low"] is not None:
            delta += f" [{r['delta_ci95_low']:+.4f}, {r['delta_ci95_high']:+.4f}]"
        verdict = r["verdict"] + (f" ({r['note']})" if r["note"] else "")
        if r["status"] != "COMPLETED":
            verdict += f" [{r['status']}]"
        lines.append(f"{r['rank']:>4}  {configuration_label(r)[:44]:<44} {r['repeats']:>2}  "
                     f"{acc:<19}  {delta:<30} {verdict}")
    return "\n".join(lines)


def _configuration_summary(row):
    keys = ("trial", "attention", "placement", "hyperparameters", "repeats",
            "val_accuracy_mean", "val_accuracy_std", "delta_vs_baseline", "delta_ci95_low",
            "delta_ci95_high", "verdict", "params", "params_added")
    out = {k: row.get(k) for k in keys}
    out["val_accuracy_runs"] = {str(k): v for k, v in row["runs"].items()}
    return out


def write_summary(out_dir, *, board, final, plots=(), timings=None, config=None, versions=None,
                  exports=None):
    """Write ``summary.json``: the answer of the search, and how it was obtained.

    Holds the best configuration with attention and the baseline (validation statistics over
    the repeats, the paired difference and its interval), their test accuracies from
    ``final`` (:func:`search.final.finalize`) and the test difference, the overhead per run,
    timings, the configuration and versions, and the files written (``exports``: the exported
    best model's artifacts, relative to ``out_dir``). Returns the dict.
    """
    best, baseline = best_and_baseline(board)
    overheads = [r["overhead_seconds"] for r in board if r.get("overhead_seconds") is not None]
    fin = {k: final.get(k) for k in ("how", "seeds", "delta_vs_baseline", "delta_ci95_low",
                                      "delta_ci95_high")}
    for name in ("best", "baseline"):
        entry = final.get(name)
        if entry:
            fin[name] = {k: entry.get(k) for k in ("trial", "test_accuracy", "test_accuracy_std",
                                                    "runs", "params", "params_added")}
    summary = {
        "how": "Every configuration is trained with the same recipe and, for each seed, the same "
        "initial backbone and head weights and data order as the baseline (no attention); "
        "val_accuracy is the last epoch's, averaged over the seeds (std with ddof=1); "
        "delta_vs_baseline is the mean per-seed difference with a Student-t 95% interval. The "
        "best configuration and the baseline are then tested once on the test split "
        "(final.how).",
        "best": None if best is None else _configuration_summary(best),
        "baseline": None if baseline is None else _configuration_summary(baseline),
        "test_accuracy": (final.get("best") or final.get("baseline") or {}).get("test_accuracy"),
        "baseline_test_accuracy": (final.get("baseline") or {}).get("test_accuracy"),
        "test_delta_vs_baseline": final.get("delta_vs_baseline"),
        "final": fin,
        "configurations": len(board),
        "failed": sum(r["status"] in ("FAILED", "INVALID") for r in board),
        "overhead_seconds_per_run": (sum(overheads) / len(overheads)) if overheads else None,
        "timings_seconds": timings or {},
        "config": config or {},
        "files": {
            "leaderboard": ["leaderboard.csv", "leaderboard.md"],
            "best_model": "best_model.keras",
            "baseline_model": "baseline_model.keras",
            "exports": list(exports or []),
            "plots": [os.path.basename(p) for p in plots],
            "final": "final.json",
            "tensorboard": "logs",
            "tuner_project": "tuner",
        },
        "versions": versions or {},
    }
    write_json(os.path.join(out_dir, "summary.json"), summary)
    return summary


def summary_lines(summary):
    """A few lines for the terminal: the answer, with its uncertainty and how it was measured."""
    lines = []
    best, base = summary["best"], summary["baseline"]
    if best is not None:
        ci = ""
        if best["delta_ci95_low"] is not None:
            ci = f" [95% CI {best['delta_ci95_low']:+.4f}, {best['delta_ci95_high']:+.4f}]"
        lines.append(
            f"best attention: {configuration_label(best)}: val_accuracy "
            f"{best['val_accuracy_mean']:.4f} over {best['repeats']} seed(s), "
            f"{_signed(best['delta_vs_baseline'])} vs the baseline{ci}: "
            f"{best['verdict'] or 'no interval (one seed)'}"
        )
    fin = summary["final"]
    for name in ("best", "baseline"):
        entry = fin.get(name)
        if entry:
            std = entry.get("test_accuracy_std")
            lines.append(f"test accuracy, {name}: {entry['test_accuracy']:.4f}"
                         + ("" if std is None else f" +- {std:.4f}")
                         + f" ({fin['how']})")
    if fin.get("delta_vs_baseline") is not None:
        ci = ("no interval with one seed" if fin["delta_ci95_low"] is None else
              f"95% CI [{fin['delta_ci95_low']:+.4f}, {fin['delta_ci95_high']:+.4f}]")
        lines.append(f"test difference best - baseline: {fin['delta_vs_baseline']:+.4f} ({ci})")
    if summary.get("overhead_seconds_per_run") is not None:
        lines.append(f"overhead per run (tracing, first steps): "
                     f"{summary['overhead_seconds_per_run']:.1f}s on average")
    lines.append(f"total {summary['timings_seconds'].get('total', 0):.0f}s; "
                 "leaderboard.md, summary.json and plots in the output directory")
    return lines
