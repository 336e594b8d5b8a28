"""Plot helpers for the book, and the one style every figure uses.

The book is read on phones as much as on laptops, so every figure is drawn for a narrow
page: at most :data:`MAX_WIDTH_IN` inches wide at :data:`DPI` (``MAX_WIDTH_IN * DPI`` CSS
pixels at natural size) with no text smaller than :data:`MIN_FONT_PT`. Shown on a 390 px
phone, whose text column is about 350 px wide, the smallest text is then still about
8 CSS px tall. :func:`book_style` sets that up (and 2x "retina" PNGs, sharp on dense
screens); :func:`show` refuses a figure that breaks it.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies) paired with distinct line styles, so a curve is identified even in grey.
Each helper draws on a given Axes (or a new one) and returns it.
"""

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from cycler import cycler

#: Okabe & Ito's colour-blind-safe palette, without its yellow (too light on white) and
#: black (invisible on a dark page).
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F7F7F"]
LINESTYLES = ["-", "--", "-.", ":", (0, (5, 1.5, 1, 1.5, 1, 1.5)), (0, (8, 2)), (0, (1, 1))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
#: The marker of a minimizer or a best cell: not one of the method colours.
MARK = dict(marker="*", color="black", markeredgecolor="white", markeredgewidth=0.8)

DPI = 96                  # CSS pixels per inch: a figure's natural size on the page
MAX_WIDTH_IN = 5.2        # 500 CSS px
MIN_FONT_PT = 9.0         # 12 CSS px at natural size
WIDTH, HEIGHT = 5.2, 3.3  # the default figure

STYLE = {
    "figure.dpi": DPI,
    "figure.figsize": (WIDTH, HEIGHT),
    "figure.constrained_layout.use": True,
    "figure.facecolor": "white",
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
    "figure.titlesize": 10,
    "legend.framealpha": 0.85,
    "axes.prop_cycle": cycler(color=COLORS) + cycler(linestyle=LINESTYLES),
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "image.cmap": "viridis",
    "svg.hashsalt": "optimlab",
}


def book_style():
    """Apply the book's style to matplotlib, and in a notebook show figures as 2x PNGs
    whose display size is their natural size (sharp on high-density screens)."""
    mpl.rcParams.update(STYLE)
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


def style(i):
    """The colour, line style and marker of the i-th series: ``ax.plot(..., **style(i))``."""
    return dict(color=COLORS[i % len(COLORS)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                marker=MARKERS[i % len(MARKERS)], markevery=0.1)


def check_legible(fig):
    """Raise ``ValueError`` if ``fig`` is wider than :data:`MAX_WIDTH_IN` inches or shows
    text smaller than :data:`MIN_FONT_PT` points (tick labels, legends, annotations)."""
    width = fig.get_figwidth()
    if width > MAX_WIDTH_IN + 1e-9:
        raise ValueError(f"figure width must be at most {MAX_WIDTH_IN} in to stay legible on "
                         f"a phone; got {width:g} in (stack the panels instead)")
    for text in fig.findobj(mpl.text.Text):
        if text.get_visible() and text.get_text().strip() and text.get_fontsize() < MIN_FONT_PT - 1e-9:
            raise ValueError(f"text {text.get_text()[:40]!r} is {text.get_fontsize():g} pt; the "
                             f"book's figures use at least {MIN_FONT_PT:g} pt")


def show(fig=None):
    """Check that ``fig`` (default: the current figure) is legible on a phone
    (:func:`check_legible`), then show it."""
    check_legible(fig if fig is not None else plt.gcf())
    plt.show()


def panels(n, ncols=1, height=2.6, sharex=False, sharey=False):
    """A figure of ``n`` panels, ``ncols`` across (at most 2: wider grids are unreadable on
    a phone), each ``height`` inches tall, at the book's width. Returns ``(fig, axes)``
    with ``axes`` a flat array of length ``n``."""
    if ncols not in (1, 2):
        raise ValueError(f"ncols must be 1 or 2; got {ncols!r}")
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH, height * nrows), sharex=sharex,
                             sharey=sharey, squeeze=False)
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def _axes(ax):
    if ax is None:
        _, ax = plt.subplots()
    return ax


def contour(objective, ax=None, levels=20, log=True, resolution=200, bounds=None):
    """Contour lines of a 2-D objective over ``bounds`` (default ``objective.bounds``);
    ``log`` spaces the levels geometrically above the minimum. Marks the minimizer."""
    ax = _axes(ax)
    (x0, x1), (y0, y1) = bounds or objective.bounds
    xs, ys = np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution)
    X, Y = np.meshgrid(xs, ys)
    Z = objective.value(np.stack([X, Y], axis=-1)) - objective.fmin
    if log:
        positive = Z[Z > 0]
        lo = max(float(positive.min()), 1e-12) if positive.size else 1e-12
        lv = np.geomspace(max(lo, float(Z.max()) * 1e-6), float(Z.max()), levels)
    else:
        lv = levels
    ax.contour(X, Y, Z, levels=lv, colors="#9a9a9a", linewidths=0.6)
    m = objective.minimizer
    ax.plot(m[0], m[1], markersize=13, linestyle="none", label="minimum", **MARK)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.grid(False)
    return ax


def trajectories(objective, runs, ax=None, markers=True, legend=True, **contour_kw):
    """Contours of ``objective`` with one path per entry of ``runs`` (label -> array of
    shape (steps+1, 2))."""
    ax = contour(objective, ax=ax, **contour_kw)
    for i, (label, path) in enumerate(runs.items()):
        path = np.asarray(path)
        s = style(i)
        ax.plot(path[:, 0], path[:, 1], color=s["color"], linestyle=s["linestyle"],
                linewidth=1.4, marker=s["marker"] if markers else None, markersize=2.5,
                label=label)
    if legend:
        ax.legend(loc="best")
    return ax


def loss_curves(runs, ax=None, log=True, xlabel="step", ylabel="loss", legend=True):
    """One curve per entry of ``runs`` (label -> losses by step); log-scaled y by default."""
    ax = _axes(ax)
    for i, (label, losses) in enumerate(runs.items()):
        s = style(i)
        ax.plot(np.asarray(losses), color=s["color"], linestyle=s["linestyle"], label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(loc="best")
    return ax


def heatmap(values, xs, ys, ax=None, xlabel="", ylabel="", title="", cmap="viridis_r",
            mark_best="min", colorbar=True, log_ticks=True, max_ticks=6):
    """``values[i, j]`` at (``xs[j]``, ``ys[i]``) as coloured cells; the best cell per row of
    ``ys`` (``mark_best="min"`` or ``"max"``, or None) is ringed. At most ``max_ticks``
    labelled ticks per axis, so that the labels stay legible at the book's width."""
    ax = _axes(ax)
    values = np.asarray(values, dtype=float)
    im = ax.imshow(values, origin="lower", cmap=cmap, aspect="auto")
    label = (lambda v: f"{v:.0e}") if log_ticks else (lambda v: f"{v:g}")
    for values_along, set_ticks, n in ((xs, ax.set_xticks, values.shape[1]),
                                       (ys, ax.set_yticks, values.shape[0])):
        idx = np.unique(np.linspace(0, n - 1, min(n, max_ticks)).round().astype(int))
        set_ticks(idx, [label(values_along[i]) for i in idx])
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(False)
    if title:
        ax.set_title(title)
    if mark_best:
        pick = np.nanargmin if mark_best == "min" else np.nanargmax
        for i, row in enumerate(values):
            if np.isfinite(row).any():
                ax.plot(pick(row), i, marker="o", markersize=6, markerfacecolor="none",
                        markeredgecolor="white", markeredgewidth=1.2, linestyle="none")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.9)
    return ax
