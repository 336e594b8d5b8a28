"""Objectives, the runner and the schedules: gradients against finite differences, closed forms."""

import math

import numpy as np
import pytest

import optimlab as ol
from optimlab import objectives, schedules
from optimlab.runner import fitted_rate, steps_to, steps_until_below

OBJECTIVES = [objectives.quadratic(condition=25.0, angle=0.3), objectives.rosenbrock(),
              objectives.beale(), objectives.quadratic(condition=4.0, dim=5)]


@pytest.mark.parametrize("f", OBJECTIVES, ids=lambda f: f.name)
def test_gradient_matches_central_differences(f):
    d = f.x0.shape[0]
    x = np.random.default_rng(1).uniform(-1.5, 1.5, size=(7, d))
    h = 1e-6
    fd = np.stack([(f.value(x + h * e) - f.value(x - h * e)) / (2 * h) for e in np.eye(d)], -1)
    np.testing.assert_allclose(f.grad(x), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("f", OBJECTIVES, ids=lambda f: f.name)
def test_minimizer_is_stationary_with_value_fmin(f):
    assert f.value(f.minimizer) == pytest.approx(f.fmin, abs=1e-12)
    np.testing.assert_allclose(f.grad(f.minimizer), 0.0, atol=1e-12)


@pytest.mark.parametrize("f", OBJECTIVES, ids=lambda f: f.name)
def test_batch_axes_equal_separate_points(f):
    x = np.random.default_rng(2).normal(size=(3, 4, f.x0.shape[0]))
    values, grads = f.value(x), f.grad(x)
    assert values.shape == (3, 4) and grads.shape == x.shape
    for i, j in np.ndindex(3, 4):  # bit for bit: a batch must not change the rounding
        assert values[i, j] == f.value(x[i, j])
        np.testing.assert_array_equal(grads[i, j], f.grad(x[i, j]))


def test_quadratic_spectrum_and_rotation():
    q = objectives.quadratic(condition=100.0, angle=np.pi / 6, lmax=2.0)
    np.testing.assert_allclose(np.linalg.eigvalsh(q.hessian), [0.02, 2.0], rtol=1e-12)
    np.testing.assert_allclose(q.eigenvalues, [0.02, 2.0])
    x = np.array([0.3, -0.7])
    assert q.value(x) == pytest.approx(0.5 * x @ q.hessian @ x, rel=1e-14)


def test_quadratic_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"condition must be >= 1; got 0.5"):
        objectives.quadratic(condition=0.5)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\); got \(3,\)"):
        objectives.quadratic().value(np.zeros(3))


def test_noisy_gradients_are_seeded_and_centred():
    q = objectives.quadratic(condition=10.0)
    a, b = objectives.noisy(q, 0.5, seed=3), objectives.noisy(q, 0.5, seed=3)
    x = np.ones((1000, 2))
    ga, gb = a.grad(x), b.grad(x)
    np.testing.assert_array_equal(ga, gb)
    assert not np.array_equal(ga, a.grad(x))  # fresh noise on every call
    noise = ga - q.grad(x)
    assert abs(noise.mean()) < 0.05 and noise.std() == pytest.approx(0.5, rel=0.05)
    assert a.value(x[0]) == q.value(x[0])


def test_gradient_descent_rate_on_quadratic_matches_theory():
    # With the best fixed step 2/(lmin + lmax), the error shrinks by (k-1)/(k+1) per step.
    for kappa in (4.0, 30.0):
        q = objectives.quadratic(condition=kappa)
        lr = 2.0 / (q.eigenvalues[0] + q.eigenvalues[-1])
        tr = ol.run(ol.sgd(lr=lr), q, q.x0, 60)
        rate = (tr.losses[-1] / tr.losses[-21]) ** (1 / 40)
        assert rate == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-6)


def test_run_records_every_step_and_batches():
    q = objectives.quadratic(condition=10.0)
    x0 = np.stack([q.x0, 2 * q.x0])
    lr = np.array([[0.1], [0.5]])
    tr = ol.run(ol.sgd(lr=lr), q, x0, 5)
    assert tr.params.shape == (6, 2, 2) and tr.losses.shape == (6, 2)
    np.testing.assert_array_equal(tr.params[0], x0)
    for k, l in enumerate([0.1, 0.5]):
        single = ol.run(ol.sgd(lr=l), q, x0[k], 5)
        np.testing.assert_array_equal(tr.params[:, k], single.params)
    x = x0[1]
    for _ in range(5):  # plain gradient descent, written out
        x = x - 0.5 * q.grad(x)
    np.testing.assert_allclose(tr.final[1], x, rtol=1e-14)


def test_run_keeps_float32():
    q = objectives.quadratic(condition=10.0)
    tr = ol.run(ol.adam(lr=0.1), q, q.x0.astype(np.float32), 3)
    assert tr.params.dtype == np.float32


def test_steps_to():
    losses = np.array([[4.0, 4.0], [2.0, 3.0], [0.5, 3.0], [0.1, 2.5]])
    np.testing.assert_array_equal(steps_to(losses, 1.0), [2, -1])


def test_steps_until_below_ignores_a_dip_that_comes_back():
    # run 0 dips below 1 at step 2, rises again at step 3, and stays below from step 4;
    # run 1 never gets there; run 2 ends above after being below; run 3 ends in NaN.
    losses = np.array([[4.0, 4.0, 0.5, 0.5],
                       [2.0, 3.0, 0.5, 0.5],
                       [0.5, 3.0, 0.5, 0.5],
                       [1.5, 2.5, 0.5, 0.5],
                       [0.4, 2.5, 2.0, np.nan]])
    assert steps_to(losses, 1.0)[0] == 2
    np.testing.assert_array_equal(steps_until_below(losses, 1.0), [4, -1, -1, -1])
    np.testing.assert_array_equal(steps_until_below(np.full(3, 0.1), 1.0), 0)


def test_steps_until_below_on_an_oscillating_contraction():
    # |r|^t |cos(t w)| dips under tol long before its envelope r^t does; the envelope's
    # crossing bounds the answer from above.
    t = np.arange(400)
    values = 0.97 ** t * np.abs(np.cos(1.3 * t))
    envelope_crossing = int(np.ceil(np.log(1e-3) / np.log(0.97)))
    n = int(steps_until_below(values, 1e-3))
    assert int(steps_to(values, 1e-3)) < n <= envelope_crossing
    assert (values[n:] <= 1e-3).all() and values[n - 1] > 1e-3


def test_fitted_rate_recovers_a_geometric_rate():
    t = np.arange(200)[:, None]
    values = np.array([0.9, 0.5, 0.999]) ** t * np.array([3.0, 1e-2, 7.0])
    np.testing.assert_allclose(fitted_rate(values, 50, 150), [0.9, 0.5, 0.999], rtol=1e-12)
    wiggly = 0.95 ** t[:, 0] * (1.5 + np.cos(2.1 * t[:, 0]))   # bounded oscillation
    assert abs(float(fitted_rate(wiggly, 0, 200)) - 0.95) < 2e-3
    with pytest.raises(ValueError, match="at least 2 steps"):
        fitted_rate(values, 199)
    with pytest.raises(ValueError, match="finite and positive"):
        fitted_rate(np.array([1.0, 0.0, 0.5]), 0)


def test_schedules_closed_forms():
    c = np.arange(0, 250)
    np.testing.assert_allclose(schedules.constant(0.3)(c), 0.3)
    np.testing.assert_allclose(schedules.step_decay(1.0, 30, 0.5)(c), 0.5 ** (c // 30))
    cos = schedules.cosine(1.0, 100, final=0.1)
    assert cos(0) == pytest.approx(1.0) and cos(100) == pytest.approx(0.1)
    assert cos(50) == pytest.approx(0.55) and cos(200) == pytest.approx(0.1)
    warm = schedules.linear_warmup(1.0, 4)
    assert [warm(k) for k in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    wc = schedules.warmup_cosine(1.0, 10, 110)
    assert wc(9) == pytest.approx(1.0) and wc(60) == pytest.approx(0.5)
    assert wc(110) == pytest.approx(0.0, abs=1e-15)


def test_schedule_drives_the_learning_rate():
    # count = updates already made: update t uses schedule(t - 1).
    sched = schedules.step_decay(0.1, 2, 0.5)
    opt, p = ol.sgd(lr=sched), np.zeros(1)
    state = opt.init(p)
    steps = []
    for _ in range(5):
        u, state = opt.update(np.ones(1), state, p)
        steps.append(-float(u[0]))
    assert steps == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_schedule_validation():
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]; got 1.5"):
        schedules.step_decay(0.1, 10, 1.5)
    with pytest.raises(ValueError, match="total_steps must be > warmup_steps"):
        schedules.warmup_cosine(0.1, 10, 5)
    assert math.isfinite(schedules.cosine(0.1, 10)(10 ** 6))
