"""``opt.step`` (in place, traced and blocked, on threads) against ``update`` + ``apply_updates``.

The fast path replays the ufunc calls that the rule makes on whole arrays, with the same
scalar operands in the same dtypes, so the comparisons here are exact: bit for bit (the
arrays' bytes are compared, so even the sign of a zero counts). Most tests shrink the block
and the thresholds (fixture ``tiny_blocks``) so that a few hundred elements already take
many blocks on two threads, with a last, partial block; a few use the real settings.

Every test runs on both backends of ``step`` (fixture ``backend``): ``"blocks"``, the
replay by NumPy, and ``"fused"``, the loop compiled by Numba from the same trace
(:mod:`optimlab.fused`). The fused runs are skipped when Numba is not installed, unless
``OPTIMLAB_REQUIRE_JIT=1`` (CI sets it): then a missing Numba fails them, so that they
cannot silently stop running.
"""

import os
import tracemalloc
from typing import NamedTuple

import numpy as np
import pytest
from helpers import pure_run

import optimlab as ol
from optimlab import fast, fused
from optimlab.tree import leaves, state_arrays

JIT_REASON = ("numba is not installed; the fused backend of step() needs it "
              "(pip install 'optimlab[jit]', or numba==0.68.1)")


def jit_required():
    """True when the environment demands that the tests of the compiled backend run."""
    return os.environ.get("OPTIMLAB_REQUIRE_JIT", "").strip() not in ("", "0")


def require_numba():
    """Skip the calling test without Numba, or fail if ``OPTIMLAB_REQUIRE_JIT`` is set."""
    if not fused.available():
        if jit_required():
            pytest.fail("OPTIMLAB_REQUIRE_JIT is set but numba cannot be imported",
                        pytrace=False)
        pytest.skip(JIT_REASON)


@pytest.fixture(autouse=True, params=["blocks", "fused"])
def backend(request):
    """Each test once with the NumPy replay and once with the compiled kernels."""
    if request.param == "fused":
        require_numba()
    with fast.backend(request.param):
        yield request.param

STEPS = 3

OPTIMIZERS = {
    "sgd": lambda: ol.sgd(lr=0.1),
    "sgd-momentum-dampening-wd": lambda: ol.sgd(lr=0.1, momentum=0.9, dampening=0.3,
                                                weight_decay=0.01),
    "sgd-nesterov": lambda: ol.sgd(lr=0.1, momentum=0.9, nesterov=True),
    "sgd-lr-in-buffer": lambda: ol.sgd(lr=0.1, momentum=0.9, lr_in_buffer=True),
    "sgdw-schedule-multiplier": lambda: ol.sgd(lr=0.1, momentum=0.5, weight_decay=0.1,
                                               decoupled_weight_decay=True,
                                               schedule_multiplier=lambda c: 0.9**c),
    "adagrad": lambda: ol.adagrad(lr=0.1),
    "adagrad-lr-decay-wd": lambda: ol.adagrad(lr=0.1, lr_decay=0.1, weight_decay=0.01),
    "adagrad-eps-inside": lambda: ol.adagrad(lr=0.1, eps_inside=True,
                                             initial_accumulator_value=0.1),
    "rmsprop": lambda: ol.rmsprop(lr=0.01),
    "rmsprop-centered-momentum": lambda: ol.rmsprop(lr=0.01, centered=True, momentum=0.9,
                                                    weight_decay=0.01),
    "rmsprop-eps-inside": lambda: ol.rmsprop(lr=0.01, eps_inside=True),
    "adam": lambda: ol.adam(lr=0.01),
    "adam-l2-amsgrad": lambda: ol.adam(lr=0.01, weight_decay=0.1, amsgrad=True),
    "adam-no-bias-correction": lambda: ol.adam(lr=0.01, bias_correction=False),
    "adam-eps-hat": lambda: ol.adam(lr=0.01, eps_hat=True),
    "adam-amsgrad-corrected": lambda: ol.adam(lr=0.01, amsgrad=True, amsgrad_max="corrected"),
    "adamw": lambda: ol.adamw(lr=0.01),
    "adamw-schedule": lambda: ol.adamw(lr=lambda count: 0.01 * 0.9**count, weight_decay=0.1),
    "adamw-decay-after": lambda: ol.adamw(lr=0.01, weight_decay=0.1, decay_order="after",
                                          bias_correction=False),
    "adamw-schedule-multiplier": lambda: ol.adamw(lr=0.01, weight_decay=0.1,
                                                  schedule_multiplier=lambda c: 1 / (1 + c)),
    "adamw-eps-hat-amsgrad": lambda: ol.adamw(lr=0.01, eps_hat=True, amsgrad=True),
}

# Shapes and memory layouts: 0-d, one element, a partial block, several blocks, C and
# Fortran order, and views that are not contiguous (these take the whole-array path).
LAYOUTS = {
    "0-d": lambda a: a.reshape(()),
    "size-1": lambda a: a.reshape(1),
    "vector": lambda a: a,
    "matrix": lambda a: a.reshape(25, 24),
    "fortran": lambda a: np.asfortranarray(a.reshape(20, 30)),
    "transposed": lambda a: a.reshape(20, 30).T,  # Fortran-contiguous view
    "strided": lambda a: a.reshape(40, 30)[::2, ::3],  # not contiguous at all
}
SIZES = {"0-d": 1, "size-1": 1, "vector": 1000, "matrix": 600, "fortran": 600,
         "transposed": 600, "strided": 1200}


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of 8 float64 (16 float32), traced and parallel from 64 bytes, gradients checked
    64 bytes at a time, two threads."""
    monkeypatch.setattr(fast, "BLOCK_BYTES", 64)
    monkeypatch.setattr(fast, "TRACE_MIN_BYTES", 64)
    monkeypatch.setattr(fast, "PARALLEL_MIN_BYTES", 64)
    monkeypatch.setattr(fast, "CHECK_BYTES", 64)
    monkeypatch.setattr(fast, "THREADS", 2)


def random_like(rng, layout, dtype, scale=1.0):
    base = rng.normal(scale=scale, size=SIZES[layout]).astype(dtype)
    return LAYOUTS[layout](base)


def grads_for(params, rng, steps):
    def one(p):
        return (rng.normal(size=p.shape) * 0.5).astype(p.dtype)

    if isinstance(params, dict):
        return [{k: one(p) for k, p in params.items()} for _ in range(steps)]
    return [one(params) for _ in range(steps)]


def copy_tree(tree):
    if isinstance(tree, dict):
        return {k: copy_tree(v) for k, v in tree.items()}
    return tree.copy(order="K")


CHECKS = ("before_writing", "while_writing")


def fast_run(opt, params, grads):
    """``step`` after step, checking the gradients before writing and while writing in turn
    (the two make different programs and kernels; both must give the same bits)."""
    state = opt.init(params)
    for i, g in enumerate(grads):
        state = opt.step(params, g, state, check=CHECKS[i % 2])
    return params, state


def assert_same_bits(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes(), (
        f"max difference {np.max(np.abs(actual - expected.astype(actual.dtype)))}")


def assert_same_run(opt, params, grads):
    expected_p, expected_s = pure_run(opt, copy_tree(params), grads)
    actual_p, actual_s = fast_run(opt, params, grads)
    for a, e in zip(leaves(actual_p), leaves(expected_p), strict=True):
        assert_same_bits(a, e)
    assert actual_s.count == expected_s.count
    for a, e in zip(state_arrays(leaves_of_state(actual_s)),
                    state_arrays(leaves_of_state(expected_s)), strict=True):
        assert_same_bits(a, e)


def leaves_of_state(state):
    inner = state.inner
    return tuple(inner.values()) if isinstance(inner, dict) else inner


@pytest.mark.usefixtures("tiny_blocks")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_step_equals_update_for_every_optimizer(name, dtype):
    rng = np.random.default_rng(abs(hash((name, np.dtype(dtype).str))) % 2**32)
    opt = OPTIMIZERS[name]()
    for layout in ("vector", "0-d", "transposed"):
        params = random_like(rng, layout, dtype)
        assert_same_run(opt, params, grads_for(params, rng, STEPS))


@pytest.mark.usefixtures("tiny_blocks")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("name", ["adam", "adamw-eps-hat-amsgrad", "rmsprop-centered-momentum",
                                  "sgd-nesterov"])
def test_step_equals_update_for_every_layout(name, layout, dtype):
    rng = np.random.default_rng(7)
    params = random_like(rng, layout, dtype)
    assert_same_run(OPTIMIZERS[name](), params, grads_for(params, rng, STEPS))


@pytest.mark.usefixtures("tiny_blocks")
def test_dict_params_of_mixed_sizes_and_dtypes():
    rng = np.random.default_rng(1)
    params = {"W": rng.normal(size=(30, 20)), "b": rng.normal(size=20).astype(np.float32),
              "s": np.array(0.5), "big": rng.normal(size=(7, 111)).astype(np.float32)}
    for name in ("adamw", "adam-eps-hat", "sgd-momentum-dampening-wd", "adagrad"):
        assert_same_run(OPTIMIZERS[name](), copy_tree(params), grads_for(params, rng, STEPS))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1000, 5 * fast.block_size(np.float64) + 5])
def test_real_block_sizes_and_threads(n, dtype):
    # Below TRACE_MIN_BYTES (whole arrays) and above it (blocks, two threads, a partial block).
    rng = np.random.default_rng(n)
    params = rng.normal(size=n).astype(dtype)
    for name in ("adam", "adamw", "rmsprop-centered-momentum"):
        assert_same_run(OPTIMIZERS[name](), params.copy(), grads_for(params, rng, 2))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_number_of_threads_does_not_change_the_numbers(monkeypatch, threads):
    monkeypatch.setattr(fast, "BLOCK_BYTES", 64)
    monkeypatch.setattr(fast, "PARALLEL_MIN_BYTES", 64)
    monkeypatch.setattr(fast, "TRACE_MIN_BYTES", 64)
    monkeypatch.setattr(fast, "THREADS", threads)
    rng = np.random.default_rng(3)
    params = {"a": rng.normal(size=333), "b": rng.normal(size=(9, 13))}
    assert_same_run(ol.adamw(lr=0.01), params, grads_for(params, rng, STEPS))


@pytest.fixture
def whole_arrays(monkeypatch):
    """The paths of the arrays that ``step`` updates whole (not block by block)."""
    seen = []
    original = fast.update_whole

    def spy(transform, path, *args):
        seen.append(path)
        return original(transform, path, *args)

    monkeypatch.setattr(fast, "update_whole", spy)
    return seen


@pytest.mark.usefixtures("tiny_blocks")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_batch_of_runs_is_updated_by_blocks_of_runs(whole_arrays, dtype):
    # Hyperparameter arrays with one value per run (K, 1, ...), also from a schedule.
    rng = np.random.default_rng(4)
    k = 7
    lrs, decays = np.geomspace(1e-3, 1e-1, k), np.linspace(0.0, 1.0, k)
    params = {"W": rng.normal(size=(k, 6, 5)).astype(dtype),
              "b": rng.normal(size=(k, 9)).astype(dtype)}
    optimizers = [ol.adamw(lr=lrs, weight_decay=decays[:, None]),
                  ol.adam(lr=lambda count: lrs[:, None, None] * 0.9**count, betas=(0.8, 0.99)),
                  ol.sgd(lr=lrs, momentum=0.9, weight_decay=decays),
                  ol.rmsprop(lr=np.float32(0.01), alpha=np.full(k, 0.9))]
    for opt in optimizers[:2]:
        assert_same_run(opt, {"W": params["W"].copy()}, grads_for({"W": params["W"]}, rng, 3))
    for opt in optimizers[2:]:
        assert_same_run(opt, copy_tree(params), grads_for(params, rng, STEPS))
    assert whole_arrays == []


@pytest.mark.usefixtures("tiny_blocks")
def test_hyperparameters_not_one_per_run_take_the_whole_array_path(whole_arrays):
    rng = np.random.default_rng(5)
    params = rng.normal(size=(4, 50))
    per_column = ol.adam(lr=np.geomspace(1e-3, 1e-1, 50)[None, :])  # one value per column
    assert_same_run(per_column, params, grads_for(params, rng, STEPS))
    assert whole_arrays == ["params"] * STEPS


@pytest.mark.usefixtures("tiny_blocks")
def test_a_rule_the_tracer_cannot_follow_runs_on_whole_arrays():
    # np.clip is not an elementwise operator call: tracing gives up, the rule still runs.
    def update(u, state, p, t):
        return -0.1 * np.clip(u, -1.0, 1.0), state

    clipped = ol.Optimizer(ol.Transform(lambda p: ol.transforms.EmptyState(), update),
                           "clipped", {})
    with pytest.raises(fast.Untraceable):
        fast.trace(clipped.transform, ol.transforms.EmptyState(), np.float64, 1, 1)
    rng = np.random.default_rng(5)
    params = rng.normal(size=500)
    assert_same_run(clipped, params, grads_for(params, rng, STEPS))


class _Trail(NamedTuple):
    old: np.ndarray


@pytest.mark.usefixtures("tiny_blocks")
def test_a_state_read_after_its_new_value_is_made_is_not_overwritten_early():
    # The new value exists before the old one is read for the last time: it must not go
    # straight into the state array. And x ** 2 (not traced) takes the whole-array path.
    def update(u, state, p, t):
        new = 0.5 * state.old + u
        return -0.1 * (new + state.old), _Trail(new)

    def update_with_power(u, state, p, t):
        return -0.1 * u**2, state

    def update_with_signed_zeros(u, state, p, t):
        # -1 * (+0.0) is -0.0 and 0.0 + (-0.0) is +0.0: "x + 0" is not skipped like "x * 1".
        return -0.1 * u, _Trail(0.0 + -1.0 * u)

    init = lambda p: _Trail(np.zeros_like(p))  # noqa: E731
    rng = np.random.default_rng(9)
    for rule in (update, update_with_power, update_with_signed_zeros):
        opt = ol.Optimizer(ol.Transform(init, rule), "trail", {})
        params = rng.normal(size=300)
        grads = grads_for(params, rng, STEPS)
        grads[-1][::3] = 0.0
        assert_same_run(opt, params, grads)


def test_multiplying_by_one_is_skipped_and_state_is_written_in_place():
    # The replay of SGD with momentum: b = mu*b + 1*g skips the "* 1", and the new buffer
    # goes straight into the state array (no temporary for b, no copy).
    opt = ol.sgd(lr=0.1, momentum=0.9)
    program, consts = fast.trace(opt.transform, opt.init(np.zeros(4)).inner, np.float64, 1, 2)
    assert program.source.count("multiply(") == 2 and "out=R2)" in program.source
    assert program.temp_dtypes == [np.dtype(np.float64)]


@pytest.mark.usefixtures("tiny_blocks")
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["first", "last"])
def test_nonfinite_gradient_raises_before_anything_is_written(bad, where):
    rng = np.random.default_rng(6)
    params = {"a": rng.normal(size=300), "b": rng.normal(size=(20, 20))}
    opt = ol.adamw(lr=0.01)
    state = opt.init(params)
    state = opt.step(params, grads_for(params, rng, 1)[0], state)
    grads = grads_for(params, rng, 1)[0]
    leaf, index = ("a", 0) if where == "first" else ("b", (19, 19))
    grads[leaf][index] = bad
    before_p, before_s = copy_tree(params), [a.copy() for a in state_arrays(tuple(
        state.inner.values()))]
    with pytest.raises(FloatingPointError, match=r"non-finite gradient at step 2 in grads\['"
                                                 + leaf):
        opt.step(params, grads, state)
    for k in params:
        assert_same_bits(params[k], before_p[k])
    for a, b in zip(state_arrays(tuple(state.inner.values())), before_s, strict=True):
        assert_same_bits(a, b)


@pytest.mark.usefixtures("tiny_blocks")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("where", ["first", "last"])
def test_a_gradient_checked_while_writing_raises_naming_the_array_and_the_step(bad, where):
    # "a" is traced and updated in blocks (checked inside the loop); "small" (40 bytes) is
    # under the traced size, updated whole, so it is checked before anything is written.
    rng = np.random.default_rng(7)
    params = {"a": rng.normal(size=300), "small": rng.normal(size=5)}
    opt = ol.adamw(lr=0.01)
    state = opt.step(params, grads_for(params, rng, 1)[0], opt.init(params))
    grads = grads_for(params, rng, 1)[0]
    grads["a"][0 if where == "first" else -1] = bad
    with pytest.raises(FloatingPointError, match=r"non-finite gradient at step 2 in "
                       r"grads\['a'\], found while writing .*partly updated"):
        opt.step(params, grads, state, check="while_writing")
    grads = grads_for(params, rng, 1)[0]
    grads["small"][2] = bad
    before = copy_tree(params)
    with pytest.raises(FloatingPointError, match=r"non-finite gradient at step 2 in "
                       r"grads\['small'\]"):
        opt.step(params, grads, state, check="while_writing")
    for k in params:  # checked before anything was written
        assert_same_bits(params[k], before[k])


@pytest.mark.usefixtures("tiny_blocks")
def test_a_clipped_infinite_gradient_is_still_found_while_writing():
    # Clipping turns an infinite gradient into a finite update: only the check of the
    # gradient itself, inside the loop, can see it (as the check before writing does).
    def update(u, state, p, t):
        return -0.1 * np.minimum(np.maximum(u, -1.0), 1.0), state

    opt = ol.Optimizer(ol.Transform(lambda p: ol.transforms.EmptyState(), update), "clip", {})
    params, grads = np.zeros(100), np.full(100, 0.5)
    grads[50] = np.inf
    for check in CHECKS:
        with pytest.raises(FloatingPointError, match=r"non-finite gradient at step 1 in grads"):
            opt.step(params, grads, opt.init(params), check=check)


@pytest.mark.parametrize("check", ["before", "inline", None])
def test_check_must_be_one_of_the_two_policies(check):
    params = np.ones(10)
    opt = ol.adam()
    with pytest.raises(ValueError, match=r"check must be 'before_writing' or "
                                         rf"'while_writing'; got {check!r}"):
        opt.step(params, np.ones(10), opt.init(params), check=check)


def test_skipping_needs_the_check_before_writing():
    params = np.ones(10)
    opt = ol.adam().skip_nonfinite()
    with pytest.raises(ValueError, match="too late to skip the step.*check='before_writing'"):
        opt.step(params, np.ones(10), opt.init(params), check="while_writing")


@pytest.mark.usefixtures("tiny_blocks")
def test_skip_nonfinite_leaves_everything_unchanged():
    rng = np.random.default_rng(8)
    params = rng.normal(size=1000)
    opt = ol.adam(lr=0.01).skip_nonfinite()
    state = opt.step(params, rng.normal(size=1000), opt.init(params))
    before_p, before_s = params.copy(), [a.copy() for a in state_arrays(state.inner)]
    grads = rng.normal(size=1000)
    grads[-1] = np.nan
    new_state = opt.step(params, grads, state)
    assert new_state.count == state.count == 1
    assert_same_bits(params, before_p)
    for a, b in zip(state_arrays(new_state.inner), before_s, strict=True):
        assert_same_bits(a, b)


@pytest.mark.usefixtures("tiny_blocks")
@pytest.mark.parametrize("n", [10, 1000])
def test_nonfinite_update_raises_naming_the_step(n):
    # eps = 0 and a zero gradient: 0/0 in Adam's direction, met only while writing.
    opt = ol.adam(lr=0.1, eps=0.0)
    params = np.ones(n)
    state = opt.init(params)
    with np.errstate(invalid="ignore"), pytest.raises(
            FloatingPointError, match="the update for params became non-finite at step 1"):
        opt.step(params, np.zeros(n), state)


def test_state_arrays_are_updated_in_place_and_returned():
    params = np.ones(50_000)
    opt = ol.adam()
    state = opt.init(params)
    m, v = state.inner.m, state.inner.v
    new = opt.step(params, np.full(50_000, 0.5), state)
    assert new.inner.m is m and new.inner.v is v and new.count == 1
    assert np.all(m == (1 - 0.9) * 0.5) and not np.shares_memory(m, v)


def test_step_allocates_a_small_fraction_of_the_parameter_size():
    n = 1 << 20  # 8 MB of float64
    params, grads = np.ones(n), np.full(n, 0.5)
    opt = ol.adamw()
    state = opt.step(params, grads, opt.init(params))  # first step: scratch blocks are made
    peaks = []
    for _ in range(3):  # (a thread the system held back in a step makes its blocks later)
        tracemalloc.start()
        try:
            state = opt.step(params, grads, state)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert min(peaks) < 0.02 * params.nbytes, f"peaks {peaks} bytes"


def test_schedule_errors_leave_everything_untouched(tiny_blocks):
    params = np.ones(1000)
    opt = ol.adam(lr=lambda count: 0.1 if count == 0 else -1.0)
    state = opt.step(params, np.full(1000, 0.5), opt.init(params))
    before = params.copy()
    with pytest.raises(ValueError, match="lr"):
        opt.step(params, np.full(1000, 0.5), state)
    assert_same_bits(params, before)
