"""The MLP with a layer normalization: its hand-written gradient against finite differences,
batches against single models, and the scale invariance in W1 that chapter 8 derives:
L(c W1) = L(W1), <grad_W1 L, W1> = 0 and grad L(c W1) = grad L(W1) / c."""

import numpy as np
import pytest
from helpers import classification_data, finite_difference, random_params, relative_error

import optimlab as ol
from optimlab import models

N, D, H, C = 23, 5, 6, 4


@pytest.fixture(scope="module")
def data():
    return classification_data(N, D, C)


def pre_activation(params, X, eps):
    A = X @ params["W1"]
    A = (A - A.mean(-1, keepdims=True)) / np.sqrt(A.var(-1, keepdims=True) + eps)
    return A * params["gain"][..., None, :] + params["b1"][..., None, :]


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("eps", [0.0, 1e-5, 0.3])
@pytest.mark.parametrize("l2, l2_biases", [(0.0, False), (0.2, True)])
def test_gradient_matches_finite_differences(data, activation, eps, l2, l2_biases):
    X, y = data
    model = models.LayerNormMLP(D, H, C, activation=activation, eps=eps)
    params = random_params(model, np.random.default_rng(1))
    if activation == "relu":  # no central difference across a kink
        assert np.abs(pre_activation(params, X, eps)).min() > 1e-3
    loss, grads = model.loss_and_grad(params, X, y, l2=l2, l2_biases=l2_biases)
    assert np.ndim(loss) == 0 and set(grads) == {"W1", "gain", "b1", "W2", "b2"}
    numeric = finite_difference(lambda p: float(model.loss(p, X, y, l2=l2,
                                                           l2_biases=l2_biases)), params)
    for name in params:
        assert grads[name].shape == params[name].shape
        err = relative_error(grads[name], numeric[name])
        assert err < 1e-6, f"{name}: relative error {err:.2e}"


def test_forward_is_layer_norm_then_the_mlp(data):
    # The loss from an independent forward pass (NumPy's var, log-softmax) and torch's formula.
    X, y = data
    for eps in (0.0, 1e-5):
        model = models.LayerNormMLP(D, H, C, eps=eps)
        params = random_params(model, np.random.default_rng(2))
        Z = np.tanh(pre_activation(params, X, eps)) @ params["W2"] + params["b2"]
        expected = -models.log_softmax(Z)[np.arange(N), y].mean()
        np.testing.assert_allclose(model.loss(params, X, y), expected, rtol=1e-13)
        np.testing.assert_allclose(model.logits(params, X), Z, rtol=1e-12, atol=1e-14)


def test_batched_models_equal_single_ones(data, monkeypatch):
    X, y = data
    model = models.LayerNormMLP(D, H, C, activation="relu", eps=1e-3)
    params = random_params(model, np.random.default_rng(3), batch=(2, 3))
    l2 = np.linspace(0.0, 0.5, 6).reshape(2, 3)
    loss, grads = model.loss_and_grad(params, X, y, l2=l2)
    monkeypatch.setattr(models, "BLOCK", 1)  # one model per block
    blocked = model.loss_and_grad(params, X, y, l2=l2)
    for k in np.ndindex(2, 3):
        single = {name: p[k] for name, p in params.items()}
        loss_k, grads_k = model.loss_and_grad(single, X, y, l2=l2[k])
        np.testing.assert_allclose(loss[k], loss_k, rtol=1e-13)
        np.testing.assert_allclose(blocked[0][k], loss_k, rtol=1e-13)
        for name in params:
            np.testing.assert_allclose(grads[name][k], grads_k[name], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(blocked[1][name][k], grads_k[name], rtol=1e-12,
                                       atol=1e-15)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_loss_is_invariant_to_scaling_w1_and_the_gradient_is_orthogonal(data, activation):
    X, y = data
    model = models.LayerNormMLP(D, H, C, activation=activation)
    assert model.scale_invariant == ("W1",) and model.eps == 0.0
    params = random_params(model, np.random.default_rng(4))
    loss, grads = model.loss_and_grad(params, X, y)
    g, W = grads["W1"], params["W1"]
    # <grad f, theta> = 0, relative to |grad f| |theta|: rounding only.
    assert abs(np.sum(g * W)) <= 1e-14 * np.linalg.norm(g) * np.linalg.norm(W)
    assert np.linalg.norm(g) > 1e-3  # not vacuous
    for c in (1e-3, 0.1, 3.0, 1e4):
        scaled = {**params, "W1": c * W}
        loss_c, grads_c = model.loss_and_grad(scaled, X, y)
        np.testing.assert_allclose(loss_c, loss, rtol=1e-13)
        # grad f(c theta) = grad f(theta) / c, and every other gradient is unchanged
        np.testing.assert_allclose(c * grads_c["W1"], g, rtol=1e-9, atol=1e-13)
        for name in ("gain", "b1", "W2", "b2"):
            np.testing.assert_allclose(grads_c[name], grads[name], rtol=1e-9, atol=1e-13)
    # The other parameters are not scale-invariant (the check can fail).
    assert abs(model.loss({**params, "W2": 3.0 * params["W2"]}, X, y) - loss) > 1e-3
    # With eps > 0 the invariance is only approximate: it breaks once the variance nears eps.
    noisy = models.LayerNormMLP(D, H, C, activation=activation, eps=1e-2)
    far = abs(noisy.loss({**params, "W1": 1e-3 * W}, X, y) - noisy.loss(params, X, y))
    assert far > 1e-3


def test_per_model_data_equals_separate_calls(data):
    X, y = data
    rng = np.random.default_rng(5)
    for model in (models.LayerNormMLP(D, H, C, eps=1e-5), models.MLP(D, H, C),
                  models.SoftmaxRegression(D, C)):
        params = random_params(model, rng, batch=(3,))
        Xs = rng.standard_normal((3, 11, D))
        ys = rng.integers(0, C, (3, 11))
        loss, grads = model.loss_and_grad(params, Xs, ys, l2=0.1)
        assert loss.shape == (3,)
        np.testing.assert_array_equal(model.accuracy(params, Xs, ys),
                                      [model.accuracy({k: v[i] for k, v in params.items()},
                                                      Xs[i], ys[i]) for i in range(3)])
        for i in range(3):
            single = {k: v[i] for k, v in params.items()}
            loss_i, grads_i = model.loss_and_grad(single, Xs[i], ys[i], l2=0.1)
            np.testing.assert_allclose(loss[i], loss_i, rtol=1e-13)
            for name in params:
                np.testing.assert_allclose(grads[name][i], grads_i[name], rtol=1e-12,
                                           atol=1e-15)
        with pytest.raises(ValueError, match="X must have shape"):
            model.loss_and_grad(params, Xs[:2], ys[:2])
        with pytest.raises(ValueError, match="y must be an integer array of shape"):
            model.loss_and_grad(params, Xs, ys[:, :5])


def test_init_params_and_bad_input():
    model = models.LayerNormMLP(64, 32, 10, activation="relu")
    p = model.init_params(0, batch=(2,))
    assert list(p) == ["W1", "gain", "b1", "W2", "b2"]
    assert np.all(p["gain"] == 1.0) and not p["b1"].any() and p["gain"].shape == (2, 32)
    np.testing.assert_array_equal(p["W1"][0], models.MLP(64, 32, 10, "relu").init_params(0)["W1"])
    assert repr(model).startswith("LayerNormMLP(") and isinstance(model, models.MLP)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        models.LayerNormMLP(eps=-1.0)
    with pytest.raises(ValueError, match="keys"):
        model.loss_and_grad(models.MLP(64, 32, 10).init_params(0), np.zeros((3, 64)),
                            np.zeros(3, int))


def test_layer_norm_mlp_learns_the_digits_with_masked_adamw():
    d = ol.datasets.load_digits()
    s = ol.datasets.train_test_split(d.X, d.y, test_fraction=0.25, seed=0)
    X_train, X_test = ol.datasets.standardize(s.X_train, s.X_test)
    model = models.LayerNormMLP(64, 32, 10)
    opt = ol.adamw(lr=0.01, weight_decay=0.1, mask={"W1": True, "gain": False, "b1": False,
                                                     "W2": True, "b2": False})
    params, losses = models.train(model, opt, model.init_params(0), X_train, s.y_train, 300,
                                  batch_size=64, seed=0)
    assert losses[-20:].mean() < 0.2
    assert model.accuracy(params, X_test, s.y_test) > 0.93
