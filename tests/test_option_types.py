"""search.option_types directly: what each option's type makes of its text. (The messages argparse
prints with them, one line naming the option, are in test_cli.py's bad options.)"""

import argparse

import pytest

from search import option_types as t


@pytest.mark.parametrize("text, value", [
    ("5000", 5000), (" 12 ", 12),  # a count of images
    ("0.25", 0.25), ("0", 0.0), ("0.0", 0.0),  # a fraction (0: no validation split)
])
def test_split_is_a_count_or_a_fraction(text, value):
    got = t.split(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text", ["1.0", "-3", "1e3", "many"])
def test_split_refuses_what_is_neither(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected a number in \[0, 1\)"):
        t.split(text)


def test_csv_list_lowercases_and_drops_blanks():
    assert t.csv_list(" SA, ,simam,") == ["sa", "simam"]
    with pytest.raises(argparse.ArgumentTypeError, match="got an empty one"):
        t.csv_list(" , ")


def test_integer_bounds():
    assert t.positive_int("1") == 1 and t.non_negative_int("0") == 0
    assert t.seed(str(2**32 - 1)) == 2**32 - 1
    with pytest.raises(argparse.ArgumentTypeError, match=r"in \[0, 4294967295\], got '4294967296'"):
        t.seed(str(2**32))
    with pytest.raises(argparse.ArgumentTypeError, match="expected a positive integer, got '0'"):
        t.positive_int("0")
    custom = t.int_at_least(3, "an integer >= 3", maximum=5)
    assert custom("5") == 5
    with pytest.raises(argparse.ArgumentTypeError, match=r"in \[3, 5\], got '6'"):
        custom("6")


def test_float_bounds():
    assert t.learning_rate("10") == 10.0  # closed at the top
    assert t.fraction("0") == 0.0  # closed at the bottom
    for parse, text in ((t.learning_rate, "10.5"), (t.learning_rate, "0"), (t.fraction, "1"),
                        (t.positive_float, "nan"), (t.positive_float, "inf")):
        with pytest.raises(argparse.ArgumentTypeError, match=f"got '{text}'"):
            parse(text)


def test_max_cost_and_export_format():
    assert t.max_cost("train_step=1.1") == ("train_step", 1.1)
    with pytest.raises(argparse.ArgumentTypeError, match="MEASURE=LIMIT"):
        t.max_cost("speed=2")
    assert t.export_format("onnx") == "onnx"
    with pytest.raises(argparse.ArgumentTypeError, match="invalid choice: 'pb'"):
        t.export_format("pb")
