"""``models.train`` for batched sweeps: each run its own mini-batch order (real seeds), its own
data, and the divergence policy (a diverged run is frozen and marked, the others go on)."""

import warnings

import numpy as np
import pytest
from helpers import classification_data

import optimlab as ol
from optimlab import models

N, D, H, C = 40, 5, 6, 3


@pytest.fixture(scope="module")
def data():
    return classification_data(N, D, C, every_class=False)


def rows(tree, k):
    return {name: a[k] for name, a in tree.items()}


@pytest.mark.parametrize("model", [models.MLP(D, H, C), models.LayerNormMLP(D, H, C),
                                   models.SoftmaxRegression(D, C)], ids=repr)
def test_run_k_with_its_own_seed_equals_a_single_run_with_that_seed(data, model):
    X, y = data
    seeds = np.array([3, 7, 11, 3])  # runs 0 and 3 share a seed and so a batch order
    lrs = np.array([0.05, 0.1, 0.2, 0.1])
    start = models.init_runs(model, seeds) if not isinstance(model, models.SoftmaxRegression) \
        else model.init_params(batch=4)
    steps, batch_size = 25, 8  # 5 batches per epoch: five epochs, five fresh orders
    params, losses = models.train(model, ol.adamw(lr=lrs, weight_decay=0.1), start, X, y, steps,
                                  batch_size=batch_size, seeds=seeds)
    assert losses.shape == (steps, 4)
    for k in range(4):
        alone, alone_losses = models.train(model, ol.adamw(lr=lrs[k], weight_decay=0.1),
                                           rows(start, k), X, y, steps, batch_size=batch_size,
                                           seed=int(seeds[k]))
        np.testing.assert_allclose(losses[:, k], alone_losses, rtol=1e-12)
        for name in alone:
            np.testing.assert_allclose(params[name][k], alone[name], rtol=1e-11, atol=1e-14)
    # Guard: with one shared order (seed=3) run 1 is a different run.
    shared, _ = models.train(model, ol.adamw(lr=lrs, weight_decay=0.1), start, X, y, steps,
                             batch_size=batch_size, seed=3)
    name = next(iter(start))
    assert np.abs(shared[name][1] - params[name][1]).max() > 1e-6
    np.testing.assert_allclose(shared[name][0], params[name][0], rtol=1e-12)


def test_per_run_data_and_orders(data):
    # Resampled training sets: run k trains on its own X[k], with its own order or a shared one.
    X, y = data
    rng = np.random.default_rng(1)
    Xs, ys = rng.standard_normal((3, 30, D)), rng.integers(0, C, (3, 30))
    model = models.MLP(D, H, C)
    start = models.init_runs(model, [0, 1, 2])
    for kwargs in (dict(seeds=np.array([5, 6, 7])), dict(seed=4), {}):
        batch_size = 6 if kwargs else None
        params, losses = models.train(model, ol.sgd(lr=0.1, momentum=0.9), start, Xs, ys, 12,
                                      batch_size=batch_size, **kwargs)
        for k in range(3):
            seed = int(kwargs["seeds"][k]) if "seeds" in kwargs else kwargs.get("seed", 0)
            alone, alone_losses = models.train(model, ol.sgd(lr=0.1, momentum=0.9),
                                               rows(start, k), Xs[k], ys[k], 12,
                                               batch_size=batch_size, seed=seed)
            np.testing.assert_allclose(losses[:, k], alone_losses, rtol=1e-12)
            np.testing.assert_allclose(params["W1"][k], alone["W1"], rtol=1e-11, atol=1e-14)


def test_init_runs_uses_real_seeds():
    model = models.MLP(D, H, C)
    params = models.init_runs(model, np.array([[1, 2], [3, 1]]), dtype=np.float32)
    assert params["W1"].shape == (2, 2, D, H) and params["W1"].dtype == np.float32
    for idx, seed in (((0, 0), 1), ((1, 0), 3), ((1, 1), 1)):
        expected = model.init_params(seed, dtype=np.float32)
        for name in params:
            assert np.array_equal(params[name][idx], expected[name])
    with pytest.raises(TypeError, match="seeds must be an array of integers"):
        models.init_runs(model, 3)


def test_bad_seeds_are_refused(data):
    X, y = data
    model = models.SoftmaxRegression(D, C)
    start = model.init_params(batch=3)
    with pytest.raises(ValueError, match="need a batch_size"):
        models.train(model, ol.sgd(lr=0.1), start, X, y, 2, seeds=np.arange(3))
    with pytest.raises(ValueError, match=r"seeds must be integers of the batch shape \(3,\)"):
        models.train(model, ol.sgd(lr=0.1), start, X, y, 2, batch_size=4, seeds=np.arange(4))
    with pytest.raises(ValueError, match="on_divergence must be one of 'raise', 'freeze'"):
        models.train(model, ol.sgd(lr=0.1), start, X, y, 2, on_divergence="skip")


# -- divergence ------------------------------------------------------------------------------------
def test_diverged_runs_are_frozen_and_marked_and_the_rest_go_on(data):
    X, y = data
    model = models.SoftmaxRegression(D, C)
    lrs = np.array([0.1, 1e308, 0.3])  # run 1's first step is enormous; then its loss is inf
    start = model.init_params(batch=3, rng=0, scale=0.5)
    params, losses = models.train(model, ol.sgd(lr=lrs), start, X, y, 10, on_divergence="freeze")
    assert models.diverged_at(losses).tolist() == [-1, 1, -1]
    assert np.isfinite(losses[0]).all() and np.isnan(losses[1:, 1]).all()
    one_step, _ = models.train(model, ol.sgd(lr=lrs[1]), rows(start, 1), X, y, 1)
    for name in start:  # frozen at its last finite parameters
        assert np.isfinite(params[name]).all()
        np.testing.assert_allclose(params[name][1], one_step[name], rtol=1e-14)
    for k in (0, 2):  # the others are the runs made alone (to rounding: batched products)
        alone, alone_losses = models.train(model, ol.sgd(lr=lrs[k]), rows(start, k), X, y, 10)
        np.testing.assert_allclose(losses[:, k], alone_losses, rtol=1e-13)
        for name in start:
            np.testing.assert_allclose(params[name][k], alone[name], rtol=1e-12, atol=1e-15)
    # The default is unchanged: no check of the loss (this run goes on with an infinite loss).
    with np.errstate(over="ignore", invalid="ignore"):
        _, default_losses = models.train(model, ol.sgd(lr=lrs), start, X, y, 10)
    assert np.isinf(default_losses[1:, 1]).all()


def test_an_update_that_overflows_freezes_the_run_at_its_start(data):
    X, y = data
    X = 1e3 * X  # gradients of order 1e2: an update of 1.7e308 x g overflows
    model = models.SoftmaxRegression(D, C)
    lrs = np.array([1e-4, 1.7e308])
    start = model.init_params(batch=2)
    with np.errstate(over="ignore"), pytest.raises(
            FloatingPointError, match=r"update for params\['W'\] became non-finite at step 1"):
        models.train(model, ol.sgd(lr=lrs), start, X, y, 5)  # the default raises
    params, losses = models.train(model, ol.sgd(lr=lrs), start, X, y, 5, on_divergence="freeze")
    assert models.diverged_at(losses).tolist() == [-1, 0]
    assert np.isnan(losses[:, 1]).all() and not params["W"][1].any()


def test_freeze_with_adamw_minibatches_and_a_mask(data):
    # A non-finite gradient (W1 huge in a tanh MLP gives inf * 0) in one run of an AdamW sweep.
    X, y = data
    model = models.MLP(D, H, C)
    start = models.init_runs(model, [0, 1, 2])
    start["W2"][1] *= 1e308  # run 1: logits overflow at once
    mask = {"W1": True, "b1": False, "W2": True, "b2": False}
    opt = ol.adamw(lr=np.array([0.01, 0.01, 0.05]), weight_decay=0.1, mask=mask)
    with warnings.catch_warnings():  # no NumPy warning escapes the freeze mode
        warnings.simplefilter("error")
        params, losses = models.train(model, opt, start, X, y, 15, batch_size=8,
                                      seeds=np.array([4, 5, 6]), on_divergence="freeze")
    assert models.diverged_at(losses).tolist() == [-1, 0, -1]
    for k in (0, 2):
        alone, alone_losses = models.train(
            model, ol.adamw(lr=[0.01, 0.01, 0.05][k], weight_decay=0.1, mask=mask),
            rows(start, k), X, y, 15, batch_size=8, seed=[4, 5, 6][k])
        np.testing.assert_allclose(losses[:, k], alone_losses, rtol=1e-12)
        np.testing.assert_allclose(params["W1"][k], alone["W1"], rtol=1e-11, atol=1e-14)


def test_freeze_without_divergence_is_the_default(data):
    X, y = data
    model = models.MLP(D, H, C)
    start = models.init_runs(model, [0, 1])
    opt = ol.adam(lr=np.array([0.01, 0.1]))
    a = models.train(model, opt, start, X, y, 10, batch_size=10, seeds=np.array([0, 1]))
    b = models.train(model, opt, start, X, y, 10, batch_size=10, seeds=np.array([0, 1]),
                     on_divergence="freeze")
    assert models.diverged_at(b[1]).tolist() == [-1, -1]
    np.testing.assert_array_equal(a[1], b[1])
    for name in start:
        np.testing.assert_array_equal(a[0][name], b[0][name])
    single = models.train(model, ol.adam(lr=0.01), rows(start, 0), X, y, 3,
                          on_divergence="freeze")
    assert single[1].shape == (3,) and models.diverged_at(single[1]) == -1
