"""Equivalences between optimizers (and where they stop holding), each checked on trajectories.

Comparisons of two different computations use the scale-aware tolerance
|a - b| <= 1e-12 * max(1, |b|); identities of the code (the same chain of rules) are checked
bit for bit.
"""

import math

import numpy as np
import pytest
from helpers import decay

import optimlab as ol

STEPS = 120
RTOL = 1e-12

_rng = np.random.default_rng(11)
_Q, _ = np.linalg.qr(_rng.normal(size=(5, 5)))
A = _Q @ np.diag(np.geomspace(0.5, 5.0, 5)) @ _Q.T
PHASE = _rng.uniform(0.0, 2 * np.pi, size=5)
THETA0 = _rng.normal(scale=2.0, size=5)


def grad(theta, t):
    """A quadratic whose centre moves (plus a sine term): non-trivial, never stationary."""
    centre = 1.5 * np.sin(t / 15.0 + PHASE)
    return A @ (theta - centre) + 0.5 * np.sin(3.0 * theta)


def assert_close(actual, expected, rtol=RTOL):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    assert np.isfinite(actual).all() and np.isfinite(expected).all()
    err = np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))
    assert err.max() <= rtol, f"max scaled difference {err.max():.3e} > {rtol:.0e}"


def run(opt, steps=STEPS):
    """Trajectory (steps+1, d), the gradients used (steps, d) and every state after an update."""
    theta, state = THETA0.copy(), opt.init(THETA0)
    path, grads, states = [theta], [], []
    for t in range(1, steps + 1):
        g = grad(theta, t)
        updates, state = opt.update(g, state, theta)
        theta = ol.apply_updates(theta, updates)
        path.append(theta)
        grads.append(g)
        states.append(state)
    return np.stack(path), np.stack(grads), states


def path_of(opt, steps=STEPS):
    return run(opt, steps)[0]


# --- AdamW without decay is Adam ----------------------------------------------------------------

@pytest.mark.parametrize("hp", [
    dict(lr=0.02),
    dict(lr=0.02, betas=(0.8, 0.99), eps=1e-4, amsgrad=True),
    dict(lr=0.02, eps_hat=True),
    dict(lr=0.02, bias_correction=False),
    dict(lr=decay(0.03, 0.98), amsgrad=True, amsgrad_max="corrected"),
], ids=repr)
def test_adamw_without_weight_decay_is_adam(hp):
    np.testing.assert_array_equal(path_of(ol.adamw(**hp, weight_decay=0.0)), path_of(ol.adam(**hp)))


def test_adamw_with_weight_decay_is_not_adam():
    # Guard: the decay term matters, so the equality above is not vacuous.
    assert np.abs(path_of(ol.adamw(lr=0.02, weight_decay=0.1))
                  - path_of(ol.adam(lr=0.02))).max() > 1e-3


# --- Adam with beta1 = 0 is bias-corrected RMSProp ----------------------------------------------

def rmsprop_bias_corrected(lr, b2, eps, steps=STEPS):
    """v_t = b2 v + (1-b2) g^2; theta -= lr g / (sqrt(v / (1 - b2^t)) + eps)."""
    theta, v = THETA0.copy(), np.zeros_like(THETA0)
    path = [theta.copy()]
    for t in range(1, steps + 1):
        g = grad(theta, t)
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * g / (np.sqrt(v / (1 - b2**t)) + eps)
        path.append(theta.copy())
    return np.stack(path)


@pytest.mark.parametrize("lr, b2, eps", [(0.02, 0.999, 1e-8), (0.01, 0.9, 1e-3), (0.03, 0.99, 0.0)])
def test_adam_with_beta1_zero_is_bias_corrected_rmsprop(lr, b2, eps):
    assert_close(path_of(ol.adam(lr=lr, betas=(0.0, b2), eps=eps)),
                 rmsprop_bias_corrected(lr, b2, eps))


def test_plain_rmsprop_differs_from_adam_with_beta1_zero():
    # Guard: without bias correction (torch's RMSprop) the early steps are larger.
    rms = path_of(ol.rmsprop(lr=0.02, alpha=0.999, eps=1e-8))
    adam = path_of(ol.adam(lr=0.02, betas=(0.0, 0.999), eps=1e-8))
    assert np.abs(rms - adam).max() > 1e-2


# --- Loshchilov & Hutter, Proposition 1 (SGD) and 2 (adaptive) -----------------------------------

@pytest.mark.parametrize("lr, lam", [(0.05, 0.01), (0.02, 0.1), (0.1, 0.003)])
def test_sgd_l2_equals_decoupled_decay_with_rescaled_lambda(lr, lam):
    # L2 with lambda' = lambda / lr: theta -= lr (g + lambda' theta) = lr g + lambda theta.
    l2 = ol.sgd(lr=lr, weight_decay=lam / lr)
    decoupled = ol.sgd(lr=lr, decoupled_weight_decay=True, weight_decay=lam, schedule_multiplier=1.0)
    assert_close(path_of(l2), path_of(decoupled))


def test_decoupled_sgd_differs_from_l2_with_momentum():
    # Proposition 1 is for plain SGD: with momentum, L2's lambda' theta enters the buffer and the
    # decoupled decay does not, so the two are no longer the same.
    lr, lam = 0.05, 0.05
    l2 = ol.sgd(lr=lr, momentum=0.9, weight_decay=lam / lr)
    decoupled = ol.sgd(lr=lr, momentum=0.9, decoupled_weight_decay=True, weight_decay=lam,
                       schedule_multiplier=1.0)
    assert np.abs(path_of(l2) - path_of(decoupled)).max() > 1e-2


def test_adam_l2_matches_no_decoupled_decay():
    # Proposition 2: with a preconditioner that is not k*I, no lambda' makes L2 equal to decay.
    target = path_of(ol.adamw(lr=0.02, weight_decay=0.5))
    gaps = [np.abs(path_of(ol.adam(lr=0.02, weight_decay=lam)) - target).max()
            for lam in np.geomspace(1e-3, 10.0, 13)]
    assert min(gaps) > 1e-3


# --- The blog post's momentum (lr inside the buffer) versus torch's --------------------------------

@pytest.mark.parametrize("mu", [0.5, 0.9])
def test_lr_in_buffer_momentum_equals_torch_form_at_constant_lr(mu):
    assert_close(path_of(ol.sgd(lr=0.03, momentum=mu, lr_in_buffer=True)),
                 path_of(ol.sgd(lr=0.03, momentum=mu)))


def test_lr_in_buffer_momentum_differs_under_a_schedule():
    schedule = decay(0.05, 0.95)
    blog = path_of(ol.sgd(lr=schedule, momentum=0.9, lr_in_buffer=True))
    torch_form = path_of(ol.sgd(lr=schedule, momentum=0.9))
    assert np.abs(blog - torch_form).max() > 1e-3


def test_lr_in_buffer_velocity_is_the_lr_weighted_sum():
    # Blog/Sutskever: v_t = sum_k mu^(t-k) lr_k g_k and theta_t = theta_{t-1} - v_t, where lr_k
    # is the rate when g_k arrived. torch: theta_t = theta_{t-1} - lr_t sum_k mu^(t-k) g_k.
    mu, schedule, steps = 0.9, decay(0.05, 0.95), 40
    lrs = np.array([schedule(k) for k in range(steps)])  # lr_k for update k + 1
    for lr_in_buffer in (True, False):
        path, grads, states = run(ol.sgd(lr=schedule, momentum=mu, lr_in_buffer=lr_in_buffer),
                                  steps)
        for t in range(1, steps + 1):
            weights = mu ** np.arange(t - 1, -1, -1.0)[:, None]
            if lr_in_buffer:
                velocity = np.sum(weights * lrs[:t, None] * grads[:t], axis=0)
                assert_close(-states[t - 1].inner.b, velocity)  # optimlab's buffer holds -v
            else:
                velocity = lrs[t - 1] * np.sum(weights * grads[:t], axis=0)
                assert_close(states[t - 1].inner.b, velocity / lrs[t - 1])
            assert_close(path[t], path[t - 1] - velocity)


# --- Adam's "efficient" epsilon-hat ordering ----------------------------------------------------

@pytest.mark.parametrize("betas, eps", [((0.9, 0.999), 1e-8), ((0.8, 0.99), 1e-2)])
def test_eps_hat_form_equals_algorithm_1_with_matching_eps(betas, eps):
    # Kingma & Ba, Sec. 2: the ordering alpha_t = lr sqrt(1-b2^t)/(1-b1^t),
    # theta -= alpha_t m / (sqrt(v) + eps_hat) is Algorithm 1 iff eps_hat = eps sqrt(1-b2^t).
    # Checked update by update from the same state, along Algorithm 1's trajectory.
    lr, b2 = 0.02, betas[1]
    alg1 = ol.adam(lr=lr, betas=betas, eps=eps)
    theta, state = THETA0.copy(), alg1.init(THETA0)
    fixed_eps_gap = 0.0
    for t in range(1, 60):
        g = grad(theta, t)
        updates, new_state = alg1.update(g, state, theta)
        matched = ol.adam(lr=lr, betas=betas, eps=eps * math.sqrt(1 - b2**t), eps_hat=True)
        u_hat, _ = matched.update(g, state, theta)
        np.testing.assert_allclose(u_hat, updates, rtol=RTOL, atol=0)
        u_fixed, _ = ol.adam(lr=lr, betas=betas, eps=eps, eps_hat=True).update(g, state, theta)
        fixed_eps_gap = max(fixed_eps_gap, float(np.abs(u_fixed / updates - 1).max()))
        theta, state = ol.apply_updates(theta, updates), new_state
    # Guard: with eps_hat = eps the two forms differ (most in the first steps).
    assert fixed_eps_gap > 1e-8
