"""Low precision: float16 and bfloat16 params, ``state_dtype``, ``param_update``, and the rule
that no dtype changes silently (optimizers, ``step``, the runner and the models).

bfloat16 comes from the optional package ml_dtypes: its tests are skipped without it, unless
the environment sets ``OPTIMLAB_REQUIRE_ML_DTYPES=1`` (CI should), which turns its absence
into a failure.
"""

import importlib
import inspect
import os

import numpy as np
import pytest

import optimlab as ol
from optimlab.tree import state_arrays

ML_DTYPES_REASON = ("ml_dtypes is not installed; the bfloat16 tests need it "
                    "(pip install ml-dtypes==0.6.0, in requirements-ci.lock)")


def _bfloat16():
    try:
        return np.dtype(importlib.import_module("ml_dtypes").bfloat16)
    except ImportError as exc:
        if os.environ.get("OPTIMLAB_REQUIRE_ML_DTYPES", "").strip() not in ("", "0"):
            pytest.fail(f"OPTIMLAB_REQUIRE_ML_DTYPES is set but ml_dtypes cannot be imported: "
                        f"{exc}", pytrace=False)
        pytest.skip(f"{ML_DTYPES_REASON} ({exc})")


@pytest.fixture(scope="session")
def bf16():
    return _bfloat16()


LOW = ["float16", "bfloat16"]


def low_dtype(name):
    return np.dtype(np.float16) if name == "float16" else _bfloat16()


CONSTRUCTORS = {
    "sgd": lambda **k: ol.sgd(lr=0.05, momentum=0.9, weight_decay=1e-3, **k),
    "adagrad": lambda **k: ol.adagrad(lr=0.05, eps=1e-3, **k),
    "rmsprop": lambda **k: ol.rmsprop(lr=0.01, eps=1e-3, momentum=0.5, **k),
    "adam": lambda **k: ol.adam(lr=0.01, eps=1e-3, **k),
    "adamw": lambda **k: ol.adamw(lr=0.01, eps=1e-3, weight_decay=0.1, **k),
}
PARAM_UPDATES = ["nearest", "master", "kahan", "stochastic"]


def gradients(shape, steps, seed=0):
    """Gradients of magnitude 0.1..1, so that float16 squares of them do not underflow."""
    rng = np.random.default_rng(seed)
    return [rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 1.0, shape) for _ in range(steps)]


def run_update(opt, p, grads):
    state = opt.init(p)
    for g in grads:
        u, state = opt.update(g.astype(p.dtype), state, p)
        assert u.dtype == p.dtype
        p = ol.apply_updates(p, u)
    return p, state


# --- the signature ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw"])
def test_every_constructor_has_the_precision_keywords(name):
    params = inspect.signature(getattr(ol, name)).parameters
    for key, default in [("state_dtype", None), ("param_update", "nearest"), ("seed", 0)]:
        assert params[key].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[key].default == default
    assert "state_dtype" in getattr(ol, name).__doc__


def test_the_defaults_keep_the_repr():
    assert "state_dtype" not in repr(ol.adam())
    assert repr(ol.adam(state_dtype=np.float32, param_update="kahan")).endswith(
        "state_dtype='float32', param_update='kahan')")


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(state_dtype=np.int32), TypeError, "state_dtype must be None, np.float64"),
    (dict(state_dtype="float8"), TypeError, "state_dtype must be None"),
    (dict(param_update="round"), ValueError, "param_update must be one of 'nearest'"),
    (dict(seed=-1), TypeError, "seed must be a non-negative integer"),
    (dict(seed=1.5), TypeError, "seed must be a non-negative integer"),
])
def test_bad_precision_keywords(kwargs, error, text):
    with pytest.raises(error, match=text):
        ol.adam(**kwargs)


# --- float32 stays float32 ----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CONSTRUCTORS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_stay_themselves_everywhere(name, dtype):
    opt = CONSTRUCTORS[name]()
    p = np.linspace(-1, 1, 6).astype(dtype)
    grads = gradients(p.shape, 5)
    out, state = run_update(opt, p, grads)
    assert out.dtype == dtype
    assert all(a.dtype == dtype for a in state_arrays(state.inner))
    q = p.copy()
    s = opt.init(q)
    for g in grads:
        s = opt.step(q, g.astype(dtype), s)
    assert q.dtype == dtype and q.tobytes() == out.tobytes()
    # float64 gradients for float32 params are rounded to float32, not the params promoted
    out64g, _ = run_update(opt, p, [g.astype(np.float64) for g in grads])
    assert out64g.dtype == dtype


def test_a_float32_run_differs_from_a_float64_run():
    """The check that bites: an upcast of float32 work to float64 would make these equal."""
    opt = ol.adam(lr=0.01)
    p32, _ = run_update(opt, np.linspace(-1, 1, 6).astype(np.float32), gradients((6,), 50))
    p64, _ = run_update(opt, np.linspace(-1, 1, 6), gradients((6,), 50))
    assert 0 < np.abs(p32 - p64).max() < 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "int"])
def test_run_keeps_the_dtype_of_x0(dtype):
    objective = ol.objectives.quadratic(condition=10.0)
    x0 = np.array([2, 1]) if dtype == "int" else objective.x0.astype(dtype)
    opt = ol.adam(lr=0.05)
    traj = ol.run(opt, objective, x0, 30)
    want = np.float64 if dtype == "int" else dtype
    assert traj.params.dtype == want
    # the same numbers as a loop in that dtype
    x = x0.astype(want)
    state = opt.init(x)
    for k in range(30):
        u, state = opt.update(objective.grad(x), state, x)
        x = ol.apply_updates(x, u)
        assert traj.params[k + 1].tobytes() == x.tobytes()


@pytest.mark.parametrize("name", LOW)
def test_run_keeps_low_precision(name):
    dtype = low_dtype(name)
    objective = ol.objectives.quadratic(condition=10.0)
    traj = ol.run(ol.adam(lr=0.05, state_dtype=np.float32), objective,
                  objective.x0.astype(dtype), 20)
    assert traj.params.dtype == dtype
    assert np.abs(traj.params[-1].astype(float)).max() < np.abs(objective.x0).max()


# --- float16 and bfloat16 -----------------------------------------------------------------------

@pytest.mark.parametrize("name", LOW)
def test_low_precision_params_need_a_state_dtype(name):
    dtype = low_dtype(name)
    with pytest.raises(TypeError, match=rf"^params\['w'\] has dtype {name}; optimlab updates "
                       r"float16 and bfloat16 params only with the state kept in float32: "
                       r"give the constructor state_dtype=np.float32"):
        ol.adam().init({"w": np.ones(3, dtype)})


@pytest.mark.parametrize("name", LOW)
@pytest.mark.parametrize("opt_name", list(CONSTRUCTORS))
def test_float32_state_for_low_precision_params(name, opt_name):
    """state_dtype=float32: the state is float32, the params keep their dtype, and each step
    is the float32 rule at the low-precision params, rounded: the same as the float32
    optimizer fed the params' values and its step rounded to the params' dtype."""
    dtype = low_dtype(name)
    opt = CONSTRUCTORS[opt_name](state_dtype=np.float32)
    ref = CONSTRUCTORS[opt_name]()
    p = np.linspace(-1, 1, 8).astype(dtype)
    state, ref_state = opt.init(p), ref.init(p.astype(np.float32))
    for g in gradients(p.shape, 20):
        g = g.astype(dtype)
        u, state = opt.update(g, state, p)
        u_ref, ref_state = ref.update(g.astype(np.float32), ref_state, p.astype(np.float32))
        assert u.dtype == dtype
        assert all(a.dtype == np.float32 for a in state_arrays(state.inner))
        assert u.tobytes() == u_ref.astype(dtype).tobytes()
        p = ol.apply_updates(p, u)
        assert p.dtype == dtype
    for a, b in zip(state_arrays(state.inner), state_arrays(ref_state.inner), strict=True):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", LOW)
def test_state_in_the_params_dtype_when_asked(name):
    dtype = low_dtype(name)
    opt = ol.adam(lr=0.01, eps=1e-3, state_dtype=dtype)
    p, state = run_update(opt, np.ones(4, dtype), gradients((4,), 3))
    assert all(a.dtype == dtype for a in state_arrays(state.inner))


def test_float16_state_reproduces_the_0_over_0():
    """eps = 1e-8 rounds to 0 in float16: a zero gradient gives 0/0 at the first step."""
    assert np.float16(1e-8) == 0
    opt = ol.adam(state_dtype=np.float16)
    with pytest.raises(FloatingPointError, match="non-finite at step 1"):
        opt.update(np.zeros(2, np.float16), opt.init(np.ones(2, np.float16)),
                   np.ones(2, np.float16))
    # with the state in float32, eps survives and the step is 0
    opt = ol.adam(state_dtype=np.float32)
    u, _ = opt.update(np.zeros(2, np.float16), opt.init(np.ones(2, np.float16)),
                      np.ones(2, np.float16))
    assert np.all(u == 0)


def test_bfloat16_state_freezes_v(bf16):
    """In bfloat16, beta2 * v + (1 - beta2) g^2 rounds back to v when g^2 < v: v cannot
    decrease (beta2 = 0.999 is 1 there); in float32 it does."""
    assert np.array(0.999).astype(bf16) == 1
    for dtype, frozen in [(bf16, True), (np.dtype(np.float32), False)]:
        opt = ol.adam(lr=1e-3, state_dtype=dtype)
        p = np.ones(1, bf16)
        state = opt.init(p)
        _, state = opt.update(np.ones(1, bf16), state, p)
        v1 = float(state.inner.v[0])
        for _ in range(100):
            _, state = opt.update(np.full(1, 0.01, bf16), state, p)
        assert (float(state.inner.v[0]) == v1) == frozen


@pytest.mark.parametrize("name", LOW)
def test_master_weights_follow_the_float32_run(name):
    """param_update='master': the float32 copy in the state is exactly a float32 run, and the
    params are that copy rounded (when the step's difference is exact, as here)."""
    dtype = low_dtype(name)
    opt = ol.adamw(lr=1e-3, weight_decay=0.1, state_dtype=np.float32, param_update="master")
    p = np.linspace(0.5, 1.5, 8).astype(dtype)
    ref = np.linspace(0.5, 1.5, 8).astype(dtype).astype(np.float32)
    ref_opt = ol.adamw(lr=1e-3, weight_decay=0.1)
    state, ref_state = opt.init(p), ref_opt.init(ref)
    for g in gradients(p.shape, 200):
        g = g.astype(dtype)
        u, state = opt.update(g, state, p)
        p = ol.apply_updates(p, u)
        v, ref_state = ref_opt.update(g.astype(np.float32), ref_state, ref)
        ref = ol.apply_updates(ref, v)
        assert state.inner.theta.tobytes() == ref.tobytes()
        assert p.tobytes() == ref.astype(dtype).tobytes()
    assert p.dtype == dtype and state.inner.theta.dtype == np.float32


@pytest.mark.parametrize("name", LOW)
def test_updates_below_half_an_ulp(name):
    """A constant step of ulp(1)/4: lost with round-to-nearest, carried by Kahan's
    compensation and by master weights, right on average with stochastic rounding."""
    dtype = low_dtype(name)
    ulp = float(np.nextafter(np.ones(1, dtype), np.full(1, 2, dtype))[0]) - 1
    steps, n = 400, 2000
    true = 1 + steps * ulp / 4
    moved = {}
    for update in PARAM_UPDATES:
        opt = ol.sgd(lr=1.0, state_dtype=np.float32, param_update=update)
        p = np.ones(n, dtype)
        state = opt.init(p)
        g = np.full(n, -ulp / 4, dtype)
        for _ in range(steps):
            u, state = opt.update(g, state, p)
            p = ol.apply_updates(p, u)
        moved[update] = p.astype(np.float64)
    assert np.all(moved["nearest"] == 1)
    assert np.all(np.abs(moved["master"] - true) <= ulp)
    assert np.all(np.abs(moved["kahan"] - true) <= ulp)
    # stochastic rounding: unbiased, the mean within 5 standard errors (a step is 0 or +ulp)
    mean = moved["stochastic"].mean()
    assert abs(mean - true) < 5 * ulp * np.sqrt(steps * 0.25 * 0.75 / n)
    assert moved["stochastic"].std() > 0


def test_kahan_keeps_the_lost_part(bf16):
    opt = ol.sgd(lr=1.0, state_dtype=np.float32, param_update="kahan")
    p = np.array([1.0, 256.0, -3.0], bf16)
    state = opt.init(p)
    g = np.array([-1e-3, 0.3, 1e-2], bf16)
    u, state = opt.update(g, state, p)
    y = (-g.astype(np.float32)).astype(bf16)  # the step, rounded, minus c_0 = 0
    new = ol.apply_updates(p, u)
    assert new.tobytes() == (p + y).tobytes()
    assert state.inner.c.dtype == bf16
    assert state.inner.c.tobytes() == ((new - p) - y).tobytes()


def test_stochastic_rounding_is_reproducible_and_per_array(bf16):
    opt = ol.sgd(lr=1.0, state_dtype=np.float32, param_update="stochastic", seed=3)
    p = {"a": np.ones(500, bf16), "b": np.ones(500, bf16)}
    g = {k: np.full(500, -1e-3, bf16) for k in p}
    u1, _ = opt.update(g, opt.init(p), p)
    u2, _ = opt.update(g, opt.init(p), p)
    assert all(u1[k].tobytes() == u2[k].tobytes() for k in p)
    assert u1["a"].tobytes() != u1["b"].tobytes()  # each array its own draws
    other = ol.sgd(lr=1.0, state_dtype=np.float32, param_update="stochastic", seed=4)
    assert other.update(g, other.init(p), p)[0]["a"].tobytes() != u1["a"].tobytes()


def test_stochastic_rounding_of_exact_values_and_signs(bf16):
    rng = np.random.default_rng(0)
    x = np.array([1.0, -1.0, 0.0, 3.5, 1.001, -1.001], np.float32)
    draws = np.stack([ol.precision.stochastic_round(x, bf16, rng) for _ in range(4000)])
    assert np.all(draws[:, :4] == x[:4].astype(bf16))
    lo, hi = 1.0, 1.0078125
    assert set(np.unique(draws[:, 4].astype(float))) == {lo, hi}
    assert set(np.unique(draws[:, 5].astype(float))) == {-lo, -hi}
    assert abs(draws[:, 4].astype(float).mean() - 1.001) < 2e-4
    assert abs(draws[:, 5].astype(float).mean() + 1.001) < 2e-4


def test_stochastic_needs_a_wider_state(bf16):
    opt = ol.adam(state_dtype=bf16, param_update="stochastic")
    with pytest.raises(ValueError, match="param_update='stochastic' rounds the sum computed "
                       "in state_dtype to the params' dtype; it needs a state_dtype wider"):
        opt.init(np.ones(2, bf16))


def test_a_state_of_other_dtypes_is_refused():
    opt = ol.adam(state_dtype=np.float32)
    p = np.ones(3, np.float16)
    bad = ol.adam(state_dtype=np.float16).init(p)
    with pytest.raises(TypeError, match=r"state.inner at params holds arrays of dtypes "
                       r"\(float16, float16\) but this optimizer keeps \(float32, float32\)"):
        opt.update(np.ones(3, np.float16), bad, p)
    with pytest.raises(TypeError, match="holds arrays of dtypes"):
        opt.step(p, np.ones(3, np.float16), bad)


# --- step: the same bits as update + apply_updates ----------------------------------------------

WIDTH = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def _combinations():
    """Every params format with its state in the same format, float32 or float64, and every
    param_update (stochastic rounding only from a wider state)."""
    out = []
    for pname in ["float16", "bfloat16", "float32", "float64"]:
        for sname in ["params", "float32", "float64"]:
            for update in PARAM_UPDATES:
                wider = sname != "params" and WIDTH[sname] > WIDTH[pname]
                if update != "stochastic" or wider:
                    out.append((pname, sname, update))
    return out


def _dtype(name):
    return low_dtype(name) if name in LOW else np.dtype(name)


@pytest.mark.parametrize("size", [7, 40_000])
@pytest.mark.parametrize("pname, sname, update", _combinations())
def test_step_equals_update_bit_for_bit(pname, sname, update, size):
    dtype = _dtype(pname)
    state_dtype = dtype if sname == "params" else np.dtype(sname)
    backends = ["blocks"] + (["fused"] if ol.fast.current_backend() == "fused" else [])
    for opt_name in ["sgd", "adam", "adamw"]:
        opt = CONSTRUCTORS[opt_name](state_dtype=state_dtype, param_update=update)
        p0 = {"W": np.linspace(-1, 1, size).astype(dtype), "b": np.full(3, 0.5, dtype)}
        grads = [{"W": g.astype(dtype), "b": g[:3].astype(dtype)}
                 for g in gradients((size,), 4)]
        pure, s_pure = p0, opt.init(p0)
        for g in grads:
            u, s_pure = opt.update(g, s_pure, pure)
            pure = ol.apply_updates(pure, u)
        for backend in backends:
            fast = {k: v.copy() for k, v in p0.items()}
            s = opt.init(fast)
            with ol.fast.backend(backend):
                for g in grads:
                    s = opt.step(fast, g, s)
            for k in p0:
                assert fast[k].dtype == dtype
                assert fast[k].tobytes() == pure[k].tobytes(), (opt_name, backend, k)
            for a, b in zip(state_arrays(s.inner), state_arrays(s_pure.inner), strict=True):
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_step_with_a_mask_mixes_fast_and_whole_arrays(bf16):
    """A partition whose groups differ in precision: the float32 group takes the fast path,
    the bfloat16 one the whole-array path, in one step."""
    opt = ol.partition({"hi": ol.adam(lr=0.01), "lo": ol.adam(lr=0.01, state_dtype=np.float32,
                                                                param_update="kahan")},
                       {"W": "hi", "b": "lo"})
    p = {"W": np.linspace(-1, 1, 50_000).astype(np.float32), "b": np.ones(5, bf16)}
    grads = {"W": np.full(50_000, 0.3, np.float32), "b": np.full(5, 0.2, bf16)}
    u, s_pure = opt.update(grads, opt.init(p), p)
    pure = ol.apply_updates(p, u)
    fast = {k: v.copy() for k, v in p.items()}
    opt.step(fast, grads, opt.init(fast))
    assert all(fast[k].tobytes() == pure[k].tobytes() for k in p)


def test_step_checks_every_gradient_before_writing_low_precision(bf16):
    opt = ol.adam(state_dtype=np.float32)
    p = {"a": np.ones(3, bf16), "b": np.ones(3, bf16)}
    state = opt.init(p)
    grads = {"a": np.ones(3, bf16), "b": np.array([1, np.nan, 1], bf16)}
    with pytest.raises(FloatingPointError, match="non-finite gradient at step 1"):
        opt.step(p, grads, state)
    assert np.all(p["a"] == 1) and np.all(state.inner["a"].m == 0)


# --- the symbolic driver and the models ---------------------------------------------------------

def test_the_symbolic_driver_ignores_the_format():
    import sympy as sp

    g, theta = sp.symbols("g theta", real=True)
    opt = ol.adam(lr=sp.Symbol("eta"), state_dtype=np.float32, param_update="master")
    u, _ = ol.symbolic.update(opt, g, ol.symbolic.init(opt, theta), theta, t=1)
    plain = ol.adam(lr=sp.Symbol("eta"))
    assert sp.simplify(u - ol.symbolic.update(plain, g, ol.symbolic.init(plain, theta),
                                              theta, t=1)[0]) == 0


@pytest.mark.parametrize("name", LOW)
def test_models_train_in_low_precision(name):
    dtype = low_dtype(name)
    digits = ol.datasets.load_digits()
    X, y = digits.X[:300], digits.y[:300]
    model = ol.models.SoftmaxRegression()
    params = model.init_params(dtype=dtype)
    loss, grads = model.loss_and_grad(params, X, y)
    assert np.asarray(loss).dtype == dtype and all(g.dtype == dtype for g in grads.values())
    ref_loss, ref_grads = model.loss_and_grad(model.init_params(dtype=np.float32), X, y)
    assert all(grads[k].tobytes() == ref_grads[k].astype(dtype).tobytes() for k in grads)
    trained, losses = ol.models.train(model, ol.adam(lr=0.01, state_dtype=np.float32),
                                      params, X, y, 30)
    assert all(a.dtype == dtype for a in trained.values())
    assert float(losses[-1]) < float(losses[0])
    assert model.logits(trained, X).dtype == dtype


def test_models_refuse_mixed_low_precision(bf16):
    model = ol.models.SoftmaxRegression()
    params = {"W": np.zeros((64, 10), bf16), "b": np.zeros(10, np.float32)}
    with pytest.raises(TypeError, match="params mix the dtypes"):
        model.loss_and_grad(params, np.zeros((2, 64)), np.zeros(2, int))
