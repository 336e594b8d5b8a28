"""The translation table without the libraries: its data, the new keywords against plain loops
written from the optax and Keras sources, and the rows whose source cannot run here (the blog
post, BERT, the old transformers.AdamW, the AdamW paper) against plain loops written from
that source (``test_source_rows``, with the same guard as ``tests/test_translation.py``: every
coordinate must move, so that no check passes vacuously).

No optimlab code computes an expected value. Every run uses the table's own problem
(``ol.translation.problem``: 150 random gradients, scales 1e-6 to 10, zero stretches) and its
measure (``relative_difference``, 1e-12 where equality is claimed).
"""

import math

import numpy as np
import pytest
import sympy as sp

import optimlab as ol
from optimlab import fast
from optimlab import translation as tr

THETA0, GRADS = tr.problem()


def lr_at(lr, t):
    """The learning rate of step t = 1, 2, ...: a schedule is called with t - 1."""
    return lr(t - 1) if callable(lr) else lr


def run_loop(step):
    """Drive ``step(theta, g, t, state) -> theta`` (state: a dict it fills) over the problem."""
    theta, state, path = THETA0.copy(), {}, [THETA0.copy()]
    for t, g in enumerate(GRADS, start=1):
        theta = step(theta, g, t, state)
        path.append(theta.copy())
    return np.stack(path)


def run_optimlab(opt):
    theta = THETA0.copy()
    state = opt.init(theta)
    path = [theta]
    for g in GRADS:
        updates, state = opt.update(g, state, theta)
        theta = ol.apply_updates(theta, updates)
        path.append(theta)
    return np.stack(path)


def assert_equal_paths(actual, expected):
    err = tr.relative_difference(actual, expected)
    assert err <= tr.RTOL, f"relative difference {err:.3e} > {tr.RTOL:.0e}"


SCHEDULE = tr.schedule(0.01)


# --- the new keywords, against loops written from the library sources ---------------------------

def keras_rmsprop_loop(lr, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    """keras/src/optimizers/rmsprop.py, RMSprop.update_step (Keras 3.15), one line per line."""

    def step(variable, gradient, t, s):
        lr_t = lr_at(lr, t)
        s["velocity"] = rho * s.get("velocity", 0.0) + (1 - rho) * np.square(gradient)
        if centered:
            s["average_grad"] = rho * s.get("average_grad", 0.0) + (1 - rho) * gradient
            denominator = s["velocity"] - np.square(s["average_grad"]) + epsilon
        else:
            denominator = s["velocity"] + epsilon
        increment = lr_t * gradient / np.sqrt(denominator)
        if momentum > 0:
            s["momentum"] = momentum * s.get("momentum", 0.0) + increment
            return variable - s["momentum"]
        return variable - increment

    return step


def optax_rmsprop_loop(lr, decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=True,
                       centered=False, momentum=None, nesterov=False):
    """optax 0.2.8, alias.rmsprop: chain(scale_by_rms or scale_by_stddev, scale_by_learning_rate,
    trace(decay=momentum, nesterov=nesterov)), the three transforms written out."""

    def step(params, updates, t, s):
        # scale_by_rms / scale_by_stddev (bias_correction=False): nu starts at initial_scale
        s["nu"] = decay * s.get("nu", initial_scale) + (1 - decay) * updates**2
        nu = s["nu"]
        if centered:
            s["mu"] = decay * s.get("mu", 0.0) + (1 - decay) * updates
            nu = nu - s["mu"] ** 2
        updates = updates / (np.sqrt(nu + eps) if eps_in_sqrt else np.sqrt(nu) + eps)
        # scale_by_learning_rate: -lr(count)
        updates = -lr_at(lr, t) * updates
        # trace: new_trace = g + decay * trace; updates = g + decay * new_trace if nesterov
        if momentum is not None:
            s["trace"] = updates + momentum * s.get("trace", 0.0)
            updates = updates + momentum * s["trace"] if nesterov else s["trace"]
        return params + updates

    return step


def rmsprop_nesterov_loop(lr, alpha, eps, momentum):
    """torch's place of the buffer (before the learning rate) with optax's Nesterov ``trace``:
    d = g/(sqrt(v) + eps), b = mu b + d, theta -= lr (d + mu b)."""

    def step(theta, g, t, s):
        s["v"] = alpha * s.get("v", 0.0) + (1 - alpha) * g * g
        d = g / (np.sqrt(s["v"]) + eps)
        s["b"] = momentum * s.get("b", 0.0) + d
        return theta - lr_at(lr, t) * (d + momentum * s["b"])

    return step


def optax_adam_loop(lr, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, amsgrad=False):
    """optax 0.2.8, transform.scale_by_adam (nesterov=False) and scale_by_amsgrad, then
    scale_by_learning_rate."""

    def step(params, updates, t, s):
        s["mu"] = b1 * s.get("mu", 0.0) + (1 - b1) * updates
        s["nu"] = b2 * s.get("nu", 0.0) + (1 - b2) * updates**2
        mu_hat = s["mu"] / (1 - b1**t)
        nu_hat = s["nu"] / (1 - b2**t)
        if amsgrad:  # nu_max = maximum(nu_max, bias-corrected nu)
            s["nu_max"] = np.maximum(s.get("nu_max", 0.0), nu_hat)
            nu_hat = s["nu_max"]
        return params - lr_at(lr, t) * (mu_hat / (np.sqrt(nu_hat + eps_root) + eps))

    return step


@pytest.mark.parametrize("lr", [0.01, SCHEDULE], ids=["constant", "schedule"])
@pytest.mark.parametrize("hp", [
    dict(),
    dict(momentum=0.9),
    dict(momentum=0.5, centered=True, rho=0.95, epsilon=1e-6),
], ids=repr)
def test_rmsprop_lr_in_buffer_is_keras(hp, lr):
    ol_kwargs = dict(alpha=hp.get("rho", 0.9), eps=hp.get("epsilon", 1e-7), eps_inside=True,
                     momentum=hp.get("momentum", 0.0), centered=hp.get("centered", False))
    assert_equal_paths(run_optimlab(ol.rmsprop(lr=lr, **ol_kwargs, lr_in_buffer=True)),
                       run_loop(keras_rmsprop_loop(lr, **hp)))


@pytest.mark.parametrize("lr", [0.01, SCHEDULE], ids=["constant", "schedule"])
@pytest.mark.parametrize("hp", [
    dict(momentum=0.9),
    dict(momentum=0.9, nesterov=True),
    dict(momentum=0.8, nesterov=True, centered=True),
    dict(initial_scale=1.0),
    dict(initial_scale=0.5, eps_in_sqrt=False, centered=True),
    dict(initial_scale=2.0, momentum=0.9, nesterov=True, decay=0.99, eps=1e-6),
], ids=repr)
def test_rmsprop_optax_keywords(hp, lr):
    ol_kwargs = dict(alpha=hp.get("decay", 0.9), eps=hp.get("eps", 1e-8),
                     eps_inside=hp.get("eps_in_sqrt", True), centered=hp.get("centered", False),
                     momentum=hp.get("momentum", 0.0), nesterov=hp.get("nesterov", False),
                     initial_scale=hp.get("initial_scale", 0.0))
    assert_equal_paths(run_optimlab(ol.rmsprop(lr=lr, **ol_kwargs, lr_in_buffer=True)),
                       run_loop(optax_rmsprop_loop(lr, **hp)))


def test_rmsprop_nesterov_with_torch_buffer():
    assert_equal_paths(run_optimlab(ol.rmsprop(lr=SCHEDULE, alpha=0.9, momentum=0.9, nesterov=True)),
                       run_loop(rmsprop_nesterov_loop(SCHEDULE, 0.9, 1e-8, 0.9)))


def test_lr_in_buffer_and_initial_scale_matter():
    # Guards for the tests above: each keyword changes the numbers.
    plain = run_optimlab(ol.rmsprop(lr=SCHEDULE, alpha=0.9, momentum=0.9))
    for variant in (dict(lr_in_buffer=True), dict(initial_scale=1.0), dict(nesterov=True)):
        changed = run_optimlab(ol.rmsprop(lr=SCHEDULE, alpha=0.9, momentum=0.9, **variant))
        assert tr.relative_difference(changed, plain) > 1e-3, variant
    # ... but lr_in_buffer only under a schedule: with a constant lr it is a rewriting.
    assert_equal_paths(run_optimlab(ol.rmsprop(lr=0.01, momentum=0.9, lr_in_buffer=True)),
                       run_optimlab(ol.rmsprop(lr=0.01, momentum=0.9)))


@pytest.mark.parametrize("lr", [0.01, SCHEDULE], ids=["constant", "schedule"])
@pytest.mark.parametrize("hp", [
    dict(eps_root=1e-8),
    dict(eps_root=1e-4, eps=0.0),
    dict(eps_root=1e-6, b1=0.8, b2=0.99, amsgrad=True),
    dict(amsgrad=True),
], ids=repr)
def test_adam_eps_root_is_optax(hp, lr):
    kwargs = dict(betas=(hp.get("b1", 0.9), hp.get("b2", 0.999)), eps=hp.get("eps", 1e-8),
                  eps_root=hp.get("eps_root", 0.0))
    if hp.get("amsgrad"):
        kwargs.update(amsgrad=True, amsgrad_max="corrected")
    assert_equal_paths(run_optimlab(ol.adam(lr=lr, **kwargs)), run_loop(optax_adam_loop(lr, **hp)))


def test_eps_root_matters():
    assert tr.relative_difference(run_optimlab(ol.adam(lr=0.01, eps_root=1e-8)),
                                  run_optimlab(ol.adam(lr=0.01))) > 1e-2


def test_new_keywords_refuse_bad_values():
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0"):
        ol.rmsprop(nesterov=True)
    with pytest.raises(ValueError, match="initial_scale"):
        ol.rmsprop(initial_scale=-1.0)
    with pytest.raises(ValueError, match="eps_root"):
        ol.adam(eps_root=float("nan"))
    with pytest.raises(ValueError, match="eps_root"):
        ol.adamw(eps_root=1e-8, eps_hat=True)
    with pytest.raises(TypeError, match="lr_in_buffer must be True or False"):
        ol.rmsprop(lr_in_buffer="yes")


def test_plain_forms_unchanged():
    # Without the new keywords the optimizers keep the pieces (and reprs) they always had.
    assert "lr_in_buffer" not in repr(ol.rmsprop())
    assert "eps_root" not in repr(ol.adam()) and "eps_root" not in repr(ol.adamw())
    assert ol.rmsprop(momentum=0.9).hyperparams == ol.rmsprop(momentum=0.9, lr_in_buffer=False).hyperparams


@pytest.mark.parametrize("backend", ["blocks"])
@pytest.mark.parametrize("make", [
    lambda: ol.rmsprop(lr=0.01, momentum=0.9, nesterov=True, lr_in_buffer=True, initial_scale=0.5),
    lambda: ol.rmsprop(lr=0.01, centered=True, eps_inside=True, initial_scale=1.0),
    lambda: ol.adam(lr=0.01, eps_root=1e-8),
    lambda: ol.adamw(lr=0.01, amsgrad=True, amsgrad_max="corrected", eps_root=1e-6),
], ids=["rmsprop-optax", "rmsprop-centered-initial-scale", "adam-eps-root", "adamw-amsgrad-eps-root"])
def test_fast_path_matches_update(make, backend):
    opt = make()
    expected = run_optimlab(opt)
    params, path = THETA0.copy(), [THETA0.copy()]
    state = opt.init(params)
    with fast.backend(backend):
        for g in GRADS:
            state = opt.step(params, g, state)
            path.append(params.copy())
    np.testing.assert_array_equal(np.stack(path), expected)


def test_symbolic_driver_reads_the_new_keywords():
    g, theta, eta, alpha, c, mu, eps = sp.symbols(r"g theta eta alpha c mu epsilon", positive=True)
    opt = ol.rmsprop(lr=eta, alpha=alpha, eps=eps, momentum=mu, initial_scale=c, lr_in_buffer=True,
                     eps_inside=True)
    u, state = ol.symbolic.update(opt, g, ol.symbolic.init(opt, theta), theta, t=1)
    v1 = alpha * c + (1 - alpha) * g**2
    assert sp.simplify(state.v - v1) == 0
    assert sp.simplify(u + eta * g / sp.sqrt(v1 + eps)) == 0
    b1, b2 = sp.symbols("beta_1 beta_2", positive=True)
    opt = ol.adam(lr=eta, betas=(b1, b2), eps=eps, eps_root=c)
    u, _ = ol.symbolic.update(opt, g, ol.symbolic.init(opt, theta), theta, t=1)
    assert sp.simplify(u + eta * g / (sp.sqrt(g**2 + c) + eps)) == 0


# --- the rows whose source cannot run here -------------------------------------------------------

def blog_momentum_loop(lr, lam):
    """The blog post's momentum: v = lambda * v + lr * grad; x = x - v."""

    def step(x, grad, t, s):
        s["v"] = lam * s.get("v", 0.0) + lr_at(lr, t) * grad
        return x - s["v"]

    return step


def blog_rmsprop_loop(lr, decay_rate, eps):
    """The blog post's RMSProp: v = decay_rate * v + (1 - decay_rate) * grad_x**2;
    x = x - lr * grad_x / (np.sqrt(v) + eps)."""

    def step(x, grad_x, t, s):
        s["v"] = decay_rate * s.get("v", 0.0) + (1 - decay_rate) * grad_x**2
        return x - lr_at(lr, t) * grad_x / (np.sqrt(s["v"]) + eps)

    return step


def blog_adam_loop(lr, beta_1=0.9, beta_2=0.999, eps=1e-8):
    """The blog post's Adam: m = beta_1 * m + (1 - beta_1) * grad_x;
    v = beta_2 * v + (1 - beta_2) * grad_x**2; x = x - lr * m / (np.sqrt(v) + eps)."""

    def step(x, grad_x, t, s):
        s["m"] = beta_1 * s.get("m", 0.0) + (1 - beta_1) * grad_x
        s["v"] = beta_2 * s.get("v", 0.0) + (1 - beta_2) * grad_x**2
        return x - lr_at(lr, t) * s["m"] / (np.sqrt(s["v"]) + eps)

    return step


def bert_loop(learning_rate, weight_decay_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-6):
    """google-research/bert, optimization.py, AdamWeightDecayOptimizer.apply_gradients."""

    def step(param, grad, t, s):
        next_m = beta_1 * s.get("m", 0.0) + (1.0 - beta_1) * grad
        next_v = beta_2 * s.get("v", 0.0) + (1.0 - beta_2) * np.square(grad)
        update = next_m / (np.sqrt(next_v) + epsilon)
        update += weight_decay_rate * param
        update_with_lr = lr_at(learning_rate, t) * update
        next_param = param - update_with_lr
        s["m"], s["v"] = next_m, next_v
        return next_param

    return step


def hf_adamw_loop(lr, weight_decay, betas=(0.9, 0.999), eps=1e-6, correct_bias=True):
    """transformers (up to 4.x), src/transformers/optimization.py, AdamW.step."""
    beta1, beta2 = betas

    def step(p, grad, t, state):
        state["step"] = t
        state["exp_avg"] = state.get("exp_avg", 0.0) * beta1 + (1.0 - beta1) * grad
        state["exp_avg_sq"] = state.get("exp_avg_sq", 0.0) * beta2 + (1.0 - beta2) * grad * grad
        denom = np.sqrt(state["exp_avg_sq"]) + eps
        step_size = lr_at(lr, t)
        if correct_bias:  # No bias correction for Bert
            bias_correction1 = 1.0 - beta1 ** state["step"]
            bias_correction2 = 1.0 - beta2 ** state["step"]
            step_size = step_size * math.sqrt(bias_correction2) / bias_correction1
        p = p - step_size * state["exp_avg"] / denom
        if weight_decay > 0.0:
            p = p + p * (-lr_at(lr, t) * weight_decay)
        return p

    return step


def adamw_paper_loop(alpha, weight_decay, multiplier, beta1=0.9, beta2=0.999, eps=1e-8):
    """Loshchilov & Hutter (2019), Algorithm 2 (AdamW), lines 6-12, with lambda' = 0 (no L2)."""

    def step(theta, g, t, s):
        s["m"] = beta1 * s.get("m", 0.0) + (1 - beta1) * g
        s["v"] = beta2 * s.get("v", 0.0) + (1 - beta2) * g**2
        m_hat = s["m"] / (1 - beta1**t)
        v_hat = s["v"] / (1 - beta2**t)
        eta = multiplier(t - 1)
        return theta - eta * (alpha * m_hat / (np.sqrt(v_hat) + eps) + weight_decay * theta)

    return step


def _lr(row):
    return tr.schedule(row.lr) if row.schedule else row.lr


SOURCE_LOOPS = {
    "blog-momentum": lambda row: blog_momentum_loop(_lr(row), 0.9),
    "blog-rmsprop": lambda row: blog_rmsprop_loop(_lr(row), 0.9, 1e-8),
    "blog-adam": lambda row: blog_adam_loop(_lr(row)),
    "bert": lambda row: bert_loop(_lr(row), 0.01),
    "bert-vs-decay-after": lambda row: bert_loop(_lr(row), 0.01),
    "hf-adamw": lambda row: hf_adamw_loop(_lr(row), 0.01),
    "hf-adamw-no-bias-correction": lambda row: hf_adamw_loop(_lr(row), 0.01, correct_bias=False),
    "adamw-paper": lambda row: adamw_paper_loop(row.lr, 0.01, tr.schedule(1.0)),
    "adamw-paper-vs-torch": lambda row: adamw_paper_loop(row.lr, 0.01, tr.schedule(1.0)),
}


@pytest.mark.parametrize("row", tr.rows("source"), ids=[r.key for r in tr.rows("source")])
def test_source_rows(row):
    expected = run_loop(SOURCE_LOOPS[row.key](row))
    err = tr.relative_difference(run_optimlab(tr.optimizer(row)), expected)
    if row.claim == "equal":
        assert err <= tr.RTOL, f"{row.key}: claimed equal, relative difference {err:.3e}"
    else:
        assert err > row.threshold, f"{row.key}: claimed > {row.threshold:.0e}, got {err:.3e}"
    # Not a vacuous pass: every coordinate moved well away from its start.
    moved = np.abs(expected - expected[0]).max(axis=0) / np.abs(expected).max(axis=0)
    assert moved.min() > 1e-2, f"{row.key}: a coordinate barely moved ({moved.min():.1e})"


def test_source_near_misses_fail():
    # BERT read as the old transformers.AdamW (bias-corrected, decay after the step) and the
    # paper's Algorithm 2 read without its multiplier must both fail the equality check.
    for key, ol_kwargs in [("bert", dict(weight_decay=0.01, eps=1e-6, eps_hat=True,
                                         decay_order="after")),
                           ("adamw-paper", dict(weight_decay=0.01))]:
        row = next(r for r in tr.rows("source") if r.key == key)
        planted = row._replace(ol_kwargs=ol_kwargs)
        err = tr.relative_difference(run_optimlab(tr.optimizer(planted)),
                                     run_loop(SOURCE_LOOPS[key](row)))
        assert err > 1e3 * tr.RTOL, key


# --- the table as data ---------------------------------------------------------------------------

REQUIRED = {
    "torch": ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"],
    "optax": ["sgd", "adagrad", "rmsprop", "adam", "adamw", "amsgrad"],
    "keras": ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"],
}
VARIANTS = {  # (library, call) -> the keywords some equal row must set
    ("torch", "SGD"): ["momentum", "nesterov"], ("torch", "RMSprop"): ["momentum", "centered"],
    ("torch", "Adam"): ["amsgrad"],
    ("optax", "sgd"): ["momentum", "nesterov"],
    ("optax", "rmsprop"): ["momentum", "nesterov", "centered", "initial_scale"],
    ("optax", "adam"): ["eps_root"],
    ("keras", "SGD"): ["momentum", "nesterov"], ("keras", "RMSprop"): ["momentum", "centered"],
    ("keras", "Adam"): ["amsgrad", "weight_decay"], ("keras", "AdamW"): ["amsgrad"],
}


def test_table_covers_every_library_call_and_variant():
    for library, calls in REQUIRED.items():
        for call in calls:
            equal = [r for r in tr.rows(library, "equal") if r.call == call]
            assert equal, f"no row says which optimlab call equals {library}.{call}"
            assert any(not r.kwargs for r in equal), f"{library}.{call} with its defaults"
    for (library, call), keywords in VARIANTS.items():
        for keyword in keywords:
            assert any(keyword in r.kwargs for r in tr.rows(library, "equal") if r.call == call), \
                f"{library}.{call}({keyword}=...)"
    assert {r.key for r in tr.rows("source")} == set(SOURCE_LOOPS)
    assert any(r.schedule for r in tr.rows("optax", "equal"))
    assert any(r.schedule for r in tr.rows("keras", "equal"))


def test_rows_are_well_formed():
    assert len({r.key for r in tr.ROWS}) == len(tr.ROWS)
    for row in tr.ROWS:
        assert row.library in tr.LIBRARIES and row.claim in ("equal", "differs")
        assert (row.threshold is None) == (row.claim == "equal")
        if row.claim == "differs":
            assert row.threshold >= 1e3 * tr.RTOL and row.note
        tr.optimizer(row)  # the optimlab call exists and accepts its keywords


def test_table_markdown_lists_every_row():
    text = tr.table_markdown()
    lines = text.strip().splitlines()
    assert len(lines) == 2 + len(tr.ROWS)
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines[2:])
    for row in tr.ROWS:
        assert f"`{tr.library_call(row)}` | `{tr.optimlab_call(row)}` | {tr.claim_text(row)}" in text
    assert len(tr.table_markdown("optax").strip().splitlines()) == 2 + len(tr.rows("optax"))


def test_problem_has_the_promised_gradients():
    scales = np.abs(GRADS).max(axis=0)
    assert GRADS.shape == (tr.STEPS, 24) and tr.STEPS >= 100
    assert scales.min() < 1e-5 and scales.max() > 5
    assert (GRADS[:40, 8:16] == 0).all() and (GRADS[40:, 8:16] != 0).all()
    assert (GRADS[59:100, 16:] == 0).all() and (GRADS[:59, 16:] != 0).all()
