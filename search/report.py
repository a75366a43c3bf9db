"""The search report: leaderboard (CSV, Markdown), summary.json and plots (matplotlib).

Everything here reads what KerasTuner keeps (the oracle's trials) plus the small per-trial sidecar
file that :func:`write_trial_info` leaves in each trial's directory (parameters added, train time),
so a report can be rebuilt from an output directory at any time, also after a resumed or a
distributed search.
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
    """One dict per trial of ``tuner``: id, status, score, hyperparameters and sidecar facts.

    Sorted best first; trials without a score (failed, running) come last.
    """
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        hps = trial.hyperparameters
        declared = {p.name for p in hps.space}
        hp = {
            k: v
            for k, v in hps.values.items()
            if not k.startswith("tuner/") and (k not in declared or hps.is_active(k))
        }
        info = _read_trial_info(tuner.get_trial_dir(trial_id))
        score = trial.score
        if score is None and trial.metrics.exists(objective):
            score = trial.metrics.get_best_value(objective)
        status = str(getattr(trial.status, "value", trial.status))
        message = (trial.message or "").strip().splitlines()
        rows.append(
            {
                "trial": trial_id,
                "status": status,
                objective: None if score is None else float(score),
                "attention": hp.pop("attention", "none"),
                "placement": hp.pop("placement", ""),
                "hyperparameters": hp,
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


def _hp_text(hp):
    return " ".join(f"{k}={format(v, '.3g') if isinstance(v, float) else v}" for k, v in sorted(hp.items()))


LEADERBOARD_COLUMNS = (
    "rank",
    "trial",
    "status",
    "val_accuracy",
    "attention",
    "placement",
    "hyperparameters",
    "params",
    "params_added",
    "train_seconds",
    "tuner_id",
    "error",
)


def write_leaderboard(rows, out_dir, objective="val_accuracy"):
    """Write ``leaderboard.csv`` and ``leaderboard.md`` (one row per trial, best first)."""
    csv_path = os.path.join(out_dir, "leaderboard.csv")
    with open(csv_path + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LEADERBOARD_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row["rank"],
                    row["trial"],
                    row["status"],
                    "" if row[objective] is None else f"{row[objective]:.4f}",
                    row["attention"],
                    row["placement"],
                    json.dumps(row["hyperparameters"], sort_keys=True),
                    "" if row["params"] is None else row["params"],
                    "" if row["params_added"] is None else row["params_added"],
                    "" if row["train_seconds"] is None else f"{row['train_seconds']:.1f}",
                    row["tuner_id"] or "",
                    row["error"],
                ]
            )
    os.replace(csv_path + ".tmp", csv_path)

    md = [
        "| rank | trial | status | val accuracy | attention | placement | hyperparameters "
        "| params added | train s |",
        "| ---: | --- | --- | ---: | --- | --- | --- | ---: | ---: |",
    ]
    for row in rows:
        md.append(
            "| {rank} | {trial} | {status} | {score} | {attention} | {placement} | {hp} "
            "| {added} | {secs} |".format(
                rank=row["rank"],
                trial=row["trial"],
                status=row["status"],
                score="" if row[objective] is None else f"{row[objective]:.4f}",
                attention=row["attention"],
                placement=row["placement"] or "",
                hp=_hp_text(row["hyperparameters"]).replace("|", "\\|"),
                added="" if row["params_added"] is None else f"{row['params_added']:,}",
                secs="" if row["train_seconds"] is None else f"{row['train_seconds']:.0f}",
            )
        )
    md_path = os.path.join(out_dir, "leaderboard.md")
    with open(md_path + ".tmp", "w") as f:
        f.write("\n".join(md) + "\n")
    os.replace(md_path + ".tmp", md_path)
    return csv_path, md_path


def plot_trials(rows, out_dir, objective="val_accuracy"):
    """Two PNGs: the objective per trial by attention and placement; objective vs params added.

    Returns the list of files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r[objective] is not None and not math.isnan(r[objective])]
    attentions = sorted({r["attention"] for r in rows})
    colors = {a: plt.cm.tab10(i % 10) for i, a in enumerate(attentions)}
    markers = {"block": "o", "layer": "s", "paper": "^"}
    paths = []

    def trial_number(r):
        return int(r["trial"]) if str(r["trial"]).isdigit() else r["trial"]

    def scatter(rows_, x_of, xlabel, title, filename, xscale=None):
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in rows_:
            ax.scatter(x_of(r), r[objective], color=colors[r["attention"]],
                       marker=markers.get(r["placement"], "D"), s=50)
        _legend(ax, attentions, colors, markers, plt)
        if xscale:
            ax.set_xscale(*xscale[:1], **xscale[1])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(objective.replace("_", " "))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(out_dir, filename)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    scatter(sorted(done, key=lambda r: r["trial"]), trial_number, "trial",
            "Validation accuracy per trial (colour: attention, marker: placement)",
            "val_accuracy_by_trial.png")
    scatter([r for r in done if r["params_added"] is not None], lambda r: r["params_added"],
            "parameters added by attention", "Accuracy vs cost", "accuracy_vs_params.png",
            xscale=("symlog", {"linthresh": 100}))
    return paths


def _legend(ax, attentions, colors, markers, plt):
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=colors[a], marker="o", linestyle="", label=a) for a in attentions
    ] + [
        Line2D([], [], color="gray", marker=m, linestyle="", label=p) for p, m in markers.items()
    ] + [Line2D([], [], color="gray", marker="D", linestyle="", label="(no attention)")]
    ax.legend(handles=handles, fontsize=8, loc="best")
