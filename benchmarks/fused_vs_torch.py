"""The headline measurement: one AdamW (and Adam) step on 10^7 float64 values, optimlab's
fused step against torch's fused CPU kernel, in the same process, many interleaved repeats.

    python benchmarks/fused_vs_torch.py [--repeats 21] [--n 10000000]

Prints, per optimizer, the median over repeats of (optimlab time / torch fused time) taken
within each repeat (<= 1: optimlab is as fast or faster), both against the memory
reference (``bound.py``: a minimal loop moving the same bytes, which a step can at best
approach), that the fused step gave the bits of ``update`` + ``apply_updates`` on values
enough for both threads, and the kernels' compile times (not part of any step time).
"""

import argparse

import numpy as np
import speed

import optimlab as ol


def same_bits(name, n=10**6, steps=3):
    """The fused step equals update + apply_updates, bit for bit, on n values."""
    rng = np.random.default_rng(1)
    opt = speed.OPTIMIZERS[name][0]()
    p0 = rng.standard_normal(n)
    grads = [rng.standard_normal(n) * 0.1 for _ in range(steps)]
    pure, ps = p0.copy(), opt.init(p0)
    for g in grads:
        u, ps = opt.update(g, ps, pure)
        pure = ol.apply_updates(pure, u)
    fast, fs = p0.copy(), opt.init(p0)
    with ol.fast.backend("fused"):
        for g in grads:
            fs = opt.step(fast, g, fs)
    return fast.tobytes() == pure.tobytes() and all(
        a.tobytes() == b.tobytes() for a, b in zip(ol.tree.state_arrays(fs.inner),
                                                   ol.tree.state_arrays(ps.inner), strict=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--n", type=int, default=10**7)
    args = parser.parse_args()
    speed.print_machine()
    print()
    rows = speed.step_times(optimizers=("adamw", "adam"), sizes=(args.n,), dtypes=("float64",),
                            kinds=("one array",), contenders=("blocks", "fused", "torch foreach",
                                                              "torch fused"),
                            repeats=args.repeats)
    for r in rows:
        print(f"{r['optimizer']:6s} d={r['n']:.0e} float64: reference (fastest) {r['bound'] * 1e3:6.2f} ms, "
              f"fused {r['fused'] * 1e3:6.2f} ms, torch fused {r['torch fused'] * 1e3:6.2f} ms, "
              f"torch foreach {r['torch foreach'] * 1e3:6.2f} ms, blocks {r['blocks'] * 1e3:6.2f} ms")
        print(f"       fused / torch fused = {r['fused / torch fused']:.3f} (median of "
              f"{args.repeats} paired repeats); median fused / reference = {r['fused / bound']:.2f}; "
              f"torch fused / reference = {r['torch fused / bound']:.2f}")
        print(f"       fused step == update + apply_updates, bit for bit: "
              f"{same_bits(r['optimizer'])}")
    print()
    speed.print_compile_times()


if __name__ == "__main__":
    main()
