"""Small helpers shared by the test modules."""

import numpy as np

import optimlab as ol


class decay:  # lower case: used like a function
    """A schedule: base * rate**count, with count = the number of updates already made."""

    def __init__(self, base, rate):
        self.base, self.rate = base, rate

    def __call__(self, count):
        return self.base * self.rate**count

    def __repr__(self):  # readable, stable test ids
        return f"decay({self.base}, {self.rate})"


def random_params(model, rng, batch=()):
    """Params of ``model`` with every entry random (biases too), so that no gradient term is
    trivially 0."""
    return {k: 0.7 * rng.standard_normal((*batch, *tail)) for k, tail in model._shapes().items()}


def finite_difference(f, params, h=1e-5):
    """Central differences of the scalar ``f(params)`` with respect to every entry."""
    grads = {}
    for name, p in params.items():
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + h
            f_plus = f(params)
            p[i] = old - h
            f_minus = f(params)
            p[i] = old
            g[i] = (f_plus - f_minus) / (2 * h)
        grads[name] = g
    return grads


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


def classification_data(n, d, classes, every_class=True, seed=0):
    """``n`` samples of ``d`` standard normal features and labels in ``range(classes)``; with
    ``every_class``, the first ``classes`` labels are 0, 1, ... so that every class is present."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, classes, n)
    if every_class:
        y[:classes] = np.arange(classes)
    return X, y


def pure_run(opt, params, grads):
    """``update`` + ``apply_updates`` for every gradient in ``grads``: (params, state)."""
    state = opt.init(params)
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = ol.apply_updates(params, updates)
    return params, state
