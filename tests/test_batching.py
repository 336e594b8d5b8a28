"""Per-run hyperparameter vectors on parameter trees of mixed rank (weights and biases)."""

import numpy as np
import pytest

import optimlab as ol

K, D, C = 4, 3, 2


def _params(rng):
    return {"W": rng.normal(size=(K, D, C)), "b": rng.normal(size=(K, C))}


def _row(tree, k):
    return {name: a[k] for name, a in tree.items()}


@pytest.mark.parametrize("make", [
    lambda lr, wd: ol.adamw(lr=lr, weight_decay=wd),
    lambda lr, wd: ol.adam(lr=lr, weight_decay=wd),
    lambda lr, wd: ol.sgd(lr=lr, momentum=0.9, weight_decay=wd),
    lambda lr, wd: ol.rmsprop(lr=lr, weight_decay=wd, centered=True),
    lambda lr, wd: ol.adagrad(lr=lr, weight_decay=wd),
])
@pytest.mark.parametrize("schedule", [False, True])
def test_per_run_vectors_on_mixed_rank_tree_equal_separate_runs(make, schedule):
    rng = np.random.default_rng(0)
    lrs, wds = np.array([1e-3, 1e-2, 3e-2, 1e-1]), np.array([0.0, 1e-3, 1e-2, 1e-1])
    lr = (lambda c: lrs * 0.9 ** c) if schedule else lrs
    params = _params(rng)
    grads = [_params(rng) for _ in range(5)]
    opt = make(lr, wds)
    state, p = opt.init(params), params
    for g in grads:
        u, state = opt.update(g, state, p)
        p = ol.apply_updates(p, u)
    for k in range(K):
        lr_k = (lambda c, k=k: lrs[k] * 0.9 ** c) if schedule else lrs[k]
        single = make(lr_k, wds[k])
        s, q = single.init(_row(params, k)), _row(params, k)
        for g in grads:
            u, s = single.update(_row(g, k), s, q)
            q = ol.apply_updates(q, u)
        for name in q:
            np.testing.assert_allclose(p[name][k], q[name], rtol=1e-14, atol=1e-15)


def test_column_vector_of_runs_is_the_same_batch():
    rng = np.random.default_rng(1)
    params, grads = _params(rng), _params(rng)
    lrs = np.array([1e-3, 1e-2, 3e-2, 1e-1])
    a, b = ol.adam(lr=lrs), ol.adam(lr=lrs[:, None, None])
    ua, _ = a.update(grads, a.init(params), params)
    ub, _ = b.update(grads, b.init(params), params)
    for name in ua:
        np.testing.assert_array_equal(ua[name], ub[name])
