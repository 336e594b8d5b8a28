r"""Learning-rate schedules: callables of ``count``, the number of updates already made.

Pass one as ``lr`` (``ol.adam(lr=ol.schedules.cosine(1e-3, 1000))``): update number
:math:`t = \mathrm{count} + 1` uses ``schedule(count)``, as PyTorch's schedulers do when
stepped once after each ``optimizer.step()``. Schedules accept arrays of counts, for plots.
"""

import numpy as np

from .validation import check_range


def _count(count):
    return np.asarray(count, dtype=float)


def _scalar(x):
    return float(x) if np.ndim(x) == 0 else x


def constant(value):
    r""":math:`\eta_t = \eta`."""
    check_range("value", value)
    return lambda count: _scalar(value + 0.0 * _count(count))


def step_decay(value, step_size, gamma=0.1):
    r""":math:`\eta\,\gamma^{\lfloor \mathrm{count}/\mathrm{step\_size} \rfloor}`
    (``torch.optim.lr_scheduler.StepLR``)."""
    check_range("value", value)
    check_range("step_size", step_size, 1.0)
    check_range("gamma", gamma, 0.0, 1.0, hi_closed=True)
    return lambda count: _scalar(value * gamma ** np.floor(_count(count) / step_size))


def cosine(value, total_steps, final=0.0):
    r""":math:`\eta_{\mathrm{final}} + \tfrac12(\eta - \eta_{\mathrm{final}})(1 + \cos(\pi\,
    \min(\mathrm{count}, T)/T))` (``CosineAnnealingLR``, Loshchilov & Hutter 2017)."""
    check_range("value", value)
    check_range("total_steps", total_steps, 1.0)
    check_range("final", final)

    def schedule(count):
        c = np.minimum(_count(count), total_steps)
        return _scalar(final + 0.5 * (value - final) * (1 + np.cos(np.pi * c / total_steps)))

    return schedule


def linear_warmup(value, warmup_steps):
    r"""Linear warm-up to ``value`` over ``warmup_steps`` updates, then constant:
    :math:`\eta\,\min(1, (\mathrm{count}+1)/W)`."""
    check_range("value", value)
    check_range("warmup_steps", warmup_steps, 1.0)
    return lambda count: _scalar(value * np.minimum(1.0, (_count(count) + 1) / warmup_steps))


def warmup_cosine(value, warmup_steps, total_steps, final=0.0):
    """Linear warm-up for ``warmup_steps`` updates, then cosine decay to ``final`` at ``total_steps``."""
    check_range("warmup_steps", warmup_steps, 1.0)
    if not total_steps > warmup_steps:
        raise ValueError(f"total_steps must be > warmup_steps={warmup_steps}; got {total_steps!r}")
    warm = linear_warmup(value, warmup_steps)
    decay = cosine(value, total_steps - warmup_steps, final)

    def schedule(count):
        c = _count(count)
        return _scalar(np.where(c < warmup_steps, warm(c), decay(np.maximum(c - warmup_steps, 0))))

    return schedule
