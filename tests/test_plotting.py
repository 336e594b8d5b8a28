"""The book's figure style: legible on a phone, colour-blind-safe series, clear refusals."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import optimlab as ol  # noqa: E402
from optimlab import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def book_style():
    with matplotlib.rc_context():
        plotting.book_style()
        yield
        plt.close("all")


def test_the_style_keeps_every_default_text_above_the_minimum():
    for key in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize",
                "ytick.labelsize", "legend.fontsize", "legend.title_fontsize"):
        assert matplotlib.font_manager.FontProperties(size=plt.rcParams[key]).get_size_in_points() \
            >= plotting.MIN_FONT_PT, key
    assert plt.rcParams["figure.figsize"][0] <= plotting.MAX_WIDTH_IN
    # ~350 CSS px of text column on a 390 px phone: the smallest text stays >= 8 px.
    scale = 350 / (plotting.MAX_WIDTH_IN * plotting.DPI)
    assert plotting.MIN_FONT_PT * plotting.DPI / 72 * scale >= 8


def test_series_differ_in_colour_and_line_style():
    styles = [plotting.style(i) for i in range(len(plotting.COLORS))]
    assert len({s["color"] for s in styles}) == len(styles)
    assert len({str(s["linestyle"]) for s in styles}) == len(styles)
    assert plotting.MARK["color"] not in plotting.COLORS


def test_every_helper_draws_a_legible_figure():
    q = ol.objectives.quadratic(condition=10.0)
    runs = ol.run(ol.sgd(lr=np.array([[0.5], [1.0]])), q, np.tile(q.x0, (2, 1)), 20)
    fig, axes = plotting.panels(3, ncols=2)
    plotting.trajectories(q, {"a": runs.params[:, 0], "b": runs.params[:, 1]}, ax=axes[0])
    plotting.loss_curves({"a": runs.losses[:, 0], "b": runs.losses[:, 1]}, ax=axes[1])
    grid = np.arange(144.0).reshape(12, 12)
    plotting.heatmap(grid, np.geomspace(1e-4, 1, 12), np.geomspace(1e-3, 1, 12), ax=axes[2])
    plotting.check_legible(fig)
    assert len(axes[2].get_xticks()) <= 6


def test_illegible_figures_are_refused():
    fig, ax = plt.subplots(figsize=(9, 3))
    with pytest.raises(ValueError, match="figure width must be at most 5.2 in.*got 9 in"):
        plotting.check_legible(fig)
    fig, ax = plt.subplots()
    ax.text(0, 0, "tiny", fontsize=5)
    with pytest.raises(ValueError, match="'tiny' is 5 pt"):
        plotting.show(fig)
    with pytest.raises(ValueError, match="ncols must be 1 or 2; got 3"):
        plotting.panels(3, ncols=3)


def test_listing_drops_docstrings_and_keeps_the_code():
    text = ol.listing.source(ol.transforms.scale_by_adam)
    assert text.startswith("def scale_by_adam(")
    assert '"""' not in text and "def update_fn" in text or "def update" in text
    compile(text, "<listing>", "exec")   # still valid Python
