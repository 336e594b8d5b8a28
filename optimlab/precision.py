r"""Low-precision parameters: float16 and bfloat16, the dtype of the state, and how the new
parameters are written.

Every constructor takes three keyword-only arguments:

- ``state_dtype``: the dtype of the optimizer's state (:math:`m`, :math:`v`, :math:`s`,
  :math:`b`, ...) and of the arithmetic of the rule. ``None`` (default) keeps the state in
  the params' dtype for float64 and float32 params, and *refuses* float16 and bfloat16
  params, whose state must be asked for: ``state_dtype=np.float32`` (mixed precision, the
  remedy) or the params' own dtype (the failures, deliberately).
- ``param_update``: how the low-precision parameters take the step :math:`u_t` the rule
  computed in the state's dtype, :math:`\operatorname{fl}` being rounding to the params'
  format:

  - ``"nearest"`` (default): :math:`\theta_t = \operatorname{fl}(\theta_{t-1} +
    \operatorname{fl}(u_t))`. A step below half an ulp of :math:`\theta` is lost.
  - ``"master"``: *master weights* (Micikevicius et al., 2018): the state keeps a copy
    :math:`\tilde\theta` in ``state_dtype``, the rule sees it, :math:`\tilde\theta_t =
    \tilde\theta_{t-1} + u_t` and :math:`\theta_t = \operatorname{fl}(\tilde\theta_t)`.
  - ``"kahan"``: Kahan-compensated summation in the params' format (Kahan, 1965; Zamirai et
    al., 2020): with a compensation :math:`c` (in the params' dtype, :math:`c_0 = 0`),
    :math:`y = \operatorname{fl}(u_t) - c_{t-1}`, :math:`\theta_t =
    \operatorname{fl}(\theta_{t-1} + y)`, :math:`c_t = (\theta_t - \theta_{t-1}) - y`: the
    part of the step the rounding dropped is carried to the next one.
  - ``"stochastic"``: stochastic rounding (Gupta et al., 2015; Zamirai et al., 2020):
    :math:`\theta_t = \operatorname{SR}(\theta_{t-1} + u_t)`, the sum computed in
    ``state_dtype`` and rounded *up* with probability equal to its distance from the lower
    neighbor over the spacing there, so that :math:`\mathbb{E}[\theta_t] = \theta_{t-1} +
    u_t`. The random numbers come from ``np.random.default_rng([seed, t, crc32(path)])``:
    ``update`` stays a pure function and ``step`` gives its bits.

  ``update`` returns :math:`\theta_t - \theta_{t-1}` computed in the params' format, which
  ``apply_updates`` adds back exactly whenever that difference is exact, as it is when
  :math:`\theta_t` and :math:`\theta_{t-1}` are within a factor 2 of each other (Sterbenz's
  lemma): every step that changes a weight by less than its own magnitude.
- ``seed``: the seed of stochastic rounding.

bfloat16 comes from the optional package ``ml_dtypes`` (``pip install ml-dtypes``); NumPy has
float16. Note that NumPy computes an operation of a bfloat16 array and a Python number in
float32 (ml_dtypes' promotion), whereas an operation on float16 arrays rounds to float16.
"""

import zlib
from typing import Any, NamedTuple

import numpy as np

PARAM_UPDATES = ("nearest", "master", "kahan", "stochastic")

PRECISION_DOC = r"""

    Low precision (keyword-only; see :mod:`optimlab.precision`): ``state_dtype`` (None: the
    params' dtype for float64 and float32 params; float16 and bfloat16 params need it, e.g.
    ``np.float32``), ``param_update`` (``"nearest"``, ``"master"``, ``"kahan"`` or
    ``"stochastic"``: how low-precision params take the step) and ``seed`` (for
    ``"stochastic"``).
    """


class MasterState(NamedTuple):
    """The extra state of ``param_update="master"``."""

    theta: Any  # the master copy of the params, in state_dtype


class KahanState(NamedTuple):
    """The extra state of ``param_update="kahan"``."""

    c: Any  # the compensation: the part of the steps the rounding dropped, in the params' dtype


def bfloat16():
    """The bfloat16 dtype of ``ml_dtypes``; ImportError (saying how to install it) without it."""
    try:
        import ml_dtypes
    except ImportError as exc:
        raise ImportError("bfloat16 needs the optional package ml_dtypes: pip install "
                          "ml-dtypes==0.6.0") from exc
    return np.dtype(ml_dtypes.bfloat16)


# (Checked at every step: the dtype's kind, size and char are cheaper to read than its name.)
def is_bfloat16(dtype):
    dtype = np.dtype(dtype)
    return dtype.itemsize == 2 and dtype.kind != "f" and dtype.name == "bfloat16"


def is_float(dtype):
    """True for the dtypes optimlab accepts as params: float16, bfloat16, float32, float64."""
    dtype = np.dtype(dtype)
    return (dtype.kind == "f" and dtype.char in "efd") or is_bfloat16(dtype)


def is_low(dtype):
    """True for float16 and bfloat16."""
    dtype = np.dtype(dtype)
    return dtype.itemsize == 2 and (dtype.kind == "f" or is_bfloat16(dtype))


def check_state_dtype(value):
    """``state_dtype`` as a NumPy dtype (or None), refusing anything but the four formats."""
    if value is None:
        return None
    if isinstance(value, str) and value == "bfloat16":
        return bfloat16()
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not is_float(dtype):
        raise TypeError("state_dtype must be None, np.float64, np.float32, np.float16 or "
                        f"bfloat16 (ml_dtypes); got {value!r}")
    return dtype


def check_param_update(value):
    if value not in PARAM_UPDATES:
        raise ValueError(f"param_update must be one of {', '.join(map(repr, PARAM_UPDATES))}; "
                         f"got {value!r}")
    return value


def check_seed(value):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise TypeError(f"seed must be a non-negative integer; got {value!r}")
    return int(value)


def stochastic_round(x, dtype, rng):
    r"""Round ``x`` to ``dtype`` stochastically: to the neighbor above with probability
    :math:`(x - \lfloor x\rfloor)/(\lceil x\rceil - \lfloor x\rfloor)`, else to the one below
    (:math:`\lfloor x\rfloor, \lceil x\rceil` the neighbors of ``x`` in ``dtype``); values
    that ``dtype`` holds exactly are kept. ``rng``: a NumPy Generator."""
    x = np.asarray(x)
    near = x.astype(dtype)
    back = near.astype(x.dtype)
    toward = np.where(back > x, -np.inf, np.inf).astype(dtype)
    other = np.nextafter(near, toward)
    lo = np.where(back > x, other, near)
    hi = np.where(back > x, near, other)
    lo_x, hi_x = lo.astype(np.float64), hi.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_up = (x.astype(np.float64) - lo_x) / (hi_x - lo_x)
    up = rng.random(x.shape) < p_up
    return np.where(back == x, near, np.where(up, hi, lo)).astype(dtype)


def rng_for(seed, t, path):
    """The generator of stochastic rounding for array ``path`` at step ``t``."""
    return np.random.default_rng([seed, int(t), zlib.crc32(path.encode())])


def describe(dtype):
    """A dtype's name for messages (``float16``, ``bfloat16``, ...)."""
    return np.dtype(dtype).name
