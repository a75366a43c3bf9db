"""The papers' experiment rows as named presets: a table is a search, a row a configuration.

A :class:`Preset` is one table of one paper; each :class:`PresetRow` is a row the package can
express: the ``keras_attn.build_model`` arguments of that row (backbone, attention, placement,
layer arguments), the paper's recipe for it (informational: the search runs its own fixed recipe
on the data it is given), and what the paper reports, parameters included. The search runs a
table as one paired comparison (``keras-attn-search --preset sb-table9``), the table's baseline
first; :func:`get_preset` also takes one row (``"sb-table9/sigmoid"``), which keeps the baseline.

Sources (text in ``../shared/papers``):

* Shift-and-Balance (Luo et al., arXiv 2103.13080), Sec. 5.3 CIFAR-10 on kuangliu's CIFAR
  MobileNetV2 (``mobilenetv2_cifar``): Table 5 (SE and SB at C1 / C1+C3 / C1+C2+C3, where SE is
  the paper's layer-wise SE, ``ShiftAndBalance(fusion="multiply")``), Table 7 (dropout 0.2 in
  the branch, x1.0), Table 8 (``lambda_init``), Table 9 (gate), Table 10 (hidden units x1-x4).
  Recipe: SGD 0.1, momentum 0.9, weight decay 5e-4, batch 128, cosine, 200 epochs, 5 runs.
* SimAM (Yang et al., ICML 2021), CIFAR ResNets (``resnet20/56/110``) with and without SimAM
  (Table 2's ResNet rows) and the ``e_lambda`` search of its Sec. 4 (1e-1 ... 1e-6).
* SA-Net (Zhang & Yang, arXiv 2102.00240), Table 2 ablations on ResNet-50 (ImageNet-1k): the
  full module, without GroupNorm, without channel shuffle, without the F_c transform, with a 1x1
  convolution as F_c.

Departures: parameter counts are trainable parameters (PyTorch's ``parameters()``); where this
package's architecture is not the paper's, ``paper_params`` is None. Rows that cannot be
expressed are listed in :data:`UNSUPPORTED` with the reason.
"""

from __future__ import annotations

import dataclasses

SB_PAPER = "Shift-and-Balance Attention (Luo et al., arXiv 2103.13080)"
SIMAM_PAPER = "SimAM: A Simple, Parameter-Free Attention Module (Yang et al., ICML 2021)"
SA_PAPER = "SA-Net: Shuffle Attention for Deep CNNs (Zhang & Yang, arXiv 2102.00240)"

CIFAR10 = {"dataset": "cifar10", "input_shape": (32, 32, 3), "num_classes": 10}
SB_RECIPE = {**CIFAR10, "optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9,
             "weight_decay": 5e-4, "batch_size": 128, "schedule": "cosine", "epochs": 200,
             "repeats": 5}
SIMAM_RECIPE = {**CIFAR10, "optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9,
                "weight_decay": 5e-4, "batch_size": 128, "schedule": "step", "epochs": 164,
                "repeats": 5}
IMAGENET = {"dataset": "imagenet2012", "input_shape": (224, 224, 3), "num_classes": 1000,
            "optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
            "batch_size": 256, "schedule": "step", "epochs": 100}

ALL_ROLES = ("expand", "depthwise", "project")


@dataclasses.dataclass(frozen=True)
class PresetRow:
    """One row of a paper's table.

    Attributes:
        name: ``"<table>/<row>"``, lower case, e.g. ``"sb-table9/tanh"``.
        paper, table, row: where it comes from (``row`` as the paper labels it).
        model: ``keras_attn.build_model`` arguments without ``input_shape``, ``num_classes``,
            ``seed``.
        recipe: the paper's training recipe and data (informational).
        paper_params: the trainable parameters the paper reports, or None.
        paper_result: what the paper reports for the row, as text.
        is_baseline: the row without attention.
    """

    name: str
    paper: str
    table: str
    row: str
    model: dict
    recipe: dict
    paper_params: int | None = None
    paper_result: str | None = None
    is_baseline: bool = False


@dataclasses.dataclass(frozen=True)
class Preset:
    """A table: its rows, the baseline among them."""

    name: str
    paper: str
    table: str
    description: str
    rows: tuple


def _sb_model(alpha=0.35, roles=ALL_ROLES, **kwargs):
    model = {"backbone": "mobilenetv2_cifar", "alpha": alpha}
    if roles is None:
        return {**model, "attention": None}
    return {**model, "attention": "sb", "placement": tuple(roles), "attention_kwargs": kwargs}


def _row(table, slug, row, model, recipe, paper, table_label, params=None, result=None,
         baseline=False):
    return PresetRow(f"{table}/{slug}", paper, table_label, row, model, recipe, params, result,
                     baseline)


def _sb_presets():
    static = lambda table, label, alpha=0.35: _row(  # noqa: E731
        table, "static", f"MobileNetV2_x{alpha} static", _sb_model(alpha, None), SB_RECIPE,
        SB_PAPER, label, baseline=True)
    t5 = [static("sb-table5", "Table 5")]
    for slug, roles, se_params, sb_params, se_acc, sb_acc in (
        ("c1", ("expand",), 1_089_000, 1_091_000, "90.980 +- 0.191", "90.826 +- 0.117"),
        ("c1c3", ("expand", "project"), 1_240_000, 1_243_000, "90.040 +- 0.518",
         "91.252 +- 0.255"),
        ("c1c2c3", ALL_ROLES, 1_435_000, 1_441_000, "84.184 +- 2.583", "91.220 +- 0.137"),
    ):
        label = "+".join({"expand": "C1", "depthwise": "C2", "project": "C3"}[r] for r in roles)
        t5.append(_row("sb-table5", f"se-{slug}", f"SE {label}",
                       _sb_model(roles=roles, fusion="multiply"), SB_RECIPE, SB_PAPER, "Table 5",
                       se_params, se_acc))
        t5.append(_row("sb-table5", f"sb-{slug}", f"SB {label}", _sb_model(roles=roles),
                       SB_RECIPE, SB_PAPER, "Table 5", sb_params, sb_acc))
    t7 = [static("sb-table7", "Table 7", 1.0)] + [
        _row("sb-table7", slug, row, _sb_model(1.0, **kw), SB_RECIPE, SB_PAPER, "Table 7",
             10_320_000, acc)
        for slug, row, kw, acc in (("sb", "SB, w/o Dropout", {}, "92.972 +- 0.142"),
                                   ("sb-dropout", "SB, w/ Dropout", {"dropout": 0.2},
                                    "93.216 +- 0.138"))
    ]
    t8 = [static("sb-table8", "Table 8")] + [
        _row("sb-table8", f"lambda-{v}", f"lambda init {v}", _sb_model(lambda_init=v),
             SB_RECIPE, SB_PAPER, "Table 8", 1_441_000, acc)
        for v, acc in ((0.01, "91.288 +- 0.214"), (0.05, "91.440 +- 0.358"), (0.1, None),
                       (0.5, None), (1.0, None))
    ]
    t9 = [static("sb-table9", "Table 9")] + [
        _row("sb-table9", gate, gate.capitalize() if gate != "none" else "None",
             _sb_model(gate=gate), SB_RECIPE, SB_PAPER, "Table 9", 1_441_000,
             "91.220 +- 0.137" if gate == "tanh" else None)
        for gate in ("tanh", "sigmoid", "softmax", "relu", "none")
    ]
    t10 = [static("sb-table10", "Table 10")] + [
        _row("sb-table10", f"x{m}", f"x{m}", _sb_model(hidden_multiplier=float(m)), SB_RECIPE,
             SB_PAPER, "Table 10", params, acc)
        for m, params, acc in ((1, 1_441_000, "91.220 +- 0.137"), (2, 2_447_000, "91.286 +- 0.265"),
                               (3, 3_454_000, None), (4, 4_460_000, None))
    ]
    return [
        Preset("sb-table5", SB_PAPER, "Table 5", "SE vs SB after C1, C1+C3, C1+C2+C3 of every "
               "inverted residual block, CIFAR MobileNetV2_x0.35", tuple(t5)),
        Preset("sb-table7", SB_PAPER, "Table 7", "SB in all layers with/without Dropout 0.2 in "
               "the branch, CIFAR MobileNetV2_x1.0", tuple(t7)),
        Preset("sb-table8", SB_PAPER, "Table 8", "initial control factor lambda, CIFAR "
               "MobileNetV2_x0.35", tuple(t8)),
        Preset("sb-table9", SB_PAPER, "Table 9", "gate function of the attention branch, CIFAR "
               "MobileNetV2_x0.35", tuple(t9)),
        Preset("sb-table10", SB_PAPER, "Table 10", "hidden units x1-x4 of the attention "
               "branch, CIFAR MobileNetV2_x0.35", tuple(t10)),
    ]


def _simam_presets():
    presets = []
    for depth, params in ((20, 270_000), (56, 850_000), (110, 1_700_000)):
        table = f"simam-resnet{depth}"
        rows = (
            _row(table, "baseline", f"ResNet-{depth}", {"backbone": f"resnet{depth}",
                                                        "attention": None},
                 SIMAM_RECIPE, SIMAM_PAPER, "Table 2", params, baseline=True),
            _row(table, "simam", f"ResNet-{depth} + SimAM",
                 {"backbone": f"resnet{depth}", "attention": "simam", "placement": "paper",
                  "attention_kwargs": {"e_lambda": 1e-4}},
                 SIMAM_RECIPE, SIMAM_PAPER, "Table 2", params),
        )
        presets.append(Preset(table, SIMAM_PAPER, "Table 2", f"CIFAR ResNet-{depth} with and "
                              "without SimAM (parameter-free)", rows))
    sweep = [_row("simam-lambda", "baseline", "ResNet-20", {"backbone": "resnet20",
                                                             "attention": None},
                  SIMAM_RECIPE, SIMAM_PAPER, "Fig. 4 (lambda)", 270_000, baseline=True)]
    for e in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
        sweep.append(_row("simam-lambda", f"{e:g}", f"lambda = {e:g}",
                          {"backbone": "resnet20", "attention": "simam", "placement": "paper",
                           "attention_kwargs": {"e_lambda": e}},
                          SIMAM_RECIPE, SIMAM_PAPER, "Fig. 4 (lambda)", 270_000))
    presets.append(Preset("simam-lambda", SIMAM_PAPER, "Fig. 4 (lambda)", "SimAM's lambda "
                          "search on CIFAR ResNet-20", tuple(sweep)))
    return presets


def _sa_presets():
    base = {"backbone": "resnet50", "attention": "sa", "placement": "block"}
    rows = [_row("sa-table2", "resnet50", "ResNet-50", {"backbone": "resnet50",
                                                        "attention": None},
                 IMAGENET, SA_PAPER, "Table 2", baseline=True)]
    for slug, label, kwargs in (
        ("origin", "origin", {}),
        ("no-gn", "w/o GN", {"use_norm": False}),
        ("no-shuffle", "w/o shuffle", {"shuffle": False}),
        ("no-fc", "w/o F_c", {"transform": "none"}),
        ("conv1x1", "1x1 conv", {"transform": "conv"}),
    ):
        rows.append(_row("sa-table2", slug, label,
                         {**base, "attention_kwargs": {"groups": 64, **kwargs}},
                         IMAGENET, SA_PAPER, "Table 2"))
    return [Preset("sa-table2", SA_PAPER, "Table 2", "SA module ablations on ResNet-50 "
                   "(ImageNet-1k)", tuple(rows))]


UNSUPPORTED = (
    (SB_PAPER, "Table 1", "MobileNetV2 x0.35-x1.0 on ImageNet (torchvision layout)",
     "keras.applications' MobileNetV2 differs from the paper's network"),
    (SB_PAPER, "Tables 1, 6", "DyConv", "dynamic convolution is not implemented"),
    (SB_PAPER, "Table 4", "SSD-MobileNetV2 on PASCAL VOC", "detection is out of scope"),
    (SIMAM_PAPER, "Table 2", "PreResNet, WideResNet, MobileNetV2 on CIFAR",
     "backbones not in the package"),
    (SIMAM_PAPER, "Table 2", "SE, CBAM, ECA, GC, SRM rows", "only SimAM and the baseline"),
    (SA_PAPER, "Table 1", "SGE, GC, SK, GSoP, AA rows", "attention modules not implemented"),
    (SA_PAPER, "Table 3", "Mask R-CNN on MS COCO", "detection is out of scope"),
    ("DCANet (Ma et al., arXiv 2007.05099)", "Tables 2-6",
     "ImageNet ResNet-50/101 and MnasNet ablations",
     "not yet encoded as presets; the layers (dca_se, dca_cbam, dca_sb) are available"),
)

_PRESETS = {p.name: p for p in (*_sb_presets(), *_simam_presets(), *_sa_presets())}


def available_presets():
    """The table presets' names, sorted."""
    return sorted(_PRESETS)


def get_preset(name):
    """A table preset by name, or one row (``"sb-table9/sigmoid"``) as a preset holding that row
    and the table's baseline.

    Raises:
        ValueError: an unknown name; the message lists the valid table names.
    """
    if isinstance(name, str):
        key = name.strip().lower()
        if key in _PRESETS:
            return _PRESETS[key]
        table = key.split("/", 1)[0]
        if table in _PRESETS:
            rows = [r for r in _PRESETS[table].rows if r.name == key]
            if rows:
                base = [r for r in _PRESETS[table].rows if r.is_baseline and r not in rows]
                p = _PRESETS[table]
                return Preset(key, p.paper, p.table, p.description, tuple(base + rows))
            valid = ", ".join(r.name for r in _PRESETS[table].rows)
            raise ValueError(f"Unknown preset row {name!r}; rows of {table!r}: {valid}.")
    raise ValueError(f"Unknown preset {name!r}; valid: {', '.join(available_presets())} "
                     "(or '<table>/<row>', see list_presets()).")


def list_presets():
    """A printable list: each table and its rows, with the paper's parameters."""
    lines = []
    for name in available_presets():
        p = _PRESETS[name]
        lines.append(f"{name}  ({p.paper}, {p.table}): {p.description}")
        for r in p.rows:
            params = "" if r.paper_params is None else f"  {r.paper_params / 1e6:.3f}M"
            base = "  [baseline]" if r.is_baseline else ""
            lines.append(f"    {r.name:<28} {r.row}{params}{base}")
    lines.append("not expressible: " + "; ".join(f"{t[0].split(' (')[0]} {t[1]} {t[2]} "
                                                  f"({t[3]})" for t in UNSUPPORTED))
    return "\n".join(lines)
