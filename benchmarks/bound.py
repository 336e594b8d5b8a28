"""The memory reference of an optimizer step: the time of a minimal loop that moves exactly
the bytes a step must read and write, on the threads the contenders use.

An in-place step on d values with k state arrays must read ``params``, ``grads`` and the k
state arrays (2 + k streams) and write ``params`` and the state back (1 + k streams, into
the cache lines it has just read, so no write-allocate traffic). For Adam that is 4 reads
and 3 writes of d values. The reference is the time of a loop that does exactly that and
nothing else (an addition per parameter, ``s * c + g * g`` per state value: a state stays
non-negative, so an optimizer can go on stepping with the arrays it wrote), on the same
threads as
``opt.step``, taking the same pieces in turn; bytes read / time and bytes written / time
give its bandwidth.

It is a reference a step can at best approach, not a floor: it is one loop, timed on the
same (possibly loaded) machine as the contenders, so noise and implementation details can
put a contender at or slightly below it.

With Numba the loop is compiled (one pass, every stream once). Without it, NumPy does it
chunk by chunk (64 Ki values), each written array updated in place by calls whose operands
other than the array itself come from the cache: the same streams, at NumPy's pace, so a
slower reference (the table says which one it used).
"""

import itertools

import numpy as np

from optimlab import fast, fused

CHUNK = 1 << 16


def _streams_source(k):
    """Numba source: read g, p and k state arrays, write p and the k state arrays in place."""
    state = [f"s{i}" for i in range(k)]
    args = ", ".join(["g", "p", *state])
    lines = [f"def streams({args}, c, lo, hi):",
             *(f"    {a} = {a}[lo:hi]" for a in ["g", "p", *state]),
             "    for j in range(g.shape[0]):",  # loads, arithmetic, stores: as optimlab.fused
             "        x = g[j]",
             *(f"        {a}_ = {a}[j]" for a in ["p", *state]),
             "        p[j] = p_ + x",
             *(f"        {s}[j] = {s}_ * c + x * x" for s in state),
             "    return 0"]
    return "\n".join(lines) + "\n"


_compiled = {}


def _kernel(k):
    if k not in _compiled:
        import numba

        namespace = {}
        exec(compile(_streams_source(k), "<bound>", "exec"), namespace)  # noqa: S102
        _compiled[k] = numba.njit(nogil=True, fastmath=False, error_model="numpy")(
            namespace["streams"])
    return _compiled[k]


def compiled_available():
    return fused.available()


def streams(n, dtype, k, threads=None, compiled=None, arrays=None):
    """A function running the bound's loop once on fresh arrays of ``n`` values of ``dtype``
    (``k`` state arrays), or on ``arrays`` = ``(grads, params, *state)`` (1-D, contiguous:
    the contenders' own), on ``threads`` threads (default: as ``opt.step`` would). Its
    attributes: ``reads``/``writes`` (bytes per call) and ``how`` (compiled or NumPy)."""
    dtype = np.dtype(dtype)
    compiled = compiled_available() if compiled is None else compiled
    if arrays is None:
        rng = np.random.default_rng(0)
        g = rng.standard_normal(n).astype(dtype)
        arrays = [g, *(np.ones(n, dtype) for _ in range(1 + k))]
    else:
        arrays = list(arrays)
        if len(arrays) != 2 + k or any(a.shape != (n,) or a.dtype != dtype
                                       or not a.flags.c_contiguous for a in arrays):
            raise ValueError(f"arrays must be {2 + k} contiguous 1-D arrays of {n} {dtype}")
        g = arrays[0]
    if threads is None:
        threads = fast.THREADS if n * dtype.itemsize >= fast.PARALLEL_MIN_BYTES else 1
    pieces, start = [], 0  # guided pieces, as opt.step gives its compiled kernels
    smallest = fast.CHUNK_BLOCKS * fast.block_size(dtype)
    while start < n:
        stop = min(n, start + max(smallest, (n - start) // (2 * threads)))
        pieces.append((start, stop))
        start = stop
    c = dtype.type(0.5)
    if compiled:
        kernel = _kernel(k)
        kernel(*(np.zeros(8, dtype) for _ in arrays), c, 0, 8)  # compiled now, untimed

        def chunk(lo, hi):
            kernel(*arrays, c, lo, hi)
    else:
        def chunk(lo, hi):
            for a in range(lo, hi, CHUNK):
                b = min(a + CHUNK, hi)
                gb = g[a:b]
                np.add(arrays[1][a:b], gb, out=arrays[1][a:b])
                square = gb * gb  # a chunk, in the cache
                for w in arrays[2:]:
                    np.multiply(w[a:b], c, out=w[a:b])
                    np.add(w[a:b], square, out=w[a:b])

    def run():
        taken = itertools.count()

        def work(_):
            for i in taken:
                if i >= len(pieces):
                    return
                chunk(*pieces[i])

        fast.run_parallel(work, [None] * min(threads, len(pieces)))

    run.reads = (2 + k) * n * dtype.itemsize
    run.writes = (1 + k) * n * dtype.itemsize
    run.how = "compiled (Numba)" if compiled else "NumPy, in chunks"
    run.threads = threads
    return run
