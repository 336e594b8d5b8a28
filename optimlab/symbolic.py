r"""The symbolic driver: optimlab's own update rules evaluated on sympy expressions.

The rules in :mod:`optimlab.transforms` use only arithmetic and :mod:`optimlab.ops`, so an
optimizer built with symbolic hyperparameters and fed symbolic gradients returns the formula
of its update. The book derives from these formulas, so what it proves is what runs::

    import sympy as sp, optimlab as ol
    g, theta, lam, eta = sp.symbols("g theta lambda eta", real=True)
    opt = ol.adamw(lr=eta, weight_decay=lam)
    u, state = ol.symbolic.update(opt, g, ol.symbolic.init(opt, theta), theta, t=1)
"""

import sympy

from .tree import map_state

NONNEGATIVE_SLOTS = ("v", "acc", "v_max")  # running sums or averages of squares
#: The book's symbol for each state field whose name differs from it (the intro's notation
#: table): AdaGrad's sum is s, the centered average of g is g-bar, AMSGrad's maximum v^max.
BOOK_SYMBOLS = {"acc": "s", "g_avg": r"\bar{g}", "v_max": r"v^{\max}"}


def init(opt, p):
    """The state ``opt.init`` would give for a scalar parameter ``p``: every slot 0."""
    return opt.transform.init(p)


def update(opt, g, state, p, t):
    """One update on symbols: ``(u, new_state)`` with ``theta_t = p + u``. ``t`` may be a symbol."""
    return opt.transform.update(g, state, p, t)


def state_symbols(opt, p, suffix="_{t-1}"):
    """A state whose slots are symbols with the book's names (``m_{t-1}``, ``v_{t-1}``,
    ``s_{t-1}`` for AdaGrad's ``acc``, ...; see :data:`BOOK_SYMBOLS`), to write one general
    step of a rule."""

    def named(state):
        if hasattr(state, "_fields"):
            return type(state)(*(
                _slot(field, value, suffix) for field, value in zip(state._fields, state, strict=True)))
        if isinstance(state, tuple):
            return type(state)(named(s) for s in state)
        return state

    return named(init(opt, p))


def _slot(field, value, suffix):
    if value is None:
        return None
    if isinstance(value, tuple):
        return type(value)(map_state(lambda x: x, value))
    # nonnegative=False would declare a real symbol negative: pass None (unknown) for m, b, ...
    return sympy.Symbol(f"{BOOK_SYMBOLS.get(field, field)}{suffix}", real=True,
                        nonnegative=True if field in NONNEGATIVE_SLOTS else None)


def trajectory(opt, p0, grad, steps, t0=1):
    """Unroll ``steps`` updates from ``p0``; ``grad`` is a list of gradient expressions or a
    callable ``grad(theta, t)``. Returns ``[theta_0, theta_1, ...]`` and the final state."""
    state = init(opt, p0)
    thetas = [p0]
    for k in range(steps):
        t = t0 + k
        g = grad(thetas[-1], t) if callable(grad) else grad[k]
        u, state = update(opt, g, state, thetas[-1], t)
        thetas.append(thetas[-1] + u)
    return thetas, state
