"""The headline measurement: one AdamW (and Adam) step on 10^7 float64 values, optimlab's
fused step against torch's fused CPU kernel, in the same process, many interleaved repeats.

    python benchmarks/fused_vs_torch.py [--repeats 21] [--n 10000000]

Prints, per optimizer, the median over repeats of (optimlab time / torch fused time) taken
within each repeat (<= 1: optimlab is as fast or faster), for optimlab's fused step checking
the gradient before writing (the default) and while writing (``check="while_writing"``: one
pass, like torch's kernel, which checks nothing); each against the memory reference
(``bound.py``: a minimal loop moving the same bytes, which a step can at best approach);
that both gave the bits of ``update`` + ``apply_updates`` on enough values for both
threads; the kernels' compile times (not part of any step time); and why all contenders
update the same arrays: the same step timed on separate copies of its arrays.
"""

import argparse

import numpy as np
import speed

import optimlab as ol


def same_bits(name, check, n=10**6, steps=3):
    """The fused step (with ``check``) equals update + apply_updates, bit for bit, on n
    values."""
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
            fs = opt.step(fast, g, fs, check=check)
    return fast.tobytes() == pure.tobytes() and all(
        a.tobytes() == b.tobytes() for a, b in zip(ol.tree.state_arrays(fs.inner),
                                                   ol.tree.state_arrays(ps.inner), strict=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--n", type=int, default=10**7)
    args = parser.parse_args()
    if speed.torch is None or not ol.fused.available():
        raise SystemExit("this comparison needs torch and Numba: pip install torch==2.13.0 "
                         "'optimlab[jit]' (or the CI lock, requirements-ci.lock)")
    speed.print_machine()
    print()
    rows = speed.step_times(optimizers=("adamw", "adam"), sizes=(args.n,), dtypes=("float64",),
                            kinds=("one array",), contenders=("blocks", "fused", "fused inline",
                                                              "torch foreach", "torch fused"),
                            repeats=args.repeats)
    for r in rows:
        print(f"{r['optimizer']:6s} d={r['n']:.0e} float64: reference (fastest) {r['bound'] * 1e3:6.2f} ms; "
              "median ms:")
        print("       " + ", ".join(f"{c} {r[c] * 1e3:.2f}" for c in (
            "fused", "fused inline", "torch fused", "torch foreach", "blocks")))
        for c, check in (("fused", "before_writing"), ("fused inline", "while_writing")):
            print(f"       {c:12s} / torch fused = {r[c + ' / torch fused']:.3f} (median of "
                  f"{args.repeats} paired repeats); median / reference = {r[c + ' / bound']:.2f};"
                  f" == update + apply_updates, bit for bit: {same_bits(r['optimizer'], check)}")
        print(f"       torch fused / reference = {r['torch fused / bound']:.2f}; the check before "
              f"writing costs: fused / fused inline = {r['fused / fused inline']:.3f} (paired)")
    print()
    speed.print_compile_times()
    print()
    medians, spreads = speed.placement_spread(n=args.n)
    print(f"the same AdamW step (fused, checked while writing) on {len(medians)} copies of its "
          "arrays, median ms per copy:")
    print("       " + ", ".join(f"{t * 1e3:.2f}" for t in medians)
          + f"; slowest / fastest = {max(medians) / min(medians):.2f}; calls on one copy: "
          f"interquartile range / median {np.median(spreads):.1%} (median over the copies)")


if __name__ == "__main__":
    main()
