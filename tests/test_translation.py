"""The translation table (optimlab.translation) run against torch.optim, optax and Keras.

Every row of ``ol.translation.ROWS`` whose library is torch, optax or Keras runs the real library
and optimlab from the same float64 start on the same random gradients
(``ol.translation.problem``: 150 steps, gradient scales from 1e-6 to 10, coordinates whose
gradients are zero for a while; rows marked ``schedule`` under a decaying learning rate).
A row claimed equal must agree to ``RTOL`` = 1e-12 in ``relative_difference``; a row claimed
different must differ by more than its threshold. Planted near-miss mappings must fail
(``test_near_miss_mappings_fail``), so the checks bite. The rows whose source cannot run here
(``library="source"``) are checked in ``tests/test_translation_reference.py``.

optax runs with JAX's 64-bit mode, one jitted update step called in a Python loop over the
steps; Keras 3 on the JAX backend with float64 variables and floatx. Each library's tests are
skipped without it, unless OPTIMLAB_REQUIRE_OPTAX / OPTIMLAB_REQUIRE_KERAS /
OPTIMLAB_REQUIRE_TORCH is set (CI), see conftest.py.
"""

import numpy as np
import pytest

import optimlab as ol
from optimlab import translation as tr

THETA0, GRADS = tr.problem()
_PATHS = {}  # (library, row key) -> trajectory: each library run once per session


def flat(params):
    """{"w": (..., 3, 4), "b": (..., 12)} -> (..., 24)."""
    w, b = np.asarray(params["w"]), np.asarray(params["b"])
    return np.concatenate([w.reshape(*w.shape[:-2], 12), b], axis=-1)


def run_optimlab(row):
    opt = tr.optimizer(row)
    params = {k: v.copy() for k, v in tr.split(THETA0).items()}
    state = opt.init(params)
    path = [THETA0]
    for g in GRADS:
        updates, state = opt.update(tr.split(g), state, params)
        params = ol.apply_updates(params, updates)
        path.append(flat(params))
    return np.stack(path)


def run_torch(torch, row):
    start = tr.split(THETA0)
    w = torch.tensor(start["w"], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(start["b"], dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, row.call)([w, b], lr=row.lr, **row.kwargs)
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda count: tr.SCHEDULE_RATE**count)
             if row.schedule else None)
    path = [THETA0]
    for g in GRADS:
        grads = tr.split(g)
        w.grad = torch.tensor(grads["w"], dtype=torch.float64)
        b.grad = torch.tensor(grads["b"], dtype=torch.float64)
        opt.step()
        if sched is not None:
            sched.step()
        path.append(flat({"w": w.detach().numpy(), "b": b.detach().numpy()}))
    return np.stack(path)


def run_optax(optax, row):
    import jax
    import jax.numpy as jnp

    assert jax.config.jax_enable_x64
    lr = (lambda count: row.lr * tr.SCHEDULE_RATE**count) if row.schedule else row.lr
    opt = getattr(optax, row.call)(lr, **row.kwargs)

    @jax.jit  # one small compiled step, as users run optax (a compiled scan is slower to build)
    def step(grads, state, params):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = {k: jnp.asarray(v) for k, v in tr.split(THETA0).items()}
    state = opt.init(params)
    path = [THETA0]
    for g in GRADS:
        params, state = step({k: jnp.asarray(v) for k, v in tr.split(g).items()}, state, params)
        path.append(flat({k: np.asarray(v) for k, v in params.items()}))
    assert params["w"].dtype == jnp.float64
    return np.stack(path)


def run_keras(keras, row):
    if row.schedule:
        class Decay(keras.optimizers.schedules.LearningRateSchedule):
            def __call__(self, step):  # step = iterations, the updates already made
                return row.lr * tr.SCHEDULE_RATE ** keras.ops.cast(step, "float64")

        lr = Decay()
    else:
        lr = row.lr
    opt = getattr(keras.optimizers, row.call)(learning_rate=lr, **row.kwargs)
    start = tr.split(THETA0)
    w = keras.Variable(start["w"], dtype="float64")
    b = keras.Variable(start["b"], dtype="float64")
    path = [THETA0]
    for g in GRADS:
        grads = tr.split(g)
        opt.apply([grads["w"], grads["b"]], [w, b])
        path.append(flat({"w": keras.ops.convert_to_numpy(w.value),
                          "b": keras.ops.convert_to_numpy(b.value)}))
    assert all(v.dtype == "float64" for v in opt.variables if "iteration" not in v.path)
    return np.stack(path)


RUNNERS = {"torch": run_torch, "optax": run_optax, "keras": run_keras}


def library_path(module, row):
    key = (row.library, row.call, repr(sorted(row.kwargs.items())), row.lr, row.schedule)
    if key not in _PATHS:
        _PATHS[key] = RUNNERS[row.library](module, row)
    return _PATHS[key]


def check(row, expected):
    """Assert the row's claim for the library trajectory ``expected``; return the difference."""
    err = tr.relative_difference(run_optimlab(row), expected)
    if row.claim == "equal":
        assert err <= tr.RTOL, f"{row.key}: claimed equal, relative difference {err:.3e}"
    else:
        assert err > row.threshold, (f"{row.key}: claimed to differ by > {row.threshold:.0e}, "
                                     f"relative difference {err:.3e}")
    # Not a vacuous pass: every coordinate moved well away from its start.
    moved = np.abs(expected - expected[0]).max(axis=0) / np.abs(expected).max(axis=0)
    assert moved.min() > 1e-2, f"{row.key}: a coordinate barely moved ({moved.min():.1e})"
    return err


def ids(rows):
    return [r.key for r in rows]


@pytest.mark.parametrize("row", tr.rows("torch"), ids=ids(tr.rows("torch")))
def test_torch_rows(torch, row):
    check(row, library_path(torch, row))


@pytest.mark.parametrize("row", tr.rows("optax"), ids=ids(tr.rows("optax")))
def test_optax_rows(optax, row):
    check(row, library_path(optax, row))


@pytest.mark.parametrize("row", tr.rows("keras"), ids=ids(tr.rows("keras")))
def test_keras_rows(keras, row):
    check(row, library_path(keras, row))


def equal_row(library, call, kwargs):
    """The row claiming that ``library``'s ``call(**kwargs)`` equals an optimlab call."""
    (row,) = [r for r in tr.rows(library, "equal") if r.call == call and r.kwargs == kwargs]
    return row


# Planted near misses: each keeps every convention of an equal row but one; the check of that
# row must then fail.
NEAR_MISSES = [
    # optax AdaGrad with eps outside the root
    ("optax", "adagrad", {}, dict(initial_accumulator_value=0.1, eps=1e-7)),
    # optax AdaGrad from s_0 = 0
    ("optax", "adagrad", {}, dict(eps=1e-7, eps_inside=True)),
    # Keras AdamW decaying the already updated weights
    ("keras", "AdamW", {}, dict(eps=1e-7, eps_hat=True, weight_decay=0.004, decay_order="after")),
    # optax AMSGrad with the max of the raw v (torch's)
    ("optax", "amsgrad", {}, dict(amsgrad=True)),
    # Keras Adam read as Algorithm 1 with Keras's eps
    ("keras", "Adam", {}, dict(eps=1e-7)),
    # Keras Adam(weight_decay) read as torch's (L2)
    ("keras", "Adam", dict(weight_decay=0.1), ("adam", dict(eps=1e-7, eps_hat=True, weight_decay=0.1))),
    # optax RMSProp with the momentum buffer outside the learning rate (torch's), under a schedule
    ("optax", "rmsprop", dict(momentum=0.9), dict(alpha=0.9, eps_inside=True, momentum=0.9)),
    # Keras SGD momentum in torch's form, under a schedule
    ("keras", "SGD", dict(momentum=0.9), dict(momentum=0.9)),
    # Keras RMSProp with optax's eps (1e-8 instead of 1e-7)
    ("keras", "RMSprop", {}, dict(alpha=0.9, eps=1e-8, eps_inside=True)),
    # optax RMSProp(initial_scale=1) without initial_scale
    ("optax", "rmsprop", dict(initial_scale=1.0, eps_in_sqrt=False), dict(alpha=0.9)),
    # optax Adam(eps_root) without eps_root
    ("optax", "adam", dict(eps_root=1e-8), {}),
]


@pytest.mark.parametrize("library, call, kwargs, ol_kwargs", NEAR_MISSES,
                         ids=[f"{lib}.{call}({kw})->ol({ol})" for lib, call, kw, ol in NEAR_MISSES])
def test_near_miss_mappings_fail(request, library, call, kwargs, ol_kwargs):
    module = request.getfixturevalue(library)
    row = equal_row(library, call, kwargs)
    name, ol_kwargs = ol_kwargs if isinstance(ol_kwargs, tuple) else (row.optimlab, ol_kwargs)
    planted = row._replace(optimlab=name, ol_kwargs=ol_kwargs, key=row.key + " [near miss]")
    expected = library_path(module, planted)
    check(row, expected)  # the true mapping passes on this very trajectory
    with pytest.raises(AssertionError, match="claimed equal"):
        check(planted, expected)
    assert tr.relative_difference(run_optimlab(planted), expected) > 1e3 * tr.RTOL
