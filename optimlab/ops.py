"""The few functions an update rule needs beyond ``+ - * / **``, for arrays and for symbols.

Every rule in :mod:`optimlab.transforms` is written once with ordinary arithmetic and the
functions below. Given NumPy arrays (or floats) they call NumPy; given sympy expressions they
call sympy, so the same rule yields the numbers the book plots and the formulas it derives.
"""

import numpy as np


def is_symbolic(*values):
    """True if any value is a sympy object (a symbol or an expression)."""
    return any((type(v).__module__ or "").startswith("sympy") for v in values)


def sqrt(x):
    if is_symbolic(x):
        import sympy

        return sympy.sqrt(x)
    return np.sqrt(x)


def maximum(a, b):
    if is_symbolic(a, b):
        import sympy

        return sympy.Max(a, b)
    return np.maximum(a, b)


def zeros_like(p):
    """A zero state slot for parameter ``p``: an array of p's shape and dtype, or sympy's 0."""
    if is_symbolic(p):
        import sympy

        return sympy.Integer(0)
    return np.zeros_like(p)


def is_zero(x):
    """True only for a hyperparameter that is the plain number 0 (arrays and symbols are not)."""
    return not is_symbolic(x) and np.ndim(x) == 0 and not callable(x) and float(x) == 0.0
