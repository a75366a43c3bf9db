"""search.stages directly: the 'which' stage of a space, the attention the 'where' stage explores
(the blocked estimate, not the raw mean), its space around the papers' values, when it does not
apply, and a stage's KerasTuner project name. Pure: no training, no tuner."""

import re

import pytest

from search.config import SpaceSpec
from search.stages import (WHERE, WHICH, StagePlan, top_attention, where_space, where_stage,
                           which_stage)

PAPER_VALUES = {"attention": ["none", "sa", "simam"], "placement": "paper", "groups": 64,
                "e_lambda": 1e-4}


def plan(**changes):
    base = dict(name=WHICH, space=PAPER_VALUES, configurations=None, tuner="random",
                max_trials=3, seeds=(0, 1, 2), oracle_seed=0, why="")
    return StagePlan(**{**base, **changes})


def row(attention, delta, mean=0.8):
    return {"attention": attention, "delta_vs_baseline": delta, "val_accuracy_mean": mean}


# ------------------------------------------------------------------ which


@pytest.mark.parametrize("space, why", [
    (SpaceSpec(space_values=PAPER_VALUES), "the attentions at their paper placement and values"),
    (SpaceSpec(space_values={"attention": ["none", "sa"]}, placement=("block",)),
     "the search's space"),
    (SpaceSpec(space_values={"attention": ["none", "sa"]}, hyperparameters="search"),
     "the search's space"),
    (SpaceSpec(configurations=(("t/base", {"attention": None}),), preset="t"),
     "a paper's table"),
])
def test_which_stage_says_why(space, why):
    stage = which_stage(space, [3, 4], max_trials=5.0, oracle_seed=3)
    assert stage.why == why and stage.name == WHICH
    assert stage.seeds == (3, 4) and stage.max_trials == 5 and stage.oracle_seed == 3
    if space.configurations is None:
        assert stage.space == space.space_values and stage.configurations is None
    else:
        assert stage.space is None and stage.configurations == space.configurations


# ------------------------------------------------------------------ the top attention


def test_top_attention_is_the_highest_blocked_estimate_not_the_highest_mean():
    rows = [row("none", 0.0, mean=0.80), row("sa", 0.004, mean=0.83),
            row("simam", 0.010, mean=0.81), row("sb", None, mean=0.90)]
    # sb has the highest mean but no estimate (no seed shared with the baseline); sa's mean is
    # higher than simam's, but simam's blocked estimate is.
    attention, best = top_attention(rows)
    assert attention == "simam" and best is rows[2]


def test_top_attention_picks_the_least_bad_and_never_the_baseline():
    rows = [row("none", 0.0), row("sa", -0.02), row("sb", -0.01)]
    assert top_attention(rows)[0] == "sb"
    assert top_attention([row("none", 0.0), row("sa", None)]) == (None, None)
    assert top_attention([]) == (None, None)


# ------------------------------------------------------------------ where


def test_where_space_is_both_placements_and_each_argument_around_the_papers_value():
    # SA-Net's G = 64 among 8, 16, 32, 64: the paper's and its one neighbour.
    assert where_space("sa") == {"attention": ["none", "sa"], "placement": ["block", "layer"],
                                 "groups": [32, 64]}
    # SimAM's lambda = 1e-4 among 1e-1 ... 1e-6: one neighbour each side.
    assert where_space("simam")["e_lambda"] == [1e-5, 1e-4, 1e-3]
    sb = where_space("sb")
    assert sb["lambda_init"] == [0.05, 0.1, 0.5]
    # A gate has no order: every choice (SB paper, Table 9).
    assert sb["gate"] == ["tanh", "sigmoid", "softmax", "relu", "none"]
    dca = where_space("dca_se")
    assert dca["connection"] == ["direct", "weighted", "softmax"]
    assert dca["connection_form"] == ["paper", "official"]


def test_where_space_keeps_a_fixed_argument_only_when_the_class_takes_it():
    fixed = {"use_norm": False, "e_lambda": 1e-2, "groups": 16}
    sa = where_space("sa", fixed)
    # SA takes use_norm: kept; it does not take e_lambda: dropped; groups is searched around
    # the paper's value, not fixed by the earlier stage's value.
    assert sa["use_norm"] is False and "e_lambda" not in sa and sa["groups"] == [32, 64]
    simam = where_space("simam", fixed)
    assert "use_norm" not in simam and "groups" not in simam
    assert simam["e_lambda"] == [1e-5, 1e-4, 1e-3]


def test_where_stage_explores_the_top_attention_with_the_which_stages_seeds_and_tuner():
    which = plan(space={**PAPER_VALUES, "use_norm": False, "shuffle": [True, False]},
                 tuner="bayesian", seeds=(5, 6), oracle_seed=5)
    rows = [row("none", 0.0), row("sa", 0.0123), row("simam", 0.002)]
    stage, reason = where_stage(which, rows, where_trials=3)
    assert reason == "" and stage.name == WHERE
    assert stage.tuner == "bayesian" and stage.seeds == (5, 6) and stage.oracle_seed == 5
    assert stage.max_trials == 1 + 3  # the baseline besides the drawn ones
    # Scalars of the which space are kept where the class takes them; a list (searched there)
    # and the attention/placement choices are not.
    assert stage.space == {"attention": ["none", "sa"], "placement": ["block", "layer"],
                           "groups": [32, 64], "use_norm": False}
    assert stage.configurations is None
    assert "sa ranked highest in stage 'which' by the blocked estimate (+0.0123" in stage.why


def test_where_stage_does_not_apply_to_a_preset_or_without_an_estimate():
    table = plan(space=None, configurations=(("t/base", {"attention": None}),))
    assert where_stage(table, [row("sa", 0.1)]) == (
        None, "a preset's table has no space to explore")
    assert where_stage(plan(), [row("none", 0.0), row("sa", None)]) == (
        None, "no attention configuration has an estimate against the baseline")


# ------------------------------------------------------------------ the plan's project


def test_the_project_depends_on_what_the_stage_asks_for_not_on_how_far_it_goes():
    base = plan()
    assert re.fullmatch(r"which-[0-9a-f]{10}", base.project)
    # An equal plan (the seeds a list, the space rebuilt) names the same project...
    assert plan(seeds=[0, 1, 2], space=dict(PAPER_VALUES)).project == base.project
    # ... and so does a larger budget or another reason: the same project continues.
    assert plan(max_trials=9, why="again").project == base.project
    # What it asks for names another one.
    for other in (plan(seeds=(0, 1, 2, 3)), plan(space={**PAPER_VALUES, "groups": 32}),
                  plan(tuner="bayesian"), plan(oracle_seed=1), plan(name=WHERE)):
        assert other.project != base.project
    assert plan(name=WHERE).project.startswith("where-")


@pytest.mark.parametrize("stage", [
    plan(why="because", max_trials=7),
    plan(space=None, configurations=(("t/base", {"attention": None}),
                                     ("t/sa", {"attention": "sa", "placement": "block"}))),
])
def test_a_plan_round_trips_through_json(stage):
    data = stage.to_json()
    assert data["project"] == stage.project and data["max_trials"] == stage.max_trials
    assert StagePlan.from_json(data) == stage
    assert StagePlan.from_json(data).project == stage.project


def test_a_plan_read_back_has_the_same_project_even_with_tuples_in_it():
    # A preset row's placement tuple comes back from JSON as a list: another Python value, the
    # same project (the identity is taken as JSON gives it back).
    stage = plan(space=None, configurations=(
        ("t/sb", {"attention": "sb", "placement": ("expand", "project")}),))
    back = StagePlan.from_json(stage.to_json())
    assert back.project == stage.project
