"""Data for the book's interactive figures: optimlab computes, the browser only draws.

An interactive figure is a `Vega-Lite <https://vega.github.io/vega-lite/>`_ specification
whose data are a grid of optimlab runs over the values of its sliders, computed in the
chapter's notebook (so that nbval checks them). :func:`figure` writes it into the notebook as
an HTML output; on the book's site the ``site_assets`` extension loads the vendored Vega and
Vega-Lite on the pages that hold one, and ``book/_ext/static/interactive/figures.js`` draws it
with a slider per grid axis. Readers without JavaScript, and the printed book, get the
fallback text instead, which points to the chapter's static figures.

The sliders are the indices of the grid (``params`` of the specification, filtered on by the
data's index fields); each slider shows the value labels the notebook gives it.
"""

from __future__ import annotations

import hashlib
import json
from html import escape

import numpy as np

from .objectives import Objective

__all__ = ["stack_quadratics", "rounded", "significant", "slider", "figure", "to_json", "digest"]


def stack_quadratics(bowls):
    """One objective for a batch of 2-D quadratic bowls: row ``k`` of ``x`` (shape ``(K, 2)``)
    lives on ``bowls[k]``.

    The gradient is summed column by column exactly as :func:`optimlab.objectives.quadratic`
    does, so row ``k`` of a batched run equals the run on ``bowls[k]`` alone, bit for bit.
    """
    hessians = np.stack([np.asarray(b.hessian, dtype=float) for b in bowls])
    if hessians.shape[1:] != (2, 2):
        raise ValueError(f"expected 2-D bowls; got Hessians of shape {hessians.shape[1:]}")

    def grad(x):
        x = np.asarray(x, dtype=float)
        if x.shape[-2:] != (len(bowls), 2):
            raise ValueError(f"x must have shape (..., {len(bowls)}, 2); got {x.shape}")
        return sum(x[..., j:j + 1] * hessians[:, j] for j in range(2))

    def value(x):
        return 0.5 * np.sum(np.asarray(x, dtype=float) * grad(x), axis=-1)

    return Objective(f"{len(bowls)} stacked quadratics", value, grad, np.zeros(2), 0.0,
                     bowls[0].bounds, bowls[0].x0, dict(hessians=hessians))


def rounded(values, decimals):
    """``values`` as a (nested) list of Python floats rounded to ``decimals``; no ``-0.0``.

    Rounded values keep a figure's data small and its JSON the same on every machine.
    """
    out = np.round(np.asarray(values, dtype=float), decimals) + 0.0  # -0.0 + 0.0 == 0.0
    if not np.isfinite(out).all():
        raise ValueError("a figure's data must be finite")
    return out.tolist()


def significant(values, digits):
    """``values`` as a (nested) list of Python floats rounded to ``digits`` significant digits.

    For quantities that span decades (rates from 1e-6 to 1e-3), where :func:`rounded` would
    keep too few digits of the small ones. A value written by the browser with
    ``format(value, '.{digits - 1}e')`` then shows exactly these digits.
    """
    if not (isinstance(digits, int) and digits >= 1):
        raise ValueError(f"digits must be a positive integer; got {digits!r}")
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).all():
        raise ValueError("a figure's data must be finite")
    out = np.array([float(f"{v:.{digits - 1}e}") for v in values.ravel()]).reshape(values.shape)
    return (out + 0.0).tolist()


def slider(param, label, values, value, fmt="{:g}"):
    """A slider over the grid axis ``param`` (an index into ``values``), starting at ``value``.

    ``label`` is the slider's name (HTML allowed, e.g. ``"&eta;&middot;h<sub>max</sub>"``);
    each position shows its value formatted with ``fmt``.
    """
    values = [float(v) for v in values]
    if value not in values:
        raise ValueError(f"the initial value {value!r} is not one of the slider's values")
    return {"param": param, "label": label, "labels": [fmt.format(v) for v in values],
            "value": values.index(value)}


def to_json(obj):
    """Compact, key-sorted JSON, ASCII only and safe inside an HTML ``<script>`` element."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def digest(data):
    """A short, stable summary of a figure's datasets: rows, bytes and a checksum."""
    text = to_json(data)
    lines = [f"data: {len(text):,} bytes of JSON, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}"]
    for name, rows in sorted(data.items()):
        lines.append(f"  {name}: {len(rows)} rows")
    return "\n".join(lines)


def figure(name, spec, sliders, fallback, description):
    """The HTML of one interactive figure: a ``<div>`` holding the specification as JSON.

    ``spec`` is a Vega-Lite specification whose top-level ``params`` include one parameter
    per slider; ``fallback`` is the HTML shown without JavaScript and in print;
    ``description`` is the figure's text alternative (read by screen readers).
    Display it with ``IPython.display.HTML``; the output is byte-identical on re-execution.
    """
    params = {p["name"] for p in spec.get("params", [])}
    missing = [s["param"] for s in sliders if s["param"] not in params]
    if missing:
        raise ValueError(f"sliders without a parameter in the specification: {missing}")
    start = {s["param"]: s["value"] for s in sliders}
    spec = dict(spec, description=description,
                params=[dict(p, value=start[p["name"]]) if p["name"] in start else p
                        for p in spec["params"]])
    payload = to_json({"name": name, "spec": spec, "sliders": sliders})
    return (f'<div class="ol-interactive" id="interactive-{escape(name)}" role="group" '
            f'aria-label="{escape(description)}">\n'
            f'<p class="ol-interactive-fallback">{fallback}</p>\n'
            f'<script type="application/json" class="ol-interactive-spec">{payload}</script>\n'
            f'</div>')
