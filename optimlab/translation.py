r"""The translation table: what torch.optim, optax and Keras mean by each optimizer, as data.

Each :class:`Row` pairs one library call with the optimlab call claimed to reproduce it
(``claim="equal"``) or claimed *not* to (``claim="differs"``, the near-misses a reader would
write by keeping torch's conventions). The tests (``tests/test_translation*.py``) run every
row: the real library (torch.optim, optax with 64-bit JAX, Keras 3 on the JAX backend with
float64 variables) and optimlab from the same float64 parameters on the same
:data:`STEPS` random gradients (:func:`problem`); rows whose source cannot run here (the blog
post, BERT, the old ``transformers.AdamW``, the AdamW paper) are run against plain-loop
references written from that source. A row claimed equal must agree to :data:`RTOL` in
:func:`relative_difference`; a row claimed different must differ by more than its
``threshold``. The book renders the same rows with :func:`table_markdown`, so the page and
the checks cannot disagree.

Where each fact is read (the library versions of ``requirements-ci.txt``):

- torch 2.13: ``torch/optim/{sgd,adagrad,rmsprop,adam,adamw}.py``.
- optax 0.2.8: ``optax/_src/alias.py`` (the chains) and ``optax/_src/transform.py``
  (``trace``, ``scale_by_rss``, ``scale_by_rms``, ``scale_by_stddev``, ``scale_by_adam``,
  ``scale_by_amsgrad``, ``add_decayed_weights``).
- Keras 3.15: ``keras/src/optimizers/{sgd,adagrad,rmsprop,adam,adamw}.py`` (``update_step``)
  and ``base_optimizer.py`` (``_apply_weight_decay``: ``variable - variable * wd * lr``,
  applied before ``update_step``, for every optimizer given ``weight_decay``).
"""

from typing import NamedTuple

import numpy as np

#: Relative agreement required where a row claims equality (see :func:`relative_difference`).
RTOL = 1e-12
#: Number of updates in every check.
STEPS = 150
#: The decay rate of the rows run under a schedule, :math:`\eta_t = \eta \rho^{t-1}` with
#: :math:`\rho` = ``SCHEDULE_RATE`` (see :func:`schedule`).
SCHEDULE_RATE = 0.98

LIBRARIES = {"torch": "torch.optim", "optax": "optax", "keras": "keras.optimizers",
             "source": "published source"}


class Row(NamedTuple):
    r"""One row of the table.

    ``library`` is ``"torch"``, ``"optax"``, ``"keras"`` or ``"source"`` (a published algorithm
    that cannot run here); ``call`` the library's constructor (for a source row, the text shown);
    ``kwargs`` its keyword arguments besides the learning rate; ``optimlab`` and ``ol_kwargs``
    the optimlab constructor and its keywords besides ``lr``; ``claim`` ``"equal"`` or
    ``"differs"`` (then by more than ``threshold``, a relative difference); ``schedule`` True
    when the check runs under the decaying schedule (:data:`SCHEDULE_RATE`); ``note`` says
    what the library does differently from torch.optim (or what the near-miss gets wrong), as
    MyST markdown (math in ``$...$``) in the book's notation: :math:`b_t` PyTorch's momentum
    buffer, :math:`w_t` the velocity with the learning rate inside, :math:`\lambda` the weight
    decay, :math:`\gamma_t` a schedule multiplier (the AdamW paper's :math:`\eta_t`);
    ``lr`` is the learning rate of the check; ``key`` names the row in the tests.
    """

    algorithm: str
    library: str
    call: str
    kwargs: dict
    optimlab: str
    ol_kwargs: dict
    claim: str = "equal"
    threshold: float | None = None
    schedule: bool = False
    note: str = ""
    lr: float = 0.01
    key: str = ""


def _row(algorithm, library, call, kwargs, optimlab, ol_kwargs, *, lr, note="", schedule=False,
         differs=None, key=None):
    claim, threshold = ("equal", None) if differs is None else ("differs", differs)
    if key is None:
        key = f"{library}.{call}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
        key += " vs " + f"ol.{optimlab}({', '.join(f'{k}={v}' for k, v in ol_kwargs.items())})"
        key += " [schedule]" if schedule else ""
    return Row(algorithm, library, call, dict(kwargs), optimlab, dict(ol_kwargs), claim,
               threshold, schedule, note, lr, key)


_KERAS_ADAM = dict(eps=1e-7, eps_hat=True)  # Keras: lr sqrt(1-b2^t)/(1-b1^t) m/(sqrt(v)+eps)
_OPTAX_RMS = dict(alpha=0.9, eps_inside=True)  # optax: decay 0.9, g/sqrt(nu + eps)
_KERAS_RMS = dict(alpha=0.9, eps=1e-7, eps_inside=True)
_OPTAX_ADAGRAD = dict(initial_accumulator_value=0.1, eps=1e-7, eps_inside=True)

#: Every row of the table, grouped by algorithm (:func:`table_markdown` keeps this order within
#: each algorithm).
ROWS = [
    # --- SGD and momentum ---------------------------------------------------------------------
    _row("SGD", "torch", "SGD", {}, "sgd", {}, lr=0.05),
    _row("SGD", "torch", "SGD", dict(momentum=0.9), "sgd", dict(momentum=0.9), lr=0.05,
         schedule=True,
         note=r"$b_1 = g_1$, then $b_t = \mu b_{t-1} + g_t$; $\theta_t = \theta_{t-1} - \eta_t b_t$"),
    _row("SGD", "torch", "SGD", dict(momentum=0.9, nesterov=True), "sgd",
         dict(momentum=0.9, nesterov=True), lr=0.05, schedule=True),
    _row("SGD", "optax", "sgd", {}, "sgd", {}, lr=0.05),
    _row("SGD", "optax", "sgd", dict(momentum=0.9), "sgd", dict(momentum=0.9), lr=0.05,
         schedule=True, note="`trace` before the learning rate: PyTorch's buffer $b_t$"),
    _row("SGD", "optax", "sgd", dict(momentum=0.9, nesterov=True), "sgd",
         dict(momentum=0.9, nesterov=True), lr=0.05, schedule=True),
    _row("SGD", "keras", "SGD", {}, "sgd", {}, lr=0.05),
    _row("SGD", "keras", "SGD", dict(momentum=0.9), "sgd", dict(momentum=0.9, lr_in_buffer=True),
         lr=0.05, schedule=True,
         note=r"$\eta_t$ inside the buffer: it stores $-w_t$, $w_t = \mu w_{t-1} + \eta_t g_t$, "
         r"$\theta_t = \theta_{t-1} - w_t$"),
    _row("SGD", "keras", "SGD", dict(momentum=0.9, nesterov=True), "sgd",
         dict(momentum=0.9, nesterov=True, lr_in_buffer=True), lr=0.05, schedule=True,
         note=r"$\eta_t$ inside the buffer: $\theta_t = \theta_{t-1} - (\mu w_t + \eta_t g_t)$"),
    _row("SGD", "keras", "SGD", dict(momentum=0.9), "sgd", dict(momentum=0.9), lr=0.05,
         schedule=True, differs=1e-2,
         note=r"PyTorch's $b_t$ under a schedule: Keras keeps $\eta_t$ inside the buffer ($w_t$)"),
    # --- AdaGrad ------------------------------------------------------------------------------
    _row("AdaGrad", "torch", "Adagrad", {}, "adagrad", {}, lr=0.1,
         note=r"$s_0 = 0$, $\epsilon = 10^{-10}$ outside the root"),
    _row("AdaGrad", "torch", "Adagrad", dict(lr_decay=0.01, initial_accumulator_value=0.1),
         "adagrad", dict(lr_decay=0.01, initial_accumulator_value=0.1), lr=0.1),
    _row("AdaGrad", "optax", "adagrad", {}, "adagrad", _OPTAX_ADAGRAD, lr=0.1,
         note=r"$s_0 = 0.1$, $\epsilon = 10^{-7}$ inside the root"),
    _row("AdaGrad", "optax", "adagrad", {}, "adagrad", {}, lr=0.1, differs=1.0,
         note=r"PyTorch's defaults: $s_0 = 0$ and $\epsilon$ outside the root"),
    _row("AdaGrad", "keras", "Adagrad", {}, "adagrad", _OPTAX_ADAGRAD, lr=0.1,
         note=r"$s_0 = 0.1$, $\epsilon = 10^{-7}$ inside the root"),
    # --- RMSProp ------------------------------------------------------------------------------
    _row("RMSProp", "torch", "RMSprop", {}, "rmsprop", {}, lr=0.01,
         note=r"$\alpha = 0.99$, $\epsilon$ outside the root"),
    _row("RMSProp", "torch", "RMSprop", dict(momentum=0.9, centered=True), "rmsprop",
         dict(momentum=0.9, centered=True), lr=0.01, schedule=True,
         note=r"$b_t = \mu b_{t-1} + g_t/(\sqrt{v_t - \bar g_t^2} + \epsilon)$; "
         r"$\theta_t = \theta_{t-1} - \eta_t b_t$"),
    _row("RMSProp", "optax", "rmsprop", {}, "rmsprop", _OPTAX_RMS, lr=0.01,
         note=r"`decay` $\alpha = 0.9$, $\epsilon$ inside the root"),
    _row("RMSProp", "optax", "rmsprop", dict(momentum=0.9), "rmsprop",
         dict(_OPTAX_RMS, momentum=0.9, lr_in_buffer=True), lr=0.01, schedule=True,
         note=r"$\eta_t$ inside the buffer (`trace` after `scale_by_learning_rate`)"),
    _row("RMSProp", "optax", "rmsprop", dict(momentum=0.9, nesterov=True, centered=True),
         "rmsprop", dict(_OPTAX_RMS, momentum=0.9, nesterov=True, centered=True, lr_in_buffer=True),
         lr=0.01, schedule=True),
    _row("RMSProp", "optax", "rmsprop", dict(initial_scale=1.0, eps_in_sqrt=False), "rmsprop",
         dict(alpha=0.9, initial_scale=1.0), lr=0.01, note=r"$v_0$ = `initial_scale`"),
    _row("RMSProp", "optax", "rmsprop", dict(bias_correction=True), "adam",
         dict(betas=(0.0, 0.9), eps=0.0, eps_root=1e-8), lr=0.01,
         note=r"bias-corrected $\hat v_t$: Adam with $\beta_1 = 0$ and $\epsilon$ inside the root"),
    _row("RMSProp", "optax", "rmsprop", dict(momentum=0.9), "rmsprop",
         dict(_OPTAX_RMS, momentum=0.9), lr=0.01, schedule=True, differs=1e-2,
         note=r"PyTorch's $b_t$ under a schedule: optax keeps $\eta_t$ inside the buffer"),
    _row("RMSProp", "optax", "rmsprop", {}, "rmsprop", dict(alpha=0.9), lr=0.01, differs=1.0,
         note=r"$\epsilon$ outside the root (PyTorch's place)"),
    _row("RMSProp", "keras", "RMSprop", {}, "rmsprop", _KERAS_RMS, lr=0.01,
         note=r"`rho` $\alpha = 0.9$, $\epsilon = 10^{-7}$ inside the root"),
    _row("RMSProp", "keras", "RMSprop", dict(momentum=0.9, centered=True), "rmsprop",
         dict(_KERAS_RMS, momentum=0.9, centered=True, lr_in_buffer=True), lr=0.01, schedule=True,
         note=r"$\eta_t$ inside the buffer"),
    # --- Adam ---------------------------------------------------------------------------------
    _row("Adam", "torch", "Adam", {}, "adam", {}, lr=0.01, note="Kingma & Ba, Algorithm 1"),
    _row("Adam", "torch", "Adam", dict(weight_decay=0.1), "adam", dict(weight_decay=0.1),
         lr=0.01, note=r"`weight_decay` is L2: $\lambda\theta_{t-1}$ joins the gradient"),
    _row("Adam", "optax", "adam", {}, "adam", {}, lr=0.01),
    _row("Adam", "optax", "adam", dict(eps_root=1e-8), "adam", dict(eps_root=1e-8), lr=0.01,
         schedule=True, note=r"$\hat m_t/(\sqrt{\hat v_t + \epsilon_{\text{root}}} + \epsilon)$"),
    _row("Adam", "keras", "Adam", {}, "adam", _KERAS_ADAM, lr=0.01,
         note=r"$\hat\epsilon$ form: $\eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)\; m_t/(\sqrt{v_t} + \hat\epsilon)$"
         r", $\hat\epsilon = 10^{-7}$"),
    _row("Adam", "keras", "Adam", {}, "adam", dict(eps=1e-7), lr=0.01, differs=1e-2,
         note=r"Algorithm 1 with Keras's $\epsilon$: the $\hat\epsilon$ form differs"),
    _row("Adam", "keras", "Adam", dict(weight_decay=0.1), "adamw", dict(_KERAS_ADAM, weight_decay=0.1),
         lr=0.01, schedule=True, note=r"Keras's `weight_decay` is decoupled (AdamW), not L2"),
    # --- AMSGrad ------------------------------------------------------------------------------
    _row("AMSGrad", "torch", "Adam", dict(amsgrad=True), "adam", dict(amsgrad=True), lr=0.01,
         note=r"$v^{\max}_t$, the maximum of the raw $v_t$, then bias correction"),
    _row("AMSGrad", "optax", "amsgrad", {}, "adam", dict(amsgrad=True, amsgrad_max="corrected"),
         lr=0.01, schedule=True, note=r"$v^{\max}_t$, the maximum of the bias-corrected $\hat v_t$"),
    _row("AMSGrad", "optax", "amsgrad", {}, "adam", dict(amsgrad=True), lr=0.01, differs=1e-2,
         note=r"PyTorch's maximum of the raw $v_t$"),
    _row("AMSGrad", "keras", "Adam", dict(amsgrad=True), "adam", dict(_KERAS_ADAM, amsgrad=True),
         lr=0.01, note=r"maximum of the raw $v_t$, $\hat\epsilon$ form"),
    # --- AdamW --------------------------------------------------------------------------------
    _row("AdamW", "torch", "AdamW", {}, "adamw", {}, lr=0.01, schedule=True,
         note=r"$\theta_{t-1}(1 - \eta_t\lambda)$ before the Adam step; default $\lambda = 10^{-2}$"),
    _row("AdamW", "torch", "AdamW", dict(weight_decay=0.1, amsgrad=True), "adamw",
         dict(weight_decay=0.1, amsgrad=True), lr=0.01),
    _row("AdamW", "optax", "adamw", {}, "adamw", dict(weight_decay=1e-4), lr=0.01,
         note=r"$\theta_t = \theta_{t-1} - \eta\,(a_t + \lambda\theta_{t-1})$; default $\lambda = 10^{-4}$"),
    _row("AdamW", "optax", "adamw", dict(weight_decay=0.1), "adamw", dict(weight_decay=0.1),
         lr=0.01, schedule=True),
    _row("AdamW", "keras", "AdamW", {}, "adamw", dict(_KERAS_ADAM, weight_decay=0.004), lr=0.01,
         schedule=True, note=r"$\theta \leftarrow \theta - \eta_t\lambda\theta$ before the step, default "
         r"$\lambda = 0.004$; $\hat\epsilon$ form"),
    _row("AdamW", "keras", "AdamW", dict(weight_decay=0.1, amsgrad=True), "adamw",
         dict(_KERAS_ADAM, weight_decay=0.1, amsgrad=True), lr=0.01),
    # --- published sources that cannot run here (checked against plain loops from them) --------
    _row("SGD", "source", "blog post: v = lambda * v + lr * grad; x = x - v", {}, "sgd",
         dict(momentum=0.9, lr_in_buffer=True), lr=0.05, schedule=True, key="blog-momentum",
         note=r"Sutskever's form: $w_t = \mu w_{t-1} + \eta_t g_t$, $\theta_t = \theta_{t-1} - w_t$ "
         r"(the blog's $\lambda$ is $\mu$)"),
    _row("RMSProp", "source", "blog post: v = decay_rate * v + (1 - decay_rate) * grad**2; "
         "x = x - lr * grad / (sqrt(v) + eps)", {}, "rmsprop", dict(alpha=0.9, eps=1e-8),
         lr=0.01, key="blog-rmsprop", note=r"PyTorch's form, the blog's `decay_rate` as $\alpha$"),
    _row("Adam", "source", "blog post: x = x - lr * m / (sqrt(v) + eps)", {}, "adam",
         dict(bias_correction=False), lr=0.01, key="blog-adam", note="no bias correction"),
    _row("AdamW", "source", "BERT (google-research/bert): AdamWeightDecayOptimizer", {}, "adamw",
         dict(weight_decay=0.01, eps=1e-6, bias_correction=False), lr=0.01, key="bert",
         note=r"no bias correction; $\theta_t = \theta_{t-1} - \eta\,(m_t/(\sqrt{v_t} + \epsilon) "
         r"+ \lambda\theta_{t-1})$, the decay of the old $\theta$"),
    _row("AdamW", "source", "BERT (google-research/bert): AdamWeightDecayOptimizer", {}, "adamw",
         dict(weight_decay=0.01, eps=1e-6, bias_correction=False, decay_order="after"), lr=0.01,
         key="bert-vs-decay-after", differs=1e-5,
         note=r"decaying the updated $\theta$ (the old `transformers.AdamW`) is not BERT's order"),
    _row("AdamW", "source", "old transformers.AdamW (correct_bias=True)", {}, "adamw",
         dict(weight_decay=0.01, eps=1e-6, eps_hat=True, decay_order="after"), lr=0.01,
         key="hf-adamw", note=r"$\hat\epsilon$ form, then the decay of the already updated $\theta$"),
    _row("AdamW", "source", "old transformers.AdamW (correct_bias=False)", {}, "adamw",
         dict(weight_decay=0.01, eps=1e-6, bias_correction=False, decay_order="after"), lr=0.01,
         key="hf-adamw-no-bias-correction", note="no bias correction, decay after the step"),
    _row("AdamW", "source", "Loshchilov & Hutter (2019), Algorithm 2 (AdamW), eta_t schedule", {},
         "adamw", dict(weight_decay=0.01, schedule_multiplier="eta_t"), lr=0.01,
         schedule=True, key="adamw-paper",
         note=r"decay scaled by the schedule multiplier $\gamma_t$ (the paper's $\eta_t$), "
         r"not by $\gamma_t\eta$"),
    _row("AdamW", "source", "Loshchilov & Hutter (2019), Algorithm 2 (AdamW), eta_t schedule", {},
         "adamw", dict(weight_decay=0.01), lr=0.01, schedule=True, key="adamw-paper-vs-torch",
         differs=1e-2, note=r"PyTorch's AdamW scales the decay by its learning rate $\gamma_t\eta$"),
]


def rows(library=None, claim=None):
    """The rows of :data:`ROWS`, optionally only those of one library and/or one claim."""
    return [r for r in ROWS if (library is None or r.library == library)
            and (claim is None or r.claim == claim)]


def _kwargs_text(kwargs):
    return "".join(f", {k}={v!r}" for k, v in kwargs.items()).replace("'eta_t'", "eta_t")


def library_call(row):
    """The library call of ``row`` as text, e.g. ``optax.rmsprop(lr, momentum=0.9)``."""
    if row.library == "source":
        return row.call
    params = "params, lr" if row.library == "torch" else "lr"
    return f"{LIBRARIES[row.library]}.{row.call}({params}{_kwargs_text(row.kwargs)})"


def optimlab_call(row):
    """The optimlab call of ``row`` as text, e.g. ``ol.rmsprop(lr, alpha=0.9, eps_inside=True)``."""
    return f"ol.{row.optimlab}(lr{_kwargs_text(row.ol_kwargs)})"


def claim_text(row):
    """``"equal"`` or ``"differs (> 0.01)"``, with ``", under a schedule"`` where it applies."""
    text = "equal" if row.claim == "equal" else f"differs (> {row.threshold:g})"
    return text + (", under a schedule" if row.schedule else "")


def schedule(lr):
    r"""The schedule of the rows with ``schedule=True``: ``count -> lr * SCHEDULE_RATE**count``
    (``count`` = updates already made, as optimlab, optax and Keras's ``iterations`` count)."""
    return lambda count: lr * SCHEDULE_RATE**count


def optimizer(row):
    """The optimlab optimizer of ``row`` (``lr`` the row's, a :func:`schedule` when it has one)."""
    import optimlab as ol

    lr = schedule(row.lr) if row.schedule else row.lr
    kwargs = dict(row.ol_kwargs)
    if kwargs.get("schedule_multiplier") == "eta_t":  # the paper: lr = alpha, eta_t the multiplier
        lr, kwargs["schedule_multiplier"] = row.lr, schedule(1.0)
    return getattr(ol, row.optimlab)(lr=lr, **kwargs)


def problem(seed=14, steps=STEPS):
    r"""The start and the gradients of every check: ``(theta0, grads)``.

    24 float64 coordinates, split as ``{"w": (3, 4), "b": (12,)}``: coordinate :math:`i` has
    the gradient scale :math:`c_i`, eight scales from :math:`10^{-6}` to 10, three times: one
    third of the coordinates gets gradients from the first step, one third none for the first
    40 steps, one third none for steps 60 to 100. ``grads[t - 1]`` is the gradient of step t:
    :math:`c_i(0.5 z + o_i)` with :math:`z \sim N(0, 1)` and a fixed offset
    :math:`o_i \in [-1, 1]`, so the moments do not average out;
    :math:`\theta_0 = \min(c_i, 1)\, z_0`.
    The gradients do not depend on :math:`\theta`: two implementations that round differently
    cannot drift apart through the objective.
    """
    rng = np.random.default_rng(seed)
    scale = np.tile(np.geomspace(1e-6, 10.0, 8), 3)
    offset = rng.uniform(-1.0, 1.0, size=24)
    grads = scale * (0.5 * rng.normal(size=(steps, 24)) + offset)
    grads[:40, 8:16] = 0.0
    grads[59:100, 16:] = 0.0
    theta0 = np.minimum(scale, 1.0) * rng.normal(size=24)
    return theta0, grads


def split(flat):
    """A flat vector of 24 values (or a trajectory of them) as ``{"w": (..., 3, 4), "b": (..., 12)}``."""
    flat = np.asarray(flat)
    return {"w": flat[..., :12].reshape(*flat.shape[:-1], 3, 4), "b": flat[..., 12:]}


def relative_difference(actual, expected):
    r"""The largest difference of two trajectories (shape ``(steps + 1, n)``), coordinate by
    coordinate relative to how far that coordinate's expected values reach:
    :math:`\max_i \max_t |a_{t,i} - b_{t,i}| / \max_t |b_{t,i}|`. Coordinates whose gradients
    are :math:`10^{-6}` are judged on their own scale, not on that of the large ones."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} and {expected.shape}")
    if not (np.isfinite(actual).all() and np.isfinite(expected).all()):
        return float("inf")
    reach = np.abs(expected).max(axis=0)
    return float((np.abs(actual - expected).max(axis=0) / reach).max())


def table_markdown(library=None):
    """The table as MyST/Markdown: one line per row (of one ``library`` if given), grouped by
    algorithm, with the library call, the optimlab call, the claim and the note."""
    lines = ["| Algorithm | Library call | optimlab call | Claim | Note |",
             "|---|---|---|---|---|"]
    order = ["SGD", "AdaGrad", "RMSProp", "Adam", "AMSGrad", "AdamW"]
    for row in sorted(rows(library), key=lambda r: order.index(r.algorithm)):
        lines.append(f"| {row.algorithm} | `{library_call(row)}` | `{optimlab_call(row)}` "
                     f"| {claim_text(row)} "
                     f"| {row.note} |")
    return "\n".join(lines) + "\n"
