"""Properties that hold for every optimizer and every input, checked with hypothesis.

- purity: ``update`` and ``apply_updates`` never modify their arguments;
- shapes and dtypes: float32 stays float32 and float64 stays float64, in updates and state;
- parameter trees: dict/list/tuple nests give, leaf by leaf, what each array gives alone;
- batches of runs: hyperparameters of shape (K, 1) with params (K, d) give, row by row, the
  runs with the k-th scalar values;
- a zero gradient without weight decay leaves params where they are (and with eps = 0, where
  0/0 would appear, the update raises instead of returning NaN).
"""

import copy
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import optimlab as ol
from optimlab.transforms import ChainState
from optimlab.tree import state_arrays

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

OPTIMIZERS = {
    "sgd": lambda: ol.sgd(lr=0.1),
    "sgd-nesterov-wd": lambda: ol.sgd(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "sgd-lr-in-buffer": lambda: ol.sgd(lr=0.1, momentum=0.9, dampening=0.1, lr_in_buffer=True),
    "adagrad": lambda: ol.adagrad(lr=0.1, lr_decay=0.01, weight_decay=0.01,
                                  initial_accumulator_value=0.1),
    "rmsprop": lambda: ol.rmsprop(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01),
    "rmsprop-eps-inside": lambda: ol.rmsprop(lr=0.01, eps_inside=True),
    "adam": lambda: ol.adam(lr=0.01, weight_decay=0.01),
    "adam-amsgrad": lambda: ol.adam(lr=0.01, amsgrad=True),
    "adam-eps-hat": lambda: ol.adam(lr=0.01, eps_hat=True, amsgrad=True),
    "adamw": lambda: ol.adamw(lr=0.01),
    "adamw-after-schedule": lambda: ol.adamw(lr=lambda c: 0.01 / (1 + c), decay_order="after"),
    "adamw-multiplier": lambda: ol.adamw(lr=0.01, schedule_multiplier=lambda c: 0.9**c),
}

finite = st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False, width=32)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)  # 0-d: see below


def float_arrays(dtype, shape=shapes):
    return hnp.arrays(dtype, shape, elements=finite)


def is_container(tree):
    # A parameter tree is made of dicts, lists and tuples; the per-array state of an optimizer
    # (a ChainState, itself a tuple) is a leaf of ``state.inner``.
    return isinstance(tree, dict | list | tuple) and not isinstance(tree, ChainState)


def leaves_of(tree):
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in leaves_of(tree[k])]
    if is_container(tree):
        return [x for sub in tree for x in leaves_of(sub)]
    return [tree]


def map_tree(fn, tree):
    if isinstance(tree, dict):
        return {k: map_tree(fn, v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(map_tree(fn, v) for v in tree)
    return fn(tree)


def same_structure(a, b, leaf_type=np.ndarray):
    """Same nesting of dicts (same keys), lists and tuples (same lengths); leaves of b are
    ``leaf_type`` (arrays of a's shapes when leaf_type is ndarray)."""
    if isinstance(a, dict):
        return (type(b) is dict and set(a) == set(b)
                and all(same_structure(a[k], b[k], leaf_type) for k in a))
    if is_container(a):
        return (type(b) is type(a) and len(a) == len(b)
                and all(same_structure(x, y, leaf_type) for x, y in zip(a, b, strict=True)))
    if leaf_type is np.ndarray:
        return isinstance(b, np.ndarray) and b.shape == a.shape
    return isinstance(b, leaf_type)


def gradient_like(tree, seed, scale=3.0):
    rng = np.random.default_rng(seed)
    return map_tree(lambda p: (scale * rng.normal(size=p.shape)).astype(p.dtype), tree)


def snapshot(*trees):
    return [np.array(a, copy=True) for tree in trees for a in leaves_of(tree)]


def assert_unchanged(before, *trees):
    after = [a for tree in trees for a in leaves_of(tree)]
    assert len(before) == len(after)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def state_leaves(state):
    """Every array held in an optimizer state."""
    return [a for s in leaves_of(state.inner) for a in state_arrays(s)]


# --- purity ------------------------------------------------------------------------------------

trees = st.recursive(
    float_arrays(np.float64),
    lambda children: (st.lists(children, min_size=1, max_size=3)
                      | st.lists(children, min_size=1, max_size=3).map(tuple)
                      | st.dictionaries(st.sampled_from("abcw"), children, min_size=1,
                                        max_size=3)),
    max_leaves=5)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@SETTINGS
@given(params=trees, seed=st.integers(0, 2**16))
def test_update_and_apply_updates_are_pure(name, params, seed):
    opt = OPTIMIZERS[name]()
    state = opt.init(params)
    for step in range(3):
        grads = gradient_like(params, seed + step)
        before = snapshot(params, grads) + [np.array(a, copy=True) for a in state_leaves(state)]
        updates, new_state = opt.update(grads, state, params)
        assert_unchanged(before, params, grads, [list(state_leaves(state))])
        assert new_state.count == state.count + 1 and state.count == step
        kept = snapshot(params, updates)
        new_params = ol.apply_updates(params, updates)
        assert_unchanged(kept, params, updates)
        params, state = new_params, new_state


# --- shapes and dtypes -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@SETTINGS
@given(data=st.data())
def test_shapes_and_dtypes_are_preserved(name, dtype, data):
    params = data.draw(float_arrays(dtype))
    opt = OPTIMIZERS[name]()
    state = opt.init(params)
    for a in state_leaves(state):
        assert a.dtype == dtype and a.shape == params.shape
    for _ in range(3):
        grads = data.draw(float_arrays(dtype, params.shape))
        updates, state = opt.update(grads, state, params)
        assert updates.dtype == dtype and updates.shape == params.shape
        assert np.isfinite(updates).all()
        for a in state_leaves(state):
            assert a.dtype == dtype and a.shape == params.shape
        params = ol.apply_updates(params, updates)
        assert params.dtype == dtype and params.shape == updates.shape


BATCHED_FLOAT64 = {
    "sgd": lambda c: ol.sgd(lr=c([0.1, 0.01]), momentum=c([0.9, 0.5]), nesterov=True,
                            weight_decay=c([0.0, 0.1])),
    "adagrad": lambda c: ol.adagrad(lr=c([0.1, 0.01]), initial_accumulator_value=c([0.1, 0.2]),
                                    eps=c([1e-10, 1e-6])),
    "rmsprop": lambda c: ol.rmsprop(lr=c([0.1, 0.01]), alpha=c([0.9, 0.99]), centered=True,
                                    momentum=c([0.0, 0.5])),
    "adam": lambda c: ol.adam(lr=c([0.1, 0.01]), betas=(c([0.9, 0.8]), c([0.99, 0.999])),
                              amsgrad=True),
    "adamw": lambda c: ol.adamw(lr=c([0.1, 0.01]), betas=(c([0.9, 0.8]), c([0.99, 0.999])),
                                weight_decay=c([0.01, 0.1]), schedule_multiplier=c([1.0, 0.5])),
}


@pytest.mark.parametrize("name", list(BATCHED_FLOAT64))
def test_float32_with_batched_float64_hyperparameters_stays_float32(name):
    # NumPy 2 promotes float32 with a float64 array to float64 (momentum, betas, alpha ... enter
    # the state): updates and state must still come back float32.
    opt = BATCHED_FLOAT64[name](lambda values: np.array(values, dtype=np.float64)[:, None])
    params = np.ones((2, 3), np.float32)
    state = opt.init(params)
    assert all(a.dtype == np.float32 for a in state_leaves(state))
    for _ in range(2):
        updates, state = opt.update(np.full((2, 3), 0.5, np.float32), state, params)
        params = ol.apply_updates(params, updates)
    assert updates.dtype == np.float32 and params.dtype == np.float32
    assert all(a.dtype == np.float32 for a in state_leaves(state))


# --- parameter trees ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sgd-nesterov-wd", "adagrad", "rmsprop", "adam-amsgrad",
                                  "adamw-after-schedule"])
@SETTINGS
@given(params=trees, seed=st.integers(0, 2**16))
def test_trees_update_leaf_by_leaf(name, params, seed):
    opt = OPTIMIZERS[name]()
    state = opt.init(params)
    tree_params, alone = params, [(p, opt.init(p)) for p in leaves_of(params)]
    for step in range(3):
        grads = gradient_like(params, seed + step)
        updates, state = opt.update(grads, state, tree_params)
        assert same_structure(tree_params, updates)
        assert same_structure(tree_params, state.inner, leaf_type=ChainState)
        tree_params = ol.apply_updates(tree_params, updates)
        assert same_structure(params, tree_params)
        new_alone = []
        for (p, s), g in zip(alone, leaves_of(grads), strict=True):
            u, s = opt.update(g, s, p)
            new_alone.append((ol.apply_updates(p, u), s))
        alone = new_alone
        for leaf, (p, _) in zip(leaves_of(tree_params), alone, strict=True):
            np.testing.assert_array_equal(leaf, p)


# --- batches of runs ---------------------------------------------------------------------------

def unit(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


BATCHABLE = {
    "sgd": (lambda h: ol.sgd(lr=h["lr"], momentum=h["momentum"], dampening=h["dampening"],
                             weight_decay=h["wd"]),
            dict(lr=unit(0.0, 0.2), momentum=unit(0.0, 0.95), dampening=unit(0.0, 1.0),
                 wd=unit(0.0, 0.5))),
    "sgd-nesterov": (lambda h: ol.sgd(lr=h["lr"], momentum=h["momentum"], nesterov=True),
                     dict(lr=unit(0.0, 0.2), momentum=unit(0.05, 0.95))),
    "sgd-lr-in-buffer": (lambda h: ol.sgd(lr=h["lr"], momentum=h["momentum"], lr_in_buffer=True),
                         dict(lr=unit(0.0, 0.2), momentum=unit(0.0, 0.95))),
    "adagrad": (lambda h: ol.adagrad(lr=h["lr"], lr_decay=h["lr_decay"], weight_decay=h["wd"],
                                     initial_accumulator_value=h["s0"], eps=h["eps"]),
                dict(lr=unit(0.0, 1.0), lr_decay=unit(0.0, 0.5), wd=unit(0.0, 0.5),
                     s0=unit(0.0, 1.0), eps=unit(1e-10, 1e-2))),
    "rmsprop": (lambda h: ol.rmsprop(lr=h["lr"], alpha=h["alpha"], eps=h["eps"],
                                     weight_decay=h["wd"], momentum=h["momentum"], centered=True),
                dict(lr=unit(0.0, 0.05), alpha=unit(0.5, 0.999), eps=unit(1e-8, 1e-2),
                     wd=unit(0.0, 0.5), momentum=unit(0.0, 0.95))),
    "adam": (lambda h: ol.adam(lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"],
                               weight_decay=h["wd"], amsgrad=True),
             dict(lr=unit(0.0, 0.1), b1=unit(0.0, 0.99), b2=unit(0.5, 0.9999),
                  eps=unit(1e-8, 1e-2), wd=unit(0.0, 0.5))),
    "adamw": (lambda h: ol.adamw(lr=h["lr"], betas=(h["b1"], h["b2"]), eps=h["eps"],
                                 weight_decay=h["wd"], schedule_multiplier=h["eta"]),
              dict(lr=unit(0.0, 0.1), b1=unit(0.0, 0.99), b2=unit(0.5, 0.9999),
                   eps=unit(1e-8, 1e-2), wd=unit(0.0, 0.5), eta=unit(0.0, 2.0))),
}

K, D = 3, 4


def batch_grad(theta, t):
    return 1.5 * theta - np.sin(theta + t) + 0.5


@pytest.mark.parametrize("name", list(BATCHABLE))
@SETTINGS
@given(data=st.data())
def test_batched_hyperparameters_equal_separate_runs(name, data):
    factory, strategies = BATCHABLE[name]
    rows = {k: [data.draw(s, label=f"{k}[{i}]") for i in range(K)] for k, s in strategies.items()}
    theta0 = data.draw(hnp.arrays(np.float64, (K, D), elements=finite), label="theta0")

    opt = factory({k: np.array(v)[:, None] for k, v in rows.items()})
    theta, state = theta0, opt.init(theta0)
    for t in range(1, 6):
        updates, state = opt.update(batch_grad(theta, t), state, theta)
        theta = ol.apply_updates(theta, updates)

    for i in range(K):
        single = factory({k: float(v[i]) for k, v in rows.items()})
        th, s = theta0[i].copy(), single.init(theta0[i])
        for t in range(1, 6):
            u, s = single.update(batch_grad(th, t), s, th)
            th = ol.apply_updates(th, u)
        assert np.all(np.abs(theta[i] - th) <= 1e-12 * np.maximum(1.0, np.abs(th))), (i, rows)


def test_batch_vector_hyperparameters_follow_each_parameter_rank():
    # A hyperparameter of shape (K,) is one value per run along every parameter's leading axis,
    # whatever the parameter's rank: weights (K, d, c) and biases (K, c) in one tree.
    lrs, b1s = np.array([0.1, 0.02, 0.005]), np.array([0.9, 0.5, 0.0])
    rng = np.random.default_rng(3)
    params = {"w": rng.normal(size=(3, 4, 2)), "b": rng.normal(size=(3, 2))}
    batched = ol.adam(lr=lrs, betas=(b1s, 0.99), weight_decay=0.1)
    state, theta = batched.init(params), params
    for t in range(1, 5):
        grads = {k: batch_grad(v, t) for k, v in theta.items()}
        updates, state = batched.update(grads, state, theta)
        theta = ol.apply_updates(theta, updates)
    for k in range(3):
        single = ol.adam(lr=float(lrs[k]), betas=(float(b1s[k]), 0.99), weight_decay=0.1)
        th = {name: v[k] for name, v in params.items()}
        s = single.init(th)
        for t in range(1, 5):
            u, s = single.update({name: batch_grad(v, t) for name, v in th.items()}, s, th)
            th = ol.apply_updates(th, u)
        for name in params:
            np.testing.assert_allclose(theta[name][k], th[name], rtol=1e-12, atol=1e-12)


# --- zero gradient -----------------------------------------------------------------------------

ZERO_GRADIENT = {
    "sgd": lambda eps: ol.sgd(lr=0.1, momentum=0.9, nesterov=True),
    "sgd-dampening": lambda eps: ol.sgd(lr=0.1, momentum=0.5, dampening=0.5),
    "adagrad": lambda eps: ol.adagrad(lr=0.1, lr_decay=0.1, eps=eps),
    "rmsprop": lambda eps: ol.rmsprop(lr=0.01, momentum=0.9, eps=eps),
    "rmsprop-centered": lambda eps: ol.rmsprop(lr=0.01, centered=True, eps=eps),
    "adam": lambda eps: ol.adam(lr=0.01, amsgrad=True, eps=eps),
    "adam-eps-hat": lambda eps: ol.adam(lr=0.01, eps_hat=True, eps=eps),
    "adamw": lambda eps: ol.adamw(lr=0.01, weight_decay=0.0, eps=eps),
}
DIVIDES_BY_SQRT_V = [name for name in ZERO_GRADIENT if not name.startswith("sgd")]


@pytest.mark.parametrize("name", list(ZERO_GRADIENT))
@SETTINGS
@given(params=float_arrays(np.float64), eps=st.sampled_from([1e-8, 1e-3, 1.0]))
def test_zero_gradient_leaves_params_unchanged(name, params, eps):
    opt = ZERO_GRADIENT[name](eps)
    state, theta = opt.init(params), params
    for _ in range(3):
        updates, state = opt.update(np.zeros_like(params), state, theta)
        assert np.all(updates == 0)
        theta = ol.apply_updates(theta, updates)
    np.testing.assert_array_equal(theta, params)


@pytest.mark.parametrize("name", DIVIDES_BY_SQRT_V)
def test_zero_gradient_with_zero_eps_raises_instead_of_nan(name):
    opt = ZERO_GRADIENT[name](0.0)
    params = np.array([1.0, -2.0, 3.0])
    state = opt.init(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean error, no NumPy warning on the way
        with pytest.raises(FloatingPointError, match="step 1"):
            opt.update(np.zeros(3), state, params)
        # One zero coordinate among nonzero ones is enough.
        with pytest.raises(FloatingPointError, match="non-finite"):
            opt.update(np.array([1.0, 0.0, 2.0]), state, params)


@pytest.mark.parametrize("name", DIVIDES_BY_SQRT_V)
def test_zero_gradient_with_zero_eps_never_returns_nan(name):
    # The same contract, warnings aside: the update raises, it does not hand back NaN.
    opt = ZERO_GRADIENT[name](0.0)
    params = np.array([1.0, -2.0, 3.0])
    state = opt.init(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(FloatingPointError, match="step 1"):
            opt.update(np.array([1.0, 0.0, 2.0]), state, params)


def test_adagrad_initial_accumulator_makes_eps_zero_safe():
    # 0 / sqrt(s_0) = 0: with s_0 > 0 a zero gradient is fine even without eps.
    opt = ol.adagrad(lr=0.1, eps=0.0, initial_accumulator_value=0.1)
    params = np.array([1.0, -2.0])
    updates, _ = opt.update(np.zeros(2), opt.init(params), params)
    assert np.all(updates == 0)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_zero_dimensional_params_stay_arrays(name):
    # A 0-d array is an ndarray like any other: apply_updates must return a 0-d array (NumPy
    # turns p + u into a scalar for 0-d operands), so that the next update accepts it.
    opt = OPTIMIZERS[name]()
    params = np.array(1.5)
    state = opt.init(params)
    for t in range(3):
        updates, state = opt.update(np.array(0.5 + t), state, params)
        params = ol.apply_updates(params, updates)
        assert isinstance(params, np.ndarray) and params.shape == () and params.dtype == np.float64


def test_state_is_not_shared_between_calls():
    # A new state never aliases the old one: updating from the same state twice gives the same
    # result, even after the first result was modified in place.
    opt = ol.adam(lr=0.1, amsgrad=True)
    params, grads = np.ones(3), np.array([1.0, -2.0, 0.5])
    state = opt.init(params)
    u1, s1 = opt.update(grads, state, params)
    expected = copy.deepcopy((u1, s1))
    for a in state_leaves(s1):
        a[...] = 123.0
    u2, s2 = opt.update(grads, state, params)
    np.testing.assert_array_equal(u2, expected[0])
    for a, b in zip(state_leaves(s2), state_leaves(expected[1]), strict=True):
        np.testing.assert_array_equal(a, b)
