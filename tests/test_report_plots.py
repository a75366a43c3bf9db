"""search.report's plots: every label of every plot lies inside its figure, however long the
configuration labels (rendered with matplotlib's Agg backend, text extents measured on it)."""

import matplotlib
import pytest

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from search import report  # noqa: E402

MEASURES = ("params_added", "flops_added", "train_step", "inference_step")


def _row(attention, placement, hyperparameters, delta, cost, on_front):
    runs = {"0": 0.85 + delta, "1": 0.852 + delta, "2": 0.848 + delta}
    return {
        "attention": attention, "placement": placement, "hyperparameters": hyperparameters,
        "repeats": 3, "runs": runs, "val_accuracy_mean": 0.85 + delta, "val_accuracy_std": 0.002,
        "delta_vs_baseline": None if attention == "none" else delta,
        "paired_ci95_low": delta - 0.01, "paired_ci95_high": delta + 0.01,
        "sim_ci95_low": delta - 0.012, "sim_ci95_high": delta + 0.012,
        "params_added": cost, "flops_added": 100.0 * cost, "train_step": 1 + cost / 1e5,
        "inference_step": 1 + cost / 2e5,
        **{f"pareto_{m}": on_front for m in MEASURES},
    }


class _Rows(list):
    """A leaderboard as report's plots read it: rows, and the analysis' MDE for the band."""

    class analysis:  # noqa: N801
        mde = 0.0148


def _long_rows():
    return _Rows([
        _row("none", None, {}, 0.0, 0, True),
        _row("sb", "paper", {"gate": "tanh", "lambda_init": 0.1, "hidden_multiplier": 2.0,
                             "dropout": 0.2, "fusion": "multiply"}, 0.006, 68000, False),
        _row("dca_cbam", "layer", {"connection": "softmax", "connection_form": "official",
                                   "dims": "all", "reduction": 16}, 0.009, 90000, True),
        _row("custom", "block", {"scale_init": "x" * 70}, 0.004, 45000, False),
        _row("sa", "block", {"groups": 64}, 0.008, 54, True),
    ])


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures the plot functions save (they close them after)."""
    figures = []
    save = Figure.savefig

    def recording(self, *args, **kwargs):
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return figures


def _undrawn_tick_labels(figure):
    """Tick labels matplotlib keeps but does not draw: those of ticks outside the view limits."""
    undrawn = set()
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * (high - low)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - slack <= tick.get_loc() <= high + slack:
                    undrawn |= {id(tick.label1), id(tick.label2)}
    return undrawn


def _texts_outside(figure):
    """``[(text, its extent)]`` for every drawn, non-empty text artist not inside the figure."""
    canvas = FigureCanvasAgg(figure)  # pyplot's close() left it a bare canvas
    canvas.draw()
    renderer = canvas.get_renderer()
    frame = figure.bbox.padded(1.0)  # a pixel of anti-aliasing
    undrawn = _undrawn_tick_labels(figure)
    outside = []
    for text in figure.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or id(text) in undrawn:
            continue
        extent = text.get_window_extent(renderer)
        inside = (frame.x0 <= extent.x0 and extent.x1 <= frame.x1
                  and frame.y0 <= extent.y0 and extent.y1 <= frame.y1)
        if not inside:
            outside.append((text.get_text(), tuple(round(v) for v in extent.extents)))
    return outside


def _drawn_tick_labels(figure):
    return [t.get_text() for ax in figure.axes for t in ax.get_yticklabels() if t.get_text()]


def test_every_label_of_every_plot_lies_inside_its_figure(tmp_path, saved_figures):
    rows = _long_rows()
    paths = report.plot_configurations(rows, tmp_path) + report.plot_pareto(rows, tmp_path)
    names = sorted(p.name if hasattr(p, "name") else str(p).rsplit("/", 1)[-1] for p in paths)
    assert names == sorted(["val_accuracy_by_configuration.png", "delta_vs_baseline.png"]
                           + [f"pareto_{m}.png" for m in MEASURES])
    assert len(saved_figures) == 6
    for figure in saved_figures:
        title = figure.axes[0].get_title()
        assert not _texts_outside(figure), (title, _texts_outside(figure))
    # Nothing was dropped to make it fit: every configuration's label is there in full.
    rows_figure = saved_figures[0]
    labels = [label.replace("\n", " ") for label in _drawn_tick_labels(rows_figure)]
    assert "dca_cbam/layer connection=softmax connection_form=official dims=all reduction=16" \
        in labels
    pareto = [t.get_text().replace("\n", " ") for t in saved_figures[2].axes[0].texts]
    assert any(t.startswith("sb/paper dropout=0.2 fusion=multiply gate=tanh") for t in pareto)
