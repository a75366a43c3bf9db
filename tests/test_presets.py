"""keras_attn.presets: every row builds, counts equal the papers' (to their rounding) where the
architecture is the paper's, names unique, lookup errors, listing complete; the loader reads every
table file and refuses bad data naming the file, row and field."""

import dataclasses
import importlib.resources
import json

import numpy as np
import pytest

import keras_attn
from keras_attn import presets
from keras_attn.presets import _loader

ALL_ROWS = [row for name in presets.available_presets() for row in presets.get_preset(name).rows]
_COUNTS = {}


def _input_shape(row):
    shape = tuple(row.recipe["input_shape"])
    # ImageNet ResNets: parameter counts do not depend on the input size.
    return (64, 64, 3) if shape[0] > 64 else shape


def _count(row):
    key = json.dumps([row.model, row.recipe["num_classes"]], sort_keys=True, default=str)
    if key not in _COUNTS:
        model = keras_attn.build_model(
            **row.model, input_shape=_input_shape(row), num_classes=row.recipe["num_classes"]
        )
        _COUNTS[key] = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return _COUNTS[key]


def _rounding(paper_params):
    """Half a unit of the paper's last digit: counts are given as e.g. '1.441M' (thousands)."""
    return 500


def _is_slow(row):
    """ResNet-101/110 and the wide MobileNetV2s; Tables 8 and 9 at x0.5 (x0.35 covers the same
    kwargs). Keeps the default run under ~90 s on 2 cores; `-m slow` builds the rest."""
    alpha = row.model.get("alpha", 0)
    return (
        row.model["backbone"] in ("resnet101", "resnet110")
        or alpha >= 0.75
        or (alpha == 0.5 and row.table in ("Table 8", "Table 9"))
    )


def _params(rows):
    return [
        pytest.param(r, id=r.name, marks=[pytest.mark.slow] if _is_slow(r) else [])
        for r in rows
    ]


def test_names_unique_and_well_formed():
    names = [r.name for r in ALL_ROWS]
    assert len(names) == len(set(names))
    tables = presets.available_presets()
    assert tables == sorted(tables) and len(tables) == len(set(tables))
    for row in ALL_ROWS:
        table, _, slug = row.name.partition("/")
        assert table in tables and slug and row.name == row.name.lower()
        assert "backbone" in row.model and "attention" in row.model
        for key in ("input_shape", "num_classes", "seed"):
            assert key not in row.model
        assert row.is_baseline == (row.model["attention"] is None)


def test_each_table_has_at_most_one_baseline():
    for name in presets.available_presets():
        assert sum(r.is_baseline for r in presets.get_preset(name).rows) <= 1


@pytest.mark.parametrize("row", _params(ALL_ROWS))
def test_row_builds_with_paper_count(row):
    count = _count(row)
    assert count > 0
    if row.paper_params is not None:
        assert abs(count - row.paper_params) <= _rounding(row.paper_params), (
            row.name, count, row.paper_params)


def test_sanet_resnet50_attention_overheads_match_table1():
    """keras ResNet-50 has conv biases (25,583,592 vs the paper's 25.557M), so absolute counts
    differ; the attention *overheads* over the baseline match the paper's differences."""
    rows = {r.name.split("/")[1]: r for r in presets.get_preset("sanet-table1-resnet50").rows}
    base = _count(rows["resnet"])
    paper_delta = {"se": 28_088_000 - 25_557_000, "cbam": 28_090_000 - 25_557_000, "eca": 0,
                   "sa": 0}
    for slug, delta in paper_delta.items():
        assert abs((_count(rows[slug]) - base) - delta) <= 1000, slug
    assert _count(rows["sa"]) - base == 708  # 16 blocks x 6 params x C/(2G) channels


def test_get_preset_row_carries_baseline():
    preset = presets.get_preset("sb-table6-x035/sb")
    assert [r.name for r in preset.rows] == ["sb-table6-x035/static", "sb-table6-x035/sb"]
    single = presets.get_preset("sb-table10/hidden-x2")
    assert [r.name for r in single.rows] == ["sb-table10/hidden-x2"]
    for name in presets.available_presets():
        assert presets.get_preset(name).name == name


@pytest.mark.parametrize("bad", ["nope", "sb-table9", "sb-table10/hidden-x9", "", 3])
def test_get_preset_unknown_names(bad):
    with pytest.raises(ValueError, match="sb-table10"):
        presets.get_preset(bad)


def test_list_presets_contains_every_name():
    text = presets.list_presets()
    for name in presets.available_presets():
        assert name in text
    for row in ALL_ROWS:
        assert row.name in text


def test_unsupported_rows_have_reasons():
    for entry in presets.UNSUPPORTED:
        assert len(entry) == 4 and all(isinstance(x, str) and x for x in entry)


def _imported_modules(source):
    """Every module a Python source imports: ``import a.b``, ``from a import b`` (top-level or
    inside a function), and ``importlib.import_module("a")`` / ``__import__("a")`` with a literal
    name. Relative imports (``from . import x``) stay inside the package and are left out."""
    import ast

    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__"):
                names.append(node.args[0].value)
    return names


def test_imported_modules_finds_every_form():
    source = ("import os, search.cli\nfrom search import report\nfrom . import x\n"
              "def f():\n    import search\n    importlib.import_module('search.space')\n")
    assert sorted(_imported_modules(source)) == ["os", "search", "search", "search.cli",
                                                 "search.space"]


def test_keras_attn_does_not_import_search():
    # The layers package must work without the search (which depends on it, not the reverse):
    # no module of keras_attn, at any depth, imports search or one of its modules.
    import pathlib

    root = pathlib.Path(keras_attn.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 20 and root / "presets" / "_loader.py" in files
    offenders = {str(f.relative_to(root)): name for f in files
                 for name in _imported_modules(f.read_text(encoding="utf-8"))
                 if name == "search" or name.startswith("search.")}
    assert not offenders, offenders


# ---- the tables as data: what the loader reads, what it refuses -------------------------------


def test_every_table_and_row_is_loaded():
    """36 tables, 176 rows (README), and every JSON file beside the module is read."""
    assert len(presets.available_presets()) == 36
    assert len(ALL_ROWS) == 176
    data = importlib.resources.files("keras_attn.presets")
    files = sorted(f.name for f in data.iterdir() if f.name.endswith(".json"))
    assert files == ["dcanet.json", "sa_net.json", "shift_and_balance.json", "simam.json"]
    tables = [p.name for f in files for p in _loader.read_paper(f).presets]
    assert sorted(tables) == presets.available_presets()


def test_json_arrays_are_tuples():
    row = presets.get_preset("sb-table5/mobilenetv2-x035-sb-c1c3").rows[0]
    assert row.model["placement"] == ("expand", "project")
    assert row.recipe["input_shape"] == (32, 32, 3)
    assert presets.SB_CIFAR_RECIPE["input_shape"] == (32, 32, 3)


def test_simam_cifar100_recipe_extends_cifar10():
    c10 = presets.get_preset("simam-table2-resnet20-cifar10").rows[0].recipe
    c100 = presets.get_preset("simam-table2-resnet20-cifar100").rows[0].recipe
    assert (c10["dataset"], c10["num_classes"]) == ("cifar10", 10)
    assert (c100["dataset"], c100["num_classes"]) == ("cifar100", 100)
    assert {k: v for k, v in c100.items() if k not in ("dataset", "num_classes")} == {
        k: v for k, v in c10.items() if k not in ("dataset", "num_classes")}
    assert c100["iterations"] == 64_000 and list(c100)[:3] == ["dataset", "input_shape",
                                                               "num_classes"]


_SB_CIFAR_TABLES = ("Table 5", "Table 6", "Table 7", "Table 8", "Table 9")


def test_sb_counts_where_widths_mismatch_are_in_the_result():
    """SB Tables 5-9: x0.75 and x1.0 rows carry no count (the network differs by a few
    thousand), the paper's count is in the result instead; x0.35 and x0.5 rows carry it."""
    rows = [r for r in ALL_ROWS
            if r.paper == presets.SB_PAPER and r.table in _SB_CIFAR_TABLES and r.model["attention"]]
    assert len(rows) == 24 + 4 + 4 + 20 + 20
    for row in rows:
        wide = row.model["alpha"] in (0.75, 1.0)
        assert (row.paper_params is None) == wide, row.name
        assert ("; paper params " in row.paper_result) == wide, row.name


def test_sb_tables_6_to_9_reuse_the_table5_count():
    """Tables 6, 8 and 9 print no count of their own: each SB row is Table 5's C1+C2+C3 SB."""
    t5 = {r.model["alpha"]: r for r in presets.get_preset("sb-table5").rows
          if r.name.endswith("-sb-c1c2c3")}
    assert len(t5) == 4
    rows = [r for r in ALL_ROWS if r.paper == presets.SB_PAPER
            and r.table in ("Table 6", "Table 8", "Table 9") and r.model["attention"]]
    assert len(rows) == 4 + 20 + 20
    for row in rows:
        ref = t5[row.model["alpha"]]
        assert row.model["placement"] == ref.model["placement"], row.name
        assert row.paper_params == ref.paper_params, row.name
        assert row.paper_result.partition(";")[2] == ref.paper_result.partition(";")[2], row.name


def _sb_data():
    text = importlib.resources.files("keras_attn.presets").joinpath("shift_and_balance.json")
    return json.loads(text.read_text("utf-8"))


def _first_row(raw):
    return raw["tables"][0]["rows"][0]


def _set(field, value):
    return lambda raw: _first_row(raw).__setitem__(field, value)


def _set_model(field, value):
    return lambda raw: _first_row(raw)["model"].__setitem__(field, value)


_ROW = "table 0 'sb-table5', row 0 'mobilenetv2-x035-se-c1'"


@pytest.mark.parametrize("corrupt, where, message", [
    (_set("paper_params", "1.089M"), _ROW, "field 'paper_params' must be an integer or null"),
    (_set("paper_params", True), _ROW, "field 'paper_params' must be an integer or null"),
    (_set("paper_result", ""), _ROW, "field 'paper_result' is empty"),
    (lambda raw: _first_row(raw).pop("row"), _ROW, "missing field 'row'"),
    (_set("params", 1), _ROW, "unknown field 'params'; valid: slug, row"),
    (_set("slug", "MobileNetV2"), "table 0 'sb-table5', row 0 'MobileNetV2'",
     "field 'slug' is 'MobileNetV2'"),
    (_set_model("backbone", "resnet5"), _ROW, "field 'model': backbone 'resnet5'; valid: resnet50"),
    (_set_model("attention", "shuffle"), _ROW, "attention 'shuffle'; valid: cbam"),
    (_set_model("num_classes", 10), _ROW, "'num_classes' is given by the recipe or the run"),
    (_set_model("placement", 3), _ROW, "placement 3 must be a string or an array"),
    (_set_model("attention", None), _ROW, "'placement' without an attention"),
    (lambda raw: raw["tables"][0].__setitem__("recipe", "cifar"), "table 0 'sb-table5'",
     "field 'recipe' is 'cifar'; valid: 'cifar10', 'imagenet'"),
    (lambda raw: raw["tables"][0]["rows"].append(dict(_first_row(raw))), "table 0 'sb-table5'",
     "row name 'sb-table5/mobilenetv2-x035-se-c1' appears twice"),
    (lambda raw: raw["tables"][1]["rows"][1].__setitem__(
        "model", {"backbone": "mobilenetv2_cifar", "attention": None}),
     "table 1 'sb-table6-x035'", "more than one baseline row"),
    (lambda raw: raw["recipes"]["cifar10"].pop("num_classes"), "recipe 'cifar10'",
     "missing field 'num_classes'"),
    (lambda raw: raw["recipes"]["imagenet"].__setitem__("extends", "cifar"), "recipe 'imagenet'",
     "field 'extends' is 'cifar'; valid (recipes above it): 'cifar10'"),
    (lambda raw: raw["unsupported"][0].pop("reason"), "unsupported 0", "missing field 'reason'"),
])
def test_bad_data_names_file_row_and_field(corrupt, where, message):
    raw = _sb_data()
    corrupt(raw)
    with pytest.raises(ValueError) as err:
        _loader.parse_paper(raw, "shift_and_balance.json")
    assert str(err.value).startswith(f"shift_and_balance.json: {where}"), str(err.value)
    assert message in str(err.value), str(err.value)


def test_loader_reads_the_file_it_is_given():
    paper = _loader.parse_paper(_sb_data(), "shift_and_balance.json")
    assert paper.paper == presets.SB_PAPER
    assert [p.name for p in paper.presets][:2] == ["sb-table5", "sb-table6-x035"]
    assert paper.unsupported[0] == (presets.SB_PAPER, "Table 1", "DyConv rows",
                                    "dynamic convolution is not available")


def test_the_same_table_in_two_files_is_refused():
    paper = _loader.parse_paper(_sb_data(), "shift_and_balance.json")
    copy = dataclasses.replace(paper, source="copy.json")
    with pytest.raises(ValueError, match="copy.json: table 'sb-table5' is already defined in "
                                         "shift_and_balance.json"):
        _loader.index_presets([paper, copy])


# ---- the parameters attention adds, counted by hand from the papers' definitions --------------
# Rows without a published count (paper_params None: SimAM's, DCA's, SA-Net's) get this instead:
# the count over the same network without attention equals a sum over the attention layers of
# each paper's own count for C channels, so a wrong layer, placement or width fails.


def _hand_count(layer):
    """Trainable parameters of one attention layer from its paper's definition."""
    import math

    from keras_attn import layers as L

    shapes = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    c = int(shapes[0].shape[-1])
    cfg = layer.get_config()
    if isinstance(layer, L.SimAM):
        return 0  # "parameter-free" (SimAM Eq. 5 has no weight)
    if isinstance(layer, L.ShuffleAttention):
        k = c // (2 * cfg["groups"])  # each half-group's channels
        weights = {"none": 0, "affine": 4 * k, "conv": 2 * k * k + 2 * k}[cfg["transform"]]
        return weights + (2 * k if cfg["use_norm"] else 0)  # F_c, F_s; GroupNorm's gamma, beta
    if isinstance(layer, L.ECA):
        t = int(abs((math.log2(c) + cfg["b"]) / cfg["gamma"]))
        return cfg["kernel_size"] or (t if t % 2 else t + 1)  # one 1-D kernel, no bias
    h = max(1, c // cfg["reduction"])
    mlp = 2 * c * h + h + c  # C -> C/r -> C with biases
    if isinstance(layer, L.DCASqueezeExcite):
        assert cfg["channel_matching"] == "fc", cfg
        if len(shapes) == 1:
            return mlp  # the first of a chain: SE alone
        c_prev = int(shapes[1].shape[-1])
        return mlp + 1 + (c_prev * c + c if c_prev != c else 0)  # alpha; the matching FC
    if isinstance(layer, L.CBAM) and not isinstance(layer, L.DCACBAM):
        return mlp + 2 * cfg["kernel_size"] ** 2 + 2  # 7x7x2 conv (no bias); BN gamma, beta
    if isinstance(layer, L.SqueezeExcite) and not isinstance(layer, L.DCASqueezeExcite):
        return mlp
    return None


def _hand_counted(row):
    """Rows whose attention _hand_count covers (not SB, not DCA's other matchings or hosts)."""
    att = row.model["attention"]
    kw = row.model.get("attention_kwargs") or {}
    return row.paper_params is None and (
        att in ("simam", "sa", "eca", "se", "cbam")
        or (att == "dca_se" and kw.get("channel_matching", "fc") == "fc"))


def _baseline_count(row):
    plain = {k: v for k, v in row.model.items() if k not in ("placement", "attention_kwargs")}
    return _count(dataclasses.replace(row, model=dict(plain, attention=None)))


@pytest.mark.parametrize("row", _params([r for r in ALL_ROWS if _hand_counted(r)]))
def test_attention_adds_the_hand_counted_parameters(row):
    from keras_attn.layers._base import AttentionLayer

    model = keras_attn.build_model(**row.model, input_shape=_input_shape(row),
                                   num_classes=row.recipe["num_classes"])
    attention = [l for l in model.layers if isinstance(l, AttentionLayer)]
    assert attention, row.name
    hand = [_hand_count(l) for l in attention]
    assert None not in hand, row.name
    assert _count(row) - _baseline_count(row) == sum(hand), (row.name, sum(hand))
    if row.model["attention"] == "simam":
        assert _count(row) == _baseline_count(row)
