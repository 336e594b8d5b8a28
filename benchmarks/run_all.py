"""Print every performance table of optimlab (``make bench``), and the targets they check.

    python benchmarks/run_all.py              # everything (a few minutes)
    python benchmarks/run_all.py --quick      # d up to 1e6, fewer repeats, no notebooks
    python benchmarks/fused_vs_torch.py       # AdamW/Adam at 1e7 float64, 21 paired repeats

Repeats: 5 per measurement at every size (3 with --quick; --repeats overrides).
The torch columns appear when torch is installed (``pip install torch==2.13.0``); torch gets
as many threads as optimlab (``speed.torch_threads``). Results are
also written as JSON to ``benchmarks/results/`` and the step-time plot as a PNG there.
Timings are noisy on a shared machine: every contender runs in the same loop, in a rotating
order; the tables report each contender's median time divided by the memory reference's
fastest repeat, and medians of ratios between contenders taken within a repeat (with
--settle S each repeat first waits up to S seconds for idle CPUs); quote ratios, and rerun
on a quiet machine. ``fused_vs_torch.py`` repeats the headline comparison 21 times by default.
"""

import argparse
import time
from pathlib import Path

import speed

RESULTS = Path(__file__).resolve().parent / "results"


def section(title):
    print(f"\n## {title}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--no-torch", action="store_true", help="leave torch out")
    parser.add_argument("--no-notebooks", action="store_true", help="skip executing the book")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per measurement")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds to wait, before each repeat, for idle CPUs (0: never)")
    args = parser.parse_args()
    started = time.perf_counter()
    sizes = speed.SIZES[:-1] if args.quick else speed.SIZES
    repeats = args.repeats or (3 if args.quick else 5)

    section("Machine")
    info = speed.machine()
    speed.print_machine(info)

    section("Step time: one update of d values, against the memory reference")
    print("every column: the contender's median time / the memory reference's fastest repeat"
          " (a reference a step can at best approach, not a floor);"
          " fu/t.fu, inl/t.fu: optimlab fused, checking the gradients before writing and"
          " while writing, / torch fused (<= 1: optimlab as fast or faster);"
          " t.thr: torch's threads\n")
    steps = speed.step_times(sizes=sizes, repeats=repeats, with_torch=not args.no_torch,
                             settle=args.settle)
    speed.print_step_table(steps)
    print()
    speed.print_time_table(steps)

    section("The memory reference: bytes read and written per second (bound.py)")
    speed.print_bandwidth(steps)

    section("Kernels compiled by Numba for the fused step (not part of any step time)")
    speed.print_compile_times()

    section("Memory allocated during one step (tracemalloc)")
    memory = speed.step_memory(n=10**6 if args.quick else 10**7)
    speed.print_memory_table(memory)

    section("Sweeps: K configurations in one batch against K separate runs")
    sweep = speed.sweep_speedups(ks=(1, 4, 16, 64, 256) if args.quick else
                                 (1, 4, 16, 64, 256, 1024))
    speed.print_sweep_table(sweep)

    section("The AdamW heatmap experiment: optimizer's share of the run time")
    share = speed.heatmap_share()
    speed.print_heatmap_share(share)
    share_mlp = speed.heatmap_share(hidden=32)
    speed.print_heatmap_share(share_mlp)

    notebooks = []
    if not args.no_notebooks and not args.quick:
        section("Executing the book's notebooks (jupyter nbconvert --execute, fresh kernel)")
        notebooks = speed.notebook_times()
        speed.print_notebook_table(notebooks)

    section("Targets")
    goals = speed.targets(steps, memory, sweep, share)
    speed.print_targets(goals)
    print(f"\n(load average at the end: {speed.machine().get('load average (1 min) before')}; "
          f"total {time.perf_counter() - started:.0f} s)")

    speed.save({"machine": info, "steps": steps, "memory": memory, "sweep": sweep,
                "heatmap": [share, share_mlp], "notebooks": notebooks,
                "targets": goals}, RESULTS / "results.json")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        speed.plot_step_times(steps)
        plt.savefig(RESULTS / "step_time.png", dpi=100)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
