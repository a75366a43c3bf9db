"""search.final's bookkeeping directly: a section of ``final.json`` is kept for the key it was
made for and emptied for another (other configurations, seeds or epochs). (Damaged files are in
test_rundir.py; the final stage end to end in test_cli.py.)"""

import pytest

from search.final import _section


def test_a_new_section_holds_its_key():
    done = {}
    section = _section(done, "best_model", {"config": "abc", "seeds": [0]})
    assert section == {"key": {"config": "abc", "seeds": [0]}} and done["best_model"] is section


def test_a_section_for_the_same_key_is_kept_with_what_it_holds():
    key = {"seeds": [0, 1], "best_config": "abc", "baseline_config": "def"}
    done = {"search_test": {"key": dict(key), "best": {"runs": {"0": 0.9}}},
            "train_seconds": 12.0}
    section = _section(done, "search_test", key)
    assert section["best"] == {"runs": {"0": 0.9}} and section is done["search_test"]
    assert done["train_seconds"] == 12.0


def test_a_section_for_another_key_is_emptied():
    done = {"best_model": {"key": {"config": "abc", "final_epochs": 2, "seeds": [0]},
                           "runs": {"0": 0.91}},
            "search_test": {"key": {"seeds": [0]}, "best": {"runs": {"0": 0.9}}}}
    # Another number of epochs: the kept model's runs are not those asked for now.
    section = _section(done, "best_model", {"config": "abc", "final_epochs": 3, "seeds": [0]})
    assert section == {"key": {"config": "abc", "final_epochs": 3, "seeds": [0]}}
    assert done["best_model"] is section
    assert done["search_test"]["best"] == {"runs": {"0": 0.9}}  # the other section untouched


def test_a_section_of_the_wrong_type_is_replaced():
    done = {"best_model": [1, 2]}
    assert _section(done, "best_model", {"config": "x"}) == {"key": {"config": "x"}}


class _Runs:
    """A run store's view with every run present (``search.final.StoredRuns``'s interface)."""

    epochs = 2

    def record(self, row, seed):
        return object()


def test_test_evaluations_are_reused_by_any_section_that_asks_again():
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    # A search grown from 3 to 5 seeds asks a candidate's test evaluations again under a new
    # section key: the 3 it has are taken from test_evaluations, only seeds 3 and 4 are left.
    from search.final import _evaluate

    row = {"config": "abc", "attention": "simam", "configuration": {"attention": "simam"}}
    evaluated = {"abc@2": {"0": 0.81, "1": 0.82, "2": 0.83}, "other@2": {"3": 0.5}}
    entry = {"config": "abc", "runs": {}}
    built = []

    class Hypermodel:
        def build_configuration(self, *args, **kwargs):
            built.append(kwargs["seed"])
            raise RuntimeError("stop: only what is missing is built")

    with pytest.raises(RuntimeError, match="only what is missing"):
        _evaluate(entry, row, [0, 1, 2, 3, 4], _Runs(), Hypermodel(), strategy, None,
                  evaluated=evaluated)
    assert built == [3] and entry["runs"] == {"0": 0.81, "1": 0.82, "2": 0.83}
    # All known: nothing to build; a role's entry (it saves its model) evaluates its own runs.
    entry = {"config": "abc", "runs": {}}
    assert _evaluate(entry, row, [0, 2], _Runs(), Hypermodel(), strategy, None,
                     evaluated=evaluated) is False
    assert entry["runs"] == {"0": 0.81, "2": 0.83}
    with pytest.raises(RuntimeError):
        _evaluate({"runs": {}}, row, [0], _Runs(), Hypermodel(), strategy, None,
                  save=lambda model, seed: None, evaluated=evaluated)
