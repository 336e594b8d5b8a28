r"""The update rules, each written once as a small ``(init, update)`` pair.

A :class:`Transform` acts on one array (or one sympy expression): ``init(p)`` returns its
state, a NamedTuple, and ``update(u, state, p, t)`` maps the incoming update ``u`` (at first the
gradient) to the outgoing one at step ``t = 1, 2, ...``. Optimizers are chains of transforms,
so the order of the pieces *is* the algorithm: L2 regularization adds :math:`\lambda\theta`
before the moment estimates see the gradient, decoupled weight decay adds it after them.

Rules use only arithmetic and :mod:`optimlab.ops`, so they run unchanged on NumPy arrays,
on blocks of arrays (the in-place fast path) and on sympy symbols (the symbolic driver).
"""

from typing import Any, NamedTuple

from . import ops
from .validation import value_at


class Transform(NamedTuple):
    """A pair of pure functions: ``init(p) -> state`` and ``update(u, state, p, t) -> (u, state)``."""

    init: Any
    update: Any


class EmptyState(NamedTuple):
    """The state of a transform that keeps none."""


class ChainState(tuple):
    """The states of a chain's transforms, in order; ``state.m`` finds the field ``m`` in them."""

    def __getattr__(self, name):
        for sub in self:
            if name in getattr(sub, "_fields", ()):
                return getattr(sub, name)
            if isinstance(sub, ChainState):
                try:
                    return getattr(sub, name)
                except AttributeError:
                    pass
        raise AttributeError(f"no transform in this chain keeps a field named {name!r}")

    def __repr__(self):
        return f"ChainState({', '.join(map(repr, self))})"


def chain(*transforms):
    """Apply ``transforms`` one after the other: the output of each is the input of the next."""

    def init(p):
        return ChainState(tr.init(p) for tr in transforms)

    def update(u, state, p, t):
        new_state = []
        for tr, s in zip(transforms, state, strict=True):
            u, s = tr.update(u, s, p, t)
            new_state.append(s)
        return u, ChainState(new_state)

    return Transform(init, update)


def _stateless(fn):
    return Transform(lambda p: EmptyState(), lambda u, s, p, t: (fn(u, p, t), s))


def add_decayed_weights(weight_decay):
    r"""Add :math:`\lambda\theta` to the update: :math:`u \leftarrow u + \lambda\theta`.

    Placed before a preconditioner this is L2 regularization (the gradient of
    :math:`\tfrac{\lambda}{2}\lVert\theta\rVert^2` enters the statistics); placed after it, it is
    decoupled weight decay (Loshchilov & Hutter, 2019).
    """
    return _stateless(lambda u, p, t: u if ops.is_zero(weight_decay) else u + weight_decay * p)


def scale(factor, name="factor"):
    r"""Multiply the update by a constant or a schedule: :math:`u \leftarrow c_t\,u`.
    ``name`` is the argument named in the error when a schedule returns an invalid value."""
    return _stateless(lambda u, p, t: value_at(name, factor, t - 1) * u)


def scale_by_learning_rate(lr, name="lr"):
    r"""The descent step: :math:`u \leftarrow -\eta_t\,u`, with :math:`\eta_t` = ``lr(t - 1)`` for a
    schedule (a callable of the number of updates already made) or ``lr`` itself.
    ``name`` is the argument named in the error when a schedule returns an invalid value."""
    return _stateless(lambda u, p, t: -value_at(name, lr, t - 1) * u)


def decay_after_update(weight_decay, lr):
    r"""Weight decay applied to the *already updated* parameters (the old ``transformers.AdamW``).

    With :math:`\theta' = \theta + u` the result is :math:`\theta' - \eta\lambda\theta'`, so
    :math:`u \leftarrow u - \eta\lambda(\theta + u)`: it differs from decaying :math:`\theta`
    first by :math:`\eta\lambda u`.
    """
    return _stateless(lambda u, p, t: u - value_at("lr", lr, t - 1) * weight_decay * (p + u))


class TraceState(NamedTuple):
    b: Any  # the momentum buffer


def trace(momentum, dampening=0.0, nesterov=False):
    r"""Heavy-ball momentum in PyTorch's form (``torch.optim.SGD``).

    .. math::
        b_1 = u_1, \qquad b_t = \mu\, b_{t-1} + (1-\tau)\, u_t \quad (t > 1),

    and the output is :math:`b_t`, or :math:`u_t + \mu b_t` with Nesterov. The first step is
    not dampened, as in PyTorch. Placed after the learning rate (Sutskever et al., 2013; the
    blog post's ``v = lambda*v + lr*g``) the buffer holds :math:`\eta` inside it.
    """

    def init(p):
        return TraceState(b=ops.zeros_like(p))

    def update(u, state, p, t):
        damp = 0 if t == 1 else dampening  # b_0 = 0, so step 1 gives b_1 = u_1 exactly
        b = momentum * state.b + (u if ops.is_zero(damp) else (1 - damp) * u)
        return (u + momentum * b if nesterov else b), TraceState(b)

    return Transform(init, update)


class AdagradState(NamedTuple):
    acc: Any  # running sum of squared gradients


def scale_by_adagrad(initial_accumulator_value=0.0, eps=1e-10, eps_inside=False):
    r"""AdaGrad's per-coordinate scaling (Duchi, Hazan & Singer, 2011).

    .. math::
        s_t = s_{t-1} + g_t^2, \qquad u_t = \frac{g_t}{\sqrt{s_t} + \epsilon}
        \quad\text{or, with eps\_inside,}\quad u_t = \frac{g_t}{\sqrt{s_t + \epsilon}},

    with :math:`s_0` = ``initial_accumulator_value`` (PyTorch: 0 and eps outside; optax and
    Keras: 0.1 and eps inside the root).
    """

    def init(p):
        return AdagradState(acc=ops.zeros_like(p) + initial_accumulator_value)

    def update(g, state, p, t):
        acc = state.acc + g * g
        denom = ops.sqrt(acc + eps) if eps_inside else ops.sqrt(acc) + eps
        return g / denom, AdagradState(acc)

    return Transform(init, update)


class RMSState(NamedTuple):
    v: Any  # running average of g^2
    g_avg: Any = None  # running average of g (centered variant only)


def scale_by_rms(alpha=0.99, eps=1e-8, centered=False, eps_inside=False):
    r"""RMSProp's scaling (Tieleman & Hinton, 2012), as in ``torch.optim.RMSprop``.

    .. math::
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2, \qquad
        u_t = \frac{g_t}{\sqrt{\tilde v_t} + \epsilon},

    where :math:`\tilde v_t = v_t` or, centered (Graves, 2013),
    :math:`\tilde v_t = v_t - \bar g_t^2` with :math:`\bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t`.
    With eps_inside the denominator is :math:`\sqrt{\tilde v_t + \epsilon}` (TensorFlow/Keras).
    """

    def init(p):
        return RMSState(v=ops.zeros_like(p), g_avg=ops.zeros_like(p) if centered else None)

    def update(g, state, p, t):
        v = alpha * state.v + (1 - alpha) * g * g
        g_avg = alpha * state.g_avg + (1 - alpha) * g if centered else None
        var = v - g_avg * g_avg if centered else v
        denom = ops.sqrt(var + eps) if eps_inside else ops.sqrt(var) + eps
        return g / denom, RMSState(v, g_avg)

    return Transform(init, update)


class AdamState(NamedTuple):
    m: Any  # first moment: running average of g
    v: Any  # second moment: running average of g^2
    v_max: Any = None  # AMSGrad's running maximum


def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, *, bias_correction=True, eps_hat=False,
                  amsgrad=False, amsgrad_max="raw", eps_root=0.0):
    r"""Adam's direction (Kingma & Ba, 2015, Algorithm 1), before the learning rate.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,

        \hat m_t = \frac{m_t}{1-\beta_1^t}, \qquad \hat v_t = \frac{v_t}{1-\beta_2^t}, \qquad
        u_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.

    Variants:

    - ``bias_correction=False``: :math:`u_t = m_t/(\sqrt{v_t}+\epsilon)` (the blog post; BERT).
    - ``eps_hat=True``: the paper's "efficient" ordering (Sec. 2), used by TensorFlow/Keras and
      old HuggingFace AdamW: :math:`u_t = \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}
      \frac{m_t}{\sqrt{v_t}+\hat\epsilon}` with :math:`\hat\epsilon` = ``eps``; it equals
      Algorithm 1 iff :math:`\hat\epsilon = \epsilon\sqrt{1-\beta_2^t}`.
    - ``amsgrad=True`` (Reddi, Kale & Kumar, 2018) with ``amsgrad_max="raw"`` (PyTorch):
      :math:`v^{\max}_t = \max(v^{\max}_{t-1}, v_t)`, :math:`\hat v_t = v^{\max}_t/(1-\beta_2^t)`;
      with ``"corrected"`` (optax): :math:`\hat v_t = \max(\hat v_{t-1}, v_t/(1-\beta_2^t))`.
    - ``eps_root`` (optax's ``scale_by_adam``/``scale_by_amsgrad``, ``eps_root``): a second
      epsilon inside the root, :math:`u_t = \hat m_t/(\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)`
      (optax's default 0 gives Algorithm 1; ``eps_root > 0`` keeps the root's derivative finite
      where :math:`\hat v_t = 0`, for meta-learning). Not with ``eps_hat``.
    """

    def init(p):
        return AdamState(ops.zeros_like(p), ops.zeros_like(p), ops.zeros_like(p) if amsgrad else None)

    def update(g, state, p, t):
        m = b1 * state.m + (1 - b1) * g
        v = b2 * state.v + (1 - b2) * g * g
        c1, c2 = (1 - b1**t, 1 - b2**t) if bias_correction else (1, 1)
        v_max = None
        if amsgrad and amsgrad_max == "corrected":
            v_max = ops.maximum(state.v_max, v / c2)
            v_hat = v_max
        else:
            v_raw = v
            if amsgrad:
                v_max = v_raw = ops.maximum(state.v_max, v)
            if eps_hat:
                return (ops.sqrt(c2) / c1) * m / (ops.sqrt(v_raw) + eps), AdamState(m, v, v_max)
            v_hat = v_raw / c2
        if not ops.is_zero(eps_root):  # optax: sqrt(v_hat + eps_root) + eps
            v_hat = v_hat + eps_root
        return (m / c1) / (ops.sqrt(v_hat) + eps), AdamState(m, v, v_max)

    return Transform(init, update)


def initial_state(transform, **values):
    r"""``transform`` with some state slots started at a given value instead of 0.

    ``initial_state(scale_by_rms(...), v=c)`` starts RMSProp's average at :math:`v_0 = c`, as
    optax's ``scale_by_rms(initial_scale=c)`` and ``scale_by_stddev(initial_scale=c)`` do
    (``nu = full_like(params, initial_scale)``); the update rule itself is unchanged:
    :math:`v_t = \alpha v_{t-1} + (1-\alpha) g_t^2` from :math:`v_0 = c`, so
    :math:`v_t = \alpha^t c + (1-\alpha)\sum_{k\le t}\alpha^{t-k} g_k^2`.
    """

    def init(p):
        state = transform.init(p)
        return state._replace(**{k: getattr(state, k) + value for k, value in values.items()})

    return Transform(init, transform.update)
