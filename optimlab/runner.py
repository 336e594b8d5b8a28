"""Run an optimizer on an objective and record the trajectory and the losses."""

from typing import Any, NamedTuple

import numpy as np

from .optimizer import apply_updates


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
    Returns a :class:`Trajectory` with params of shape ``(steps + 1, *x0.shape)``.
    """
    if not (isinstance(steps, int | np.integer) and steps >= 0):
        raise ValueError(f"steps must be a non-negative integer; got {steps!r}")
    x = np.array(x0, dtype=np.result_type(np.asarray(x0).dtype, np.float32), copy=True)
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
    per run; -1 where it never does."""
    below = np.asarray(losses) <= tol
    return np.where(below.any(axis=0), below.argmax(axis=0), -1)
