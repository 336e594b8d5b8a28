"""How fast is optimlab? The measurements behind ``make bench`` and the book's appendix.

Everything is timed side by side in one process: each repeat runs every contender once (in a
rotating order), so that a burst of load on the machine hits them all alike, and the tables
report the best of the repeats (the least disturbed run) and ratios between contenders of
the same repeat loop. Ratios are the figures to quote; absolute times describe one machine.

Contenders for one optimizer step on N values:

- ``optimlab``: ``opt.step(params, grads, state)``, the in-place fast path;
- ``torch loop`` / ``torch foreach`` / ``torch fused``: ``torch.optim`` with
  ``foreach=False``, ``foreach=True`` and ``fused=True`` (when torch is installed, and the
  fused kernel exists for that optimizer on the CPU), on the same data, with as many
  threads as optimlab uses;
- ``floor``: the memory-traffic floor, (arrays read or written) x N values at the copy
  bandwidth NumPy reaches in the same loop (``np.copyto`` of N values moves 2N). An update
  must read params, grads and k state arrays and write params and the k state arrays:
  3 + 2k arrays, 7 for Adam.
"""

import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

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
SIZES = (10**3, 10**4, 10**5, 10**6, 10**7)


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
    info = {"cpu": cpu, "cores": cores, "python": platform.python_version(),
            "numpy": np.__version__, "optimlab threads": ol.fast.THREADS,
            "torch": torch.__version__ if torch else "not installed"}
    if torch:
        info["torch threads"] = torch.get_num_threads()
    if hasattr(os, "getloadavg"):
        info["load average (1 min) before"] = round(os.getloadavg()[0], 2)
    return info


def print_machine(info=None):
    for key, value in (info or machine()).items():
        print(f"{key:28s} {value}")


# -- timing -------------------------------------------------------------------------------------
def interleaved(contenders, repeats=7, min_seconds=2e-3, pause=2e-3, settle=0.0):
    """Seconds per call of each ``name: fn`` in ``contenders``, timed in the same loop.

    A call shorter than ``min_seconds`` is repeated enough times per measurement. Between
    measurements the loop sleeps ``pause`` seconds, so that threads a library leaves
    spinning after its work (torch's OpenMP workers) are idle when the next one starts;
    with ``settle`` > 0 each repeat first waits (up to ``settle`` seconds) for the other
    processes on the machine to leave its CPUs idle. Returns ``{name: sorted list of
    seconds per call}``, one entry per repeat.
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
    return {name: sorted(ts) for name, ts in times.items()}


def _ol_step(opt, params, grads):
    """``opt.step`` on ``params`` and ``grads``, the state carried from call to call."""
    state = opt.init(params)

    def step():
        nonlocal state
        state = opt.step(params, grads, state)

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


def _torch_step(name, mode, p, g):
    """A torch.optim step on copies of ``p`` and ``g``, or None if torch lacks this mode."""
    if torch is None:
        return None
    _, cls, kwargs, _ = OPTIMIZERS[name]
    param = torch.nn.Parameter(torch.from_numpy(p.copy()))
    param.grad = torch.from_numpy(g.copy())
    try:
        opt = getattr(torch.optim, cls)([param], **kwargs, **TORCH_MODES[mode])
        opt.step()
    except (RuntimeError, ValueError, TypeError):  # e.g. no fused RMSprop
        return None
    return opt.step


def step_times(optimizers=tuple(OPTIMIZERS), sizes=SIZES, dtypes=("float64", "float32"),
               repeats=7, with_torch=True, seed=0, settle=0.0):
    """One row per (optimizer, dtype, N): best seconds per step of every contender
    (``settle``: see :func:`interleaved`).

    Each row: ``optimizer, dtype, n, arrays`` (the floor's count) and seconds for
    ``optimlab``, ``floor`` and each ``torch ...`` mode available (missing ones: None).
    """
    rows = []
    rng = np.random.default_rng(seed)
    for dtype in dtypes:
        for n in sizes:
            p = rng.standard_normal(n).astype(dtype)
            g = (0.1 * rng.standard_normal(n)).astype(dtype)
            src, dst = np.ones(n, dtype), np.empty(n, dtype)
            for name in optimizers:
                make, _, _, k = OPTIMIZERS[name]
                contenders = {"optimlab": _ol_step(make(), p.copy(), g),
                              "copy": functools.partial(np.copyto, dst, src)}
                if with_torch:
                    for mode in TORCH_MODES:
                        step = _torch_step(name, mode, p, g)
                        if step is not None:
                            contenders[mode] = step
                times = interleaved(contenders, repeats, settle=settle)
                row = {"optimizer": name, "dtype": dtype, "n": n, "arrays": 3 + 2 * k}
                row.update({key: ts[0] for key, ts in times.items()})
                row["optimlab median"] = float(np.median(times["optimlab"]))
                row["floor"] = row.pop("copy") * row["arrays"] / 2
                for mode in TORCH_MODES:
                    row.setdefault(mode, None)
                rows.append(row)
                del contenders
    return rows


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:9.3f}"


def _ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:6.2f}"


def print_step_table(rows):
    """The step-time table: best ms per step, and ratios (torch / optimlab > 1: optimlab is
    faster; optimlab / floor: how far above the memory-traffic floor)."""
    has_torch = any(r.get(mode) is not None for r in rows for mode in TORCH_MODES)
    head = f"{'optimizer':9s} {'dtype':7s} {'N':>9s} {'optimlab ms':>11s} {'/floor':>6s}"
    if has_torch:
        head += "".join(f" {m.split()[1] + '/ol':>11s}" for m in TORCH_MODES)
        head += "".join(f" {m.split()[1] + ' ms':>10s}" for m in TORCH_MODES)
    print(head)
    print("-" * len(head))
    for r in rows:
        line = (f"{r['optimizer']:9s} {r['dtype']:7s} {r['n']:9.0e} {_ms(r['optimlab']):>11s} "
                f"{_ratio(r['optimlab'], r['floor']):>6s}")
        if has_torch:
            line += "".join(f" {_ratio(r[m], r['optimlab']):>11s}" for m in TORCH_MODES)
            line += "".join(f" {_ms(r[m]):>10s}" for m in TORCH_MODES)
        print(line)


def plot_step_times(rows, optimizer="adam", dtype="float64", axes=None):
    """Left: ns per value against N (optimlab, torch's modes, the floor) for one optimizer;
    right: torch foreach time / optimlab time for every optimizer (> 1: optimlab is faster)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    left, right = axes
    colors = ol.plotting.COLORS if hasattr(ol.plotting, "COLORS") else [None] * 8
    picked = [r for r in rows if r["optimizer"] == optimizer and r["dtype"] == dtype]
    n = np.array([r["n"] for r in picked])
    series = ["optimlab", *TORCH_MODES, "floor"]
    for key, color in zip(series, colors, strict=False):
        t = np.array([np.nan if r[key] is None else r[key] for r in picked], dtype=float)
        if np.isfinite(t).any():
            style = ":" if key == "floor" else "-"
            left.loglog(n, t / n * 1e9, style, marker="o", ms=3, color=color,
                        label="memory floor" if key == "floor" else key)
    left.set_xlabel("N (values per array)")
    left.set_ylabel("ns per value")
    left.set_title(f"{optimizer}, {dtype}: time of one step")
    left.legend(fontsize="small")
    left.grid(True, which="both", alpha=0.3)
    for name, color in zip(OPTIMIZERS, colors, strict=False):
        picked = [r for r in rows if r["optimizer"] == name and r["dtype"] == dtype
                  and r.get("torch foreach") is not None]
        if picked:
            right.semilogx([r["n"] for r in picked],
                           [r["torch foreach"] / r["optimlab"] for r in picked],
                           marker="o", ms=3, color=color, label=name)
    right.axhline(1.0, color="gray", lw=1)
    right.set_xlabel("N (values per array)")
    right.set_ylabel("torch foreach time / optimlab time")
    right.set_title(f"speed-up over torch foreach, {dtype}")
    right.grid(True, which="both", alpha=0.3)
    if right.lines[1:]:
        right.legend(fontsize="small")
    return axes


# -- sweeps -------------------------------------------------------------------------------------
def sweep_speedups(ks=(1, 4, 16, 64, 256, 1024), steps=100, seed=0):
    """Adam on the 2-D Rosenbrock function for K learning rates: one batched run (lr of shape
    (K, 1), params (K, 2)) against K separate runs, all of ``steps`` updates with
    :func:`optimlab.run`. Returns rows ``k, batched, separate`` (seconds) and checks that
    the batched rows equal the separate runs."""
    objective = ol.objectives.rosenbrock()
    k_max = max(ks)
    lrs = np.geomspace(1e-3, 1e-1, k_max)
    x0 = np.array([-1.5, 2.0])
    separate, elapsed, finals = {}, 0.0, []
    for k in range(k_max):
        start = time.perf_counter()
        finals.append(ol.run(ol.adam(lr=float(lrs[k])), objective, x0, steps).final)
        elapsed += time.perf_counter() - start
        if k + 1 in ks:
            separate[k + 1] = elapsed
    rows = []
    for k in ks:
        batched = interleaved({"batched": lambda k=k: ol.run(
            ol.adam(lr=lrs[:k, None]), objective, np.tile(x0, (k, 1)), steps)}, repeats=3,
            min_seconds=0)["batched"][0]
        rows.append({"k": k, "batched": batched, "separate": separate[k]})
    batch = ol.run(ol.adam(lr=lrs[:, None]), objective, np.tile(x0, (k_max, 1)), steps).final
    np.testing.assert_allclose(batch, np.array(finals), rtol=1e-12, atol=1e-15)
    return rows


def print_sweep_table(rows, steps=100):
    print(f"Adam on Rosenbrock, {steps} steps per run: K runs as one batch vs one at a time")
    print(f"{'K':>5s} {'batched ms':>11s} {'separate ms':>12s} {'speed-up':>9s}")
    for r in rows:
        print(f"{r['k']:5d} {r['batched'] * 1e3:11.2f} {r['separate'] * 1e3:12.1f} "
              f"{r['separate'] / r['batched']:9.1f}")


def heatmap_share(steps=60, grid=12, n_train=300, hidden=None):
    """The AdamW heatmap experiment in miniature (as in the AdamW chapter): ``grid`` x
    ``grid`` (lr, weight decay) pairs of softmax regression (or an MLP with ``hidden`` units)
    on the digits, trained as one batch with ``opt.step``. Returns seconds spent in the
    model's loss and gradient and in the optimizer, summed over ``steps``."""
    digits = ol.datasets.load_digits()
    X, y = digits.X[:n_train], digits.y[:n_train]
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)
    lrs, decays = np.meshgrid(10.0 ** np.linspace(-3, -0.25, grid),
                              10.0 ** np.linspace(-5, 0.5, grid))
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
def step_memory(optimizers=tuple(OPTIMIZERS), n=10**6, dtype="float64"):
    """Peak bytes allocated (tracemalloc) during one ``opt.step`` once its scratch blocks
    exist, and during the pure ``update`` + ``apply_updates``, for comparison; ``scratch``:
    the bytes of scratch blocks held by all threads."""
    rows = []
    for name in optimizers:
        make = OPTIMIZERS[name][0]
        opt = make()
        params, grads = np.ones(n, dtype), np.full(n, 0.5, dtype)
        state = opt.step(params, grads, opt.init(params))  # the scratch blocks exist from here
        later = _peak(opt.step, params, grads, state)
        pure = _peak(lambda *args: ol.apply_updates(params, opt.update(*args)[0]),  # noqa: B023
                     grads, state, params)
        rows.append({"optimizer": name, "n": n, "dtype": dtype, "param bytes": params.nbytes,
                     "step": later, "scratch": ol.fast.scratch_bytes(), "pure": pure})
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
    print("scratch: the blocks all threads keep from step to step (made once, whatever the N)")
    print(f"{'optimizer':9s} {'N':>9s} {'dtype':>8s} {'opt.step':>9s} {'pure update':>12s} "
          f"{'scratch KiB':>12s}")
    for r in rows:
        size = r["param bytes"]
        print(f"{r['optimizer']:9s} {r['n']:9.0e} {r['dtype']:>8s} {r['step'] / size:9.3%} "
              f"{r['pure'] / size:12.0%} {r['scratch'] / 1024:12.0f}")


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
        if r["optimizer"] in ("adam", "adamw") and r["dtype"] == "float64" and r["n"] == 10**7:
            if r.get("torch foreach") is not None:
                ratio = r["optimlab"] / r["torch foreach"]
                out.append((f"{r['optimizer']} 1e7 float64: optimlab / torch foreach",
                            ratio, "<= 1", ratio <= 1))
            ratio = r["optimlab"] / r["floor"]
            out.append((f"{r['optimizer']} 1e7 float64: optimlab / memory floor", ratio,
                        "<= 1.5", ratio <= 1.5))
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
        out.append(("AdamW heatmap: optimizer's share of the run time", frac, "small",
                    frac <= 0.25))
    return out


def print_targets(rows):
    print(f"{'target':58s} {'measured':>9s} {'goal':>7s}  met")
    for what, value, goal, met in rows:
        print(f"{what:58s} {value:9.3g} {goal:>7s}  {'yes' if met else 'NO'}")


def save(results, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))
