"""The benchmark scripts measure what they say: every contender of a row updates the same
memory, and the headline script runs end to end (on small arrays; no timing is asserted:
performance is measured by ``benchmarks/``, never by tests). torch and Numba are needed
(skipped without them, unless ``OPTIMLAB_REQUIRE_TORCH``/``OPTIMLAB_REQUIRE_JIT`` is set)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_fast_path import require_numba

import optimlab as ol

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import speed  # noqa: E402  (imports bound.py from the same folder)


@pytest.mark.parametrize("name", sorted(speed.OPTIMIZERS))
@pytest.mark.parametrize("kind", speed.KINDS)
def test_torch_steps_the_arrays_optimlab_steps(torch, name, kind):
    rng = np.random.default_rng(0)
    p, g = speed._data(2000, "float64", kind, rng)
    opt = speed._make(name, kind)
    state = opt.init(p)
    for mode in speed.TORCH_MODES:
        step = speed._torch_step(name, mode, p, g, kind, state=state)
        if step is None:  # this torch lacks the mode (no fused RMSprop, say)
            continue
        torch_opt = step.__self__
        mine = speed._state_rows(state, kind)
        params = [q for group in torch_opt.param_groups for q in group["params"]]
        for q, arrays in zip(params, mine, strict=True):
            tensors = [torch_opt.state[q][key] for key in speed.TORCH_STATE[type(torch_opt).__name__]]
            assert all(np.shares_memory(t.numpy(), a) for t, a in zip(tensors, arrays, strict=True))
        for q, a in zip(params, p if kind == "100 arrays" else list(np.atleast_2d(p)), strict=True):
            assert np.shares_memory(q.detach().numpy(), a)
        before = [a.copy() for a in ol.tree.state_arrays(
            state.inner if kind != "100 arrays" else tuple(state.inner))]
        step()
        after = ol.tree.state_arrays(state.inner if kind != "100 arrays" else tuple(state.inner))
        assert any(not np.array_equal(a, b) for a, b in zip(after, before, strict=True))


def test_the_reference_runs_on_the_given_arrays():
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(70_000) for _ in range(4)]
    expected_p = arrays[1] + arrays[0]
    expected_s = arrays[2] / 2 + arrays[0] ** 2
    copies = [a.copy() for a in arrays]
    run = speed.bound.streams(70_000, np.float64, 2, arrays=copies)
    run()
    np.testing.assert_allclose(copies[1], expected_p, rtol=1e-15)
    np.testing.assert_allclose(copies[2], expected_s, rtol=1e-15)
    assert (run.reads, run.writes) == (4 * 70_000 * 8, 3 * 70_000 * 8)
    with pytest.raises(ValueError, match="4 contiguous 1-D arrays of 70000 float64"):
        speed.bound.streams(70_000, np.float64, 2, arrays=copies[:3])


def test_fused_vs_torch_runs(torch):
    require_numba()
    done = subprocess.run([sys.executable, str(BENCHMARKS / "fused_vs_torch.py"), "--n",
                           "300000", "--repeats", "1"], capture_output=True, text=True,
                          cwd=BENCHMARKS, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("bit for bit: True") == 4, done.stdout
    assert "fused inline / torch fused" in done.stdout
