"""First steps (and constant-gradient runs) worked out by hand, in closed form.

Each expected value is a formula on paper; the tolerances are a few units in the last place
(relative), since one update involves a handful of roundings.
"""

import numpy as np
import pytest

import optimlab as ol

TIGHT = 1e-14

# Gradients of mixed signs over many orders of magnitude, none zero.
G = np.array([3.0, -0.5, 1e-6, -2e4, 7.25e-3, -1.0])
THETA0 = np.array([0.5, -1.0, 2.0, 0.0, -3.0, 1.5])


def first_update(opt, g=G, theta=THETA0):
    updates, _ = opt.update(g, opt.init(theta), theta)
    return updates


def assert_rel(actual, expected, rtol=TIGHT):
    """|actual - expected| <= rtol * |expected| elementwise (expected values nonzero)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    np.testing.assert_array_less(np.abs(actual - expected), rtol * np.abs(expected) + 1e-300)


# --- Adam ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9), (0.0, 0.99), (0.99, 0.9999)])
@pytest.mark.parametrize("lr", [1e-3, 0.3])
def test_adam_first_step_is_minus_lr_sign_g_when_eps_is_zero(lr, betas):
    # m_1 = (1-b1) g, v_1 = (1-b2) g^2: bias correction makes m_hat = g, v_hat = g^2.
    assert_rel(first_update(ol.adam(lr=lr, betas=betas, eps=0.0)), -lr * np.sign(G))


@pytest.mark.parametrize("opt", [
    ol.adam(lr=0.1, eps=0.0, amsgrad=True),
    ol.adam(lr=0.1, eps=0.0, amsgrad=True, amsgrad_max="corrected"),
    ol.adam(lr=0.1, eps=0.0, eps_hat=True),
    ol.adamw(lr=0.1, eps=0.0, weight_decay=0.0),
], ids=["amsgrad", "amsgrad-corrected", "eps_hat", "adamw"])
def test_adam_variants_first_step_is_minus_lr_sign_g(opt):
    assert_rel(first_update(opt), -0.1 * np.sign(G))


def test_adam_first_step_with_eps():
    lr, eps = 0.01, 1e-3
    assert_rel(first_update(ol.adam(lr=lr, eps=eps)), -lr * G / (np.abs(G) + eps))


def test_adam_first_step_without_bias_correction():
    lr, (b1, b2), eps = 0.01, (0.9, 0.999), 1e-8
    expected = -lr * (1 - b1) * G / (np.sqrt(1 - b2) * np.abs(G) + eps)
    assert_rel(first_update(ol.adam(lr=lr, eps=eps, bias_correction=False)), expected)


def test_adam_l2_first_step_is_still_a_sign():
    # L2 enters m and v: the first step is -lr sign(g + wd theta), the decay's size is lost.
    lr, wd = 0.1, 0.5
    g_l2 = G + wd * THETA0
    assert np.all(g_l2 != 0)
    assert_rel(first_update(ol.adam(lr=lr, eps=0.0, weight_decay=wd)), -lr * np.sign(g_l2))


def test_adamw_first_step():
    # Decoupled: -lr (sign(g) + wd theta), the decay keeps its size.
    lr, wd = 0.1, 0.5
    expected = -lr * (np.sign(G) + wd * THETA0)
    np.testing.assert_allclose(first_update(ol.adamw(lr=lr, eps=0.0, weight_decay=wd)),
                               expected, rtol=TIGHT, atol=1e-16)


def test_adamw_decay_after_first_step():
    # Old HuggingFace order: theta_1 = (theta_0 - lr sign g)(1 - lr wd).
    lr, wd = 0.1, 0.5
    opt = ol.adamw(lr=lr, eps=0.0, weight_decay=wd, decay_order="after")
    theta1 = THETA0 + first_update(opt)
    np.testing.assert_allclose(theta1, (THETA0 - lr * np.sign(G)) * (1 - lr * wd),
                               rtol=TIGHT, atol=1e-16)


def test_adamw_schedule_multiplier_first_step():
    # Loshchilov & Hutter, Alg. 2: theta_1 = theta_0 - eta_1 (alpha sign(g) + wd theta_0).
    alpha, wd, eta = 0.1, 0.5, 0.25
    opt = ol.adamw(lr=alpha, eps=0.0, weight_decay=wd, schedule_multiplier=lambda c: eta)
    np.testing.assert_allclose(first_update(opt), -eta * (alpha * np.sign(G) + wd * THETA0),
                               rtol=TIGHT, atol=1e-16)


# --- RMSProp ------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [0.99, 0.9, 0.5])
@pytest.mark.parametrize("eps", [1e-8, 1e-3, 0.0])
def test_rmsprop_first_step(alpha, eps):
    lr = 0.01
    expected = -lr * G / (np.sqrt(1 - alpha) * np.abs(G) + eps)
    assert_rel(first_update(ol.rmsprop(lr=lr, alpha=alpha, eps=eps)), expected)
    # Momentum's buffer starts at 0, so its first step is the same.
    assert_rel(first_update(ol.rmsprop(lr=lr, alpha=alpha, eps=eps, momentum=0.9)), expected)


def test_rmsprop_centered_first_step():
    # v_1 - gbar_1^2 = (1-a) g^2 - (1-a)^2 g^2 = a (1-a) g^2.
    lr, alpha, eps = 0.01, 0.9, 1e-8
    expected = -lr * G / (np.sqrt(alpha * (1 - alpha)) * np.abs(G) + eps)
    assert_rel(first_update(ol.rmsprop(lr=lr, alpha=alpha, eps=eps, centered=True)), expected,
               rtol=1e-12)  # a(1-a)g^2 comes from a difference: a few more roundings


def test_rmsprop_eps_inside_first_step():
    lr, alpha, eps = 0.01, 0.9, 1e-4
    expected = -lr * G / np.sqrt((1 - alpha) * G**2 + eps)
    assert_rel(first_update(ol.rmsprop(lr=lr, alpha=alpha, eps=eps, eps_inside=True)), expected)


# --- AdaGrad ------------------------------------------------------------------------------------

def run_constant_gradient(opt, g, steps, theta0=THETA0):
    theta, state = theta0.copy(), opt.init(theta0)
    path = []
    for _ in range(steps):
        updates, state = opt.update(g, state, theta)
        theta = ol.apply_updates(theta, updates)
        path.append(theta)
    return np.stack(path)


@pytest.mark.parametrize("eps", [1e-10, 1e-2])
def test_adagrad_constant_gradient_closed_form(eps):
    # s_k = k g^2, so theta_t = theta_0 - lr sum_{k<=t} g / (sqrt(k) |g| + eps).
    lr, steps = 0.1, 60
    k = np.arange(1, steps + 1)[:, None]
    expected = THETA0 - lr * np.cumsum(G / (np.sqrt(k) * np.abs(G) + eps), axis=0)
    np.testing.assert_allclose(run_constant_gradient(ol.adagrad(lr=lr, eps=eps), G, steps),
                               expected, rtol=1e-12, atol=1e-12)


def test_adagrad_constant_gradient_with_initial_accumulator():
    # s_k = s_0 + k g^2.
    lr, eps, s0, steps = 0.1, 1e-10, 0.3, 60
    k = np.arange(1, steps + 1)[:, None]
    expected = THETA0 - lr * np.cumsum(G / (np.sqrt(s0 + k * G**2) + eps), axis=0)
    opt = ol.adagrad(lr=lr, eps=eps, initial_accumulator_value=s0)
    np.testing.assert_allclose(run_constant_gradient(opt, G, steps), expected,
                               rtol=1e-12, atol=1e-12)


def test_adagrad_constant_gradient_with_lr_decay():
    # torch's lr_t = lr / (1 + (t-1) lr_decay).
    lr, eps, decay, steps = 0.1, 1e-10, 0.05, 60
    k = np.arange(1, steps + 1)[:, None]
    lr_k = lr / (1 + (k - 1) * decay)
    expected = THETA0 - np.cumsum(lr_k * G / (np.sqrt(k) * np.abs(G) + eps), axis=0)
    opt = ol.adagrad(lr=lr, eps=eps, lr_decay=decay)
    np.testing.assert_allclose(run_constant_gradient(opt, G, steps), expected,
                               rtol=1e-12, atol=1e-12)


def test_adagrad_first_step():
    lr, eps = 0.1, 1e-10
    assert_rel(first_update(ol.adagrad(lr=lr, eps=eps)), -lr * G / (np.abs(G) + eps))


# --- SGD ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dampening", [0.0, 0.3, 1.0])
def test_sgd_momentum_first_step_is_not_dampened(dampening):
    # torch: b_1 = g_1 (no dampening on the first step).
    lr, mu = 0.1, 0.9
    assert_rel(first_update(ol.sgd(lr=lr, momentum=mu, dampening=dampening)), -lr * G)


def test_sgd_momentum_second_step_is_dampened():
    # b_2 = mu g + (1 - tau) g with a constant gradient.
    lr, mu, tau = 0.1, 0.9, 0.3
    path = run_constant_gradient(ol.sgd(lr=lr, momentum=mu, dampening=tau), G, 2)
    np.testing.assert_allclose(path[1], THETA0 - lr * G - lr * (mu + 1 - tau) * G,
                               rtol=TIGHT, atol=1e-15)


def test_sgd_nesterov_first_step():
    # b_1 = g, step g + mu b_1 = (1 + mu) g.
    lr, mu = 0.1, 0.9
    assert_rel(first_update(ol.sgd(lr=lr, momentum=mu, nesterov=True)), -lr * (1 + mu) * G)


def test_sgd_weight_decay_first_step():
    lr, wd = 0.1, 0.01
    expected = -lr * (G + wd * THETA0)
    np.testing.assert_allclose(first_update(ol.sgd(lr=lr, weight_decay=wd)), expected,
                               rtol=TIGHT, atol=1e-16)


def test_sgd_momentum_constant_gradient_geometric_sum():
    # b_t = sum_{k<t} mu^k g = g (1 - mu^t)/(1 - mu) without dampening.
    lr, mu, steps = 0.1, 0.9, 40
    t = np.arange(1, steps + 1)[:, None]
    expected = THETA0 - lr * np.cumsum((1 - mu**t) / (1 - mu) * G, axis=0)
    np.testing.assert_allclose(run_constant_gradient(ol.sgd(lr=lr, momentum=mu), G, steps),
                               expected, rtol=1e-12, atol=1e-12)
