"""The search report: leaderboard (CSV, Markdown), summary.json and plots (matplotlib).

Everything here reads what KerasTuner keeps (the oracle's trials) plus the small files the search
leaves in each trial's directory (:class:`search.rundir.TrialDir`: parameters and train time, one
record per finished seed), so a report can be rebuilt from an output directory at any time, also
after a resumed or a distributed search. Every file is written where
:class:`search.rundir.RunDir` says.

The leaderboard has one row per configuration (:func:`configuration_rows`): the mean and standard
deviation of its runs, and the decision procedure's comparison with the baseline
(:func:`search.decision.decide`: the blocked estimate, its simultaneous interval, the verdict
and why there is none). :func:`write_summary` writes the answer (the best attention
configuration against the baseline, on validation and test) with how each number was obtained.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

from keras_attn.registry import NO_ATTENTION
from search.costs import COST_MEASURES
from search.protocol import OBJECTIVE
from search.rundir import RunDir, as_rundir, atomic_path, write_json, write_text

STATUS_ORDER = {"COMPLETED": 0, "RUNNING": 1, "IDLE": 2, "FAILED": 3, "INVALID": 4, "STOPPED": 5}


def collect_trials(tuner, seeds=None):
    """The rows of :func:`search.results.rows` for the configurations ``tuner``'s trials asked
    for (a tuner of :mod:`search.tuning`), with their runs from its run store: id, stage,
    status, score (the mean over its finished seeds), hyperparameters, parameter counts and the
    runs (``{seed: val_accuracy}``) for ``seeds`` (default the protocol's).

    Sorted best first; configurations without a finished run come last.
    """
    from search.results import entries_of, rows

    seeds = seeds if seeds is not None else (tuner.protocol.seeds if tuner.protocol else ())
    found = rows(entries_of(tuner, tuner.stage), tuner.run_keys(), seeds,
                 tuner.hypermodel.recipe.epochs or 1)
    return sort_rows(found)


def sort_rows(found):
    """``found`` (rows of :func:`search.results.rows`) best first, each given its ``rank``."""

    def key(row):
        score = row[OBJECTIVE]
        missing = score is None or (isinstance(score, float) and math.isnan(score))
        return (missing, STATUS_ORDER.get(row["status"], 9), -(score or 0.0), row["trial"])

    found = sorted(found, key=key)
    for rank, row in enumerate(found, 1):
        row["rank"] = rank
    return found


def _config_key(row):
    if row.get("config"):
        return row["config"]
    return (row["attention"], row["placement"],
            tuple(sorted((k, repr(v)) for k, v in row["hyperparameters"].items())))


def configuration_rows(trial_rows, num_classes=None, ledger=None):
    """The leaderboard: one row per configuration, with the statistics of its repeats.

    Trials of one configuration (Hyperband's rounds) are represented by the one with the most
    epochs, then the most repeats. Each row adds to the trial's fields:

    * ``repeats``: finished runs; ``val_accuracy_mean``, ``val_accuracy_std`` (ddof=1, None for
      one run), computed over the runs' finite last-epoch values;
    * the comparison with the baseline (:func:`search.decision.decide`: seeds as blocks, one
      pooled variance, a simultaneous interval whose critical value holds for noise differing
      up to 3x and over every look): ``delta_vs_baseline`` (the blocked estimate; with every
      seed shared, the mean per-seed difference), ``delta_se``, ``sim_ci95_low``/
      ``sim_ci95_high``, ``p_value`` (unadjusted), ``p_adjusted`` (family-wise, this look),
      ``mde`` and ``verdict`` (better / worse / no significant difference, from the
      simultaneous interval; empty with ``verdict_reason`` saying why); beside it the
      configuration's own paired Student-t interval ``paired_ci95_low``/``paired_ci95_high``
      (unpooled, unadjusted), ``paired_sd`` and ``pooled_paired_sd``, ``wins`` (``"k/n"`` seeds
      on which it beat the baseline), ``noise_p`` (the check that its runs are noisier than
      the others'), ``flags`` and ``left_out`` (runs the analysis left out, and why);
    * ``note``: ``"did not train"`` when the mean final training accuracy is below twice chance
      (``num_classes`` given): such a score is not a measurement of the attention.

    The baseline is the configuration with ``attention == "none"``. Sorted by the blocked
    estimate, best first: the configurations that can be best (the analysis' ``ranking``) and
    the baseline (at 0), then those with fewer seeds shared with the baseline, then those
    without an estimate (by mean), rows without runs last; ``rank`` numbers them. ``ledger``:
    the looks so far (:mod:`search.looks`; None: this is the first). Returns a
    :class:`Leaderboard` (a list of the rows) whose ``analysis`` is the
    :class:`search.decision.Decision` (its ``ledger`` has this look: store it), or None without
    a baseline run.
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
        if not runs and row[OBJECTIVE] is not None and row["status"] == "COMPLETED":
            runs = {None: row[OBJECTIVE]}  # a trial run without the protocol: one value
        # A NaN or infinite run (a diverged training) is no accuracy: the mean is over the rest.
        finite = [v for v in runs.values() if v is not None and math.isfinite(v)]
        mean, std = stats.mean_std(finite) if finite else (None, None)
        row.update({"repeats": len(runs), f"{OBJECTIVE}_mean": mean, f"{OBJECTIVE}_std": std,
                    "runs": runs})
        train = [a for a in (row.get("train_accuracy") or {}).values() if a is not None]
        row["note"] = ""
        if num_classes and train and sum(train) / len(train) < 2.0 / num_classes:
            row["note"] = "did not train"
        rows.append(row)
    board = Leaderboard(rows)
    board.analysis = _analyse(board, ledger)
    rows = board
    mean_key = f"{OBJECTIVE}_mean"
    ranked = set(board.analysis.ranking) if board.analysis is not None else set()

    def group(row):  # the ranked and the baseline, then fewer seeds, then no estimate
        if row["verdict"] == "baseline" or configuration_key(row) in ranked:
            return 0
        return 1 if row["delta_vs_baseline"] is not None else 2

    rows.sort(key=lambda r: (r[mean_key] is None, group(r), -(r["delta_vs_baseline"] or 0.0),
                             -(r[mean_key] or 0.0), str(r["trial"])))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


class Leaderboard(list):
    """The rows of :func:`configuration_rows`, with the ``analysis`` of their runs (a
    :class:`search.decision.Decision`)."""

    analysis = None


_CONTRAST_FIELDS = ("delta_vs_baseline", "delta_se", "sim_ci95_low", "sim_ci95_high", "p_value",
                    "p_adjusted", "mde", "paired_ci95_low", "paired_ci95_high", "paired_sd",
                    "pooled_paired_sd", "wins", "noise_p", "flags", "verdict_reason", "left_out")


def configuration_key(row):
    """The name of a leaderboard row's configuration in the analysis and its ledger of looks:
    its attention, placement and hyperparameters (stable across runs of the search)."""
    return _config_key(row)


def _analyse(rows, ledger=None):
    """Run :func:`search.decision.decide` on the rows' runs (keyed by seed; a run without a
    seed is left out) and write each row's comparison with the baseline into it; returns the
    decision (None when the baseline has no run with a seed)."""
    from search.decision import decide

    baseline = next((r for r in rows if r["attention"] == NO_ATTENTION), None)
    for row in rows:
        row.update(dict.fromkeys(_CONTRAST_FIELDS), flags="", verdict_reason="", left_out="",
                   verdict="baseline" if row is baseline else "")
    if baseline is None or not any(s is not None for s in baseline["runs"]):
        return None
    keys = {configuration_key(r): r for r in rows}
    runs = {k: {s: v for s, v in r["runs"].items() if s is not None} for k, r in keys.items()}
    base = configuration_key(baseline)
    decision = decide(runs, base, ledger=ledger,
                      notes={k: r["note"] for k, r in keys.items() if r.get("note")})
    baseline.update(delta_vs_baseline=0.0, noise_p=decision.baseline_noise_p,
                    flags="; ".join(decision.baseline_flags), left_out=decision.baseline_note)
    for key, c in decision.comparisons.items():
        keys[key].update(
            delta_vs_baseline=c.estimate, delta_se=c.se, sim_ci95_low=c.low,
            sim_ci95_high=c.high, p_value=c.p_value, p_adjusted=c.p_adjusted, mde=c.mde,
            paired_ci95_low=c.paired_low, paired_ci95_high=c.paired_high,
            paired_sd=c.paired_sd, pooled_paired_sd=c.pooled_paired_sd,
            wins=f"{c.wins}/{c.pairs}" if c.pairs else None, noise_p=c.noise_p,
            flags="; ".join(c.flags), verdict=c.verdict, verdict_reason=c.reason,
            left_out=c.note)
    return decision


def _hp_text(hp):
    return " ".join(f"{k}={format(v, '.3g') if isinstance(v, float) else v}" for k, v in sorted(hp.items()))


COST_COLUMNS = ("flops", "flops_added", "train_step", "train_step_spread", "inference_step",
                "inference_step_spread")
# One column per measure of search.costs.COST_MEASURES: on that measure's Pareto front or not.
PARETO_COLUMNS = tuple(f"pareto_{m}" for m in COST_MEASURES)


LEADERBOARD_COLUMNS = (
    "rank",
    "stage",
    "attention",
    "placement",
    "hyperparameters",
    "repeats",
    "val_accuracy_mean",
    "val_accuracy_std",
    "delta_vs_baseline",
    "sim_ci95_low",
    "sim_ci95_high",
    "verdict",
    "verdict_reason",
    "p_adjusted",
    "p_value",
    "delta_se",
    "mde",
    "paired_ci95_low",
    "paired_ci95_high",
    "paired_sd",
    "pooled_paired_sd",
    "wins",
    "noise_p",
    "flags",
    "left_out",
    "runs",
    "config",
    "trial",
    "status",
    "params",
    "params_added",
    *COST_COLUMNS,
    *PARETO_COLUMNS,
    "cost_note",
    "train_seconds",
    "overhead_seconds",
    "tuner_id",
    "note",
    "error",
)


def _fmt(value, spec=".4f"):
    return "" if value is None else format(value, spec)


def _cost_cell(value):
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else format(value, ".4g")


def _ratio_text(row, measure):
    value, spread = row.get(measure), row.get(f"{measure}_spread")
    if value is None:
        return ""
    front = " *" if row.get(f"pareto_{measure}") else ""
    return f"{value:.3f}" + ("" if spread is None else f" +- {spread:.3f}") + front


def _front_cell(value):
    return {True: "yes", False: "no"}.get(value, "")


def _signed(value):
    return "" if value is None else f"{value:+.4f}"


def _csv_cells(row):
    """A leaderboard row as the cells of :data:`LEADERBOARD_COLUMNS`."""
    return [
        row["rank"],
        row.get("stage", ""),
        row["attention"],
        row["placement"],
        json.dumps(row["hyperparameters"], sort_keys=True),
        row["repeats"],
        _fmt(row["val_accuracy_mean"]),
        _fmt(row["val_accuracy_std"]),
        _fmt(row["delta_vs_baseline"]),
        _fmt(row["sim_ci95_low"]),
        _fmt(row["sim_ci95_high"]),
        row["verdict"],
        row["verdict_reason"],
        _fmt(row["p_adjusted"], ".4g"),
        _fmt(row["p_value"], ".4g"),
        _fmt(row["delta_se"]),
        _fmt(row["mde"]),
        _fmt(row["paired_ci95_low"]),
        _fmt(row["paired_ci95_high"]),
        _fmt(row["paired_sd"]),
        _fmt(row["pooled_paired_sd"]),
        row["wins"] or "",
        _fmt(row["noise_p"], ".3g"),
        row["flags"],
        row["left_out"],
        json.dumps({str(k): _json_run(v) for k, v in row["runs"].items()}),
        row.get("config", ""),
        row["trial"],
        row["status"],
        "" if row["params"] is None else row["params"],
        "" if row["params_added"] is None else row["params_added"],
        *[_cost_cell(row.get(k)) for k in COST_COLUMNS],
        *[_front_cell(row.get(k)) for k in PARETO_COLUMNS],
        row.get("cost_note", ""),
        _fmt(row["train_seconds"], ".1f"),
        _fmt(row["overhead_seconds"], ".1f"),
        row["tuner_id"] or "",
        row["note"],
        row["error"],
    ]


def _json_run(value):
    """A run's value for the CSV's JSON cell: rounded, or its text when it is not a finite
    number (JSON has no NaN)."""
    try:
        return round(value, 4) if math.isfinite(value) else str(value)
    except TypeError:
        return str(value)


def _markdown_lines(rows):
    """``leaderboard.md``: the analysis paragraph, then the table."""
    md = [analysis_text(rows), "",
          "| rank | stage | attention | placement | hyperparameters | repeats | val accuracy "
          "| delta vs baseline [simultaneous 95% CI] | verdict | adjusted p | own paired 95% CI "
          "| wins | flags | params added | FLOPs added | train step | inference step "
          "| trial | status |",
          "| ---: | --- | --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- "
          "| ---: | ---: | ---: | ---: | --- | --- |"]
    for row in rows:
        status = row["status"] + (f" ({row['note']})" if row["note"] else "")
        md.append(
            f"| {row['rank']} | {row.get('stage', '')} | {row['attention']} | {row['placement']} "
            f"| {_hp_text(row['hyperparameters']).replace('|', chr(92) + '|')} "
            f"| {row['repeats']} | {_accuracy_text(row)} "
            f"| {_delta_text(row, 'sim_ci95')} | {_verdict_text(row)} "
            f"| {_fmt(row['p_adjusted'], '.3g')} "
            f"| {_interval_text(row, 'paired_ci95')} | {row['wins'] or ''} | {_flags_text(row)} "
            f"| {'' if row['params_added'] is None else format(row['params_added'], ',')} "
            f"| {_cost_cell(row.get('flops_added'))} | {_ratio_text(row, 'train_step')} "
            f"| {_ratio_text(row, 'inference_step')} | {row['trial']} | {status} |"
        )
    return md


def _flags_text(row):
    """The flags and the runs left out, in one cell."""
    left = f"left out: {row['left_out']}" if row.get("left_out") else ""
    return "; ".join(filter(None, [row["flags"], left]))


def _verdict_text(row):
    """The verdict, or why there is none, for the Markdown table."""
    if row["verdict"]:
        return row["verdict"]
    return f"no verdict: {row['verdict_reason']}" if row.get("verdict_reason") else ""


def write_leaderboard(rows, out_dir):
    """Write ``leaderboard.csv`` and ``leaderboard.md`` from :func:`configuration_rows` into
    ``out_dir`` (a path or a :class:`search.rundir.RunDir`); returns their paths."""
    rundir = as_rundir(out_dir)
    csv_path = rundir.leaderboard_csv
    with io.StringIO(newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LEADERBOARD_COLUMNS)
        for row in rows:
            writer.writerow(_csv_cells(row))
        write_text(csv_path, f.getvalue())

    md = _markdown_lines(rows)
    md_path = rundir.leaderboard_md
    write_text(md_path, "\n".join(md) + "\n")
    return csv_path, md_path


def _accuracy_text(row):
    mean, std = row["val_accuracy_mean"], row["val_accuracy_std"]
    return "" if mean is None else f"{mean:.4f}" + ("" if std is None else f" +- {std:.4f}")


def _interval_text(row, prefix):
    low, high = row.get(f"{prefix}_low"), row.get(f"{prefix}_high")
    return "" if low is None else f"[{low:+.4f}, {high:+.4f}]"


def _delta_text(row, prefix):
    if row["attention"] == NO_ATTENTION or row["delta_vs_baseline"] is None:
        return ""
    interval = _interval_text(row, prefix)
    return _signed(row["delta_vs_baseline"]) + (f" {interval}" if interval else "")


def _count(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def analysis_text(board):
    """A paragraph saying how the leaderboard's comparison was obtained and what it could find
    (:class:`search.decision.Decision`): the method, this look and the error it has spent, the
    residual degrees of freedom and pooled standard deviation, the critical value, the largest
    simultaneous half-width and the minimum detectable effect; or the true reason there is no
    interval."""
    analysis = getattr(board, "analysis", None)
    head = ("Validation accuracy over the repeats (mean +- std, ddof=1). The difference to the "
            "baseline comes from a two-way model (configuration + seed; the seeds are blocks: "
            "the same initial weights and data order for every configuration) with one pooled "
            "variance. Its interval is simultaneous over all the comparisons with the baseline "
            "and over every look at these runs, with a critical value that keeps the 5% "
            "family-wise error when configurations differ in noise up to 3x (the baseline "
            "included), found by simulating this design; the verdict is read from it. Adjusted "
            "p: the family-wise p-value at this look. Own paired CI: the configuration's "
            "Student-t interval from its own seeds only, unadjusted.")
    if analysis is None:
        return head + " No interval: the baseline has no run with a seed."
    if analysis.critical_value is None:
        return head + f" No interval: {analysis.reason}."
    alpha = 1 - analysis.confidence
    noisy = [configuration_label(r) for r in board if r.get("noise_p") is not None
             and "noisier than the others" in (r.get("flags") or "")]
    flagged = ("" if not noisy else
               f" Flagged noisier than the others: {', '.join(noisy)}; its comparisons hold "
               f"only while its noise is within {analysis.noise_ratio:g}x of the others'.")
    return (head + f" This run: look {analysis.look} of the validation comparisons "
            f"(family-wise error spent so far {analysis.alpha:.4f} of {alpha:g}), "
            f"{_count(len(analysis.comparisons), 'comparison')} over "
            f"{_count(len(analysis.seeds), 'seed')}, "
            f"{analysis.residual_df} residual df, pooled sd of one run "
            f"{analysis.residual_sd:.4f} (of a paired difference "
            f"{analysis.residual_sd * math.sqrt(2):.4f}), critical value "
            f"{analysis.critical_value:.3f}: simultaneous half-width up to "
            f"{analysis.half_width:.4f}; minimum detectable effect ({analysis.power:.0%} power, "
            f"equal noise) {analysis.mde:.4f}.{flagged} An interval that contains 0 means that "
            "these runs cannot tell the configuration from the baseline: a true difference "
            "smaller than about the minimum detectable effect would usually go unseen.")


def projection_line(board, configurations, seeds, seconds_left=None, ledger=None,
                    total_seconds=None):
    """One line, once the first runs are in, saying what the planned budget can resolve: the
    minimum detectable effect and simultaneous half-width that ``configurations``
    configurations x ``seeds`` seeds would reach at the search's next look if the runs keep the
    pooled sd measured so far (:func:`search.decision.plan`; ``ledger``: the looks so far), and
    the time left of the whole job (``seconds_left``; ``total_seconds``: projected in all,
    :mod:`search.projection`). It shows no estimate and no verdict: there is nothing in it to
    stop on. None while the runs leave no residual degrees of freedom."""
    from search.decision import plan

    analysis = getattr(board, "analysis", None)
    if analysis is None or analysis.critical_value is None or configurations < 2 or seeds < 2:
        return None
    planned = plan(analysis.residual_sd, configurations, seeds, ledger=ledger)
    left = "" if seconds_left is None else (
        f"; about {seconds_left / 60:.0f} min of the whole job left"
        + ("" if total_seconds is None else f" (about {total_seconds / 60:.0f} min in all)"))
    return (f"[plan] pooled sd of a run so far {analysis.residual_sd:.4f} "
            f"({analysis.residual_df} residual df): {configurations} configurations x {seeds} "
            f"seeds can resolve a difference of about {planned['mde']:.4f} (minimum detectable "
            f"effect, {analysis.power:.0%} power) with simultaneous 95% intervals of about "
            f"+-{planned['half_width']:.4f}{left}. Verdicts come with the report at the end; "
            "a report before then is a look and spends part of the 5% error.")


def configuration_label(row):
    """``"sb/layer gate=tanh lambda_init=0.1"``-style name of a leaderboard row."""
    if row["attention"] == NO_ATTENTION:
        return "none (baseline)"
    hp = {k: v for k, v in row["hyperparameters"].items() if k != "learning_rate"}
    return " ".join(filter(None, [f"{row['attention']}/{row['placement']}", _hp_text(hp)]))


def plot_configurations(rows, out_dir):
    """Two PNGs with error bars (matplotlib): each configuration's validation accuracy (mean +-
    std, every run as a dot), and its paired difference to the baseline (95% interval).

    Returns the list of files written.
    """
    rundir = as_rundir(out_dir)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["val_accuracy_mean"] is not None]
    paths = []
    if not done:
        return paths
    labels = [_wrap(configuration_label(r), _ROW_LABEL_CHARS) for r in done]

    fig, ax = plt.subplots(figsize=(_ROWS_PLOT_WIDTH, _rows_plot_height(labels)))
    ys = list(range(len(done)))[::-1]
    for y, r in zip(ys, done):
        color = "gray" if r["attention"] == NO_ATTENTION else "C0"
        ax.errorbar(r["val_accuracy_mean"], y, xerr=r["val_accuracy_std"] or 0, fmt="o",
                    color=color, capsize=4)
        shown = [v for v in r["runs"].values() if v is not None and math.isfinite(v)]
        ax.scatter(shown, [y] * len(shown), s=12, color=color, alpha=0.5)
    paths.append(_save_rows_plot(
        plt, fig, ax, ys, labels, rundir.accuracy_plot, "Configurations",
        "validation accuracy (mean +- std over seeds; dots: single runs)"))

    others = [r for r in done
              if r["attention"] != NO_ATTENTION and r["delta_vs_baseline"] is not None]
    if others:
        labels = [_wrap(configuration_label(r), _ROW_LABEL_CHARS) for r in others]
        fig, ax = plt.subplots(figsize=(_ROWS_PLOT_WIDTH, _rows_plot_height(labels)))
        ys = list(range(len(others)))[::-1]
        for y, r in zip(ys, others):
            delta = r["delta_vs_baseline"]
            own_low, own_high = r["paired_ci95_low"], r["paired_ci95_high"]
            if own_low is not None:  # the unpooled, unadjusted interval, thin, for contrast
                ax.errorbar(delta, y - 0.18, xerr=[[delta - own_low], [own_high - delta]],
                            fmt="none", ecolor="lightgray", capsize=2, lw=1)
            low, high = r["sim_ci95_low"], r["sim_ci95_high"]
            err = None if low is None else [[delta - low], [high - delta]]
            ax.errorbar(delta, y, xerr=err, fmt="o", capsize=4,
                        color="C2" if low is not None and low > 0 else
                        "C3" if high is not None and high < 0 else "C0")
        ax.axvline(0.0, color="gray", lw=1)
        analysis = getattr(rows, "analysis", None)
        mde = None if analysis is None else analysis.mde
        if mde is not None:
            ax.axvspan(-mde, mde, color="gray", alpha=0.08, lw=0)
        paths.append(_save_rows_plot(
            plt, fig, ax, ys, labels, rundir.delta_plot, "Attention vs no attention, same seeds",
            "difference to the baseline, validation accuracy: simultaneous 95% CI; "
            "gray: own paired CI" + ("" if mde is None else f"; band: +-MDE {mde:.3f}")))
    return paths


_COST_LABELS = {
    "params_added": "parameters added by attention",
    "flops_added": "forward FLOPs per image added by attention",
    "train_step": "train step time / baseline's (same device, side by side)",
    "inference_step": "inference step time / baseline's (same device, side by side)",
}


def plot_pareto(rows, out_dir):
    """``pareto_<measure>.png`` for every cost measure some configuration has: each
    configuration's difference to the baseline (simultaneous 95% interval) against its cost, the
    Pareto front joined, every point labelled. Returns the files written."""
    rundir = as_rundir(out_dir)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for measure, label in _COST_LABELS.items():
        pts = [r for r in rows if r["repeats"] and r.get(measure) is not None
               and r["delta_vs_baseline"] is not None]
        if len(pts) < 2:
            continue
        fig, ax = plt.subplots(figsize=(7.5, 5))
        for r in pts:
            low, high, delta = r["sim_ci95_low"], r["sim_ci95_high"], r["delta_vs_baseline"]
            err = None if low is None else [[delta - low], [high - delta]]
            on = r.get(f"pareto_{measure}")
            ax.errorbar(r[measure], delta, yerr=err, fmt="o", capsize=3,
                        color="C3" if on else "C0", alpha=1.0 if on else 0.7)
            # Labels of the right half's points extend to the left, so none runs off the figure.
            right = r[measure] > (min(p[measure] for p in pts) + max(p[measure] for p in pts)) / 2
            ax.annotate(_wrap(configuration_label(r), _POINT_LABEL_CHARS), (r[measure], delta),
                        fontsize=7, xytext=(-4 if right else 4, 4), textcoords="offset points",
                        ha="right" if right else "left", va="bottom")
        front = sorted((r for r in pts if r.get(f"pareto_{measure}")), key=lambda r: r[measure])
        if len(front) > 1:
            ax.step([r[measure] for r in front], [r["delta_vs_baseline"] for r in front],
                    where="post", color="C3", lw=1, label="Pareto front")
            ax.legend(fontsize=8)
        ax.axhline(0.0, color="gray", lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel("difference to the baseline, val accuracy (simultaneous 95% CI)")
        ax.set_title("Accuracy against cost (red: on the Pareto front)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = rundir.pareto_plot(measure)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


# Every text of a plot must lie inside its figure: long configuration labels
# ("dca_cbam/layer connection=softmax connection_form=official ...") and axis labels are wrapped
# to these widths (characters), the rows plots grow a line's height per wrapped line.
_ROWS_PLOT_WIDTH = 9.0  # inches
_ROW_LABEL_CHARS = 42
_AXIS_LABEL_CHARS = 70
_POINT_LABEL_CHARS = 30


def _wrap(text, width):
    """``text`` broken into lines of at most ``width`` characters (at spaces where it can)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _rows_plot_height(labels):
    """Inches for one row per label (8-point labels, ``\n`` for wrapped lines), title and axis."""
    lines = sum(label.count("\n") + 1 for label in labels)
    return 1.6 + 0.2 * len(labels) + 0.14 * lines


def _save_rows_plot(plt, fig, ax, ys, labels, path, title, xlabel):
    """Label a one-row-per-configuration plot, save it as PNG, close it; returns the path."""
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlabel(_wrap(xlabel, _AXIS_LABEL_CHARS))
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def best_and_baseline(rows, max_cost=None):
    """``(best, baseline)`` rows of :func:`configuration_rows`: the best configuration with
    attention (None if none finished a run), and the baseline (None if absent).

    The best is the first of the analysis' ranking (:attr:`search.decision.Decision.ranking`:
    the highest blocked estimate among the configurations with the most seeds shared with the
    baseline); without an analysis (no baseline run), the first row with attention and a run.
    ``max_cost``: ``[(measure, limit), ...]`` (:func:`search.costs.parse_max_cost`): only
    configurations whose measured costs are at most every limit can be best (a missing cost
    cannot).
    """
    limits = list(max_cost or [])

    def affordable(row):
        return all(row.get(m) is not None and row[m] <= v for m, v in limits)

    baseline = next((r for r in rows if r["attention"] == NO_ATTENTION), None)
    analysis = getattr(rows, "analysis", None)
    if analysis is not None:
        by_key = {configuration_key(r): r for r in rows}
        ranked = [by_key[k] for k in analysis.ranking]
    else:
        ranked = [r for r in rows if r["attention"] != NO_ATTENTION and r["repeats"]]
    best = next((r for r in ranked if affordable(r)), None)
    return best, baseline


def add_costs(rows, costs):
    """Write each row's measured costs (:func:`search.costs.measure_costs`) and, per cost measure,
    whether it is on the accuracy-cost Pareto front (``pareto_<measure>``: True, False, or None
    when the cost or the difference is missing) into the rows; ``cost_note`` gives the reasons
    for missing costs and the op types the FLOP count could not see."""
    from search.costs import pareto_front

    measured = costs.get("configurations", {}) if costs else {}
    for row in rows:
        entry = measured.get(row.get("config") or str(row["trial"]), {})
        for key in COST_COLUMNS:
            row[key] = entry.get(key)
        notes = [entry[k] for k in ("flops_reason", "train_step_reason") if entry.get(k)]
        if entry.get("flops_uncounted"):
            notes.append("FLOPs exclude " + ", ".join(entry["flops_uncounted"]))
        row["cost_note"] = "; ".join(notes)
    for measure in COST_MEASURES:
        front = pareto_front({id(r): (r["delta_vs_baseline"], r.get(measure)) for r in rows
                              if r["repeats"]})
        for row in rows:
            row[f"pareto_{measure}"] = front.get(id(row))
    return rows


def leaderboard_text(rows):
    """The leaderboard as aligned plain text, for the terminal, after the analysis paragraph."""
    lines = [f"{'rank':>4}  {'configuration':<40} {'n':>2}  {'val acc mean +- std':<19}  "
             f"{'delta [simultaneous 95% CI]':<29} {'adj. p':>7} {'wins':>5}  verdict"]
    for r in rows:
        verdict = r["verdict"] + (f" ({r['note']})" if r["note"] else "")
        if r["verdict"] == "" and r.get("verdict_reason"):
            verdict = f"no verdict: {r['verdict_reason']}"
        if _flags_text(r):
            verdict += f" ({_flags_text(r)})"
        if r["status"] != "COMPLETED":
            verdict += f" [{r['status']}]"
        lines.append(f"{r['rank']:>4}  {configuration_label(r)[:40]:<40} {r['repeats']:>2}  "
                     f"{_accuracy_text(r):<19}  {_delta_text(r, 'sim_ci95'):<29} "
                     f"{_fmt(r['p_adjusted'], '.3f'):>7} {r['wins'] or '':>5}  {verdict}")
    return "\n".join(lines)


_SUMMARY_KEYS = ("trial", "attention", "placement", "hyperparameters", "repeats",
                 "val_accuracy_mean", "val_accuracy_std", *_CONTRAST_FIELDS, "verdict",
                 "params", "params_added", *COST_COLUMNS, *PARETO_COLUMNS, "cost_note")


def _configuration_summary(row):
    out = {k: row.get(k) for k in _SUMMARY_KEYS}
    out["val_accuracy_runs"] = {str(k): v for k, v in row["runs"].items()}
    return out


def analysis_summary(analysis):
    """The analysis (a :class:`search.decision.Decision`) as a JSON-ready dict (None without
    one)."""
    if analysis is None:
        return None
    return {"how": analysis.method + "; the verdicts are read from those intervals; adjusted "
            "p-values are family-wise at this look; the minimum detectable effect is exact "
            "for equal noise (non-central t); a per-configuration F test flags runs noisier "
            "than the others' (search/decision.py)", **analysis.summary()}


def write_summary(out_dir, *, board, final, plots=(), timings=None, config=None, versions=None,
                  exports=None, costs=None):
    """Write ``summary.json``: the answer of the search, and how it was obtained.

    Holds the best configuration with attention and the baseline (validation statistics over
    the repeats, the blocked model's contrast with its simultaneous interval, adjusted p, minimum
    detectable effect, the own paired interval), the analysis itself (``analysis``), the test
    split's answer from ``final`` (:func:`search.final.finalize`: the search runs of the
    baseline and of every candidate for the best tested, ``test``; the kept model,
    ``best_model``), the overhead per run, timings, the
    configuration and versions, and the files written (``exports``: the exported best model's
    artifacts, relative to ``out_dir``). Returns the dict.
    """
    best, baseline = best_and_baseline(board)
    overheads = [r["overhead_seconds"] for r in board if r.get("overhead_seconds") is not None]
    test = {k: v for k, v in (final.get("search_test") or {}).items() if k != "key"}
    kept = {k: v for k, v in (final.get("best_model") or {}).items() if k != "key"}
    summary = {
        "how": "Every configuration is trained with the same recipe and, for each seed, the same "
        "initial backbone and head weights and data order as the baseline (no attention); "
        "val_accuracy is the last epoch's, averaged over the seeds (std with ddof=1); "
        "delta_vs_baseline is the blocked model's contrast with its simultaneous 95% interval "
        "(analysis.how); the best is the highest of those among the configurations with the "
        "most seeds (analysis.best_reason). The test split answers twice: the search runs of "
        "the baseline and of every configuration that could have been chosen tested, with an "
        "interval simultaneous over all of them so that it holds for the chosen one (test.how); "
        "and the kept model, the best configuration retrained on the full training split "
        "(best_model.how).",
        "best": None if best is None else _configuration_summary(best),
        "baseline": None if baseline is None else _configuration_summary(baseline),
        "analysis": analysis_summary(getattr(board, "analysis", None)),
        "costs": None if not costs else {
            "how": costs.get("how"), "seconds": costs.get("seconds"),
            "settings": costs.get("settings"),
            "configurations": {r["config"]: {k: r.get(k) for k in (
                "attention", "placement", "params_added", *COST_COLUMNS, "cost_note")}
                for r in board if r["repeats"]}},
        "test_accuracy": kept.get("test_accuracy"),
        "baseline_test_accuracy": (test.get("baseline") or {}).get("test_accuracy"),
        "test_delta_vs_baseline": test.get("delta_vs_baseline"),
        "test": test,
        "best_model": kept,
        "configurations": len(board),
        "failed": sum(r["status"] in ("FAILED", "INVALID") for r in board),
        "overhead_seconds_per_run": (sum(overheads) / len(overheads)) if overheads else None,
        "timings_seconds": timings or {},
        "config": config or {},
        "files": {
            "leaderboard": [RunDir.leaderboard_csv, RunDir.leaderboard_md],
            "best_model": RunDir.best_model,
            "best_search_model": RunDir.best_search_model,
            "baseline_model": RunDir.baseline_model,
            "exports": list(exports or []),
            "plots": [os.path.basename(p) for p in plots],
            "final": RunDir.final,
            "tensorboard": RunDir.logs,
            "tuner_project": RunDir.project,
        },
        "versions": versions or {},
    }
    write_json(as_rundir(out_dir).summary, summary)
    return summary


def summary_lines(summary):
    """A few lines for the terminal: the answer, with its uncertainty and how it was measured."""
    lines = []
    best, analysis = summary["best"], summary.get("analysis")
    if best is not None:
        ci = (f"no interval: {best.get('verdict_reason') or 'no residual df'}"
              if best["sim_ci95_low"] is None else
              f"simultaneous 95% CI [{best['sim_ci95_low']:+.4f}, {best['sim_ci95_high']:+.4f}]"
              f", adjusted p {best['p_adjusted']:.3g}, wins {best['wins']}")
        lines.append(
            f"best attention: {configuration_label(best)}: val_accuracy "
            f"{best['val_accuracy_mean']:.4f} over {best['repeats']} seed(s), "
            f"{_signed(best['delta_vs_baseline'])} vs the baseline ({ci}): "
            f"{best['verdict'] or 'no verdict'}")
    if analysis and analysis.get("mde") is not None:
        lines.append(
            f"what this budget could find: simultaneous half-width up to "
            f"{analysis['half_width']:.4f}, minimum detectable effect {analysis['mde']:.4f} "
            f"(80% power; pooled sd of a run {analysis['residual_sd']:.4f}, "
            f"{analysis['residual_df']} residual df, "
            f"{_count(analysis['comparisons'], 'comparison')}, critical value {analysis['critical_value']:.2f} at look {analysis['look']}, "
            f"family-wise error spent {analysis['alpha_spent']:.3f})")
    test = summary.get("test") or {}
    for name in ("best", "baseline"):
        entry = test.get(name)
        if entry:
            std = entry.get("test_accuracy_std")
            lines.append(f"test accuracy, {name} (search runs): {entry['test_accuracy']:.4f}"
                         + ("" if std is None else f" +- {std:.4f}")
                         + f" over {len(entry['runs'])} seed(s)")
    if test.get("delta_vs_baseline") is not None:
        if test.get("sim_ci95_low") is not None:
            ci = (f"simultaneous 95% CI over {_count(test['candidates_tested'], 'candidate')} "
                  f"[{test['sim_ci95_low']:+.4f}, {test['sim_ci95_high']:+.4f}]: "
                  f"{test['verdict']}")
        elif test.get("verdict_reason"):
            ci = f"no interval: {test['verdict_reason']}"
        else:
            ci = ("no interval with one seed" if test["paired_ci95_low"] is None else
                  f"own paired 95% CI [{test['paired_ci95_low']:+.4f}, "
                  f"{test['paired_ci95_high']:+.4f}], not adjusted for the choice")
        lines.append(f"test difference best - baseline: {test['delta_vs_baseline']:+.4f} ({ci})")
    kept = summary.get("best_model") or {}
    if kept.get("test_accuracy") is not None:
        std = kept.get("test_accuracy_std")
        lines.append(f"best_model.keras: test accuracy {kept['test_accuracy']:.4f}"
                     + ("" if std is None else f" +- {std:.4f}") + f" ({kept['how']})")
    if summary.get("overhead_seconds_per_run") is not None:
        lines.append(f"overhead per run (tracing, first steps): "
                     f"{summary['overhead_seconds_per_run']:.1f}s on average")
    lines.append(f"total {summary['timings_seconds'].get('total', 0):.0f}s; "
                 "leaderboard.md, summary.json and plots in the output directory")
    return lines
