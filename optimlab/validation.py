"""Checks of hyperparameters, with messages that name the argument, the value and what is valid.

A hyperparameter may be a number, an array of numbers (a batch of runs), a sympy expression
(the symbolic driver: not checked, it stands for any valid value) or, where documented, a
schedule: a callable of the step count, whose values are checked when they are used.
"""

import math

import numpy as np

from .ops import is_symbolic


def _describe(lo, hi, lo_closed, hi_closed):
    if hi is None:
        return f">= {lo:g}" if lo_closed else f"> {lo:g}"
    return f"in {'[' if lo_closed else '('}{lo:g}, {hi:g}{']' if hi_closed else ')'}"


def check_range(name, value, lo=0.0, hi=None, *, lo_closed=True, hi_closed=False):
    """Raise ValueError unless every element of ``value`` lies in the interval; return value.

    Without ``hi`` the interval is [lo, inf): NaN and infinities are refused everywhere.
    """
    if is_symbolic(value):
        return value
    if isinstance(value, bool) or not _is_real(value):
        raise TypeError(f"{name} must be a real number or an array of them; "
                        f"got {value!r} of type {type(value).__name__}")
    arr = np.asarray(value, dtype=float)
    ok = np.isfinite(arr) & ((arr >= lo) if lo_closed else (arr > lo))
    if hi is not None:
        ok &= (arr <= hi) if hi_closed else (arr < hi)
    if not ok.all():
        where = "" if arr.ndim == 0 else f" at index {tuple(int(i) for i in np.argwhere(~ok)[0])}"
        bad = arr if arr.ndim == 0 else arr[~ok][0]
        raise ValueError(f"{name} must be {_describe(lo, hi, lo_closed, hi_closed)}; "
                         f"got {_fmt(bad)}{where}")
    return value


def check_lr(name, lr):
    """A learning rate: >= 0, or a schedule (callable of the step count), checked when called."""
    return lr if callable(lr) else check_range(name, lr)


def value_at(name, hyper, count):
    """The value of a hyperparameter or schedule at ``count`` updates already made."""
    if not callable(hyper):
        return hyper
    value = hyper(count)
    if not is_symbolic(count):
        try:
            check_range(f"{name} (schedule value at count {count})", value)
        except TypeError as exc:
            raise TypeError(f"{name} schedule returned {value!r} at count {count}; "
                            "expected a real number >= 0") from exc
    return value


def check_betas(betas):
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2); got {betas!r}")
    for i, b in enumerate(betas):
        check_range(f"betas[{i}]", b, 0.0, 1.0)
    return tuple(betas)


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_flag(name, value):
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def _is_real(value):
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything numpy cannot read is not a number
        return False
    return arr.dtype.kind in "iuf"


def _fmt(x):
    x = float(x)
    return "nan" if math.isnan(x) else repr(x)
