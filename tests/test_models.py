"""Softmax regression and the MLP: hand-written gradients against finite differences, batches of
models against single ones, and training on the digits with optimlab's optimizers."""

import numpy as np
import pytest
from helpers import classification_data, finite_difference, random_params, relative_error

import optimlab as ol
from optimlab import models

N, D, H, C = 23, 5, 6, 4


@pytest.fixture(scope="module")
def data():
    return classification_data(N, D, C)


MODELS = {
    "softmax": models.SoftmaxRegression(D, C),
    "mlp-tanh": models.MLP(D, H, C, activation="tanh"),
    "mlp-relu": models.MLP(D, H, C, activation="relu"),
}


def _check_gradient(model, params, X, y, **kwargs):
    loss, grads = model.loss_and_grad(params, X, y, **kwargs)
    numeric = finite_difference(lambda p: np.sum(model.loss(p, X, y, **kwargs)), params)
    assert set(grads) == set(params)
    for name in params:
        assert grads[name].shape == params[name].shape and grads[name].dtype == np.float64
        err = relative_error(grads[name], numeric[name])
        assert err < 1e-6, f"{name}: relative error {err:.2e}"
    return loss


def _avoid_relu_kinks(model, params, X):
    # A central difference across a ReLU kink is wrong; the seeded data keep |A| well away.
    if getattr(model, "activation", None) == "relu":
        A = X @ params["W1"] + params["b1"][..., None, :]
        assert np.abs(A).min() > 1e-3


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("l2, l2_biases", [(0.0, False), (0.3, False), (0.3, True)])
def test_gradient_matches_finite_differences(data, name, l2, l2_biases):
    X, y = data
    model = MODELS[name]
    params = random_params(model, np.random.default_rng(1))
    _avoid_relu_kinks(model, params, X)
    loss = _check_gradient(model, params, X, y, l2=l2, l2_biases=l2_biases)
    assert np.ndim(loss) == 0


@pytest.mark.parametrize("name", MODELS)
def test_batched_gradient_matches_finite_differences(data, name):
    X, y = data
    model = MODELS[name]
    params = random_params(model, np.random.default_rng(2), batch=(3,))
    _avoid_relu_kinks(model, params, X)
    l2 = np.array([0.0, 0.1, 0.5])
    loss = _check_gradient(model, params, X, y, l2=l2)
    assert loss.shape == (3,)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", [(3,), (2, 3)])
def test_batched_model_k_equals_model_k_alone(data, name, batch, monkeypatch):
    X, y = data
    model = MODELS[name]
    params = random_params(model, np.random.default_rng(3), batch=batch)
    l2 = np.linspace(0.0, 0.5, np.prod(batch)).reshape(batch)
    loss, grads = model.loss_and_grad(params, X, y, l2=l2)
    assert loss.shape == batch
    assert all(grads[k].shape == params[k].shape for k in params)
    for k in np.ndindex(batch):
        single = {name: p[k] for name, p in params.items()}
        loss_k, grads_k = model.loss_and_grad(single, X, y, l2=l2[k])
        np.testing.assert_allclose(loss[k], loss_k, rtol=1e-13)
        for name in params:
            np.testing.assert_allclose(grads[name][k], grads_k[name], rtol=1e-12, atol=1e-15)
    # Optimizer-shaped l2 (*batch, 1, 1) means the same; blocks of one model give the same.
    same = model.loss_and_grad(params, X, y, l2=l2[..., None, None])
    monkeypatch.setattr(models, "BLOCK", 1)
    blocked = model.loss_and_grad(params, X, y, l2=l2)
    for other in (same, blocked):
        np.testing.assert_allclose(other[0], loss, rtol=1e-13)
        for name in params:
            np.testing.assert_allclose(other[1][name], grads[name], rtol=1e-12, atol=1e-15)


def test_softmax_loss_formula(data):
    X, y = data
    model = MODELS["softmax"]
    params = random_params(model, np.random.default_rng(4))
    Z = X @ params["W"] + params["b"]
    expected = np.mean(np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(N), y])
    np.testing.assert_allclose(model.loss(params, X, y), expected, rtol=1e-14)
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    Y = ol.datasets.one_hot(y, C)
    _, grads = model.loss_and_grad(params, X, y)
    np.testing.assert_allclose(grads["W"], X.T @ (P - Y) / N, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(grads["b"], (P - Y).mean(axis=0), rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(model.predict_proba(params, X), P, rtol=1e-13)
    zero = model.init_params()
    np.testing.assert_allclose(model.loss(zero, X, y), np.log(C), rtol=1e-15)


@pytest.mark.parametrize("name", MODELS)
def test_huge_logits_stay_finite(data, name):
    # With logits of order 1e4 a naive exp overflows; the log-sum-exp shift keeps it exact.
    X, y = data
    model = MODELS[name]
    params = {k: 1e4 * v for k, v in random_params(model, np.random.default_rng(5)).items()}
    loss, grads = model.loss_and_grad(params, X, y)
    Z = model.logits(params, X)
    m = Z.max(axis=1)
    expected = np.mean(m + np.log(np.exp(Z - m[:, None]).sum(axis=1)) - Z[np.arange(N), y])
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    np.testing.assert_allclose(loss, expected, rtol=1e-12)
    np.testing.assert_allclose(models.log_softmax(Z)[np.arange(N), y].mean(), -loss, rtol=1e-12)


@pytest.mark.parametrize("name", MODELS)
def test_predictions_and_accuracy(data, name):
    X, y = data
    model = MODELS[name]
    params = random_params(model, np.random.default_rng(6), batch=(2,))
    proba = model.predict_proba(params, X)
    assert proba.shape == (2, N, C)
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, rtol=1e-14)
    assert np.array_equal(model.predict(params, X), proba.argmax(axis=-1))
    acc = model.accuracy(params, X, y)
    assert acc.shape == (2,)
    assert np.array_equal(acc, (model.predict(params, X) == y).mean(axis=-1))


def test_float32_stays_float32(data):
    X, y = data
    for model in MODELS.values():
        params = {k: v.astype(np.float32)
                  for k, v in random_params(model, np.random.default_rng(7)).items()}
        loss, grads = model.loss_and_grad(params, X, y, l2=0.1)
        assert loss.dtype == np.float32
        assert all(g.dtype == np.float32 for g in grads.values())


def test_init_params():
    mlp = models.MLP(64, 32, 10, activation="relu")
    p = mlp.init_params(np.random.default_rng(0))
    assert {k: v.shape for k, v in p.items()} == {"W1": (64, 32), "b1": (32,), "W2": (32, 10),
                                                 "b2": (10,)}
    assert abs(p["W1"].std() - np.sqrt(2 / 64)) < 0.02  # He
    assert abs(p["W2"].std() - np.sqrt(2 / 42)) < 0.04  # Glorot
    assert not p["b1"].any() and not p["b2"].any()
    tanh = models.MLP(64, 32, 10).init_params(0)
    assert abs(tanh["W1"].std() - np.sqrt(2 / 96)) < 0.02  # Glorot
    shared = mlp.init_params(1, batch=(3,))
    assert shared["W1"].shape == (3, 64, 32) and shared["W1"].flags.writeable
    assert np.array_equal(shared["W1"][0], shared["W1"][2])
    assert np.array_equal(shared["W1"][0], mlp.init_params(1)["W1"])
    independent = mlp.init_params(1, batch=3, shared=False)
    assert not np.array_equal(independent["W1"][0], independent["W1"][1])
    softmax = models.SoftmaxRegression().init_params(batch=(2, 3))
    assert softmax["W"].shape == (2, 3, 64, 10) and not softmax["W"].any()
    with pytest.raises(TypeError, match="rng"):
        mlp.init_params(None)


def test_bad_input_is_refused(data):
    X, y = data
    model = MODELS["softmax"]
    params = random_params(model, np.random.default_rng(8))
    with pytest.raises(ValueError, match="keys"):
        model.loss_and_grad({"W": params["W"]}, X, y)
    with pytest.raises(ValueError, match="shape"):
        model.loss_and_grad({"W": params["W"][:-1], "b": params["b"]}, X, y)
    with pytest.raises(ValueError, match="batch shape"):
        model.loss_and_grad({"W": params["W"][None], "b": params["b"]}, X, y)
    with pytest.raises(ValueError, match="X must have shape"):
        model.loss_and_grad(params, X[:, :-1], y)
    with pytest.raises(ValueError, match="labels must be in 0..3"):
        model.loss_and_grad(params, X, np.full(N, C))
    with pytest.raises(ValueError, match="y must be an integer array"):
        model.loss_and_grad(params, X, y.astype(float))
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        model.loss_and_grad(params, X, y, l2=-1.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        model.loss_and_grad(params, X, y, l2=np.ones(3))
    with pytest.raises(ValueError, match="activation"):
        models.MLP(activation="sigmoid")


# -- with optimlab's optimizers -----------------------------------------------------------------
def test_l2_on_every_parameter_equals_torch_style_weight_decay(data):
    # Adam on loss + l2/2 ||theta||^2 (all parameters) is ol.adam(weight_decay=l2) on the loss.
    X, y = data
    model = MODELS["mlp-tanh"]
    start = random_params(model, np.random.default_rng(9))
    in_loss, _ = models.train(model, ol.adam(lr=0.01), start, X, y, 20, l2=0.1, l2_biases=True)
    in_opt, _ = models.train(model, ol.adam(lr=0.01, weight_decay=0.1), start, X, y, 20)
    for name in start:
        np.testing.assert_allclose(in_loss[name], in_opt[name], rtol=1e-12, atol=1e-15)


def test_batched_sweep_equals_separate_runs(data):
    # A 2 x 2 lr x weight-decay sweep with AdamW as one run, hyperparameters of shape (K, 1, 1).
    X, y = data
    model = MODELS["softmax"]
    lrs, wds = np.array([0.01, 0.1, 0.01, 0.1]), np.array([0.0, 0.0, 0.5, 0.5])
    start = random_params(model, np.random.default_rng(10))
    batch = {k: np.stack([v] * 4) for k, v in start.items()}
    opt = ol.adamw(lr=lrs[:, None, None], weight_decay=wds[:, None, None])
    params, losses = models.train(model, opt, batch, X, y, 15)
    assert losses.shape == (15, 4)
    for k in range(4):
        alone, alone_losses = models.train(model, ol.adamw(lr=lrs[k], weight_decay=wds[k]),
                                           start, X, y, 15)
        np.testing.assert_allclose(losses[:, k], alone_losses, rtol=1e-12)
        for name in start:
            np.testing.assert_allclose(params[name][k], alone[name], rtol=1e-11, atol=1e-14)


def test_train_does_not_modify_its_inputs(data):
    X, y = data
    model = MODELS["softmax"]
    start = random_params(model, np.random.default_rng(11))
    copy = {k: v.copy() for k, v in start.items()}
    _, losses = models.train(model, ol.sgd(lr=0.1), start, X, y, 5, batch_size=8)
    assert losses.shape == (5,)
    assert all(np.array_equal(start[k], copy[k]) for k in start)
    with pytest.raises(ValueError, match="batch_size"):
        models.train(model, ol.sgd(lr=0.1), start, X, y, 5, batch_size=N + 1)


@pytest.fixture(scope="module")
def digits_split():
    d = ol.datasets.load_digits()
    return ol.datasets.train_test_split(d.X, d.y, test_fraction=0.25, seed=0)


def test_softmax_regression_learns_the_digits(digits_split):
    # Measured: test accuracy 0.953 after 100 full-batch Adam steps (train loss 0.045).
    s = digits_split
    model = models.SoftmaxRegression()
    params, losses = models.train(model, ol.adam(lr=0.1), model.init_params(),
                                  s.X_train, s.y_train, 100)
    assert losses[0] == pytest.approx(np.log(10))
    assert losses[-1] < 0.1
    assert model.accuracy(params, s.X_test, s.y_test) > 0.93


def test_mlp_learns_the_digits_with_minibatches(digits_split):
    # Measured: test accuracy 0.96 after 300 minibatch steps of SGD with momentum.
    s = digits_split
    model = models.MLP(64, 32, 10, activation="tanh")
    params, losses = models.train(model, ol.sgd(lr=0.1, momentum=0.9), model.init_params(0),
                                  s.X_train, s.y_train, 300, batch_size=64, seed=0)
    assert losses[-20:].mean() < 0.2
    assert model.accuracy(params, s.X_test, s.y_test) > 0.93
