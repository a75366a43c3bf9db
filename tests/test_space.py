"""search.space functions not covered through the hypermodel (test_hypermodel.py): the papers'
space the CLI searches by default, the number of configurations of a space (the default
--max-trials), and a trial's line from a plain dict."""

import pytest

from search.space import count_configurations, describe_hyperparameters, normalize_space, \
    paper_space


# ------------------------------------------------------------------ paper_space


def test_paper_space_fixes_each_argument_of_the_chosen_attentions_at_its_papers_value():
    space = paper_space({"attention": ["none", "sa", "sb"]})
    # SA-Net's G = 64; SB's lambda_init 0.1 (Table 8) and tanh gate (Table 9); each at its
    # paper placement.
    assert space == {"attention": ["none", "sa", "sb"], "placement": "paper", "groups": 64,
                     "lambda_init": 0.1, "gate": "tanh"}


def test_paper_space_of_the_default_attentions():
    space = paper_space()
    assert "attention" not in space  # the default list is the space's, not written
    assert space == {"placement": "paper", "groups": 64, "e_lambda": 1e-4, "lambda_init": 0.1,
                     "gate": "tanh", "connection": "direct", "connection_form": "paper"}


def test_paper_space_keeps_what_the_user_set():
    given = {"attention": "SA", "placement": "block", "groups": [8, 16]}
    space = paper_space(given)
    assert space == given and space is not given  # nothing added, nothing changed
    assert paper_space({"attention": ["simam"], "e_lambda": 1e-2}) == {
        "attention": ["simam"], "placement": "paper", "e_lambda": 1e-2}


def test_paper_space_of_the_baseline_alone_has_no_placement():
    # A placement for the baseline alone is refused by normalize_space.
    assert paper_space({"attention": ["none"]}) == {"attention": ["none"]}
    normalize_space(paper_space({"attention": ["none"]}))


# ------------------------------------------------------------------ count_configurations


@pytest.mark.parametrize("space, count", [
    (None, 1 + 4 * 2),  # the baseline, then sa, simam, sb, dca_se at block and layer
    ({"attention": ["none", "sa"], "placement": "layer"}, 2),
    ({"attention": ["sa", "sb"], "placement": ["block", "layer", "paper"]}, 2 * 3),
    ({"attention": "none"}, 1),
    # Searched arguments do not multiply it: each pair is counted once.
    ({"attention": ["none", "sb"], "gate": ["tanh", "relu"], "placement": "block"}, 2),
])
def test_count_configurations_is_the_baseline_and_each_pair_once(space, count):
    assert count_configurations(normalize_space(space)) == count


# ------------------------------------------------------------------ describe_hyperparameters


def test_a_dict_is_described_in_the_users_order_unknown_keys_last():
    values = {"zeta": 2, "learning_rate": 0.123456, "alpha_key": True, "gate": "relu",
              "attention": "sb", "placement": "layer", "lambda_init": None}
    # attention, placement, the layers' arguments, learning rate; then the others by name.
    assert describe_hyperparameters(values) == (
        "attention=sb placement=layer gate=relu learning_rate=0.123 alpha_key=True zeta=2")
    assert describe_hyperparameters({"learning_rate": 0.123456}, float_format=".2e") == (
        "learning_rate=1.23e-01")
