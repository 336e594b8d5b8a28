"""Run an optimizer on an objective and record the trajectory and the losses."""

from typing import Any, NamedTuple

import numpy as np

from .optimizer import apply_updates
from .precision import is_float


class Trajectory(NamedTuple):
    """``params[k]`` are the parameters after k updates (``params[0] = x0``); ``losses[k]``
    their objective values. A batch of runs keeps its batch axes after the step axis."""

    params: Any
    losses: Any

    @property
    def final(self):
        return self.params[-1]


def run(opt, objective, x0, steps):
    """Apply ``steps`` updates of ``opt`` from ``x0`` (shape ``(..., d)``) to ``objective``.

    ``objective`` needs ``value(x)`` and ``grad(x)`` (see :mod:`optimlab.objectives`).
    Returns a :class:`Trajectory` with params of shape ``(steps + 1, *x0.shape)`` and the
    dtype of ``x0`` (float64 for integers): a float32 run stays float32, every step.
    """
    if not (isinstance(steps, int | np.integer) and steps >= 0):
        raise ValueError(f"steps must be a non-negative integer; got {steps!r}")
    x0 = np.asarray(x0)
    # Floating-point x0 keeps its dtype (float64, float32, float16 or bfloat16): the run is in
    # the format the caller chose, never silently promoted. Integers become float64.
    dtype = x0.dtype if is_float(x0.dtype) else np.result_type(x0.dtype, np.float64)
    x = np.array(x0, dtype=dtype, copy=True)
    params = np.empty((steps + 1, *x.shape), dtype=x.dtype)
    params[0] = x
    state = opt.init(x)
    for k in range(steps):
        updates, state = opt.update(objective.grad(x), state, x)
        x = apply_updates(x, updates)
        params[k + 1] = x
    return Trajectory(params, objective.value(params))


def steps_to(losses, tol):
    """The first step at which ``losses`` (steps along axis 0) falls to ``tol`` or below,
    per run; -1 where it never does.

    This is a *first passage*: an error that oscillates can dip below ``tol`` once and rise
    above it again. To count the steps a method needs, use :func:`steps_until_below`.
    """
    below = np.asarray(losses) <= tol
    return np.where(below.any(axis=0), below.argmax(axis=0), -1)


def steps_until_below(values, tol):
    """The first step from which ``values`` (steps along axis 0) *stays* at ``tol`` or
    below until the last recorded step, per run; -1 where the last value is above ``tol``
    (or is NaN).

    Unlike :func:`steps_to`, an oscillating error that dips below ``tol`` and comes back up
    is not counted as converged. "Stays" can only mean "for the rest of the record", so
    record enough steps after the answer for the claim to be meaningful.
    """
    values = np.asarray(values)
    if values.ndim == 0 or values.shape[0] == 0:
        raise ValueError(f"values must have at least one step along axis 0; got shape {values.shape}")
    above = ~(values <= tol)                        # NaN counts as above
    n = values.shape[0]
    # index of the last step above tol, per run (-1 if none)
    last_above = np.where(above.any(axis=0), n - 1 - np.flip(above, axis=0).argmax(axis=0), -1)
    return np.where(last_above == n - 1, -1, last_above + 1)


def fitted_rate(values, start, stop=None):
    """The per-step contraction factor of ``values`` (steps along axis 0) over the window
    ``values[start:stop]``: ``exp`` of the least-squares slope of ``log(values)`` against
    the step, per run.

    A fitted slope over a window is not fooled by the oscillations that make a ratio of two
    single steps, or a first passage below a tolerance, depend on where they happen to fall.
    """
    window = np.asarray(values, dtype=float)[start:stop]
    if window.shape[0] < 2:
        raise ValueError(f"the window values[{start}:{stop}] must hold at least 2 steps; "
                         f"got {window.shape[0]}")
    if not (np.isfinite(window).all() and (window > 0).all()):
        raise ValueError("values in the window must be finite and positive to fit a rate "
                         "on the log scale")
    steps = np.arange(window.shape[0], dtype=float)
    centred = steps - steps.mean()
    logs = np.log(window)
    slope = np.tensordot(centred, logs - logs.mean(axis=0), axes=(0, 0)) / (centred @ centred)
    return np.exp(slope)
