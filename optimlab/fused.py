"""The compiled backend of ``step``: a traced rule as one loop over the values, made by Numba.

:mod:`optimlab.fast` traces a rule into a :class:`~optimlab.fast.Program`, a list of ufunc
calls on registers (the blocks of the arrays, scratch blocks and constants), and replays it
on cache-sized blocks: every call is one more pass over a block and one more call into
NumPy. This module turns the *same* list into the source of a loop over the values that
keeps every intermediate in a register, and compiles it with Numba (``njit``): each array
crosses the memory bus once, and the loop runs at the speed of the memory.

Nothing here knows a rule. The kernel is written from the trace, one line per recorded
ufunc call, so there is no second copy of Adam or of any other rule, and the numbers are
the pure path's, bit for bit:

- each recorded call becomes the same IEEE operation on the same operands in the same
  dtypes (``+ - * /`` and ``sqrt`` are correctly rounded, in NumPy's vector loops as in
  the compiled code; operands are cast to the dtypes NumPy's loop uses, results to the
  dtype NumPy gives them; ``maximum``/``minimum`` pick the operand NumPy's loops pick,
  NaN included);
- Numba compiles without fast-math (``fastmath=False``: no reassociation, no reciprocal
  approximations) and emits separate multiply and add instructions, which LLVM never
  contracts into a fused multiply-add without the ``contract`` flag that only fast-math
  sets; the tests check the bits on many shapes and dtypes, and that the machine code of a
  kernel holds no FMA instruction;
- ``error_model="numpy"``: a division by zero gives inf or NaN, as in NumPy, instead of
  raising ``ZeroDivisionError``.

A kernel is compiled once per distinct source, that is per (rule, dtype, layout): the
layout is the rank of the views (1-D values, or 2-D runs x values when hyperparameters hold
one value per run) and which constants are such per-run arrays. It is reused at every later
step (the constants, such as the bias corrections, are arguments). Compiling takes a
fraction of a second; :data:`compile_log` records each compile and its time, apart from
the time of the steps. Kernels release the GIL and run on ``step``'s threads, a chunk of
blocks at a time, as the replay does.

Numba is optional (``pip install optimlab[jit]``). Whether ``step`` uses this backend is
chosen in :mod:`optimlab.fast` (:func:`optimlab.fast.backend`, ``OPTIMLAB_BACKEND``).
"""

import importlib.util
import threading
import time

import numpy as np

# How each recorded ufunc is written in the kernel: ``{0}``, ``{1}`` are the operands, cast
# to the dtypes of NumPy's loop. ``maximum(a, b)`` is ``a`` when ``a > b`` or ``a`` is NaN,
# else ``b`` (so the second operand when they are equal, +0 and -0 included): what NumPy's
# loops return (the tests check it against NumPy on this machine).
EXPRESSIONS = {
    np.add: "{0} + {1}",
    np.subtract: "{0} - {1}",
    np.multiply: "{0} * {1}",
    np.divide: "{0} / {1}",
    np.negative: "-{0}",
    np.sqrt: "np.sqrt({0})",
    np.maximum: "{0} if ({0} > {1} or {0} != {0}) else {1}",
    np.minimum: "{0} if ({0} < {1} or {0} != {0}) else {1}",
}

_CASTS = {np.dtype(np.float64): "f8", np.dtype(np.float32): "f4"}

compile_log = []
"""Every kernel compiled so far, in order, with its dtype, layout, number of operations and
the seconds its compile took."""

_kernels = {}  # source -> compiled entry point
_dispatchers = {}  # source -> Numba dispatcher (for inspection: machine code, LLVM IR)
_by_program = {}  # (program, constant dtypes, row constants, rank) -> compiled entry point
_lock = threading.Lock()


def available():
    """True if Numba can be imported (it is imported only when a kernel is first needed)."""
    return importlib.util.find_spec("numba") is not None


def compile_seconds():
    """Seconds spent compiling kernels in this process."""
    return sum(entry["seconds"] for entry in compile_log)


class Unsupported(Exception):
    """The program holds an operation or a dtype the kernel generator does not write."""


def kernel_source(program, const_dtypes, row_consts=(), ndim=1):
    """The source of the kernel running ``program`` (a :class:`~optimlab.fast.Program`).

    ``const_dtypes``: the dtype of each constant; ``row_consts``: the constants that hold
    one value per run (then ``ndim`` is 2: the arrays are seen as runs x values). The
    kernel takes the arrays ``F0`` (grads), ``F1`` (params), ``F2, ...`` (the state), then
    the constants (numbers, or 1-D arrays of one value per run), then ``lo, hi``: the range
    of values (of runs, for ``ndim`` 2) to update. It returns the number of non-finite
    updates it met, and of non-finite gradients when the program checks them
    (``step(check="while_writing")``); the params then hold them: the caller raises.
    """
    n_in, dtype = program.n_inputs, np.dtype(program.dtype)
    dtypes = {f"R{i}": dtype for i in range(n_in)}
    dtypes.update({f"T{i}": np.dtype(dt) for i, dt in enumerate(program.temp_dtypes)})
    dtypes.update({f"c{i}": np.dtype(dt) for i, dt in enumerate(const_dtypes)})
    if any(dt not in _CASTS for dt in dtypes.values()):
        raise Unsupported(f"dtypes {sorted({str(dt) for dt in dtypes.values()})}")

    from .fast import _check_finite, _copy

    body, written = [], set()
    for f, args, out in program.lines:
        if f is _check_finite:
            body.append(f"bad += not ({args[0]} - {args[0]} == 0)")  # False for NaN and inf
            continue
        if f is _copy:  # a cast into the register's dtype (as update() casts u)
            expr = args[0]
        elif f in EXPRESSIONS:
            loop = f.resolve_dtypes((*(dtypes[a] for a in args), None))
            if loop[-1] != dtypes[out]:
                raise Unsupported(f"{f.__name__} gives {loop[-1]} into {dtypes[out]}")
            operands = [a if dtypes[a] == dt else f"{_CASTS[dt]}({a})"
                        for a, dt in zip(args, loop, strict=False)]
            expr = EXPRESSIONS[f].format(*operands)
        else:
            raise Unsupported(f.__name__)
        body.append(f"{out} = {_CASTS[dtypes[out]]}({expr})")
        written.add(out)
    stores = [f"G{i}[j] = R{i}" for i in range(n_in) if f"R{i}" in written]

    arrays = [f"F{i}" for i in range(n_in)]
    consts = [f"C{i}" if i in row_consts else f"c{i}" for i in range(len(const_dtypes))]
    head = [f"def kernel({', '.join(arrays + consts)}, lo, hi):", "    bad = 0"]
    if ndim == 1:
        rows, pad = [*(f"    G{i} = F{i}[lo:hi]" for i in range(n_in))], "    "
    else:
        rows = ["    for r in range(lo, hi):",
                *(f"        c{i} = C{i}[r]" for i in sorted(row_consts)),
                *(f"        G{i} = F{i}[r]" for i in range(n_in))]
        pad = "        "
    loop = ["for j in range(G0.shape[0]):",
            *("    " + f"R{i} = G{i}[j]" for i in range(n_in)),
            *("    " + line for line in body + stores)]
    return "\n".join([*head, *rows, *(pad + line for line in loop), "    return bad"]) + "\n"


def _signature(numba, dtype, n_in, const_dtypes, row_consts, ndim):
    types = numba.types
    arrays = [types.Array(numba.from_dtype(np.dtype(dtype)), ndim, "C")] * n_in
    consts = [types.Array(numba.from_dtype(np.dtype(dt)), 1, "C") if i in row_consts
              else numba.from_dtype(np.dtype(dt)) for i, dt in enumerate(const_dtypes)]
    return types.int64(*arrays, *consts, types.int64, types.int64)


def compiled(program, const_dtypes, row_consts=(), ndim=1):
    """The compiled kernel of :func:`kernel_source` (compiled at the first call with this
    source, then taken from the cache), as a function of the same arguments."""
    key = (program, tuple(np.dtype(dt) for dt in const_dtypes), tuple(row_consts), ndim)
    entry = _by_program.get(key)  # skips writing the source again at every step
    if entry is not None:
        return entry
    source = kernel_source(program, const_dtypes, row_consts, ndim)
    entry = _kernels.get(source)
    if entry is not None:
        if len(_by_program) > 1024:  # programs made again after fast's cache was cleared
            _by_program.clear()
        _by_program[key] = entry
        return entry
    with _lock:  # one compile per source, even when two threads ask at once
        if source not in _kernels:
            import numba

            namespace = {"np": np, "f4": np.float32, "f8": np.float64}
            exec(compile(source, "<optimlab.fused kernel>", "exec"), namespace)  # noqa: S102
            jitted = numba.njit(nogil=True, fastmath=False, error_model="numpy",
                                boundscheck=False)(namespace["kernel"])
            sig = _signature(numba, program.dtype, program.n_inputs, const_dtypes,
                             row_consts, ndim)
            start = time.perf_counter()
            jitted.compile(sig)
            seconds = time.perf_counter() - start
            compile_log.append({"dtype": str(np.dtype(program.dtype)),
                                "layout": "values" if ndim == 1 else "runs x values",
                                "operations": len(program.lines), "seconds": seconds})
            if len(_kernels) > 256:
                _kernels.clear()
                _dispatchers.clear()
                _by_program.clear()
            _dispatchers[source] = jitted
            # The entry point of the compiled signature: no type dispatch at each call.
            _kernels[source] = jitted.overloads[sig.args].entry_point
        _by_program[key] = _kernels[source]
        return _kernels[source]


def dispatcher(source):
    """The Numba dispatcher of a compiled kernel source (``.inspect_asm()`` shows its
    machine code), or None if it was not compiled in this process."""
    return _dispatchers.get(source)


_CHECK_SOURCE = """def count_nonfinite(a, lo, hi):
    a = a[lo:hi]
    bad = 0
    for j in range(a.shape[0]):
        bad += not (a[j] - a[j] == 0)
    return bad
"""


def count_nonfinite(a):
    """The number of NaN and infinite values in the 1-D contiguous float array ``a``, by a
    compiled loop (a vectorized read, cheaper in CPU time than NumPy's sum on a busy
    machine), or None if ``a`` is not such an array."""
    if a.ndim != 1 or not a.flags.c_contiguous or a.dtype not in _CASTS:
        return None
    key = ("count_nonfinite", a.dtype.str)
    entry = _kernels.get(key)
    if entry is None:
        with _lock:
            if key not in _kernels:
                import numba

                namespace = {}
                exec(compile(_CHECK_SOURCE, "<optimlab.fused check>", "exec"), namespace)  # noqa: S102
                jitted = numba.njit(nogil=True, fastmath=False, error_model="numpy")(
                    namespace["count_nonfinite"])
                sig = numba.types.int64(numba.types.Array(numba.from_dtype(a.dtype), 1, "C"),
                                        numba.types.int64, numba.types.int64)
                start = time.perf_counter()
                jitted.compile(sig)
                compile_log.append({"dtype": str(a.dtype), "layout": "check", "operations": 1,
                                    "seconds": time.perf_counter() - start})
                _kernels[key] = jitted.overloads[sig.args].entry_point
            entry = _kernels[key]
    return entry(a, 0, a.shape[0])


def task_kernel(program, consts, flats, row_consts):
    """A function ``(lo, hi) -> number of non-finite updates`` that updates ``flats`` (the
    views of a task of :mod:`optimlab.fast`) from ``lo`` to ``hi`` along their first axis,
    or None if the program cannot be compiled (the replay then runs it)."""
    ndim = flats[0].ndim
    if ndim not in (1, 2) or (ndim == 2) != bool(row_consts):
        return None
    args = []
    for i, c in enumerate(consts):
        c = np.asarray(c)
        if i in row_consts:
            args.append(np.ascontiguousarray(c.reshape(-1)))
        elif c.size == 1:
            args.append(c.reshape(())[()])  # a NumPy scalar of the constant's dtype
        else:
            return None
    try:
        kernel = compiled(program, [np.asarray(c).dtype for c in consts], tuple(row_consts),
                          ndim)
    except Unsupported:
        return None
    arrays = list(flats)

    def run(lo, hi):
        return kernel(*arrays, *args, lo, hi)

    return run
