r"""Test objectives with analytic gradients, vectorized over leading batch axes.

Each objective takes points ``x`` of shape ``(..., d)``: ``value(x)`` has shape ``(...)`` and
``grad(x)`` shape ``(..., d)``, so a batch of runs (one row per hyperparameter setting) is
evaluated in one call.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Objective:
    """A function to minimise, with its gradient and what the plots need to know about it."""

    name: str
    value: Any  # x (..., d) -> (...)
    grad: Any  # x (..., d) -> (..., d)
    minimizer: Any  # a minimizer, shape (d,)
    fmin: float  # the minimum value
    bounds: tuple  # ((xmin, xmax), (ymin, ymax)) for 2-D plots
    x0: Any  # a standard starting point, shape (d,)
    extra: dict = field(default_factory=dict)

    def __getattr__(self, name):
        try:
            return self.extra[name]
        except KeyError:
            raise AttributeError(f"objective {self.name!r} has no attribute {name!r}") from None


def _points(x, d):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(float)
    if x.shape[-1:] != (d,):
        raise ValueError(f"x must have shape (..., {d}); got {x.shape}")
    return x


def quadratic(condition=10.0, dim=2, angle=0.0, lmax=1.0):
    r"""The bowl :math:`f(x) = \tfrac12 x^\top A x` with eigenvalues spread geometrically from
    :math:`\lambda_{\min} = l_{\max}/\kappa` to :math:`\lambda_{\max} = l_{\max}`.

    In 2-D the eigenvectors are the axes rotated by ``angle`` (radians): ``angle=0`` gives an
    axis-aligned bowl, which per-coordinate methods can equalise; a rotated one they cannot.
    Attributes ``hessian`` (A) and ``eigenvalues``.
    """
    if not (np.isfinite(condition) and condition >= 1):
        raise ValueError(f"condition must be >= 1; got {condition!r}")
    if not (isinstance(dim, int) and dim >= 1):
        raise ValueError(f"dim must be a positive integer; got {dim!r}")
    if not (np.isfinite(lmax) and lmax > 0):
        raise ValueError(f"lmax must be > 0; got {lmax!r}")
    eig = lmax * np.geomspace(1.0 / condition, 1.0, dim) if dim > 1 else np.array([lmax])
    if dim == 2:
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, -s], [s, c]])
    elif angle != 0.0:
        raise ValueError(f"angle is defined in 2-D only; got angle={angle!r} with dim={dim}")
    else:
        rot = np.eye(dim)
    A = rot @ np.diag(eig) @ rot.T
    A = (A + A.T) / 2

    def grad(x):
        # Summed column by column rather than with a matrix product: BLAS may round a batch
        # of points differently from a single point, and chaotic runs amplify the last bit.
        x = _points(x, dim)
        return sum(x[..., j:j + 1] * A[j] for j in range(dim))  # A is symmetric

    def value(x):
        return 0.5 * np.sum(_points(x, dim) * grad(x), axis=-1)

    x0 = np.full(dim, 1.0)
    if dim == 2:
        x0 = rot @ np.array([1.0, 1.0 / np.sqrt(condition)]) * 2.0
    r = 1.2 * float(np.max(np.abs(x0)))
    return Objective(f"quadratic(condition={condition:g})", value, grad, np.zeros(dim), 0.0,
                     ((-r, r), (-r, r)), x0, dict(hessian=A, eigenvalues=eig))


def rosenbrock(a=1.0, b=100.0):
    r"""Rosenbrock's valley :math:`f(x, y) = (a-x)^2 + b(y-x^2)^2`, minimum 0 at :math:`(a, a^2)`."""

    def value(x):
        x = _points(x, 2)
        return (a - x[..., 0]) ** 2 + b * (x[..., 1] - x[..., 0] ** 2) ** 2

    def grad(x):
        x = _points(x, 2)
        r = x[..., 1] - x[..., 0] ** 2
        return np.stack([-2 * (a - x[..., 0]) - 4 * b * x[..., 0] * r, 2 * b * r], axis=-1)

    return Objective(f"rosenbrock(a={a:g}, b={b:g})", value, grad, np.array([a, a * a]), 0.0,
                     ((-2.0, 2.0), (-1.0, 3.0)), np.array([-1.5, 2.0]))


_BEALE = ((1.5, 1), (2.25, 2), (2.625, 3))


def beale():
    r"""Beale's function :math:`\sum_{i=1}^3 (c_i - x + x y^i)^2`, :math:`c = (1.5, 2.25, 2.625)`;
    minimum 0 at :math:`(3, 0.5)`, flat plateaus and steep walls."""

    def value(x):
        x = _points(x, 2)
        return sum((c - x[..., 0] + x[..., 0] * x[..., 1] ** i) ** 2 for c, i in _BEALE)

    def grad(x):
        x = _points(x, 2)
        gx = gy = 0.0
        for c, i in _BEALE:
            r = c - x[..., 0] + x[..., 0] * x[..., 1] ** i
            gx = gx + 2 * r * (x[..., 1] ** i - 1)
            gy = gy + 2 * r * i * x[..., 0] * x[..., 1] ** (i - 1)
        return np.stack([gx, gy], axis=-1)

    return Objective("beale", value, grad, np.array([3.0, 0.5]), 0.0,
                     ((-4.5, 4.5), (-4.5, 4.5)), np.array([1.0, 1.5]))


def noisy(objective, sigma, seed=0):
    r"""Stochastic gradients: ``grad(x)`` returns the true gradient plus
    :math:`\mathcal N(0, \sigma^2 I)` noise from a generator seeded with ``seed``; ``value`` is
    exact. Each call draws new noise, so a run is reproducible from the seed."""
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be >= 0; got {sigma!r}")
    rng = np.random.default_rng(seed)

    def grad(x):
        g = objective.grad(x)
        return g + sigma * rng.standard_normal(g.shape)

    return Objective(f"noisy({objective.name}, sigma={sigma:g})", objective.value, grad,
                     objective.minimizer, objective.fmin, objective.bounds, objective.x0,
                     dict(objective.extra, clean=objective, sigma=sigma))
