"""keras_attn.presets: every row builds, parameter counts against the papers' tables."""

import numpy as np
import pytest

from keras_attn import build_model
from keras_attn.presets import UNSUPPORTED, available_presets, get_preset, list_presets

ROWS = [row for name in available_presets() for row in get_preset(name).rows]


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_every_row_builds_and_matches_the_papers_parameters(row):
    shape = row.recipe["input_shape"]
    if shape[0] > 64:
        shape = (64, 64, shape[-1])  # ImageNet rows: the count does not depend on the size
    model = build_model(**row.model, input_shape=shape, num_classes=row.recipe["num_classes"])
    assert model.output_shape == (None, row.recipe["num_classes"])
    if row.paper_params is not None:
        got = trainable(model)
        scale = 1e5 if row.paper_params % 100_000 == 0 and row.paper_params >= 1_500_000 else \
            1e4 if row.paper_params % 10_000 == 0 else 1e3
        assert round(got / scale) == round(row.paper_params / scale), (row.name, got)


def test_names_tables_and_baselines():
    names = [r.name for r in ROWS]
    assert len(names) == len(set(names)) and all(n == n.lower() for n in names)
    for name in available_presets():
        preset = get_preset(name)
        assert sum(r.is_baseline for r in preset.rows) == 1, name
        assert all(r.name.startswith(name + "/") for r in preset.rows)
    assert {"sb-table5", "sb-table8", "sb-table9", "sb-table10", "sa-table2",
            "simam-lambda"} <= set(available_presets())


def test_one_row_keeps_its_baseline():
    one = get_preset("sb-table9/sigmoid")
    assert [r.name for r in one.rows] == ["sb-table9/static", "sb-table9/sigmoid"]
    assert one.rows[1].model["attention_kwargs"] == {"gate": "sigmoid"}
    assert get_preset("SB-Table9") is get_preset("sb-table9")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown preset 'sb-table99'; valid: sa-table2, "):
        get_preset("sb-table99")
    with pytest.raises(ValueError, match=r"Unknown preset row 'sb-table9/gelu'; rows of "
                                         r"'sb-table9': sb-table9/static"):
        get_preset("sb-table9/gelu")


def test_list_presets_names_every_row_and_what_is_not_expressible():
    text = list_presets()
    for row in ROWS:
        assert row.name in text
    assert "1.441M" in text and "not expressible" in text and len(UNSUPPORTED) >= 5
