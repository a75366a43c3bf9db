"""The papers' experiment rows as named, runnable presets (issue 9).

A *preset* is one table of one paper: a tuple of :class:`PresetRow`, each row one experiment the
paper reports, as ``keras_attn.build_model`` keyword arguments (``row.model``, everything except
``input_shape``/``num_classes``/``seed``), the paper's training recipe for that row
(``row.recipe``, informational: dataset, input shape, classes, optimizer, schedule, ...), the
trainable-parameter count the paper reports (``row.paper_params``) and its result
(``row.paper_result``). A search over a preset compares its rows; the row with
``is_baseline=True`` (no attention) is the reference.

The tables are data: one JSON file per paper beside this module (the format is in ``_loader``),
read and checked once at import.

Sources (plain text in /work/shared/papers):

* Shift-and-Balance Attention (Luo et al., arXiv 2103.13080): CIFAR-10 Tables 5, 6, 7, 8, 9, 10 on
  the kuangliu CIFAR MobileNetV2 (``backbone="mobilenetv2_cifar"``, ``alpha``). C1/C2/C3 of
  Table 5 are ``placement=("expand",)``, ``("expand", "project")``,
  ``("expand", "depthwise", "project")``; the paper's layer-wise SE is ``attention="sb"`` with
  ``fusion="multiply"`` (sigmoid gate, no control factor), which is how the SE columns are encoded.
* SimAM (Yang et al., ICML 2021): Table 2 on the CIFAR ResNet-20/56/110 (He et al., option A),
  CIFAR-10 and CIFAR-100, Baseline / SE / CBAM / ECA at ``placement="block"`` and SimAM at
  ``placement="paper"`` (after each block's second convolution), and the
  lambda pool of Figure 4 (ResNet-20, CIFAR-100, 1e-1 ... 1e-6). The paper gives no per-row
  parameter counts, so ``paper_params`` is None throughout.
* SA-Net (Zhang & Yang, ICASSP 2021): Table 1 (ResNet-50/101 x SE, CBAM, ECA, SA on ImageNet) and
  Table 2 (the SA ablations on ResNet-50: ``use_norm``, ``shuffle``, ``transform``).

Departures (see also ``UNSUPPORTED``):

* SB Tables 5-9 at widths x0.75 and x1.0: this package's ``mobilenetv2_cifar`` has 2-4 thousand
  parameters more than the paper reports (x0.35 and x0.5 match to the paper's rounding), so those
  rows have ``paper_params=None`` with the paper's count in ``paper_result`` (the counts
  compared are in ``shift_and_balance.json``, table ``sb-table5``'s notes).
* SA-Net Table 1: the attention *overheads* over the plain ResNet-50 do match the paper's
  differences (SE +2,530,992, CBAM +2,532,592, ECA +86, SA +708), checked in the tests.
* DCANet (Ma et al.): Tables 2-6 on ResNet-50/101 are encoded, all with ``paper_params=None``
  (counts given to 10k and keras ResNets carry conv biases); the paper's count is in
  ``paper_result``. The rows use the paper's connection (the layers' default
  ``connection_form="paper"``), whose overheads differ from the paper's: DCA-SE (1 FC) adds
  2,756,111 over SE-ResNet-50 here vs the paper's 30.90M - 28.09M = 2.81M; 2 FC r=16/8/4 add
  520k/1.036M/2.069M here vs 0.56M/1.78M/4.22M in Table 4 (the paper's r=8/r=4 numbers are not
  even consistent with its own 1 FC row); DCA-CBAM-C adds 2,756,111 over CBAM vs 2.81M (Table 6).
  The official code's connection (``attention_kwargs={"connection_form": "official"}``), which
  made the paper's numbers, adds 2,793,005 (DCA-SE, ResNet-50), 2,827,872 (ResNet-101), 2,792,990
  (DCA-CBAM-C) and 2,793,080 (DCA-All): less the conv biases and plus what the official modules
  create unused in the first block, the paper's 30.90M, 52.17M, 30.90M and 30.90M to its rounding
  (the numbers are in ``dcanet.json``'s notes). Table 4's 2 FC rows have no official form.
* Rows whose architecture is not the paper's to the parameter (keras.applications ResNets carry
  convolution biases that torchvision's do not, so their counts differ from SA-Net Table 1) have
  ``paper_params=None``; the paper's number is kept in ``paper_result``/the row docstring instead.
* SB Tables 1-2 (ImageNet MobileNetV2) use ``keras.applications.MobileNetV2`` with SB in every
  convolution of the blocks (roles ``("expand", "depthwise", "project")``): its counts are the
  paper's (static 1.677M / 1.969M / 2.636M / 3.505M, SB 2.700M / 4.006M / 7.201M / 11.530M;
  Table 2's layer-wise SE/SB 2.500M / 2.503M / 2.695M / 2.700M). Table 1's block-wise SE
  (hidden units = channels, i.e. reduction 1) comes out 1-3 thousand below the paper's (1,734,792
  vs 1.736M at x0.35; 3,963,304 vs 3.966M at x1.0): ``paper_params`` None there. Tables 3-4
  (ShuffleNetV2, MnasNet, SSD) and DyConv are not available.
* Recipes are the papers' (SGD, 200 epochs cosine on CIFAR; 100 epochs step on ImageNet); they are
  informational -- nothing here trains.
"""

from keras_attn.presets._loader import Preset, PresetRow, index_presets, read_paper

__all__ = ["PresetRow", "Preset", "available_presets", "get_preset", "list_presets", "UNSUPPORTED"]

# In this order: UNSUPPORTED lists the papers' gaps file by file.
_PAPERS = {
    stem: read_paper(f"{stem}.json")
    for stem in ("shift_and_balance", "sa_net", "simam", "dcanet")
}
_PRESETS = index_presets(_PAPERS.values())

SB_PAPER = _PAPERS["shift_and_balance"].paper
SA_PAPER = _PAPERS["sa_net"].paper
SIMAM_PAPER = _PAPERS["simam"].paper
DCA_PAPER = _PAPERS["dcanet"].paper
SB_CIFAR_RECIPE = _PAPERS["shift_and_balance"].recipes["cifar10"]
SA_IMAGENET_RECIPE = _PAPERS["sa_net"].recipes["imagenet"]
DCA_IMAGENET_RECIPE = _PAPERS["dcanet"].recipes["imagenet"]

#: ``(paper, table, rows, reason)`` for each part of the papers this package cannot express.
UNSUPPORTED = tuple(entry for paper in _PAPERS.values() for entry in paper.unsupported)


def available_presets():
    """Table preset names, sorted."""
    return sorted(_PRESETS)


def _row_index():
    return {row.name: (preset, row) for preset in _PRESETS.values() for row in preset.rows}


def get_preset(name):
    """A table preset by name, or a row name -> a Preset with that row (plus the table's baseline).

    Raises:
        ValueError: unknown name (the message lists the valid table names).
    """
    if isinstance(name, str) and name in _PRESETS:
        return _PRESETS[name]
    index = _row_index()
    if isinstance(name, str) and name in index:
        preset, row = index[name]
        rows = tuple(r for r in preset.rows if r.is_baseline and r is not row) + (row,)
        return Preset(name, preset.paper, preset.table, f"{preset.description} (row {row.row})",
                      rows)
    raise ValueError(
        f"Unknown preset {name!r}. Valid tables: {', '.join(available_presets())}; or a row "
        "name '<table>/<row>' (see list_presets())."
    )


def list_presets():
    """Printable listing: name, paper, table, row, paper params."""
    lines = []
    for pname in available_presets():
        preset = _PRESETS[pname]
        lines.append(f"{preset.name}  [{preset.paper}, {preset.table}]")
        for row in preset.rows:
            params = "-" if row.paper_params is None else f"{row.paper_params:,}"
            base = "  (baseline)" if row.is_baseline else ""
            lines.append(f"  {row.name}  | {row.table} | {row.row} | params {params}{base}")
    return "\n".join(lines)
