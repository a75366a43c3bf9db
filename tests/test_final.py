"""search.final's bookkeeping directly: a section of ``final.json`` is kept for the key it was
made for and emptied for another (other configurations, seeds or epochs). (Damaged files are in
test_rundir.py; the final stage end to end in test_cli.py.)"""

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
