"""The symbolic driver: optimlab's rules on sympy symbols give the formulas the numbers obey.

1. For every constructor and its variants, the symbolic trajectory (symbols for every
   hyperparameter, for theta_0 and for each step's gradient), evaluated at numbers (lambdify with
   mpmath at 30 significant digits), equals the numeric path to |a - b| <= 1e-12 * max(1, |b|).
2. Identities the book derives from these formulas: the eps-hat ordering of Adam, decoupled
   decay is additive while L2 interacts with m and v, Adam's first step is a sign.
"""

import functools

import numpy as np
import pytest

import optimlab as ol

sp = pytest.importorskip("sympy")
mpmath = pytest.importorskip("mpmath")

STEPS = 4
RTOL = 1e-12

CASES = {
    "sgd": (lambda h: ol.sgd(lr=h["lr"]), dict(lr=0.1)),
    "sgd-momentum-dampening-wd": (
        lambda h: ol.sgd(lr=h["lr"], momentum=h["mu"], dampening=h["tau"], weight_decay=h["wd"]),
        dict(lr=0.1, mu=0.9, tau=0.3, wd=0.2)),
    "sgd-nesterov": (lambda h: ol.sgd(lr=h["lr"], momentum=h["mu"], nesterov=True),
                     dict(lr=0.1, mu=0.8)),
    "sgd-lr-in-buffer-schedule": (
        lambda h: ol.sgd(lr=lambda c: h["lr"] * h["rho"] ** c, momentum=h["mu"],
                         lr_in_buffer=True),
        dict(lr=0.1, rho=0.9, mu=0.9)),
    "sgd-decoupled-multiplier": (
        lambda h: ol.sgd(lr=h["lr"], momentum=h["mu"], weight_decay=h["wd"],
                         decoupled_weight_decay=True, schedule_multiplier=h["eta"]),
        dict(lr=0.1, mu=0.5, wd=0.3, eta=0.7)),
    "adagrad": (
        lambda h: ol.adagrad(lr=h["lr"], lr_decay=h["decay"], weight_decay=h["wd"],
                             initial_accumulator_value=h["s0"], eps=h["eps"]),
        dict(lr=0.5, decay=0.1, wd=0.2, s0=0.3, eps=1e-3)),
    "adagrad-eps-inside": (
        lambda h: ol.adagrad(lr=h["lr"], initial_accumulator_value=h["s0"], eps=h["eps"],
                             eps_inside=True),
        dict(lr=0.5, s0=0.1, eps=1e-2)),
    "rmsprop": (lambda h: ol.rmsprop(lr=h["lr"], alpha=h["alpha"], eps=h["eps"]),
                dict(lr=0.01, alpha=0.9, eps=1e-3)),
    "rmsprop-centered-momentum-wd": (
        lambda h: ol.rmsprop(lr=h["lr"], alpha=h["alpha"], eps=h["eps"], weight_decay=h["wd"],
                             momentum=h["mu"], centered=True),
        dict(lr=0.01, alpha=0.9, eps=1e-3, wd=0.1, mu=0.5)),
    "rmsprop-eps-inside": (
        lambda h: ol.rmsprop(lr=h["lr"], alpha=h["alpha"], eps=h["eps"], eps_inside=True),
        dict(lr=0.01, alpha=0.95, eps=1e-2)),
    "adam-l2": (
        lambda h: ol.adam(lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"], weight_decay=h["wd"]),
        dict(lr=0.1, b1=0.9, b2=0.99, eps=1e-3, wd=0.2)),
    "adam-amsgrad": (
        lambda h: ol.adam(lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"], amsgrad=True),
        dict(lr=0.1, b1=0.8, b2=0.9, eps=1e-3)),
    "adam-amsgrad-corrected": (
        lambda h: ol.adam(lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"], amsgrad=True,
                          amsgrad_max="corrected"),
        dict(lr=0.1, b1=0.8, b2=0.9, eps=1e-3)),
    "adam-no-bias-correction": (
        lambda h: ol.adam(lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"],
                          bias_correction=False),
        dict(lr=0.1, b1=0.9, b2=0.99, eps=1e-3)),
    "adam-eps-hat": (
        lambda h: ol.adam(lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"], eps_hat=True),
        dict(lr=0.1, b1=0.9, b2=0.99, eps=1e-3)),
    "adamw": (
        lambda h: ol.adamw(lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"],
                           weight_decay=h["wd"]),
        dict(lr=0.1, b1=0.9, b2=0.99, eps=1e-3, wd=0.3)),
    "adamw-decay-after": (
        lambda h: ol.adamw(lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"],
                           weight_decay=h["wd"], decay_order="after"),
        dict(lr=0.1, b1=0.9, b2=0.99, eps=1e-3, wd=0.3)),
    "adamw-schedule-multiplier": (
        lambda h: ol.adamw(lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"],
                           weight_decay=h["wd"], schedule_multiplier=lambda c: h["rho"] ** c),
        dict(lr=0.1, b1=0.9, b2=0.99, eps=1e-3, wd=0.3, rho=0.8)),
}


def numeric_path(opt, theta0, grads):
    theta, state = np.array([theta0]), opt.init(np.array([theta0]))
    path = [theta0]
    for g in grads:
        updates, state = opt.update(np.array([g]), state, theta)
        theta = ol.apply_updates(theta, updates)
        path.append(float(theta[0]))
    return np.array(path)


@functools.cache
def symbolic_trajectory(name):
    """theta_0..theta_STEPS as one function of (hyperparameters..., theta_0, g_1..g_STEPS),
    evaluated by mpmath at the working precision."""
    factory, numbers = CASES[name]
    hyper = [sp.Symbol(k, positive=True) for k in numbers]
    theta0 = sp.Symbol("theta_0", real=True)
    grads = sp.symbols(f"g_1:{STEPS + 1}", real=True)
    thetas, _ = ol.symbolic.trajectory(factory(dict(zip(numbers, hyper, strict=True))), theta0,
                                       list(grads), STEPS)
    return sp.lambdify([*hyper, theta0, *grads], thetas, modules="mpmath")


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(CASES))
def test_symbolic_trajectory_evaluates_to_the_numeric_one(name, seed):
    factory, numbers = CASES[name]
    rng = np.random.default_rng(seed)
    theta0 = float(rng.normal())
    grads = [float(x) for x in rng.normal(scale=2.0, size=STEPS)]

    with mpmath.workdps(30):  # the formula evaluated at 30 digits: (almost) exact
        args = [mpmath.mpf(x) for x in (*numbers.values(), theta0, *grads)]
        symbolic = np.array([float(x) for x in symbolic_trajectory(name)(*args)])
    numeric = numeric_path(factory(numbers), theta0, grads)

    assert np.all(np.abs(symbolic - numeric) <= RTOL * np.maximum(1.0, np.abs(numeric)))
    assert abs(numeric[-1] - numeric[0]) > 1e-3  # the run moved: the check is not vacuous


def test_trajectory_with_a_gradient_callable():
    # grad(theta, t) = theta^3 - t*theta, built from sympy expressions at each step.
    eta, b1, b2, eps = sp.symbols("eta beta1 beta2 epsilon", positive=True)
    theta0 = sp.Symbol("theta_0", real=True)
    opt = ol.adam(lr=eta, betas=(b1, b2), eps=eps)
    thetas, state = ol.symbolic.trajectory(opt, theta0, lambda th, t: th**3 - t * th, 3)
    numbers = {eta: 0.1, b1: 0.9, b2: 0.99, eps: 1e-3, theta0: 0.7}
    symbolic = [float(th.subs(numbers).evalf(30)) for th in thetas]

    nopt = ol.adam(lr=0.1, betas=(0.9, 0.99), eps=1e-3)
    theta = np.array([0.7])
    s = nopt.init(theta)
    numeric = [0.7]
    for t in range(1, 4):
        u, s = nopt.update(theta**3 - t * theta, s, theta)
        theta = ol.apply_updates(theta, u)
        numeric.append(float(theta[0]))
    np.testing.assert_allclose(symbolic, numeric, rtol=RTOL, atol=0)
    assert float(state.m.subs(numbers)) == pytest.approx(float(s.inner.m[0]), rel=RTOL)


def test_init_and_state_symbols():
    theta = sp.Symbol("theta", real=True)
    opt = ol.rmsprop(lr=sp.Symbol("eta", positive=True), momentum=sp.Symbol("mu", positive=True),
                     centered=True)
    zero = ol.symbolic.init(opt, theta)
    assert (zero.v, zero.g_avg, zero.b) == (0, 0, 0)
    named = ol.symbolic.state_symbols(opt, theta)
    assert str(named.v) == "v_{t-1}" and named.v.is_nonnegative
    assert str(named.g_avg) == r"\bar{g}_{t-1}" and str(named.b) == "b_{t-1}"
    assert named.g_avg.is_nonnegative is None  # a mean of g may have either sign


# --- identities derived from the rules ---------------------------------------------------------

ETA, B1, B2, EPS, LAM = sp.symbols("eta beta1 beta2 epsilon lambda", positive=True)
G, THETA = sp.symbols("g theta", real=True)
T = sp.Symbol("t", integer=True, positive=True)


def general_update(opt, theta=THETA):
    """One update at a general step t from a general state (m_{t-1}, v_{t-1}, ...)."""
    u, _ = ol.symbolic.update(opt, G, ol.symbolic.state_symbols(opt, theta), theta, T)
    return u


def test_eps_hat_is_algorithm_1_iff_eps_hat_is_eps_sqrt_one_minus_beta2_t():
    c2 = sp.Symbol("c2", positive=True)  # 1 - beta2^t, positive for t >= 1
    alg1 = general_update(ol.adam(lr=ETA, betas=(B1, B2), eps=EPS))
    matched = general_update(ol.adam(lr=ETA, betas=(B1, B2), eps=EPS * sp.sqrt(1 - B2**T),
                                     eps_hat=True))
    fixed = general_update(ol.adam(lr=ETA, betas=(B1, B2), eps=EPS, eps_hat=True))
    assert sp.simplify((alg1 - matched).subs(B2**T, 1 - c2)) == 0
    assert sp.simplify((alg1 - fixed).subs(B2**T, 1 - c2)) != 0


def test_decoupled_decay_is_additive_and_l2_is_not():
    # AdamW's update is Adam's plus -eta*lambda*theta, whatever m, v and t are ...
    adam = general_update(ol.adam(lr=ETA, betas=(B1, B2), eps=EPS))
    adamw = general_update(ol.adamw(lr=ETA, betas=(B1, B2), eps=EPS, weight_decay=LAM))
    assert sp.simplify(adamw - adam + ETA * LAM * THETA) == 0
    # ... while L2's lambda*theta passes through m and v: its effect depends on the state.
    l2 = general_update(ol.adam(lr=ETA, betas=(B1, B2), eps=EPS, weight_decay=LAM))
    effect = sp.diff(l2, LAM)
    v = sp.Symbol("v_{t-1}", real=True, nonnegative=True)
    assert v in effect.free_symbols and sp.diff(effect, v) != 0
    assert sp.diff(sp.diff(adamw, LAM), v) == 0


def test_adam_first_step_is_a_sign_and_l2_loses_the_decay_size():
    theta0 = sp.Symbol("theta_0", positive=True)
    g = sp.Symbol("g", positive=True)
    adam = ol.adam(lr=ETA, betas=(B1, B2), eps=0)
    u, _ = ol.symbolic.update(adam, g, ol.symbolic.init(adam, theta0), theta0, 1)
    assert sp.simplify(u) == -ETA
    l2 = ol.adam(lr=ETA, betas=(B1, B2), eps=0, weight_decay=LAM)
    u, _ = ol.symbolic.update(l2, g, ol.symbolic.init(l2, theta0), theta0, 1)
    assert sp.simplify(u) == -ETA  # sign(g + lambda*theta0) = 1: lambda has vanished
    adamw = ol.adamw(lr=ETA, betas=(B1, B2), eps=0, weight_decay=LAM)
    u, _ = ol.symbolic.update(adamw, g, ol.symbolic.init(adamw, theta0), theta0, 1)
    assert sp.simplify(u + ETA + ETA * LAM * theta0) == 0


def test_sgd_l2_and_decoupled_decay_agree_symbolically():
    # Loshchilov & Hutter, Proposition 1, on the rules themselves: lambda' = lambda / alpha.
    alpha = sp.Symbol("alpha", positive=True)
    l2 = ol.sgd(lr=alpha, weight_decay=LAM / alpha)
    decoupled = ol.sgd(lr=alpha, weight_decay=LAM, decoupled_weight_decay=True,
                       schedule_multiplier=1)
    u_l2, _ = ol.symbolic.update(l2, G, ol.symbolic.init(l2, THETA), THETA, T)
    u_dec, _ = ol.symbolic.update(decoupled, G, ol.symbolic.init(decoupled, THETA), THETA, T)
    assert sp.simplify(u_l2 - u_dec) == 0
    assert sp.simplify(u_dec + alpha * G + LAM * THETA) == 0
