"""Every optimizer against an independent plain-loop reference, written here from the algorithm
box it implements (torch.optim's documented pseudo-code, or the paper), in plain NumPy.

No optimlab code is used to compute the expected values. Trajectories run for STEPS updates in
float64 on a gradient that depends on the parameters (a random quadratic plus a sine term), and
must agree elementwise to a scale-aware tolerance: |a - b| <= 1e-12 * max(1, |b|).

The quadratic's centre moves on a slow orbit. The optimizers chase it, so the gradients change
sign many times, yet never settle near a stationary point, where adaptive methods with a small
eps amplify last-bit rounding differences chaotically (two correct implementations that round
differently would then drift apart by far more than 1e-12 after 100 steps).
"""

import math

import numpy as np
import pytest
from helpers import decay

import optimlab as ol

STEPS = 150
RTOL = 1e-12

_rng = np.random.default_rng(20240611)
_Q, _ = np.linalg.qr(_rng.normal(size=(6, 6)))
A = _Q @ np.diag(np.geomspace(0.5, 5.0, 6)) @ _Q.T
B = _rng.normal(size=6)
PHASE = _rng.uniform(0.0, 2 * np.pi, size=6)
THETA0 = _rng.normal(scale=2.0, size=(2, 3))


def grad(theta, t):
    """Gradient at update t of f_t(x) = 1/2 (x - c_t)^T A (x - c_t) - (1/6) sum cos(3x), x = theta
    flattened (6 values), c_t = 1.5 sin(t/15 + phase)."""
    x = theta.reshape(-1)
    centre = 1.5 * np.sin(t / 15.0 + PHASE)
    return (A @ (x - centre) + 0.5 * np.sin(3.0 * x)).reshape(theta.shape)


def lr_at(lr, t):
    """The learning rate of update t = 1, 2, ...: a schedule is called with t - 1."""
    return lr(t - 1) if callable(lr) else lr


def assert_close(actual, expected, rtol=RTOL):
    """Elementwise |actual - expected| <= rtol * max(1, |expected|), all values finite."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    assert np.isfinite(expected).all() and np.isfinite(actual).all()
    err = np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))
    assert err.max() <= rtol, f"max scaled difference {err.max():.3e} > {rtol:.0e}"


def run_optimlab(opt, steps=STEPS, theta0=THETA0):
    theta = theta0.copy()
    state = opt.init(theta)
    out = [theta]
    for t in range(1, steps + 1):
        updates, state = opt.update(grad(theta, t), state, theta)
        theta = ol.apply_updates(theta, updates)
        out.append(theta)
    return np.stack(out)


def run_reference(step_fn, steps=STEPS, theta0=THETA0):
    """Drive ``step_fn(theta, g, t, state) -> (theta, state)``; state starts as an empty dict."""
    theta = theta0.copy()
    state = {}
    out = [theta.copy()]
    for t in range(1, steps + 1):
        theta, state = step_fn(theta, grad(theta, t), t, state)
        out.append(theta.copy())
    return np.stack(out)


# --- SGD: torch.optim.SGD's algorithm box --------------------------------------------------------

def sgd_reference(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    def step(theta, g, t, s):
        if weight_decay != 0:
            g = g + weight_decay * theta
        if momentum != 0:
            if t > 1:
                s["b"] = momentum * s["b"] + (1 - dampening) * g
            else:
                s["b"] = g
            g = g + momentum * s["b"] if nesterov else s["b"]
        return theta - lr_at(lr, t) * g, s

    return step


def sutskever_reference(lr, momentum, weight_decay=0.0):
    """Sutskever et al. (2013) heavy ball, the learning rate inside the velocity:
    v_t = mu v_{t-1} + lr_t (g_t + wd theta), theta_t = theta_{t-1} - v_t."""

    def step(theta, g, t, s):
        g = g + weight_decay * theta
        s["v"] = momentum * s.get("v", 0.0) + lr_at(lr, t) * g
        return theta - s["v"], s

    return step


def sgdw_reference(lr, momentum, weight_decay):
    """Decoupled weight decay with torch's buffer: theta -= lr (b_t + wd theta), b from g only."""

    def step(theta, g, t, s):
        if momentum != 0:
            s["b"] = g if t == 1 else momentum * s["b"] + g
            g = s["b"]
        return theta - lr_at(lr, t) * (g + weight_decay * theta), s

    return step


def sgdw_paper_reference(alpha, momentum, weight_decay, multiplier):
    """Loshchilov & Hutter (2019), Algorithm 1 (SGDW):
    m_t = beta1 m_{t-1} + eta_t alpha g_t, theta_t = theta_{t-1} - m_t - eta_t lambda theta_{t-1}."""

    def step(theta, g, t, s):
        eta = lr_at(multiplier, t)
        s["m"] = momentum * s.get("m", 0.0) + eta * alpha * g
        return theta - s["m"] - eta * weight_decay * theta, s

    return step


SGD_CASES = [
    dict(lr=0.05),
    dict(lr=0.05, weight_decay=0.1),
    dict(lr=0.03, momentum=0.9),
    dict(lr=0.03, momentum=0.9, dampening=0.3),
    dict(lr=0.03, momentum=0.8, dampening=1.0),
    dict(lr=0.03, momentum=0.9, nesterov=True),
    dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.05),
    dict(lr=0.04, momentum=0.7, dampening=0.5, weight_decay=0.2),
    dict(lr=decay(0.05, 0.98), momentum=0.9),
    dict(lr=decay(0.05, 0.99), momentum=0.6, nesterov=True, weight_decay=0.01),
]


@pytest.mark.parametrize("hp", SGD_CASES, ids=repr)
def test_sgd(hp):
    assert_close(run_optimlab(ol.sgd(**hp)), run_reference(sgd_reference(**hp)))


@pytest.mark.parametrize("hp", [
    dict(lr=0.03, momentum=0.9),
    dict(lr=0.05, momentum=0.5, weight_decay=0.1),
    dict(lr=decay(0.05, 0.97), momentum=0.9),
], ids=repr)
def test_sgd_lr_in_buffer(hp):
    assert_close(run_optimlab(ol.sgd(**hp, lr_in_buffer=True)),
                 run_reference(sutskever_reference(**hp)))


@pytest.mark.parametrize("hp", [
    dict(lr=0.05, momentum=0.0, weight_decay=0.3),
    dict(lr=0.03, momentum=0.9, weight_decay=0.1),
    dict(lr=decay(0.05, 0.98), momentum=0.5, weight_decay=0.2),
], ids=repr)
def test_sgd_decoupled_weight_decay(hp):
    assert_close(run_optimlab(ol.sgd(**hp, decoupled_weight_decay=True)),
                 run_reference(sgdw_reference(**hp)))


@pytest.mark.parametrize("momentum, multiplier", [
    (0.0, 1.0), (0.9, 0.5), (0.0, decay(1.0, 0.98)),
], ids=["plain", "momentum-constant-eta", "schedule"])
def test_sgd_schedule_multiplier_is_paper_algorithm_1(momentum, multiplier):
    # The paper's buffer holds eta_t * alpha * g; equal to optimlab's eta_t * alpha * b_t while
    # eta_t is constant (or without momentum), the cases checked here.
    opt = ol.sgd(lr=0.04, momentum=momentum, weight_decay=0.2, decoupled_weight_decay=True,
                 schedule_multiplier=multiplier)
    assert_close(run_optimlab(opt),
                 run_reference(sgdw_paper_reference(0.04, momentum, 0.2, multiplier)))


# --- AdaGrad: torch.optim.Adagrad's algorithm box -----------------------------------------------

def adagrad_reference(lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                      eps=1e-10, eps_inside=False):
    def step(theta, g, t, s):
        lr_t = lr / (1 + (t - 1) * lr_decay)
        if weight_decay != 0:
            g = g + weight_decay * theta
        s["sum"] = s.get("sum", initial_accumulator_value) + g * g
        if eps_inside:  # Keras / optax: g / sqrt(sum + eps)
            return theta - lr_t * g / np.sqrt(s["sum"] + eps), s
        return theta - lr_t * g / (np.sqrt(s["sum"]) + eps), s

    return step


ADAGRAD_CASES = [
    dict(lr=0.5),
    dict(lr=0.5, lr_decay=0.05),
    dict(lr=0.3, initial_accumulator_value=0.3),
    dict(lr=0.5, eps=1e-3),
    dict(lr=0.4, weight_decay=0.1),
    dict(lr=0.6, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=1.0, eps=1e-6),
]


@pytest.mark.parametrize("hp", ADAGRAD_CASES, ids=repr)
def test_adagrad(hp):
    assert_close(run_optimlab(ol.adagrad(**hp)), run_reference(adagrad_reference(**hp)))


@pytest.mark.parametrize("hp", [
    dict(lr=0.5, initial_accumulator_value=0.1, eps=1e-7),
    dict(lr=0.5, eps=0.01, lr_decay=0.02),
    dict(lr=0.5, initial_accumulator_value=0.1, eps=1e-3, weight_decay=0.1),
], ids=repr)
def test_adagrad_eps_inside(hp):
    assert_close(run_optimlab(ol.adagrad(**hp, eps_inside=True)),
                 run_reference(adagrad_reference(**hp, eps_inside=True)))


# --- RMSProp: torch.optim.RMSprop's algorithm box -----------------------------------------------

def rmsprop_reference(lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                      eps_inside=False):
    def step(theta, g, t, s):
        if weight_decay != 0:
            g = g + weight_decay * theta
        s["v"] = alpha * s.get("v", 0.0) + (1 - alpha) * g**2
        v_tilde = s["v"]
        if centered:
            s["g_ave"] = alpha * s.get("g_ave", 0.0) + (1 - alpha) * g
            v_tilde = v_tilde - s["g_ave"] ** 2
        # TensorFlow/Keras put eps inside the root; torch adds it to the root.
        denom = np.sqrt(v_tilde + eps) if eps_inside else np.sqrt(v_tilde) + eps
        if momentum > 0:
            s["b"] = momentum * s.get("b", 0.0) + g / denom
            return theta - lr_at(lr, t) * s["b"], s
        return theta - lr_at(lr, t) * g / denom, s

    return step


RMSPROP_CASES = [
    dict(lr=0.01),
    dict(lr=0.01, alpha=0.9),
    dict(lr=0.01, eps=1e-3),
    dict(lr=0.005, momentum=0.9),
    dict(lr=0.01, centered=True),
    dict(lr=0.005, alpha=0.95, momentum=0.5, centered=True, weight_decay=0.1),
    dict(lr=0.01, weight_decay=0.2),
    dict(lr=decay(0.02, 0.98), momentum=0.3),
]


@pytest.mark.parametrize("hp", RMSPROP_CASES, ids=repr)
def test_rmsprop(hp):
    assert_close(run_optimlab(ol.rmsprop(**hp)), run_reference(rmsprop_reference(**hp)))


@pytest.mark.parametrize("hp", [
    dict(lr=0.01, alpha=0.9, eps=1e-7),
    dict(lr=0.01, centered=True, eps=1e-4),
    dict(lr=0.005, momentum=0.9, eps=1e-6, weight_decay=0.05),
], ids=repr)
def test_rmsprop_eps_inside(hp):
    assert_close(run_optimlab(ol.rmsprop(**hp, eps_inside=True)),
                 run_reference(rmsprop_reference(**hp, eps_inside=True)))


# --- Adam and AdamW: torch.optim.Adam/AdamW's algorithm boxes and Kingma & Ba ------------------

def adam_reference(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                   decoupled=False, bias_correction=True, eps_hat=False, amsgrad_max="raw",
                   decay_order="before", multiplier=None):
    """Adam as in Kingma & Ba (2015), Algorithm 1, and torch's Adam/AdamW boxes, with variants:

    - ``eps_hat``: the paper's Section 2 ordering, alpha_t = lr sqrt(1-b2^t)/(1-b1^t),
      theta -= alpha_t m_t / (sqrt(v_t) + eps); with amsgrad, Keras: sqrt(max_k v_k).
    - ``amsgrad_max="corrected"`` (optax): vhat_t = max(vhat_{t-1}, v_t / (1-b2^t)).
    - ``decay_order="after"`` (old HuggingFace AdamW): decay the already updated weights.
    - ``multiplier`` (Loshchilov & Hutter, Algorithm 2):
      theta_t = theta_{t-1} - eta_t (lr * adam_step + lambda theta_{t-1}).
    """
    b1, b2 = betas

    def step(theta, g, t, s):
        lr_t = lr_at(lr, t)
        if weight_decay != 0 and not decoupled:
            g = g + weight_decay * theta  # L2: the decay term enters m and v
        if decoupled and decay_order == "before" and multiplier is None:
            theta = theta - lr_t * weight_decay * theta  # torch AdamW: decay first
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        c1, c2 = (1 - b1**t, 1 - b2**t) if bias_correction else (1.0, 1.0)
        if eps_hat:
            v = s["v"]
            if amsgrad:
                s["v_max"] = np.maximum(s.get("v_max", 0.0), s["v"])
                v = s["v_max"]
            alpha_t = lr_t * math.sqrt(c2) / c1
            direction_times_lr = alpha_t * s["m"] / (np.sqrt(v) + eps)
        else:
            m_hat = s["m"] / c1
            if amsgrad and amsgrad_max == "corrected":
                s["v_max"] = np.maximum(s.get("v_max", 0.0), s["v"] / c2)
                v_hat = s["v_max"]
            elif amsgrad:
                s["v_max"] = np.maximum(s.get("v_max", 0.0), s["v"])
                v_hat = s["v_max"] / c2
            else:
                v_hat = s["v"] / c2
            direction_times_lr = lr_t * m_hat / (np.sqrt(v_hat) + eps)
        if multiplier is not None:
            eta = lr_at(multiplier, t)
            return theta - eta * (direction_times_lr + weight_decay * theta), s
        theta = theta - direction_times_lr
        if decoupled and decay_order == "after":
            theta = theta - lr_t * weight_decay * theta
        return theta, s

    return step


ADAM_CASES = [
    dict(lr=0.02),
    dict(lr=0.02, betas=(0.8, 0.99)),
    dict(lr=0.02, betas=(0.5, 0.9), eps=1e-3),
    dict(lr=0.02, weight_decay=0.1),
    dict(lr=0.02, amsgrad=True),
    dict(lr=0.03, betas=(0.7, 0.95), weight_decay=0.05, amsgrad=True),
    dict(lr=0.02, betas=(0.0, 0.99)),
    dict(lr=decay(0.03, 0.99), betas=(0.9, 0.99)),
]


@pytest.mark.parametrize("hp", ADAM_CASES, ids=repr)
def test_adam(hp):
    assert_close(run_optimlab(ol.adam(**hp)), run_reference(adam_reference(**hp)))


ADAMW_CASES = [
    dict(lr=0.02),
    dict(lr=0.02, weight_decay=0.1),
    dict(lr=0.02, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.3),
    dict(lr=0.02, weight_decay=0.1, amsgrad=True),
    dict(lr=decay(0.03, 0.98), weight_decay=0.2),
]


@pytest.mark.parametrize("hp", ADAMW_CASES, ids=repr)
def test_adamw(hp):
    expected = run_reference(adam_reference(**{"weight_decay": 1e-2, **hp}, decoupled=True))
    assert_close(run_optimlab(ol.adamw(**hp)), expected)


@pytest.mark.parametrize("hp", ADAMW_CASES, ids=repr)
def test_adam_decoupled_weight_decay_is_adamw(hp):
    hp = {"weight_decay": 1e-2, **hp}
    via_adam = run_optimlab(ol.adam(**hp, decoupled_weight_decay=True))
    assert_close(via_adam, run_reference(adam_reference(**hp, decoupled=True)))
    np.testing.assert_array_equal(via_adam, run_optimlab(ol.adamw(**hp)))


@pytest.mark.parametrize("hp", [
    dict(lr=0.02),
    dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.1),
    dict(lr=0.02, amsgrad=True, eps=1e-4),
], ids=repr)
def test_adam_without_bias_correction(hp):
    assert_close(run_optimlab(ol.adam(**hp, bias_correction=False)),
                 run_reference(adam_reference(**hp, bias_correction=False)))


@pytest.mark.parametrize("hp", [
    dict(lr=0.02),
    dict(lr=0.02, betas=(0.8, 0.99), eps=1e-3),
    dict(lr=0.02, amsgrad=True, weight_decay=0.05),
    dict(lr=decay(0.02, 0.99), eps=1e-6),
], ids=repr)
def test_adam_eps_hat(hp):
    assert_close(run_optimlab(ol.adam(**hp, eps_hat=True)),
                 run_reference(adam_reference(**hp, eps_hat=True)))


@pytest.mark.parametrize("hp", [
    dict(lr=0.02),
    dict(lr=0.03, betas=(0.7, 0.95), eps=1e-3, weight_decay=0.05),
], ids=repr)
def test_adam_amsgrad_max_corrected(hp):
    assert_close(run_optimlab(ol.adam(**hp, amsgrad=True, amsgrad_max="corrected")),
                 run_reference(adam_reference(**hp, amsgrad=True, amsgrad_max="corrected")))


def test_amsgrad_max_raw_and_corrected_differ():
    # The max of raw v and the max of bias-corrected v are different rules: a guard that the
    # two reference paths above are not accidentally the same computation.
    raw = run_reference(adam_reference(0.03, (0.7, 0.95), amsgrad=True))
    corrected = run_reference(adam_reference(0.03, (0.7, 0.95), amsgrad=True,
                                             amsgrad_max="corrected"))
    assert np.abs(raw - corrected).max() > 1e-6


@pytest.mark.parametrize("hp", [
    dict(lr=0.02, weight_decay=0.1),
    dict(lr=0.02, weight_decay=0.2, eps_hat=True),
    dict(lr=0.02, weight_decay=0.1, bias_correction=False),
    dict(lr=decay(0.02, 0.99), weight_decay=0.1, amsgrad=True),
], ids=repr)
def test_adamw_decay_after_update(hp):
    assert_close(run_optimlab(ol.adamw(**hp, decay_order="after")),
                 run_reference(adam_reference(**hp, decoupled=True, decay_order="after")))


@pytest.mark.parametrize("multiplier", [1.0, 0.5, decay(1.0, 0.98)], ids=["1", "0.5", "decay"])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_schedule_multiplier(multiplier, amsgrad):
    opt = ol.adamw(lr=0.03, weight_decay=0.2, amsgrad=amsgrad, schedule_multiplier=multiplier)
    expected = adam_reference(0.03, weight_decay=0.2, amsgrad=amsgrad, decoupled=True,
                              multiplier=multiplier)
    assert_close(run_optimlab(opt), run_reference(expected))


def test_trajectories_are_not_trivial():
    # Guard for every test above: the parameters move far, the gradients change sign often, and
    # different rules give different paths, so agreement is not that of two runs that barely moved.
    for ref in (sgd_reference(0.05), adagrad_reference(0.5), rmsprop_reference(0.01),
                adam_reference(0.02)):
        path = run_reference(ref)
        grads = np.stack([grad(theta, t) for t, theta in enumerate(path[:-1], start=1)])
        assert np.abs(path[-1] - THETA0).max() > 1.0
        assert (np.diff(np.sign(grads), axis=0) != 0).sum() >= 10
    assert np.abs(run_reference(sgd_reference(0.05))[-1]
                  - run_reference(adam_reference(0.02))[-1]).max() > 0.1
