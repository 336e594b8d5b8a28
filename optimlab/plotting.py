"""Plot helpers for the book: contours with trajectories, loss curves, sweep heatmaps.

Each draws on a given Axes (or a new one) and returns it. Colours are mid-tone so that the
figures read on light and dark pages alike.
"""

import matplotlib.pyplot as plt
import numpy as np

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#17becf"]


def _axes(ax, figsize=(6, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def contour(objective, ax=None, levels=20, log=True, resolution=200, bounds=None):
    """Filled-line contours of a 2-D objective over ``bounds`` (default ``objective.bounds``);
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
    ax.contour(X, Y, Z, levels=lv, cmap="viridis", linewidths=0.8, alpha=0.8)
    m = objective.minimizer
    ax.plot(m[0], m[1], marker="*", color="#ff7f0e", markersize=12, linestyle="none",
            label="minimum")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    return ax


def trajectories(objective, runs, ax=None, markers=True, **contour_kw):
    """Contours of ``objective`` with one path per entry of ``runs`` (label -> array of
    shape (steps+1, 2))."""
    ax = contour(objective, ax=ax, **contour_kw)
    for i, (label, path) in enumerate(runs.items()):
        path = np.asarray(path)
        ax.plot(path[:, 0], path[:, 1], color=COLORS[i % len(COLORS)], linewidth=1.5,
                marker="o" if markers else None, markersize=2.5, label=label)
    ax.legend(loc="best", fontsize="small")
    return ax


def loss_curves(runs, ax=None, log=True, xlabel="step", ylabel="loss"):
    """One curve per entry of ``runs`` (label -> losses by step); log-scaled y by default."""
    ax = _axes(ax)
    for i, (label, losses) in enumerate(runs.items()):
        ax.plot(np.asarray(losses), color=COLORS[i % len(COLORS)], linewidth=1.5, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return ax


def heatmap(values, xs, ys, ax=None, xlabel="", ylabel="", title="", cmap="viridis_r",
            fmt=None, mark_best="min", colorbar=True, log_ticks=True):
    """``values[i, j]`` at (``xs[j]``, ``ys[i]``) as coloured cells; the best cell per row of
    ``ys`` (``mark_best="min"`` or ``"max"``, or None) is ringed. ``fmt`` writes each value."""
    ax = _axes(ax)
    values = np.asarray(values, dtype=float)
    im = ax.imshow(values, origin="lower", cmap=cmap, aspect="auto")
    ticks = (lambda v: f"{v:.0e}") if log_ticks else (lambda v: f"{v:g}")
    ax.set_xticks(range(len(xs)), [ticks(v) for v in xs], rotation=90, fontsize="x-small")
    ax.set_yticks(range(len(ys)), [ticks(v) for v in ys], fontsize="x-small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if fmt:
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=5, color="white")
    if mark_best:
        pick = np.nanargmin if mark_best == "min" else np.nanargmax
        for i, row in enumerate(values):
            if np.isfinite(row).any():
                ax.plot(pick(row), i, marker="o", markersize=6, markerfacecolor="none",
                        markeredgecolor="#ff7f0e", linestyle="none")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.85)
    return ax
