r"""The optimizers, with the names, keywords, defaults and semantics of ``torch.optim``.

Each is a chain of the rules in :mod:`optimlab.transforms`; the extra keyword-only arguments
select the variants the book discusses, each with its source. Hyperparameters may be arrays
that broadcast against the parameters (a batch of runs), sympy symbols (the symbolic driver),
and ``lr`` may be a schedule: a callable of the number of updates already made.
The ``*_pieces`` functions return the list of transforms each optimizer chains.
"""

import functools
import inspect

import numpy as np

from . import ops, precision
from . import transforms as T
from .groups import masked
from .optimizer import Optimizer
from .validation import check_betas, check_choice, check_flag, check_lr, check_range, value_at


def _optimizer(name, build, hyperparams):
    """An Optimizer whose rule is ``chain(*build(**hyperparams))``, specialised per array rank.

    A hyperparameter array of shape (K,) or (K, 1, ..., 1) holds one value per run along the
    parameters' leading axis: for each parameter array it is reshaped to (K, 1, ..., 1) of that
    array's rank, so a dict of weights (K, d, c) and biases (K, c) shares one batch of runs.
    Any other array shape must broadcast against every parameter array as it is. The values
    of a schedule are treated the same way. (So with batched params of shape (K, d), a
    per-coordinate array must be written with shape (1, d) when d equals K.)
    """
    rules = {}

    def rule(p):
        rank = 0 if ops.is_symbolic(p) else np.ndim(p)
        if rank not in rules:
            rules[rank] = T.chain(*build(**{k: _for_rank(v, rank) for k, v in hyperparams.items()}))
        return rules[rank]

    transform = T.Transform(lambda p: rule(p).init(p),
                            lambda u, s, p, t: rule(p).update(u, s, p, t))
    return Optimizer(transform, name, hyperparams)


def _for_rank(value, rank):
    if isinstance(value, tuple):
        return tuple(_for_rank(v, rank) for v in value)
    if callable(value):  # a schedule: its values are per-run vectors too
        return lambda count: _for_rank(value(count), rank)
    if ops.is_symbolic(value) or isinstance(value, bool | str) or value is None:
        return value
    shape = np.shape(value)
    if len(shape) >= 1 and all(n == 1 for n in shape[1:]) and rank >= 1:
        return np.reshape(value, (shape[0],) + (1,) * (rank - 1))
    return value


_MASK_DOC = r"""

    Decay mask: ``mask`` (keyword-only; default None, every array decayed) says which arrays
    of params get weight decay: a tree of bools in the structure of params (a bool may stand
    for a sub-tree) or a callable ``params -> tree`` of them, as optax's
    ``add_decayed_weights(mask=...)`` / ``optax.masked`` and torch's parameter groups with
    ``weight_decay=0``. Array :math:`i` is updated with :math:`\lambda_i = \lambda` where the
    mask is True and :math:`\lambda_i = 0` where it is False, every other hyperparameter
    unchanged: bit for bit this optimizer and the same one with ``weight_decay=0``, each on
    its arrays (a :class:`~optimlab.Partition` of the two; see
    :func:`optimlab.groups.masked`). ``mask=lambda p: {k: v.ndim >= 2 for k, v in
    p.items()}`` decays the weight matrices and not the biases (for batched params, count
    the batch axis).
    """


def _maskable(constructor):
    """Add the keyword-only argument ``mask`` to a constructor that has ``weight_decay``.

    The constructor's own lines stay as they are: with a mask, it is called twice, as given
    and with ``weight_decay=0``, and the two optimizers are partitioned by the mask.
    """
    signature = inspect.signature(constructor)

    @functools.wraps(constructor)
    def with_mask(*args, mask=None, **kwargs):
        opt = constructor(*args, **kwargs)
        if mask is None:
            return opt
        arguments = signature.bind(*args, **kwargs).arguments
        return masked(opt, constructor(**{**arguments, "weight_decay": 0.0}), mask)

    with_mask.__signature__ = signature.replace(parameters=[
        *signature.parameters.values(),
        inspect.Parameter("mask", inspect.Parameter.KEYWORD_ONLY, default=None)])
    with_mask.__doc__ = constructor.__doc__.rstrip() + "\n" + _MASK_DOC
    return with_mask


def _low_precision(constructor):
    """Add the keyword-only arguments ``state_dtype``, ``param_update`` and ``seed`` (see
    :mod:`optimlab.precision`) to a constructor.

    The constructor's own lines stay as they are: its optimizer is rebuilt with them, and
    they join its ``hyperparams`` (and repr) only when they differ from the defaults.
    """
    signature = inspect.signature(constructor)
    defaults = {"state_dtype": None, "param_update": "nearest", "seed": 0}

    @functools.wraps(constructor)
    def with_precision(*args, state_dtype=None, param_update="nearest", seed=0, **kwargs):
        state_dtype = precision.check_state_dtype(state_dtype)
        precision.check_param_update(param_update)
        precision.check_seed(seed)
        opt = constructor(*args, **kwargs)
        given = {k: v for k, v in dict(param_update=param_update, seed=seed).items()
                 if v != defaults[k]}
        if state_dtype is not None:  # (np.dtype(None) is float64: compare with `is`)
            given = {"state_dtype": state_dtype, **given}
        if not given:
            return opt
        if "state_dtype" in given:
            given["state_dtype"] = precision.describe(state_dtype)
        return Optimizer(opt.transform, opt.name, {**opt.hyperparams, **given},
                         opt.nonfinite, state_dtype=state_dtype, param_update=param_update,
                         seed=seed)

    with_precision.__signature__ = signature.replace(parameters=[
        *signature.parameters.values(),
        *(inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
          for k, v in defaults.items())])
    with_precision.__doc__ = constructor.__doc__.rstrip() + "\n" + precision.PRECISION_DOC
    return with_precision


def decay_pieces(direction, lr, weight_decay, decoupled, schedule_multiplier, decay_order):
    r"""The pieces around ``direction`` (a list of transforms: the preconditioned step) that put
    weight decay where each variant puts it: before the direction (L2, the gradient sees
    :math:`\lambda\theta`), after it (decoupled, PyTorch's AdamW), after the learning rate
    (``decay_order="after"``) or scaled by a schedule multiplier (Loshchilov & Hutter)."""
    if schedule_multiplier is not None:
        # Loshchilov & Hutter, Alg. 2: theta -= eta_t * (lr * direction + lambda * theta)
        return [*direction, T.scale(lr, name="lr"), T.add_decayed_weights(weight_decay),
                T.scale_by_learning_rate(schedule_multiplier, name="schedule_multiplier")]
    if decay_order == "after":
        return [*direction, T.scale_by_learning_rate(lr), T.decay_after_update(weight_decay, lr)]
    if decoupled:
        return [*direction, T.add_decayed_weights(weight_decay), T.scale_by_learning_rate(lr)]
    return [T.add_decayed_weights(weight_decay), *direction, T.scale_by_learning_rate(lr)]


def _check_schedule_multiplier(schedule_multiplier, decoupled):
    if schedule_multiplier is not None:
        if not callable(schedule_multiplier):
            check_range("schedule_multiplier", schedule_multiplier)
        if not decoupled:
            raise ValueError("schedule_multiplier scales decoupled weight decay; it needs "
                             "decoupled_weight_decay=True (or adamw)")


@_maskable
@_low_precision
def sgd(lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, *,
        lr_in_buffer=False, decoupled_weight_decay=False, schedule_multiplier=None):
    r"""Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad
        b_1 = g_1,\; b_t = \mu b_{t-1} + (1-\tau) g_t, \quad
        \theta_t = \theta_{t-1} - \eta\,(b_t \text{ or, Nesterov, } g_t + \mu b_t).

    Variants:

    - ``lr_in_buffer=True``: Sutskever et al. (2013) and the blog post,
      :math:`v_t = \mu v_{t-1} + \eta g_t,\ \theta_t = \theta_{t-1} - v_t`. Equal to PyTorch's
      form (:math:`v = \eta b`) while :math:`\eta` is constant, different under a schedule.
    - ``decoupled_weight_decay=True``: :math:`\theta_t = \theta_{t-1} - \eta(b_t + \lambda\theta_{t-1})`
      with :math:`\lambda\theta` kept out of the momentum buffer (SGDW).
    - ``schedule_multiplier=eta`` (with decoupled decay): Loshchilov & Hutter (2019), Alg. 1,
      :math:`\theta_t = \theta_{t-1} - \eta_t(\alpha b_t + \lambda\theta_{t-1})` with
      :math:`\alpha` = ``lr``; with :math:`\eta_t = 1` and no momentum this is their
      Proposition 1's weight decay, equal to L2 with :math:`\lambda' = \lambda/\alpha`.
      The paper's buffer holds :math:`\eta_t\alpha g_t` (:math:`m_t = \mu m_{t-1} + \eta_t\alpha g_t`)
      where this one holds :math:`g_t`: the same numbers while :math:`\eta_t` is constant or
      without momentum, not under a varying :math:`\eta_t` with momentum.
    """
    check_lr("lr", lr)
    check_range("momentum", momentum, 0.0, 1.0)
    check_range("dampening", dampening, 0.0, 1.0, hi_closed=True)
    check_range("weight_decay", weight_decay)
    nesterov = check_flag("nesterov", nesterov)
    lr_in_buffer = check_flag("lr_in_buffer", lr_in_buffer)
    decoupled = check_flag("decoupled_weight_decay", decoupled_weight_decay)
    if nesterov and (_some_zero(momentum) or not _all_zero(dampening)):
        raise ValueError("nesterov=True requires momentum > 0 and dampening = 0; "
                         f"got momentum={momentum!r}, dampening={dampening!r}")
    _check_schedule_multiplier(schedule_multiplier, decoupled)
    if lr_in_buffer and (decoupled or schedule_multiplier is not None):
        raise ValueError("lr_in_buffer=True is the plain heavy-ball form; it does not combine "
                         "with decoupled weight decay")
    return _optimizer("sgd", sgd_pieces, dict(
        lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
        weight_decay=weight_decay, lr_in_buffer=lr_in_buffer,
        decoupled_weight_decay=decoupled, schedule_multiplier=schedule_multiplier))


def sgd_pieces(lr, momentum, dampening, nesterov, weight_decay, lr_in_buffer,
                decoupled_weight_decay, schedule_multiplier):
    """The transforms whose chain is :func:`optimlab.sgd`, in order (the order is the algorithm)."""
    if np.ndim(momentum) > 0 and not ops.is_symbolic(momentum, dampening):
        # torch ignores dampening without momentum: so must a batch row whose momentum is 0
        dampening = np.where(np.asarray(momentum) == 0, 0.0, dampening)
    momentum_piece = [] if ops.is_zero(momentum) else [T.trace(momentum, dampening, nesterov)]
    if lr_in_buffer:
        return [T.add_decayed_weights(weight_decay), T.scale_by_learning_rate(lr), *momentum_piece]
    return decay_pieces(momentum_piece, lr, weight_decay, decoupled_weight_decay,
                         schedule_multiplier, "before")


def _some_zero(x):
    """True if a number or some element of an array is 0 (never for a symbol)."""
    return not ops.is_symbolic(x) and bool(np.any(np.asarray(x) == 0))


def _all_zero(x):
    """True if a number or every element of an array is 0 (never for a symbol)."""
    return not ops.is_symbolic(x) and bool(np.all(np.asarray(x) == 0))


def inverse_time_decay(lr, lr_decay):
    r"""AdaGrad's built-in schedule in PyTorch: :math:`\eta_t = \eta / (1 + (t-1)\,\mathrm{lr\_decay})`."""
    if ops.is_zero(lr_decay):
        return lr
    return lambda count: value_at("lr", lr, count) / (1 + count * lr_decay)


@_maskable
@_low_precision
def adagrad(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
            *, eps_inside=False):
    r"""AdaGrad (Duchi, Hazan & Singer, 2011), as ``torch.optim.Adagrad``.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad s_t = s_{t-1} + g_t^2, \quad
        \theta_t = \theta_{t-1} - \frac{\eta}{1 + (t-1)\,\mathrm{lr\_decay}}
        \frac{g_t}{\sqrt{s_t} + \epsilon},

    with :math:`s_0` = ``initial_accumulator_value``. optax and Keras start at
    :math:`s_0 = 0.1` and put eps inside the root (``eps_inside=True``:
    :math:`g_t/\sqrt{s_t + \epsilon}`).
    """
    check_lr("lr", lr)
    check_range("lr_decay", lr_decay)
    check_range("weight_decay", weight_decay)
    check_range("initial_accumulator_value", initial_accumulator_value)
    check_range("eps", eps)
    eps_inside = check_flag("eps_inside", eps_inside)
    return _optimizer("adagrad", adagrad_pieces, dict(
        lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
        initial_accumulator_value=initial_accumulator_value, eps=eps, eps_inside=eps_inside))


def adagrad_pieces(lr, lr_decay, weight_decay, initial_accumulator_value, eps, eps_inside):
    """The transforms whose chain is :func:`optimlab.adagrad`, in order (the order is the algorithm)."""
    return [T.add_decayed_weights(weight_decay),
            T.scale_by_adagrad(initial_accumulator_value, eps, eps_inside),
            T.scale_by_learning_rate(inverse_time_decay(lr, lr_decay))]


@_maskable
@_low_precision
def rmsprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *,
            eps_inside=False, lr_in_buffer=False, nesterov=False, initial_scale=0.0):
    r"""RMSProp (Tieleman & Hinton, 2012), as ``torch.optim.RMSprop``.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad v_t = \alpha v_{t-1} + (1-\alpha) g_t^2,
        \quad d_t = \frac{g_t}{\sqrt{\tilde v_t} + \epsilon},

        b_t = \mu b_{t-1} + d_t \ (b_0 = 0), \quad \theta_t = \theta_{t-1} - \eta\, b_t
        \quad(\theta_t = \theta_{t-1} - \eta\, d_t \text{ without momentum}),

    where :math:`\tilde v_t = v_t`, or :math:`v_t - \bar g_t^2` when ``centered``. ``alpha`` is
    the blog post's ``decay_rate`` (optax calls it ``decay``, default 0.9; Keras ``rho``).
    ``eps_inside=True`` puts eps inside the root, as TensorFlow/Keras and optax do.

    The optax and Keras forms (see :func:`optimlab.optimizers.rmsprop_variant_pieces`):

    - ``lr_in_buffer=True``: the learning rate inside the momentum buffer,
      :math:`b_t = \mu b_{t-1} + \eta_t d_t,\ \theta_t = \theta_{t-1} - b_t`, as
      ``keras.optimizers.RMSprop`` (``increment = lr * g / sqrt(...)``; ``momentum = momentum *
      self.momentum + increment``) and ``optax.rmsprop`` (``scale_by_learning_rate`` before
      ``trace``) do. Equal to PyTorch's :math:`\theta_t = \theta_{t-1} - \eta b_t` while
      :math:`\eta` is constant, different under a schedule.
    - ``nesterov=True`` (optax's ``rmsprop(momentum=..., nesterov=True)``, ``trace``):
      the step is :math:`d_t + \mu b_t` instead of :math:`b_t` (with the learning rate where the
      buffer puts it); it needs ``momentum > 0``. PyTorch's RMSprop has no Nesterov option.
    - ``initial_scale=c`` (optax's ``initial_scale``): :math:`v_0 = c` instead of 0
      (:func:`optimlab.transforms.initial_state`); with ``centered`` only :math:`v` starts at
      :math:`c`, :math:`\bar g_0 = 0`, as in optax's ``scale_by_stddev``.
    """
    check_lr("lr", lr)
    check_range("alpha", alpha, 0.0, 1.0)
    check_range("eps", eps)
    check_range("weight_decay", weight_decay)
    check_range("momentum", momentum, 0.0, 1.0)
    centered = check_flag("centered", centered)
    eps_inside = check_flag("eps_inside", eps_inside)
    hyper = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                 centered=centered, eps_inside=eps_inside)
    variants = _rmsprop_variants(momentum, lr_in_buffer, nesterov, initial_scale)
    if variants:  # only then: the plain form keeps the pieces (and repr) it always had
        return _optimizer("rmsprop", rmsprop_variant_pieces, {**hyper, **variants})
    return _optimizer("rmsprop", rmsprop_pieces, hyper)


def rmsprop_pieces(lr, alpha, eps, weight_decay, momentum, centered, eps_inside):
    """The transforms whose chain is :func:`optimlab.rmsprop`, in order (the order is the algorithm)."""
    return [T.add_decayed_weights(weight_decay),
            T.scale_by_rms(alpha, eps, centered, eps_inside),
            *([] if ops.is_zero(momentum) else [T.trace(momentum)]),
            T.scale_by_learning_rate(lr)]


def _rmsprop_variants(momentum, lr_in_buffer, nesterov, initial_scale):
    """The optax/Keras keywords of :func:`rmsprop` that differ from their defaults, checked."""
    lr_in_buffer = check_flag("lr_in_buffer", lr_in_buffer)
    nesterov = check_flag("nesterov", nesterov)
    check_range("initial_scale", initial_scale)
    if nesterov and _some_zero(momentum):
        raise ValueError(f"nesterov=True requires momentum > 0; got momentum={momentum!r}")
    if not lr_in_buffer and not nesterov and ops.is_zero(initial_scale):
        return {}
    return dict(lr_in_buffer=lr_in_buffer, nesterov=nesterov, initial_scale=initial_scale)


def rmsprop_variant_pieces(lr, alpha, eps, weight_decay, momentum, centered, eps_inside,
                           lr_in_buffer, nesterov, initial_scale):
    r"""The transforms of :func:`optimlab.rmsprop` with its optax/Keras keywords, in order.

    The same scaling (:func:`optimlab.transforms.scale_by_rms`), started at :math:`v_0` =
    ``initial_scale``; momentum (:func:`optimlab.transforms.trace`, Nesterov or not) after the
    learning rate when ``lr_in_buffer`` (optax: ``chain(scale_by_rms, scale_by_learning_rate,
    trace)``), before it otherwise (PyTorch's place).
    """
    rms = T.scale_by_rms(alpha, eps, centered, eps_inside)
    if not ops.is_zero(initial_scale):
        rms = T.initial_state(rms, v=initial_scale)
    momentum_piece = [] if ops.is_zero(momentum) else [T.trace(momentum, nesterov=nesterov)]
    if lr_in_buffer:
        return [T.add_decayed_weights(weight_decay), rms, T.scale_by_learning_rate(lr),
                *momentum_piece]
    return [T.add_decayed_weights(weight_decay), rms, *momentum_piece,
            T.scale_by_learning_rate(lr)]


@_maskable
@_low_precision
def adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
         decoupled_weight_decay=False, bias_correction=True, eps_hat=False, amsgrad_max="raw",
         decay_order="before", schedule_multiplier=None, eps_root=0.0):
    r"""Adam (Kingma & Ba, 2015, Algorithm 1), as ``torch.optim.Adam``.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,

        \theta_t = \theta_{t-1} - \eta\,\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}.

    ``weight_decay`` here is L2 regularization: :math:`\lambda\theta` joins the gradient and so
    passes through :math:`m` and :math:`v`. With ``decoupled_weight_decay=True`` (that is,
    :func:`adamw`) it does not: :math:`\theta_t = \theta_{t-1} - \eta(\text{Adam step} +
    \lambda\theta_{t-1})`, PyTorch's :math:`\theta \leftarrow \theta(1-\eta\lambda)` before the step.

    Variants (see :func:`optimlab.transforms.scale_by_adam` for the formulas):
    ``bias_correction=False`` (the blog post, BERT), ``eps_hat=True`` (the paper's efficient
    form, TensorFlow/Keras), ``amsgrad=True`` with ``amsgrad_max="raw"`` (PyTorch) or
    ``"corrected"`` (optax), ``decay_order="after"`` (old HuggingFace AdamW: decay the updated
    weights) and ``schedule_multiplier`` (Loshchilov & Hutter's :math:`\eta_t`:
    :math:`\theta_t = \theta_{t-1} - \eta_t(\alpha\,\text{Adam step} + \lambda\theta_{t-1})`,
    :math:`\alpha` = ``lr``), and ``eps_root`` (optax: :math:`\hat m_t/(\sqrt{\hat v_t +
    \epsilon_{root}} + \epsilon)`).
    """
    return _adam("adam", lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay,
                 bias_correction, eps_hat, amsgrad_max, decay_order, schedule_multiplier,
                 eps_root)


@_maskable
@_low_precision
def adamw(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
          bias_correction=True, eps_hat=False, amsgrad_max="raw", decay_order="before",
          schedule_multiplier=None, eps_root=0.0):
    r"""AdamW (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``: Adam with decoupled decay.

    .. math::
        \theta_t = \theta_{t-1} - \eta\left(\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
        + \lambda\theta_{t-1}\right),

    where :math:`m, v` see only the loss gradient. PyTorch writes it as
    :math:`\theta \leftarrow \theta(1-\eta\lambda)` followed by the Adam step: the same numbers.
    ``decay_order="after"`` decays the already updated weights, as the old
    ``transformers.AdamW`` did (BERT fine-tuning ran it with ``correct_bias=False``, i.e.
    ``bias_correction=False``); the original BERT optimizer decayed before the step, in
    PyTorch's order, without bias correction. ``schedule_multiplier`` scales the decay by
    the schedule multiplier :math:`\gamma_t` (the paper's :math:`\eta_t`) instead of by
    ``lr``, as in the paper's Algorithm 2. See :func:`adam` for the other variants.
    """
    return _adam("adamw", lr, betas, eps, weight_decay, amsgrad, True, bias_correction,
                 eps_hat, amsgrad_max, decay_order, schedule_multiplier, eps_root)


def _adam(name, lr, betas, eps, weight_decay, amsgrad, decoupled, bias_correction, eps_hat,
          amsgrad_max, decay_order, schedule_multiplier, eps_root=0.0):
    check_lr("lr", lr)
    b1, b2 = check_betas(betas)
    check_range("eps", eps)
    check_range("weight_decay", weight_decay)
    amsgrad = check_flag("amsgrad", amsgrad)
    decoupled = check_flag("decoupled_weight_decay", decoupled)
    bias_correction = check_flag("bias_correction", bias_correction)
    eps_hat = check_flag("eps_hat", eps_hat)
    check_choice("amsgrad_max", amsgrad_max, ("raw", "corrected"))
    check_choice("decay_order", decay_order, ("before", "after"))
    _check_schedule_multiplier(schedule_multiplier, decoupled)
    if eps_hat and amsgrad and amsgrad_max == "corrected":
        raise ValueError("eps_hat=True works on the raw v; it does not combine with "
                         "amsgrad_max='corrected'")
    check_range("eps_root", eps_root)
    if eps_hat and not ops.is_zero(eps_root):
        raise ValueError("eps_root is optax's epsilon inside sqrt(v_hat + eps_root); eps_hat=True "
                         "works on the raw v and does not combine with it")
    if decay_order == "after" and (not decoupled or schedule_multiplier is not None):
        raise ValueError("decay_order='after' is a form of decoupled weight decay scaled by lr; "
                         "use adamw (or decoupled_weight_decay=True) without schedule_multiplier")
    hyper = dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                 decoupled_weight_decay=decoupled, bias_correction=bias_correction,
                 eps_hat=eps_hat, amsgrad_max=amsgrad_max, decay_order=decay_order,
                 schedule_multiplier=schedule_multiplier)
    if not ops.is_zero(eps_root):  # only then: the plain forms keep the repr they always had
        hyper["eps_root"] = eps_root
    if name == "adamw":
        del hyper["decoupled_weight_decay"]
        return _optimizer(name, lambda **h: adam_pieces(**h, decoupled_weight_decay=True), hyper)
    return _optimizer(name, adam_pieces, hyper)


def adam_pieces(lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay, bias_correction,
                 eps_hat, amsgrad_max, decay_order, schedule_multiplier, eps_root=0.0):
    """The transforms whose chain is :func:`optimlab.adam`, in order (the order is the algorithm)."""
    direction = [T.scale_by_adam(*betas, eps, bias_correction=bias_correction, eps_hat=eps_hat,
                                 amsgrad=amsgrad, amsgrad_max=amsgrad_max, eps_root=eps_root)]
    return decay_pieces(direction, lr, weight_decay, decoupled_weight_decay,
                         schedule_multiplier, decay_order)
