"""search.report's row logic directly, on made-up rows: a configuration's label, the order of the
rows, the best configuration under a cost budget, and the costs and Pareto flags written into
the rows. (The statistics are in test_analysis.py and test_protocol.py, the plots in
test_report_plots.py.)"""

import math

import pytest

from search.report import add_costs, best_and_baseline, configuration_label, sort_rows


# ------------------------------------------------------------------ labels


@pytest.mark.parametrize("row, label", [
    ({"attention": "none", "placement": "", "hyperparameters": {"groups": 64}},
     "none (baseline)"),
    ({"attention": "sa", "placement": "block", "hyperparameters": {}}, "sa/block"),
    # Sorted by name, floats in 3 significant digits, the learning rate left out (the recipe's).
    ({"attention": "sb", "placement": "layer",
      "hyperparameters": {"lambda_init": 0.123456, "gate": "tanh", "learning_rate": 0.05}},
     "sb/layer gate=tanh lambda_init=0.123"),
    ({"attention": "dca_se", "placement": "paper",
      "hyperparameters": {"connection": "softmax", "reduction": 16}},
     "dca_se/paper connection=softmax reduction=16"),
])
def test_configuration_label(row, label):
    assert configuration_label(row) == label


# ------------------------------------------------------------------ order


def scored(trial, score, status="COMPLETED"):
    return {"trial": trial, "val_accuracy": score, "status": status}


def test_sort_rows_best_first_then_by_status_then_unscored_last():
    rows = [scored("1", 0.80), scored("2", None), scored("3", 0.85), scored("4", math.nan),
            scored("5", 0.90, "RUNNING"), scored("6", 0.80), scored("7", 0.70, "FAILED")]
    ordered = sort_rows(rows)
    # Finished ones by score (ties by trial id), then a running one, then a failed one, then
    # those without a score (None, NaN).
    assert [r["trial"] for r in ordered] == ["3", "1", "6", "5", "7", "2", "4"]
    assert [r["rank"] for r in ordered] == [1, 2, 3, 4, 5, 6, 7]


# ------------------------------------------------------------------ the best under a budget


def board_row(attention, repeats=2, **costs):
    return {"attention": attention, "repeats": repeats, **costs}


def test_best_and_baseline_take_the_first_affordable_attention_with_runs():
    rows = [board_row("sb", repeats=0, params_added=1),  # no finished run: never best
            board_row("sa", params_added=500, train_step=1.02),
            board_row("simam", params_added=0, train_step=1.20),
            board_row("none", params_added=0, train_step=1.0)]
    best, baseline = best_and_baseline(rows)
    assert best["attention"] == "sa" and baseline["attention"] == "none"
    # Every limit must hold: sa is over the parameters', simam over the step time's.
    assert best_and_baseline(rows, [("params_added", 100)])[0]["attention"] == "simam"
    assert best_and_baseline(rows, [("params_added", 100), ("train_step", 1.1)]) == (
        None, rows[3])
    # A limit is "at most": equal passes.
    assert best_and_baseline(rows, [("params_added", 500)])[0]["attention"] == "sa"
    assert best_and_baseline(rows[:3]) == (rows[1], None)  # no baseline row


# ------------------------------------------------------------------ costs


def test_add_costs_writes_each_rows_costs_notes_and_pareto_flags():
    rows = [
        {"config": "base", "trial": "0", "attention": "none", "repeats": 2,
         "delta_vs_baseline": 0.0, "params_added": 0},
        {"config": "a", "trial": "1", "attention": "sa", "repeats": 2,
         "delta_vs_baseline": 0.02, "params_added": 100},
        {"config": "b", "trial": "2", "attention": "simam", "repeats": 2,
         "delta_vs_baseline": 0.01, "params_added": 0},
        {"config": "c", "trial": "3", "attention": "sb", "repeats": 2,
         "delta_vs_baseline": 0.005, "params_added": 300},
        # No finished run: on no front, whatever its costs.
        {"config": "d", "trial": "4", "attention": "dca_se", "repeats": 0,
         "delta_vs_baseline": None, "params_added": 50},
    ]
    costs = {"configurations": {
        "base": {"flops": 1000, "flops_added": 0, "train_step": 1.0, "inference_step": 1.0},
        "a": {"flops": 1100, "flops_added": 100, "train_step": 1.3, "inference_step": 1.2},
        "b": {"flops": 1000, "flops_added": 0, "train_step": 1.1,
              "flops_uncounted": ["Erf", "Cumsum"]},
        "c": {"flops": 1050, "flops_added": 50, "train_step": None,
              "train_step_reason": "timing failed: OOM"},
    }}
    assert add_costs(rows, costs) is rows
    base, a, b, c, d = rows
    assert (a["flops"], a["flops_added"], a["train_step"]) == (1100, 100, 1.3)
    assert b["inference_step"] is None and d["flops"] is None
    assert b["cost_note"] == "FLOPs exclude Erf, Cumsum"
    assert c["cost_note"] == "timing failed: OOM" and a["cost_note"] == ""
    # Parameters added (gain, cost): base (0, 0), a (0.02, 100), b (0.01, 0), c (0.005, 300):
    # b dominates base and c; a is the most accurate.
    assert [r["pareto_params_added"] for r in rows] == [False, True, True, False, None]
    # FLOPs added: base (0, 0), a (0.02, 100), b (0.01, 0), c (0.005, 50): the same front.
    assert [r["pareto_flops_added"] for r in rows] == [False, True, True, False, None]
    # Train step: c has no time, so it is on no front; a (0.02, 1.3), b (0.01, 1.1) and the
    # baseline (0, 1.0) each trade accuracy for time.
    assert [r["pareto_train_step"] for r in rows] == [True, True, True, None, None]


def test_add_costs_without_costs_leaves_them_blank():
    rows = [{"config": "", "trial": "7", "attention": "sa", "repeats": 1,
             "delta_vs_baseline": 0.01, "params_added": 5}]
    add_costs(rows, None)
    assert rows[0]["flops"] is None and rows[0]["cost_note"] == ""
    assert rows[0]["pareto_params_added"] is True and rows[0]["pareto_train_step"] is None
    # A row without a config id is looked up by its trial.
    add_costs(rows, {"configurations": {"7": {"train_step": 1.5}}})
    assert rows[0]["train_step"] == 1.5
