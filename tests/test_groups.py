"""Decay masks (``mask=`` on the constructors) and parameter groups (``ol.partition``).

Properties, bit for bit: a mask that is all True is no mask; all False is ``weight_decay=0``;
any mask updates each array exactly as the decayed or the undecayed optimizer alone would;
a partition with one label is that optimizer; ``step`` equals ``update`` + ``apply_updates``.
Then the errors for labels and masks that do not fit. (torch's parameter groups:
``test_groups_torch.py``.)
"""

import numpy as np
import pytest
from helpers import pure_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import optimlab as ol
from optimlab import fast
from optimlab.tree import leaves, state_arrays

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Constructors with a weight decay, as (name, make(weight_decay, **extra)).
DECAYED = {
    "sgd": lambda wd, **kw: ol.sgd(lr=0.1, momentum=0.9, weight_decay=wd, **kw),
    "sgd-nesterov": lambda wd, **kw: ol.sgd(lr=0.1, momentum=0.5, nesterov=True,
                                            weight_decay=wd, **kw),
    "sgdw": lambda wd, **kw: ol.sgd(lr=0.1, momentum=0.9, weight_decay=wd,
                                    decoupled_weight_decay=True, **kw),
    "adam-l2": lambda wd, **kw: ol.adam(lr=0.01, weight_decay=wd, **kw),
    "adamw": lambda wd, **kw: ol.adamw(lr=0.01, weight_decay=wd, **kw),
    "adamw-schedule": lambda wd, **kw: ol.adamw(lr=lambda c: 0.01 * 0.9**c, weight_decay=wd,
                                                **kw),
    "adamw-paper": lambda wd, **kw: ol.adamw(lr=0.01, weight_decay=wd,
                                             schedule_multiplier=lambda c: 1 / (1 + c), **kw),
    "adamw-after": lambda wd, **kw: ol.adamw(lr=0.01, weight_decay=wd, decay_order="after",
                                             **kw),
    "rmsprop": lambda wd, **kw: ol.rmsprop(lr=0.01, momentum=0.9, weight_decay=wd, **kw),
    "adagrad": lambda wd, **kw: ol.adagrad(lr=0.1, weight_decay=wd, **kw),
}
KEYS = ("W", "b", "gain")


def random_tree(rng, shapes, dtype=np.float64):
    return {k: rng.normal(size=shape).astype(dtype) for k, shape in shapes.items()}


def run_fast(opt, params, grads):
    params = {k: v.copy() for k, v in params.items()}
    state = opt.init(params)
    for g in grads:
        state = opt.step(params, g, state)
    return params, state


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same(a_params, a_state, b_params, b_state, keys=KEYS):
    for k in keys:
        assert same_bits(a_params[k], b_params[k]), k
        sa, sb = state_arrays(a_state.inner[k]), state_arrays(b_state.inner[k])
        assert len(sa) == len(sb) and all(same_bits(x, y) for x, y in zip(sa, sb, strict=True))
    assert a_state.count == b_state.count


shapes = st.fixed_dictionaries({k: st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple)
                                for k in KEYS})
masks = st.fixed_dictionaries({k: st.booleans() for k in KEYS})


@SETTINGS
@given(name=st.sampled_from(sorted(DECAYED)), shape=shapes, mask=masks,
       seed=st.integers(0, 2**32 - 1))
def test_mask_updates_each_array_as_the_decayed_or_undecayed_optimizer(name, shape, mask, seed):
    rng = np.random.default_rng(seed)
    params = random_tree(rng, shape)
    grads = [random_tree(rng, shape) for _ in range(4)]
    make = DECAYED[name]
    masked = pure_run(make(0.3, mask=mask), params, grads)
    decayed = pure_run(make(0.3), params, grads)
    undecayed = pure_run(make(0.0), params, grads)
    for k in KEYS:
        expected = decayed if mask[k] else undecayed
        assert_same(*masked, *expected, keys=[k])
    # The same through a callable, and through the fast path.
    assert_same(*pure_run(make(0.3, mask=lambda p: dict(mask)), params, grads), *masked)
    assert_same(*run_fast(make(0.3, mask=mask), params, grads), *masked)


@SETTINGS
@given(name=st.sampled_from(sorted(DECAYED)), shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_mask_all_true_is_no_mask_and_all_false_is_no_decay(name, shape, seed):
    rng = np.random.default_rng(seed)
    params = random_tree(rng, shape)
    grads = [random_tree(rng, shape) for _ in range(3)]
    make = DECAYED[name]
    assert_same(*pure_run(make(0.3, mask={k: True for k in KEYS}), params, grads),
                *pure_run(make(0.3), params, grads))
    assert_same(*pure_run(make(0.3, mask=True), params, grads),  # one bool for the tree
                *pure_run(make(0.3), params, grads))
    assert_same(*pure_run(make(0.3, mask=lambda p: {k: False for k in p}), params, grads),
                *pure_run(make(0.0), params, grads))


@SETTINGS
@given(name=st.sampled_from(sorted(DECAYED)), shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_partition_with_one_label_is_that_optimizer(name, shape, seed):
    rng = np.random.default_rng(seed)
    params = random_tree(rng, shape)
    grads = [random_tree(rng, shape) for _ in range(3)]
    opt = DECAYED[name](0.2)
    alone = pure_run(opt, params, grads)
    for labels in ("all", {k: "all" for k in KEYS}, lambda p: {k: "all" for k in p}):
        group = ol.partition({"all": opt, "unused": ol.sgd(lr=1.0)}, labels)
        assert_same(*pure_run(group, params, grads), *alone)
        assert_same(*run_fast(group, params, grads), *alone)


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**32 - 1),
       labels=st.fixed_dictionaries({k: st.sampled_from(["sgd", "adam", "rms"]) for k in KEYS}))
def test_partition_updates_each_array_with_its_own_optimizer(shape, seed, labels):
    rng = np.random.default_rng(seed)
    params = random_tree(rng, shape)
    grads = [random_tree(rng, shape) for _ in range(3)]
    members = {"sgd": ol.sgd(lr=0.1, momentum=0.9, weight_decay=0.1),
               "adam": ol.adamw(lr=0.01, weight_decay=0.5, amsgrad=True),
               "rms": ol.rmsprop(lr=0.01, centered=True)}
    group = ol.partition(members, labels)
    got = pure_run(group, params, grads)
    for k in KEYS:
        assert_same(*got, *pure_run(members[labels[k]], params, grads), keys=[k])
    assert_same(*run_fast(group, params, grads), *got)
    assert group.groups(params) == {name: [f"params[{k!r}]" for k in params if labels[k] == name]
                                    for name in members}


def test_update_is_pure_with_masks_and_groups():
    rng = np.random.default_rng(0)
    params = random_tree(rng, {"W": (3, 2), "b": (2,), "gain": (2,)})
    grads = random_tree(rng, {"W": (3, 2), "b": (2,), "gain": (2,)})
    for opt in (ol.adamw(lr=0.1, mask={"W": True, "b": False, "gain": False}),
                ol.partition({"a": ol.sgd(lr=0.1, momentum=0.9), "b": ol.adam()},
                             {"W": "a", "b": "b", "gain": "a"})):
        state = opt.init(params)
        state, _ = opt.update(grads, state, params)[1], None
        before = [a.copy() for a in leaves(params) + leaves(grads)]
        before_state = [a.copy() for s in state.inner.values() for a in state_arrays(s)]
        opt.update(grads, state, params)
        assert all(same_bits(a, b) for a, b in zip(leaves(params) + leaves(grads), before,
                                                   strict=True))
        assert all(same_bits(a, b) for a, b in zip(
            [a for s in state.inner.values() for a in state_arrays(s)], before_state,
            strict=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_path_with_groups_in_blocks_on_threads(monkeypatch, dtype):
    # Large arrays (traced, in blocks, two threads) of two groups in one step, bit for bit.
    monkeypatch.setattr(fast, "BLOCK_BYTES", 64)
    monkeypatch.setattr(fast, "TRACE_MIN_BYTES", 64)
    monkeypatch.setattr(fast, "PARALLEL_MIN_BYTES", 64)
    monkeypatch.setattr(fast, "THREADS", 2)
    traced = []
    original = fast.trace
    monkeypatch.setattr(fast, "trace", lambda *a: traced.append(a[0]) or original(*a))
    rng = np.random.default_rng(1)
    shape = {"W": (30, 20), "b": (300,), "gain": (7, 41)}
    params = random_tree(rng, shape, dtype)
    grads = [random_tree(rng, shape, dtype) for _ in range(4)]
    for opt in (ol.adamw(lr=0.01, weight_decay=0.3, mask=lambda p: {k: k == "W" for k in p}),
                ol.sgd(lr=0.1, momentum=0.9, weight_decay=np.float32(0.1), mask={"W": True,
                                                                           "b": False,
                                                                           "gain": True}),
                ol.partition({"a": ol.adam(lr=0.01, weight_decay=0.1), "b": ol.sgd(lr=0.1)},
                             {"W": "a", "b": "b", "gain": "b"})):
        traced.clear()
        assert_same(*run_fast(opt, params, grads), *pure_run(opt, params, grads))
        assert len({id(t) for t in traced}) == 2  # each group's rule traced, not one for all


def test_batched_runs_with_a_mask_equal_separate_runs():
    rng = np.random.default_rng(2)
    k = 4
    lrs, wds = np.geomspace(1e-3, 1e-1, k), np.linspace(0.0, 1.0, k)
    shape = {"W": (k, 3, 2), "b": (k, 2), "gain": (k, 2)}
    params = random_tree(rng, shape)
    grads = [random_tree(rng, shape) for _ in range(5)]
    mask = {"W": True, "b": False, "gain": False}
    batched = pure_run(ol.adamw(lr=lrs, weight_decay=wds, mask=mask), params, grads)
    for i in range(k):
        row = pure_run(ol.adamw(lr=lrs[i], weight_decay=wds[i], mask=mask),
                       {n: a[i] for n, a in params.items()},
                       [{n: a[i] for n, a in g.items()} for g in grads])
        for n in KEYS:
            np.testing.assert_allclose(batched[0][n][i], row[0][n], rtol=1e-14, atol=1e-15)


def test_masked_leaf_gets_no_decay_even_with_a_zero_gradient():
    # The check that bites: a masked array with zero gradients does not move under AdamW.
    params = {"W": np.ones((2, 2)), "b": np.ones(2)}
    zero = {"W": np.zeros((2, 2)), "b": np.zeros(2)}
    opt = ol.adamw(lr=0.1, weight_decay=0.5, mask={"W": True, "b": False})
    p, _ = pure_run(opt, params, [zero] * 3)
    assert np.array_equal(p["b"], params["b"])
    np.testing.assert_allclose(p["W"], (1 - 0.1 * 0.5) ** 3, rtol=1e-15)


def test_nested_partitions_and_lists():
    rng = np.random.default_rng(3)
    params = {"layers": [{"W": rng.normal(size=(3, 3)), "b": rng.normal(size=3)}
                         for _ in range(2)], "head": rng.normal(size=(3, 2))}
    grads = [{"layers": [{"W": rng.normal(size=(3, 3)), "b": rng.normal(size=3)}
                         for _ in range(2)], "head": rng.normal(size=(3, 2))} for _ in range(3)]
    body = ol.adamw(lr=0.01, weight_decay=0.1,
                    mask={"layers": [{"W": True, "b": False}] * 2, "head": True})
    opt = ol.partition({"body": body, "head": ol.sgd(lr=0.1)}, {"layers": "body", "head": "head"})
    p, state = pure_run(opt, params, grads)
    decayed, _ = pure_run(ol.adamw(lr=0.01, weight_decay=0.1), params, grads)
    undecayed, _ = pure_run(ol.adamw(lr=0.01, weight_decay=0.0), params, grads)
    plain, _ = pure_run(ol.sgd(lr=0.1), params, grads)
    for i in range(2):
        assert same_bits(p["layers"][i]["W"], decayed["layers"][i]["W"])
        assert same_bits(p["layers"][i]["b"], undecayed["layers"][i]["b"])
    assert same_bits(p["head"], plain["head"])
    assert state.inner["layers"][0]["W"].m.shape == (3, 3)
    assert opt.groups(params) == {"body": ["params['layers'][0]['W']",
                                           "params['layers'][0]['b']",
                                           "params['layers'][1]['W']",
                                           "params['layers'][1]['b']"],
                                  "head": ["params['head']"]}


def test_repr_signature_and_listing():
    import inspect

    opt = ol.adamw(lr=0.1, mask={"W": True})
    assert repr(opt).startswith("adamw(lr=0.1,") and repr(opt).endswith("mask={'W': True})")
    assert isinstance(opt, ol.Optimizer) and isinstance(opt, ol.Partition)
    for make in (ol.sgd, ol.adam, ol.adamw, ol.rmsprop, ol.adagrad):
        sig = inspect.signature(make)
        assert "mask" in sig.parameters and sig.parameters["mask"].default is None
        assert "mask" in make.__doc__
        assert "return" in ol.listing.source(make)  # the constructor's own source
    with pytest.raises(AttributeError, match="one transform per group"):
        opt.transform  # noqa: B018


# -- policies -------------------------------------------------------------------------------------
def test_nonfinite_policy_of_groups():
    params = {"W": np.ones(3), "b": np.ones(2)}
    bad = {"W": np.array([1.0, np.nan, 1.0]), "b": np.ones(2)}
    masked = ol.adamw(lr=0.1, mask={"W": True, "b": False})
    with pytest.raises(FloatingPointError, match=r"step 1 in grads\['W'\]"):
        masked.update(bad, masked.init(params), params)
    skipping = masked.skip_nonfinite()
    assert skipping.nonfinite == "skip" and repr(skipping) == repr(masked)
    state = skipping.init(params)
    updates, new = skipping.update(bad, state, params)
    assert new.count == 0 and not any(u.any() for u in updates.values())
    assert skipping.step(params, bad, state).count == 0
    assert np.array_equal(params["W"], np.ones(3))
    both = {"a": ol.sgd().skip_nonfinite(), "b": ol.adam().skip_nonfinite()}
    assert ol.partition(both, {"W": "a", "b": "b"}).nonfinite == "skip"
    with pytest.raises(ValueError, match="disagree about non-finite gradients"):
        ol.partition({"a": ol.sgd(), "b": ol.adam().skip_nonfinite()}, {"W": "a", "b": "b"})
    mixed = ol.partition({"a": ol.sgd(), "b": ol.adam().skip_nonfinite()}, {"W": "a", "b": "b"},
                         nonfinite="raise")
    assert mixed.nonfinite == "raise"
    with pytest.raises(ValueError, match="nonfinite must be"):
        ol.partition({"a": ol.sgd()}, "a", nonfinite="ignore")


# -- errors ---------------------------------------------------------------------------------------
PARAMS = {"W": np.ones((2, 3)), "b": np.ones(3)}


@pytest.mark.parametrize("mask, error, text", [
    ({"W": 1, "b": False}, TypeError,
     r"mask\['W'\] must be True \(decay\) or False \(no decay\).*got 1 of type int"),
    ({"W": True, "b": "no"}, TypeError, r"mask\['b'\] must be True.*got 'no' of type str"),
    ({"W": np.ones((2, 3), bool), "b": False}, TypeError, r"mask\['W'\] must be True"),
    (np.array([True, False]), TypeError, "not an array of shape"),
])
def test_bad_mask_leaves_are_refused_at_construction(mask, error, text):
    for make in (ol.sgd, ol.adam, ol.adamw):
        with pytest.raises(error, match=text):
            make(mask=mask)


@pytest.mark.parametrize("mask, error, text", [
    ({"W": True}, ValueError,
     r"mask does not match the structure of params at params: expected a dict with keys "
     r"\[\"'W'\", \"'b'\"\], got \[\"'W'\"\]"),
    ({"W": True, "b": False, "c": True}, ValueError, "does not match the structure of params"),
    ([True, False], ValueError, "expected a dict with keys"),
    ({"W": [True, True], "b": False}, ValueError,
     r"mask does not match the structure of params at params\['W'\]: expected one label"),
    (lambda p: {"W": True}, ValueError, r"mask\(params\) does not match the structure"),
    (lambda p: {"W": True, "b": 0.0}, TypeError,
     r"mask\(params\) at params\['b'\] must be True \(decay\) or False"),
    (lambda p: None, TypeError, r"mask\(params\) at params\['W'\] must be True"),
    (lambda p: np.array([True, False]), TypeError, r"mask\(params\) must be a tree of labels"),
])
def test_masks_that_do_not_fit_params_are_refused_at_the_call(mask, error, text):
    for make in (ol.sgd, ol.adam, ol.adamw):
        opt = make(mask=mask)
        for call in (lambda o=opt: o.init(PARAMS),
                     lambda o=opt: o.update(PARAMS, ol.sgd().init(PARAMS), PARAMS),
                     lambda o=opt: o.step({k: v.copy() for k, v in PARAMS.items()}, PARAMS,
                                          ol.sgd().init(PARAMS))):
            with pytest.raises(error, match=text):
                call()


@pytest.mark.parametrize("optimizers, labels, error, text", [
    ({}, "a", TypeError, "non-empty dict"),
    ([ol.sgd()], "a", TypeError, "non-empty dict"),
    ({"a": "sgd"}, "a", TypeError, r"optimizers\['a'\] must be an Optimizer"),
    ({("a", "b"): ol.sgd()}, "a", TypeError, "hashable values other than dicts"),
    ({"a": ol.sgd(), "b": ol.adam()}, {"W": "a", "b": "c"}, ValueError,
     r"labels\['b'\] is 'c', which is not a label of the optimizers: 'a', 'b'"),
    ({"a": ol.sgd()}, {"W": "a", "b": {"a"}}, TypeError, r"labels\[.b.\] must be one label"),
])
def test_bad_partitions_are_refused_at_construction(optimizers, labels, error, text):
    with pytest.raises(error, match=text):
        ol.partition(optimizers, labels)


@pytest.mark.parametrize("labels, error, text", [
    ({"W": "a"}, ValueError, "labels does not match the structure of params at params"),
    (lambda p: {"W": "a", "b": "z"}, ValueError,
     r"labels\(params\) at params\['b'\] is 'z', which is not a label of the optimizers"),
    (lambda p: ["a", "b"], ValueError, r"labels\(params\) does not match the structure"),
    (lambda p: {"W": "a", "b": {"x"}}, TypeError, r"labels\(params\) at params\['b'\] must be "
                                                  "one label"),
])
def test_labels_that_do_not_fit_params_are_refused_at_the_call(labels, error, text):
    opt = ol.partition({"a": ol.sgd(), "b": ol.adam()}, labels)
    with pytest.raises(error, match=text):
        opt.init(PARAMS)
    with pytest.raises(error, match=text):
        opt.update(PARAMS, ol.sgd().init(PARAMS), PARAMS)


def test_state_of_another_grouping_is_refused():
    opt = ol.partition({"a": ol.sgd(lr=0.1, momentum=0.9), "b": ol.adam()}, {"W": "a", "b": "b"})
    swapped = ol.partition({"a": ol.sgd(lr=0.1, momentum=0.9), "b": ol.adam()},
                           {"W": "b", "b": "a"})
    with pytest.raises(ValueError, match=r"state.inner at params\['W'\] was not made by this "
                                         r"optimizer's init\(\)"):
        opt.update(PARAMS, swapped.init(PARAMS), PARAMS)
    with pytest.raises(ValueError, match="grads does not match"):
        opt.update({"W": PARAMS["W"]}, opt.init(PARAMS), PARAMS)


def test_unused_optimizers_are_allowed_and_shown_by_groups():
    opt = ol.partition({"decay": ol.adamw(weight_decay=0.1), "no_decay": ol.adamw(weight_decay=0)},
                       lambda p: {k: "decay" if k.startswith("W") else "no_decay" for k in p})
    only_weights = {"W1": np.ones((2, 2)), "W2": np.ones((2, 2))}
    assert opt.groups(only_weights) == {"decay": ["params['W1']", "params['W2']"],
                                        "no_decay": []}
    state = opt.init(only_weights)
    opt.update(only_weights, state, only_weights)
