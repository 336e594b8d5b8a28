"""How fast is optimlab? The measurements behind ``make bench`` and the book's appendix.

Everything is timed side by side in one process: each repeat times every contender (a
calibrated number of calls, at least 2 ms, in a rotating order), so that a burst of load on
the machine hits them all alike, and the tables report medians over the repeats: of each
contender's time, and of its ratio to another contender timed in the same repeat. Ratios are
the figures to quote; absolute times describe one machine, and on a shared machine they are
noisy.

Contenders for one optimizer step on d values (one array, a list of 100 arrays of d/100
values, or a batch of 100 runs of d/100 values with one learning rate per run):

- ``pure``: ``opt.update`` + ``ol.apply_updates`` (new arrays every step; one array only);
- ``blocks``: ``opt.step`` replaying the traced rule on cache-sized blocks with NumPy;
- ``fused``: ``opt.step`` with the loop compiled from the same trace (needs Numba), every
  gradient checked for NaN and infinity before anything is written (the default);
- ``fused inline``: the same with ``check="while_writing"``: the kernel checks each
  gradient as it reads it, in its one pass (what torch's fused kernel does not do at all);
- ``torch loop`` / ``torch foreach`` / ``torch fused``: ``torch.optim`` with
  ``foreach=False`` (its default on CPU), ``foreach=True`` (one call per operation over
  the list of tensors; on CPU a loop of per-tensor kernels) and ``fused=True`` (when torch
  is installed), on the same data (a batch of runs: one parameter group, with its own
  learning rate, per run), on :func:`torch_threads` threads;
- ``bound``: the memory reference (``bound.py``): a minimal loop reading ``params``,
  ``grads`` and the k state arrays and writing ``params`` and the state, nothing else, on
  the same threads as ``opt.step``.

**Every contender of a row updates the same arrays** (``pure`` aside, which makes new ones):
the step backends share the params and the state arrays, torch's optimizers are given
tensors viewing them (:func:`_share_state`), and the reference reads and writes them too.
Where the memory lies is not the contenders' doing, so it must not differ between them: on
a virtual machine, copies of the same arrays allocated one after the other can take
different times for the same step (:func:`placement_spread` measures the spread between
copies next to the spread of the calls on one copy).

Every contender is reported as its median time over the repeats divided by the reference's
best (fastest, least disturbed) repeat, timed in the same loop. The reference is a time a
step can at best approach, not a floor: noise and implementation details can put a
contender at or slightly below it. The fused step is compared with torch's fused kernel,
and the blocks step with torch's foreach mode, as the median over the repeats of the ratio
of their times within a repeat.
"""

import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import bound
import numpy as np

import optimlab as ol

try:
    import torch
except ImportError:  # torch is optional: its columns are left out
    torch = None
else:  # the same number of threads for both (OMP_NUM_THREADS may have set torch's to 1)
    torch.set_num_threads(ol.fast.THREADS)

ROOT = Path(__file__).resolve().parent.parent

# name: (optimlab constructor, torch.optim class name, torch keywords, state arrays k)
OPTIMIZERS = {
    "sgd": (lambda: ol.sgd(lr=0.01, momentum=0.9), "SGD", dict(lr=0.01, momentum=0.9), 1),
    "adagrad": (lambda: ol.adagrad(lr=0.01), "Adagrad", dict(lr=0.01), 1),
    "rmsprop": (lambda: ol.rmsprop(lr=0.01), "RMSprop", dict(lr=0.01), 1),
    "adam": (lambda: ol.adam(lr=1e-3), "Adam", dict(lr=1e-3), 2),
    "adamw": (lambda: ol.adamw(lr=1e-3), "AdamW", dict(lr=1e-3, weight_decay=1e-2), 2),
}
TORCH_MODES = {"torch loop": dict(foreach=False), "torch foreach": dict(foreach=True),
               "torch fused": dict(fused=True)}
CONTENDERS = ("pure", "blocks", "fused", "fused inline", *TORCH_MODES)
KINDS = ("one array", "100 arrays", "100 runs")
PAIRS = (("fused", "torch fused"), ("fused inline", "torch fused"), ("blocks", "torch foreach"),
         ("fused", "fused inline"))
"""The ratios taken within each repeat: optimlab's step over the torch mode it is held to."""
PIECES = 100
SIZES = (10**4, 10**5, 10**6, 10**7)


def torch_threads(n):
    """The number of threads torch gets for a step on ``n`` values: as many as optimlab's
    ``step`` may use, at every size (how to use them is each library's own business;
    optimlab uses one below 512 KiB)."""
    return ol.fast.THREADS


# -- the machine --------------------------------------------------------------------------------
def machine():
    """What the absolute times depend on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    info = {"cpu": cpu, "cores": cores, "last-level cache": _last_level_cache(),
            "python": platform.python_version(),
            "numpy": np.__version__, "optimlab threads": ol.fast.THREADS,
            "torch": torch.__version__ if torch else "not installed"}
    if torch:
        info["torch threads"] = torch_threads(0)
    if hasattr(os, "getloadavg"):
        info["load average (1 min) before"] = round(os.getloadavg()[0], 2)
    return info


def _last_level_cache():
    """The size of the last-level (L3) cache, as the system reports it ("32768K"), or None."""
    try:
        return Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        return None


def last_level_cache_bytes():
    """The last-level cache in bytes, or None when the system does not say."""
    size = _last_level_cache()
    if not size:
        return None
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def print_machine(info=None):
    for key, value in (info or machine()).items():
        print(f"{key:28s} {value}")


# -- timing -------------------------------------------------------------------------------------
def interleaved(contenders, repeats=7, min_seconds=2e-3, pause=2e-3, settle=0.0,
                paired=False):
    """Seconds per call of each ``name: fn`` in ``contenders``, timed in the same loop.

    A call shorter than ``min_seconds`` is repeated enough times per measurement. Between
    measurements the loop sleeps ``pause`` seconds, so that threads a library leaves
    spinning after its work (torch's OpenMP workers) are idle when the next one starts;
    with ``settle`` > 0 each repeat first waits (up to ``settle`` seconds) for the other
    processes on the machine to leave its CPUs idle. Returns ``{name: sorted list of
    seconds per call}``, one entry per repeat (in the order of the repeats if ``paired``,
    so that ratios can be taken within a repeat).
    """
    inner = {}
    for name, fn in contenders.items():
        start = time.perf_counter()
        fn()  # warm up (first-touch page faults, scratch blocks, torch's lazy state)
        once = time.perf_counter() - start
        if once < min_seconds:  # calibrate on a warm call
            start = time.perf_counter()
            fn()
            once = max(time.perf_counter() - start, 1e-7)
        inner[name] = max(1, int(min_seconds / once))
    times = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(repeats):
        if settle:
            wait_for_idle(settle)
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, n = contenders[name], inner[name]
            time.sleep(pause)
            start = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - start) / n)
    return {name: list(ts) if paired else sorted(ts) for name, ts in times.items()}


def _ol_step(opt, params, grads, backend="auto", check="before_writing", state=None):
    """``opt.step`` on ``params`` and ``grads`` with ``backend`` and ``check``, the state
    (``state``'s arrays, or new ones) carried from call to call."""
    state = opt.init(params) if state is None else state

    def step():
        nonlocal state
        with ol.fast.backend(backend):
            state = opt.step(params, grads, state, check=check)

    return step


def _ol_pure(opt, params, grads):
    """``update`` + ``apply_updates``: new params and state every call."""
    state = opt.init(params)

    def step():
        nonlocal params, state
        updates, state = opt.update(grads, state, params)
        params = ol.apply_updates(params, updates)

    return step


def cpu_idle_fraction(seconds=0.1):
    """The fraction of CPU time the machine spent idle over ``seconds`` (Linux; else 1)."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, all

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except OSError:
        return 1.0
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle(timeout, threshold=0.9):
    """Wait until the CPUs are idle (other processes done) or ``timeout`` seconds pass."""
    deadline = time.perf_counter() + timeout
    while cpu_idle_fraction() < threshold and time.perf_counter() < deadline:
        pass


def _lrs(runs):
    return np.geomspace(1e-4, 1e-2, runs)


def _make(name, kind):
    """The optimlab optimizer for a case (a batch of runs: one learning rate per run)."""
    return _batched(name, PIECES) if kind == "100 runs" else OPTIMIZERS[name][0]()


def _batched(name, runs):
    constructor = getattr(ol, name)
    _, _, kwargs, _ = OPTIMIZERS[name]
    return constructor(**{**kwargs, "lr": _lrs(runs)[:, None]})


def _data(n, dtype, kind, rng):
    """params and grads for a case: one array of n values, a list of 100 arrays of n/100,
    or 100 runs of n/100 values as one (100, n/100) array."""
    if kind == "100 arrays":
        p = [rng.standard_normal(n // PIECES).astype(dtype) for _ in range(PIECES)]
        g = [(0.1 * rng.standard_normal(n // PIECES)).astype(dtype) for _ in range(PIECES)]
        return p, g
    shape = (PIECES, n // PIECES) if kind == "100 runs" else (n,)
    return (rng.standard_normal(shape).astype(dtype),
            (0.1 * rng.standard_normal(shape)).astype(dtype))


def _flat(g, params, state):
    """``(grads, params, *state arrays)`` as 1-D views for the reference, or None (a list of
    arrays: the reference then uses arrays of its own)."""
    if isinstance(params, list):
        return None
    return [a.reshape(-1) for a in (g, params, *ol.tree.state_arrays(state.inner))]


def _copy(tree):
    return [a.copy() for a in tree] if isinstance(tree, list) else tree.copy()


def _torch_step(name, mode, p, g, kind="one array", state=None):
    """A torch.optim step on ``p`` and ``g`` (tensors viewing their memory; on copies of ``p``
    without ``state``), its state the arrays of the optimlab state ``state`` (see
    :func:`_share_state`), or None if torch lacks this mode."""
    if torch is None:
        return None
    _, cls, kwargs, _ = OPTIMIZERS[name]
    if kind == "100 runs":
        ps, gs = list(p), list(g)  # one tensor (and one parameter group) per run
    else:
        ps, gs = (p, g) if isinstance(p, list) else ([p], [g])
    params = []
    for pa, ga in zip(ps, gs, strict=True):
        param = torch.nn.Parameter(torch.from_numpy(pa if state is not None else pa.copy()))
        param.grad = torch.from_numpy(ga)
        params.append(param)
    if kind == "100 runs":
        groups = [{"params": [q], "lr": float(lr)} for q, lr in zip(params, _lrs(len(params)),
                                                                     strict=True)]
    else:
        groups = [{"params": params}]
    try:
        opt = getattr(torch.optim, cls)(groups, **kwargs, **TORCH_MODES[mode])
        opt.step()
    except (RuntimeError, ValueError, TypeError):  # e.g. no fused RMSprop
        return None
    if state is not None:
        _share_state(opt, params, _state_rows(state, kind))
    return opt.step


TORCH_STATE = {"SGD": ("momentum_buffer",), "Adagrad": ("sum",), "RMSprop": ("square_avg",),
               "Adam": ("exp_avg", "exp_avg_sq"), "AdamW": ("exp_avg", "exp_avg_sq")}
"""torch's names for the arrays of the state, in the order of optimlab's (``state_arrays``)."""


def _state_rows(state, kind):
    """The arrays of an optimlab state, one tuple per torch parameter (a row per run)."""
    inner = state.inner if isinstance(state.inner, list) else [state.inner]
    per_array = [ol.tree.state_arrays(s) for s in inner]
    if kind == "100 runs":
        return [tuple(a[r] for a in per_array[0]) for r in range(len(per_array[0][0]))]
    return per_array


def _share_state(opt, params, arrays):
    """Make the state of torch optimizer ``opt`` (after one step) tensors viewing ``arrays``
    (one tuple per parameter), so that torch updates the very memory optimlab's steps do."""
    names = TORCH_STATE[type(opt).__name__]
    for param, mine in zip(params, arrays, strict=True):
        state = opt.state[param]
        for key, a in zip(names, mine, strict=True):
            if state[key].shape != a.shape or state[key].dtype != torch.from_numpy(a).dtype:
                raise ValueError(f"torch's {key} does not match optimlab's state array")
            state[key] = torch.from_numpy(a)


def step_times(optimizers=("adam", "adamw"), sizes=SIZES, dtypes=("float64", "float32"),
               kinds=KINDS, contenders=CONTENDERS, repeats=5, with_torch=True, seed=0,
               settle=0.0, threads_for_torch=torch_threads):
    """One row per (optimizer, dtype, kind, d): for every contender its median time and
    that over the memory reference's fastest repeat (``settle``: see :func:`interleaved`;
    ``threads_for_torch(n)``: torch's threads).

    Each row: ``optimizer, dtype, kind, n, bound`` (seconds of the reference's fastest
    repeat), ``bound median``, ``bound how``, ``reads``/``writes`` (bytes per step),
    ``torch threads``, then per contender ``name`` (median seconds, or None if not
    available) and ``name / bound`` (median / the reference's fastest repeat); and
    ``fused / torch fused``, ``fused inline / torch fused``, ``blocks / torch foreach``
    and ``fused / fused inline`` (:data:`PAIRS`), medians over the repeats of
    those ratios within a repeat.
    """
    rows = []
    rng = np.random.default_rng(seed)
    has_fused = ol.fused.available()
    for dtype in dtypes:
        for n in sizes:
            for kind in kinds:
                p, g = _data(n, dtype, kind, rng)
                for name in optimizers:
                    k = OPTIMIZERS[name][3]
                    params = _copy(p)  # updated by every contender of the row but "pure"
                    opt = _make(name, kind)
                    shared = opt.init(params)
                    limit = bound.streams(n, dtype, k, arrays=_flat(g, params, shared))
                    runs = {"bound": limit}
                    for c in contenders:
                        if c == "pure" and kind == "one array":  # (the others alike)
                            runs[c] = _ol_pure(opt, _copy(p), g)
                        elif c == "blocks" or (c == "fused" and has_fused):
                            runs[c] = _ol_step(opt, params, g, backend=c, state=shared)
                        elif c == "fused inline" and has_fused:
                            runs[c] = _ol_step(opt, params, g, "fused", "while_writing", shared)
                        elif c in TORCH_MODES and with_torch:
                            step = _torch_step(name, c, params, g, kind, state=shared)
                            if step is not None:
                                runs[c] = step
                    threads = None
                    if torch is not None:
                        threads, before = threads_for_torch(n), torch.get_num_threads()
                        torch.set_num_threads(threads)
                    try:
                        times = interleaved(runs, repeats, settle=settle, paired=True)
                    finally:
                        if torch is not None:
                            torch.set_num_threads(before)
                    b = float(np.min(times["bound"]))  # the least disturbed repeat
                    row = {"optimizer": name, "dtype": dtype, "kind": kind, "n": n,
                           "bound": b, "bound median": float(np.median(times["bound"])),
                           "bound how": limit.how,
                           "reads": limit.reads, "writes": limit.writes,
                           "torch threads": threads}
                    for c in contenders:
                        ts = times.get(c)
                        row[c] = None if ts is None else float(np.median(ts))
                        row[f"{c} / bound"] = None if ts is None else float(np.median(ts) / b)
                    for a, c in PAIRS:
                        row[f"{a} / {c}"] = float(np.median(
                            np.array(times[a]) / np.array(times[c]))) if (
                            a in times and c in times) else None
                    rows.append(row)
                    del runs, times
    return rows


def placement_spread(n=10**7, copies=6, repeats=15, name="adamw"):
    """The same fused step (checked while writing) on each of ``copies`` copies of its
    arrays (params, grads and state), allocated one after the other and timed in the same
    loop (the blocks backend without Numba): ``(medians, spreads)``, per copy the median
    seconds and the interquartile range of its calls over that median. How much where the
    memory lies moves a step, next to how much the calls on one copy vary."""
    rng = np.random.default_rng(0)
    p, g = _data(n, "float64", "one array", rng)
    backend = "fused" if ol.fused.available() else "blocks"
    steps = {k: _ol_step(_make(name, "one array"), p.copy(), g.copy(), backend,
                         "while_writing") for k in range(copies)}
    times = interleaved(steps, repeats, min_seconds=0)
    medians = [float(np.median(times[k])) for k in range(copies)]
    spreads = [float(np.subtract(*np.percentile(times[k], [75, 25])) / m)
               for k, m in enumerate(medians)]
    return medians, spreads


def _ms(seconds):
    return f"{'-':>9s}" if seconds is None else f"{seconds * 1e3:9.3f}"


def _r(x, width=7):
    return f"{'-':>{width}s}" if x is None else f"{x:{width}.2f}"


SHORT = {"pure": "pure", "blocks": "blocks", "fused": "fused", "fused inline": "fu.inl",
         "torch loop": "t.loop", "torch foreach": "t.forea", "torch fused": "t.fused"}


def print_step_table(rows, contenders=CONTENDERS):
    """The memory reference's fastest time, every contender's median time / that, and
    optimlab's fused step over torch's fused step, checking before writing (fu/t.fu) and
    while writing (inl/t.fu) (<= 1: optimlab's is as fast or faster); t.thr: torch's
    threads."""
    head = (f"{'optimizer':9s} {'dtype':7s} {'kind':10s} {'d':>7s} {'ref ms':>9s} "
            + " ".join(f"{SHORT[c]:>7s}" for c in contenders)
            + f" {'fu/t.fu':>7s} {'inl/t.fu':>8s} t.thr")
    print("median time / the memory reference's fastest repeat; fu/t.fu and inl/t.fu: median "
          "over repeats of the ratio within a repeat")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['optimizer']:9s} {r['dtype']:7s} {r['kind']:10s} {r['n']:7.0e} "
              f"{_ms(r['bound'])} " + " ".join(_r(r.get(f'{c} / bound')) for c in contenders)
              + f" {_r(r['fused / torch fused'])} {_r(r['fused inline / torch fused'], 8)}"
              + f" {r.get('torch threads') or '-':>5}")


def print_time_table(rows, contenders=CONTENDERS):
    """Median ms per step of every contender (the reference: its fastest repeat)."""
    head = (f"{'optimizer':9s} {'dtype':7s} {'kind':10s} {'d':>7s} {'reference':>9s} "
            + " ".join(f"{SHORT[c]:>9s}" for c in contenders))
    print("median ms per step (reference: fastest repeat)")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['optimizer']:9s} {r['dtype']:7s} {r['kind']:10s} {r['n']:7.0e} "
              f"{_ms(r['bound'])} " + " ".join(_ms(r.get(c)) for c in contenders))


def print_bandwidth(rows):
    """The memory reference's bytes read and bytes written per second (its fastest repeat),
    for each size."""
    seen = set()
    print(f"{'dtype':7s} {'d':>7s} {'k':>2s} {'read GB/s':>10s} {'written GB/s':>13s}  how")
    for r in rows:
        key = (r["dtype"], r["n"], r["reads"])
        if key in seen or r["kind"] != "one array":
            continue
        seen.add(key)
        k = r["reads"] // (r["n"] * np.dtype(r["dtype"]).itemsize) - 2
        print(f"{r['dtype']:7s} {r['n']:7.0e} {k:2d} {r['reads'] / r['bound'] / 1e9:10.1f} "
              f"{r['writes'] / r['bound'] / 1e9:13.1f}  {r['bound how']}, "
              f"{ol.fast.THREADS} threads")


def print_compile_times():
    """The kernels Numba compiled in this process, and how long each took."""
    if not ol.fused.compile_log:
        print("no kernel compiled (Numba not installed, or no fused step run)")
        return
    print(f"{'dtype':8s} {'layout':14s} {'operations':>10s} {'compile s':>10s}")
    for e in ol.fused.compile_log:
        print(f"{e['dtype']:8s} {e['layout']:14s} {e['operations']:10d} {e['seconds']:10.2f}")


def plot_step_times(rows, optimizer="adamw", dtype="float64", kind="one array", ax=None):
    """Time per step / memory reference against d for one optimizer, dtype and kind."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.3), constrained_layout=True)
    picked = [r for r in rows if r["optimizer"] == optimizer and r["dtype"] == dtype
              and r["kind"] == kind]
    n = np.array([r["n"] for r in picked])
    series = ["blocks", "fused", "fused inline", "torch foreach", "torch fused"]
    for i, key in enumerate(series):
        y = np.array([np.nan if r.get(f"{key} / bound") is None else r[f"{key} / bound"]
                      for r in picked], dtype=float)
        if np.isfinite(y).any():
            style = ol.plotting.style(i) if hasattr(ol.plotting, "style") else {}
            ax.loglog(n, y, label=key, **style)
    ax.axhline(1.0, color="gray", lw=1)
    ax.set_xlabel("d (values)")
    ax.set_ylabel("time / memory reference")
    ax.set_title(f"{optimizer}, {dtype}, {kind}")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return ax


# -- sweeps -------------------------------------------------------------------------------------
def sweep_speedups(ks=(1, 4, 16, 64, 256, 1024), steps=100, repeats=3):
    """Adam on the 2-D Rosenbrock function for K learning rates: one batched run (lr of shape
    (K, 1), params (K, 2)) against K separate runs, all of ``steps`` updates with
    :func:`optimlab.run`. Both are timed the same way: after untimed warm-up runs, the
    best of ``repeats`` timed passes (the separate runs: passes over the first K
    configurations, one run after the other). Returns rows ``k, batched, separate``
    (seconds) and ``identical``: whether row k of the batch equals the k-th separate run bit
    for bit, for every k."""
    objective = ol.objectives.rosenbrock()
    k_max = max(ks)
    lrs = np.geomspace(1e-3, 1e-1, k_max)
    x0 = np.array([-1.5, 2.0])

    def batched_run(k):
        return ol.run(ol.adam(lr=lrs[:k, None]), objective, np.tile(x0, (k, 1)), steps)

    ol.run(ol.adam(lr=float(lrs[0])), objective, x0, steps)  # warm-ups, untimed
    for k in ks:
        batched_run(k)
    separate = {k: np.inf for k in ks}
    batched = {k: np.inf for k in ks}
    for _ in range(repeats):
        gc.collect()  # no collection of an earlier pass's garbage inside a timed one
        for k in ks:
            start = time.perf_counter()
            batched_run(k)
            batched[k] = min(batched[k], time.perf_counter() - start)
        gc.collect()
        elapsed, finals = 0.0, []
        for k in range(k_max):
            start = time.perf_counter()
            finals.append(ol.run(ol.adam(lr=float(lrs[k])), objective, x0, steps).final)
            elapsed += time.perf_counter() - start
            if k + 1 in ks:
                separate[k + 1] = min(separate[k + 1], elapsed)
    batch = batched_run(k_max).final
    identical = batch.shape == (k_max, 2) and all(
        batch[k].tobytes() == finals[k].tobytes() for k in range(k_max))
    return [{"k": k, "batched": batched[k], "separate": separate[k], "identical": identical}
            for k in ks]


def print_sweep_table(rows, steps=100):
    print(f"Adam on Rosenbrock, {steps} steps per run: K runs as one batch vs one at a time")
    print("(each: the best of the timed passes, after untimed warm-up runs)")
    print(f"{'K':>5s} {'batched ms':>11s} {'separate ms':>12s} {'speed-up':>9s}")
    for r in rows:
        print(f"{r['k']:5d} {r['batched'] * 1e3:11.2f} {r['separate'] * 1e3:12.1f} "
              f"{r['separate'] / r['batched']:9.1f}")
    print(f"row k of the batch == the k-th separate run, bit for bit: {rows[0]['identical']}")


def heatmap_share(steps=60, n_train=300, hidden=None):
    """The AdamW heatmap experiment in miniature, on the AdamW chapter's grid: 12 learning
    rates 1e-3 ... 10^-0.25 times 11 weight decays 1e-5 ... 1 (132 pairs) of softmax
    regression (or an MLP with ``hidden`` units) on the digits, trained as one batch with
    ``opt.step``. Returns seconds spent in the model's loss and gradient and in the
    optimizer, summed over ``steps``."""
    digits = ol.datasets.load_digits()
    X, y = digits.X[:n_train], digits.y[:n_train]
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)
    lrs, decays = np.meshgrid(10.0 ** np.arange(-3.0, 0.0, 0.25),
                              10.0 ** np.arange(-5.0, 0.1, 0.5))
    lr_k, decay_k = lrs.ravel(), decays.ravel()
    if hidden:
        model = ol.models.MLP(n_hidden=hidden)
        params = model.init_params(0, batch=lr_k.size)
    else:
        model = ol.models.SoftmaxRegression()
        params = model.init_params(batch=lr_k.size)

    def per_leaf(values, p):
        return values.reshape(-1, *(1,) * (p.ndim - 1))

    cosine = ol.schedules.cosine(1.0, steps)
    opts = {name: ol.adamw(lr=per_leaf(lr_k, p), weight_decay=per_leaf(decay_k, p),
                           schedule_multiplier=cosine) for name, p in params.items()}
    states = {name: opts[name].init(p) for name, p in params.items()}
    _, grads = model.loss_and_grad(params, X, y)  # compile the kernels (if any) untimed
    for name, p in params.items():
        opts[name].step(p.copy(), grads[name], opts[name].init(p))
    model_time = opt_time = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        _, grads = model.loss_and_grad(params, X, y)
        middle = time.perf_counter()
        for name, p in params.items():
            states[name] = opts[name].step(p, grads[name], states[name])
        opt_time += time.perf_counter() - middle
        model_time += middle - start
    values = sum(p.size for p in params.values())
    return {"model": model_time, "optimizer": opt_time, "steps": steps, "runs": lr_k.size,
            "values": values, "name": repr(model)}


def print_heatmap_share(result):
    total = result["model"] + result["optimizer"]
    print(f"{result['name']}: {result['runs']} runs in one batch ({result['values']} values), "
          f"{result['steps']} steps")
    print(f"  model loss and gradient {result['model'] * 1e3:8.1f} ms")
    print(f"  optimizer (opt.step)    {result['optimizer'] * 1e3:8.1f} ms   "
          f"share of the run: {result['optimizer'] / total:.1%}")


# -- memory -------------------------------------------------------------------------------------
def step_memory(optimizers=tuple(OPTIMIZERS), n=10**6, dtype="float64",
                backends=("blocks", "fused")):
    """Peak bytes allocated (tracemalloc) during one ``opt.step`` once its scratch blocks
    (or compiled kernel) exist, per backend, and during the pure ``update`` +
    ``apply_updates``, for comparison; ``scratch``: the bytes of scratch blocks held by all
    threads of the process after this optimizer's steps (shared by every optimizer and dtype
    stepped so far: not this optimizer's own; the fused backend needs none)."""
    rows = []
    backends = [b for b in backends if b != "fused" or ol.fused.available()]
    for name in optimizers:
        make = OPTIMIZERS[name][0]
        opt = make()
        params, grads = np.ones(n, dtype), np.full(n, 0.5, dtype)
        row = {"optimizer": name, "n": n, "dtype": dtype, "param bytes": params.nbytes}
        for backend in backends:
            with ol.fast.backend(backend):
                state = opt.step(params, grads, opt.init(params))  # scratch, kernels made
                row[f"step {backend}"] = _peak(opt.step, params, grads, state)
        row["step"] = max(row[f"step {b}"] for b in backends)
        row["pure"] = _peak(lambda *args: ol.apply_updates(params, opt.update(*args)[0]),  # noqa: B023
                            grads, state, params)
        row["scratch"] = ol.fast.scratch_bytes()
        rows.append(row)
    return rows


def _peak(fn, *args):
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def print_memory_table(rows):
    print("Peak memory allocated during one step (tracemalloc), as a share of the params' size;")
    print("scratch: the blocks all threads of the process keep from step to step (made once,")
    print("whatever the d; shared by every optimizer stepped so far, not per optimizer)")
    backends = [k.split()[1] for k in rows[0] if k.startswith("step ")]
    print(f"{'optimizer':9s} {'d':>9s} {'dtype':>8s} "
          + " ".join(f"{'step ' + b:>12s}" for b in backends)
          + f" {'pure update':>12s} {'scratch KiB':>12s}")
    for r in rows:
        size = r["param bytes"]
        print(f"{r['optimizer']:9s} {r['n']:9.0e} {r['dtype']:>8s} "
              + " ".join(f"{r['step ' + b] / size:12.3%}" for b in backends)
              + f" {r['pure'] / size:12.0%} {r['scratch'] / 1024:12.0f}")


# -- the book's notebooks -----------------------------------------------------------------------
def notebook_times(book=ROOT / "book", timeout=600):
    """Seconds to execute each notebook of the book, top to bottom in a fresh kernel, with
    ``jupyter nbconvert --execute`` (outputs go to a temporary directory)."""
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for nb in sorted(Path(book).glob("*.ipynb")):
            cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                   "--execute", f"--ExecutePreprocessor.timeout={timeout}", "--output-dir",
                   out, str(nb)]
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=nb.parent)
            rows.append({"notebook": nb.name, "seconds": time.perf_counter() - start,
                         "ok": done.returncode == 0})
    return rows


def print_notebook_table(rows):
    print(f"{'notebook':32s} {'seconds':>8s}")
    for r in rows:
        print(f"{r['notebook']:32s} {r['seconds']:8.1f}{'' if r['ok'] else '  FAILED'}")
    print(f"{'all':32s} {sum(r['seconds'] for r in rows):8.1f}")


# -- the targets --------------------------------------------------------------------------------
def targets(step_rows, memory_rows=(), sweep_rows=(), share=None):
    """The performance targets and whether the measurements meet them: (what, value, goal,
    met) rows."""
    out = []
    for r in step_rows:
        if (r["optimizer"] in ("adam", "adamw") and r["dtype"] == "float64"
                and r["n"] == 10**7 and r["kind"] == "one array"):
            if r.get("fused inline / torch fused") is not None:
                ratio = r["fused inline / torch fused"]
                out.append((f"{r['optimizer']} 1e7 float64: fused step, checked while writing "
                            "/ torch fused", ratio, "<= 1", ratio <= 1))
            if r.get("fused / torch fused") is not None:  # reported; it does more than torch
                out.append((f"{r['optimizer']} 1e7 float64: fused step, checked before writing "
                            "/ torch fused", r["fused / torch fused"], "-", None))
            if r.get("blocks / torch foreach") is not None:
                ratio = r["blocks / torch foreach"]
                out.append((f"{r['optimizer']} 1e7 float64: blocks step / torch foreach", ratio,
                            "<= 1", ratio <= 1))
            best = r.get("fused / bound") or r.get("blocks / bound")
            out.append((f"{r['optimizer']} 1e7 float64: optimlab step / memory reference",
                        best, "<= 1.5", best <= 1.5))
    for r in memory_rows:
        frac = r["step"] / r["param bytes"]
        out.append((f"{r['optimizer']}: memory allocated per step / params", frac, "<= 0.05",
                    frac <= 0.05))
    for r in sweep_rows:
        if r["k"] == 1024:
            speedup = r["separate"] / r["batched"]
            out.append(("sweep K = 1024: speed-up of one batch", speedup, ">= 100",
                        speedup >= 100))
    if share is not None:
        frac = share["optimizer"] / (share["model"] + share["optimizer"])
        out.append(("AdamW heatmap: optimizer's share of the run time", frac, "<= 0.25",
                    frac <= 0.25))
    return out


def print_targets(rows):
    """The targets; a row with goal "-" (met None) is reported, not a target."""
    print(f"{'target':78s} {'measured':>9s} {'goal':>7s}  met")
    for what, value, goal, met in rows:
        print(f"{what:78s} {value:9.3g} {goal:>7s}  {'-' if met is None else 'yes' if met else 'NO'}")


def save(results, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))
