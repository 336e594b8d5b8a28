"""The compiled backend of ``step`` (:mod:`optimlab.fused`): kernels generated from the trace.

Every run is compared, bit for bit, with ``update`` + ``apply_updates``: with the real block
sizes and two threads, on many shapes (sizes that leave a partial block or a partial vector
at the end of a chunk), float64 and float32, lists of arrays, and batches of runs with one
hyperparameter value per run. Skipped without Numba unless ``OPTIMLAB_REQUIRE_JIT=1``.
(``tests/test_fast_path.py`` also runs all its tests on this backend.)
"""

import platform
from typing import NamedTuple

import numpy as np
import pytest
from test_fast_path import CHECKS, assert_same_bits, jit_required, require_numba

import optimlab as ol
from optimlab import fast, fused
from optimlab.tree import leaves, state_arrays


@pytest.fixture(autouse=True)
def fused_backend():
    require_numba()
    with fast.backend("fused"):
        yield


OPTIMIZERS = {
    "adam": lambda: ol.adam(lr=1e-2),
    "adam-amsgrad-l2": lambda: ol.adam(lr=1e-2, amsgrad=True, weight_decay=0.1),
    "adamw": lambda: ol.adamw(lr=1e-2, weight_decay=0.1),
    "adamw-schedule": lambda: ol.adamw(lr=lambda count: 1e-2 * 0.9**count),
    "sgd-momentum": lambda: ol.sgd(lr=0.1, momentum=0.9),
    "sgd-nesterov-wd": lambda: ol.sgd(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "rmsprop": lambda: ol.rmsprop(lr=1e-2),
    "rmsprop-centered-momentum": lambda: ol.rmsprop(lr=1e-2, centered=True, momentum=0.9),
    "adagrad": lambda: ol.adagrad(lr=0.1, lr_decay=0.01),
}

# Sizes around the real block (65,536 float64): under the traced size (whole arrays), one
# partial block, several blocks on two threads with a ragged end.
SIZES = (1000, 20_001, 65_536 * 3 + 7, 1_000_003)


def pure_and_fused(opt, params, grads):
    """(params, state) after ``update`` + ``apply_updates`` and after ``step`` (checking the
    gradients before writing and while writing in turn)."""
    copy = [p.copy() for p in params] if isinstance(params, list) else params.copy()
    pure, pure_state = copy, opt.init(copy)
    for g in grads:
        updates, pure_state = opt.update(g, pure_state, pure)
        pure = ol.apply_updates(pure, updates)
    state = opt.init(params)
    for i, g in enumerate(grads):  # both places of the gradient check, in turn
        state = opt.step(params, g, state, check=CHECKS[i % 2])
    return (pure, pure_state), (params, state)


def assert_same(pure, stepped):
    (p1, s1), (p2, s2) = pure, stepped
    for a, b in zip(leaves(p2), leaves(p1), strict=True):
        assert_same_bits(a, b)
    assert s1.count == s2.count
    for a, b in zip(all_state_arrays(s2.inner), all_state_arrays(s1.inner), strict=True):
        assert_same_bits(a, b)


def all_state_arrays(inner):
    """The arrays of a state (of a list of states, for a list of params)."""
    return [a for s in (inner if isinstance(inner, list) else [inner]) for a in state_arrays(s)]


def gradients(rng, params, steps=3):
    def one(p):
        return (rng.standard_normal(p.shape) * 0.3).astype(p.dtype)

    return [[one(p) for p in params] if isinstance(params, list) else one(params)
            for _ in range(steps)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fused_step_equals_update_on_many_sizes(name, dtype):
    rng = np.random.default_rng(sorted(OPTIMIZERS).index(name))
    for n in SIZES:
        params = rng.standard_normal(n).astype(dtype)
        assert_same(*pure_and_fused(OPTIMIZERS[name](), params, gradients(rng, params)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_step_on_shapes_and_memory_orders(dtype):
    rng = np.random.default_rng(1)
    shapes = [(513, 301), (7, 11, 3001), (300_007,)]
    for shape in shapes:
        for order in "CF":
            params = np.asarray(rng.standard_normal(shape), dtype=dtype, order=order)
            for name in ("adamw", "rmsprop-centered-momentum"):
                assert_same(*pure_and_fused(OPTIMIZERS[name](), params.copy(order="K"),
                                            gradients(rng, params)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_step_on_a_list_of_arrays(dtype):
    rng = np.random.default_rng(2)
    params = [rng.standard_normal(n).astype(dtype) for n in (40_000, 17, 123_457, 65_536)]
    params += [rng.standard_normal((64, 999)).astype(dtype)]
    for name in ("adam", "adamw", "sgd-momentum", "rmsprop", "adagrad"):
        assert_same(*pure_and_fused(OPTIMIZERS[name](), [p.copy() for p in params],
                                    gradients(rng, params)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_step_on_a_batch_of_runs(dtype):
    # One learning rate and one weight decay per run: kernels over runs x values.
    rng = np.random.default_rng(3)
    k = 33
    lrs, decays = np.geomspace(1e-3, 1e-1, k), np.linspace(0.0, 0.3, k)
    params = rng.standard_normal((k, 4001)).astype(dtype)
    optimizers = [ol.adamw(lr=lrs[:, None], weight_decay=decays[:, None]),
                  ol.adam(lr=lambda count: lrs[:, None] * 0.9**count, betas=(0.8, 0.99)),
                  ol.sgd(lr=lrs[:, None], momentum=0.9, weight_decay=decays[:, None]),
                  ol.rmsprop(lr=lrs[:, None].astype(dtype), alpha=np.full((k, 1), 0.9)),
                  ol.adagrad(lr=lrs[:, None])]
    for opt in optimizers:
        program, consts = fast.trace(opt.transform, opt.init(params).inner, params.dtype, 2, 1)
        task = fast._task(program, consts, "params", [params] * (2 + program.n_inputs - 2))
        assert task is not None and task.row_consts  # runs x values, per-run constants
        assert fused.task_kernel(program, task.consts, task.flats, task.row_consts) is not None
        assert_same(*pure_and_fused(opt, params.copy(), gradients(rng, params)))


class _Four(NamedTuple):
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray


def test_maximum_and_minimum_pick_what_numpy_picks():
    # NaN and infinities (in the state), +0 and -0, ties, in both operands of each.
    def update(u, s, p, t):
        new = _Four(ol.ops.maximum(s.a, u), ol.ops.maximum(u, s.b), np.minimum(s.c, u),
                    np.minimum(u, s.d))
        return 0.0 * u, new

    opt = ol.Optimizer(ol.Transform(lambda p: _Four(*(np.zeros_like(p) for _ in range(4))),
                                    update), "max-min", {})
    values = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan])
    a, b = (v.ravel() for v in np.meshgrid(values, values))
    n = 40_000
    grads = np.nan_to_num(np.resize(a, n), nan=-0.0)
    params = np.zeros(n)
    state = opt.init(params)
    for slot in state.inner:
        slot[:] = np.resize(b, n)
    _, expected = opt.transform.update(grads, _Four(*(x.copy() for x in state.inner)),
                                       params, 1)
    new = opt.step(params, grads, state)
    for got, want in zip(new.inner, expected, strict=True):
        assert_same_bits(got, want)


def test_kernels_are_compiled_once_and_reused():
    rng = np.random.default_rng(4)
    params = rng.standard_normal(300_000)
    opt = ol.adamw(lr=1e-3, betas=(0.85, 0.995))  # a rule not compiled by other tests
    state = opt.step(params, rng.standard_normal(300_000), opt.init(params))
    count = len(fused.compile_log)
    for _ in range(3):  # new bias corrections every step: arguments, not a new kernel
        state = opt.step(params, rng.standard_normal(300_000), state)
    other = ol.adamw(lr=5e-4, betas=(0.85, 0.995))  # same rule, other values: same kernel
    other.step(params.copy(), rng.standard_normal(300_000), other.init(params))
    assert len(fused.compile_log) == count
    # Another dtype: another kernel, compiled at its first step (if no test did before).
    single = params.astype(np.float32)
    program, consts = fast.trace(opt.transform, opt.init(single).inner, np.float32, 1, 1)
    source = fused.kernel_source(program, [c.dtype for c in consts])
    new = source not in fused._kernels
    opt.step(single, rng.standard_normal(300_000).astype(np.float32), opt.init(single))
    assert len(fused.compile_log) == count + new and source in fused._kernels
    assert "f4(" in source and "f8(" not in source
    assert all(entry["seconds"] > 0 for entry in fused.compile_log)


def test_the_kernel_is_written_from_the_trace():
    # One line per recorded ufunc call, the constants as arguments: no numbers of the rule.
    opt = ol.adam(lr=1e-3)
    program, consts = fast.trace(opt.transform, opt.init(np.zeros(3)).inner, np.float64, 1, 1)
    source = fused.kernel_source(program, [c.dtype for c in consts])
    ufunc_lines = [line for line in program.lines if isinstance(line[0], np.ufunc)]
    assert sum(" = f8(" in line for line in source.splitlines()) == len(ufunc_lines)
    assert "0.9" not in source and "1e-08" not in source and "np.sqrt(" in source
    assert "G1[j] = R1" in source and "G0[j] =" not in source  # the gradient is only read
    # check="while_writing": one more line, counting the non-finite gradients, first.
    checked, _ = fast.trace(opt.transform, opt.init(np.zeros(3)).inner, np.float64, 1, 1,
                            check_grads=True)
    inline = fused.kernel_source(checked, [c.dtype for c in consts]).splitlines()
    loop = inline.index("        R3 = G3[j]")
    assert inline[loop + 1] == "        bad += not (R0 - R0 == 0)"
    assert [line for line in inline if line != inline[loop + 1]] == source.splitlines()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="checks x86 machine code")
def test_no_fused_multiply_add_in_the_machine_code():
    rng = np.random.default_rng(5)
    params = rng.standard_normal(200_000)
    for name in ("adamw", "sgd-momentum", "rmsprop-centered-momentum"):
        opt = OPTIMIZERS[name]()
        state = opt.init(params)
        opt.step(params, rng.standard_normal(200_000), state)
        program, consts = fast.trace(opt.transform, state.inner, np.float64, 1, 2)
        source = fused.kernel_source(program, [c.dtype for c in consts])
        asm = "\n".join(fused.dispatcher(source).inspect_asm().values()).lower()
        assert "vmul" in asm  # the multiplies are there, and none is fused with an add
        assert not any(op in asm for op in ("vfmadd", "vfmsub", "vfnmadd", "vfnmsub")), name


def test_backend_selection(monkeypatch):
    assert fast.current_backend() == "fused"
    with fast.backend("blocks"):
        assert fast.current_backend() == "blocks"
    with pytest.raises(ValueError, match="backend must be one of"):
        with fast.backend("gpu"):
            pass
    monkeypatch.setattr(fused, "available", lambda: False)
    with fast.backend("auto"):
        assert fast.current_backend() == "blocks"
    with pytest.raises(ImportError, match=r"optimlab\[jit\]"):
        fast.current_backend()
    params = np.ones(100_000)
    opt = ol.adam()
    with pytest.raises(ImportError):  # asked for, missing: an error before anything is written
        opt.step(params, np.ones(100_000), opt.init(params))
    assert np.all(params == 1.0)


def test_require_jit_flag_is_read(monkeypatch):
    monkeypatch.setenv("OPTIMLAB_REQUIRE_JIT", "1")
    assert jit_required()
    monkeypatch.setenv("OPTIMLAB_REQUIRE_JIT", "0")
    assert not jit_required()
