"""search.oracles directly, on fake oracles: the baseline's values in a space, whether a trial ran
them, the (attention, placement) pairs to balance, and the redraws that balance them. (The whole
protocol through a real tuner is in test_protocol.py and test_tuning.py.)"""

import types

import keras_tuner as kt
import pytest

from search.oracles import PairedOracleMixin, baseline_values, ran_baseline
from search.space import normalize_space


def declared(space):
    hp = kt.HyperParameters()
    normalize_space(space).declare(hp)
    return hp


def oracle(space, trials=()):
    """What the functions read of an oracle: its space and its trials' values."""
    return types.SimpleNamespace(
        hyperparameters=declared(space) if isinstance(space, dict) else space,
        trials={str(i): types.SimpleNamespace(hyperparameters=types.SimpleNamespace(values=v))
                for i, v in enumerate(trials)})


# ------------------------------------------------------------------ the baseline


@pytest.mark.parametrize("space", [
    {"attention": ["none", "sa", "sb"], "placement": ["block", "layer"]},
    {"attention": ["none", "sa"], "placement": "layer", "use_norm": [True, False]},
    {"attention": "none"},
])
def test_the_baseline_is_none_with_only_its_active_values(space):
    # Placement and the attentions' arguments are conditional on an attention: the baseline
    # has none of them, only the (fixed) learning rate.
    assert baseline_values(oracle(space)) == {"attention": "none", "learning_rate": 0.1}


@pytest.mark.parametrize("space", [{"attention": ["sa"]}, {"attention": ["sa", "sb"]}])
def test_no_baseline_when_none_is_not_a_choice(space):
    assert baseline_values(oracle(space)) is None


def test_named_configurations_have_their_first_as_the_baseline():
    hp = kt.HyperParameters()
    hp.Choice("configuration", ["t/base", "t/sa", "t/sb"], default="t/base")
    hp.Fixed("learning_rate", 0.05)
    assert baseline_values(oracle(hp)) == {"configuration": "t/base", "learning_rate": 0.05}


def test_ran_baseline_ignores_the_learning_rate():
    baseline = {"attention": "none", "learning_rate": 0.1}
    space = {"attention": ["none", "sa"]}
    assert not ran_baseline(oracle(space), baseline)
    assert not ran_baseline(oracle(space, [{"attention": "sa", "placement": "block",
                                            "learning_rate": 0.1}]), baseline)
    # A searched learning rate: the baseline at another rate is still the baseline.
    assert ran_baseline(oracle(space, [{"attention": "sa"}, {"attention": "none",
                                                             "learning_rate": 0.03}]), baseline)


# ------------------------------------------------------------------ balanced pairs


@pytest.mark.parametrize("space, pairs", [
    ({"attention": ["none", "sa", "sb"], "placement": ["block", "layer"]},
     [("sa", "block"), ("sa", "layer"), ("sb", "block"), ("sb", "layer")]),
    ({"attention": ["none", "sa", "sb"], "placement": "layer"}, [("sa", "layer"), ("sb", "layer")]),
    ({"attention": ["sa"], "placement": ["block", "paper"]}, [("sa", "block"), ("sa", "paper")]),
    ({"attention": "none"}, []),  # nothing to balance
])
def test_all_pairs_are_every_attention_at_every_placement(space, pairs):
    assert PairedOracleMixin._all_pairs(oracle(space)) == pairs


def test_all_pairs_without_a_placement_or_an_attention():
    hp = kt.HyperParameters()
    hp.Choice("attention", ["none", "sa"])
    assert PairedOracleMixin._all_pairs(oracle(hp)) == [("sa", None)]
    named = kt.HyperParameters()
    named.Choice("configuration", ["t/base", "t/sa"])
    assert PairedOracleMixin._all_pairs(oracle(named)) == []


class _Draws:
    """An oracle whose own draws are scripted (what KerasTuner's random draw would give)."""

    def __init__(self, space, trials, draws, duplicate=False):
        fake = oracle(space, trials)
        self.hyperparameters, self.trials = fake.hyperparameters, fake.trials
        self.draws = list(draws)
        self.drawn = 0
        self.duplicate = duplicate

    def _random_values(self):
        self.drawn += 1
        return self.draws.pop(0) if self.draws else None

    def _duplicate(self, values):  # KerasTuner's record of the values tried (kt_private)
        return self.duplicate


class _Paired(PairedOracleMixin, _Draws):
    pass


SPACE = {"attention": ["none", "sa", "sb"], "placement": ["block", "layer"]}
BASE = {"attention": "none", "learning_rate": 0.1}


def pair(attention, placement):
    return {"attention": attention, "placement": placement, "learning_rate": 0.1}


def test_the_baseline_comes_first():
    paired = _Paired(SPACE, [], [pair("sa", "block")])
    assert paired._random_values() == BASE and paired.drawn == 0
    # Asked for already (a trial with it is running): the oracle draws.
    again = _Paired(SPACE, [], [pair("sa", "block")], duplicate=True)
    assert again._random_values() == pair("sa", "block")


def test_draws_are_redrawn_until_their_pair_is_one_of_the_least_tried():
    tried = [BASE, pair("sa", "block"), pair("sa", "layer"), pair("sb", "block")]
    # sb/layer is the only pair not yet tried: the draws of tried pairs are rejected.
    paired = _Paired(SPACE, tried, [pair("sa", "block"), pair("sb", "block"),
                                    pair("sb", "layer"), pair("sa", "layer")])
    assert paired._random_values() == pair("sb", "layer") and paired.drawn == 3
    # Once every pair has one trial, any pair is one of the least tried: the first draw stands.
    every = _Paired(SPACE, tried + [pair("sb", "layer")], [pair("sa", "block")])
    assert every._random_values() == pair("sa", "block") and every.drawn == 1


def test_a_space_with_nothing_left_to_draw_keeps_the_last_draw():
    tried = [BASE, pair("sa", "block"), pair("sa", "layer"), pair("sb", "block")]
    paired = _Paired(SPACE, tried, [pair("sa", "block"), pair("sa", "layer")])
    assert paired._random_values() == pair("sa", "layer") and paired.drawn == 3


def test_unpaired_oracles_draw_as_their_algorithm_does():
    paired = _Paired(SPACE, [], [pair("sa", "block")])
    paired.paired = False
    assert paired._random_values() == pair("sa", "block")  # no baseline first
