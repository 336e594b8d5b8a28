"""The in-place fast path behind :meth:`Optimizer.step <optimlab.optimizer.Optimizer.step>`.

A rule from :mod:`optimlab.transforms` evaluated on whole arrays makes a temporary array for
every ``+``, ``*`` and ``/`` and streams it through main memory: a dozen passes over
arrays far larger than the caches. ``step`` instead

1. **traces** the rule once per step: it calls the rule's own ``update`` on stand-in values
   that record each NumPy ufunc the rule applies, with its constant operands (the
   ``t``-dependent bias corrections, the schedule's learning rate, hyperparameter arrays)
   and the dtype NumPy would give its result;
2. **replays** that list on cache-sized blocks of the flattened arrays (of whole runs, when
   hyperparameters are arrays with one value per run), writing every result into a few
   preallocated scratch blocks (``out=``) and the new state straight into the state's
   arrays, so each element of ``params``, ``grads`` and the state crosses the memory bus
   about once;
3. runs the blocks on the machine's cores (NumPy releases the GIL inside ufunc loops).

With Numba installed (``pip install optimlab[jit]``), step 2 is by default replaced by a
loop *compiled from the same trace* (:mod:`optimlab.fused`): one pass over the values, every
intermediate in a register, the same bits. Choose with ``OPTIMLAB_BACKEND`` or
:func:`backend`: ``"auto"`` (the default: ``"fused"`` when Numba is installed, else
``"blocks"``), ``"fused"`` (requires Numba) or ``"blocks"`` (the replay above)::

    with ol.fast.backend("blocks"):
        state = opt.step(params, grads, state)

The replay calls the same ufuncs with the same operands in the same order as the rule
evaluated on whole arrays, so its numbers are the pure path's, bit for bit; there is no
second copy of the math. A rule the tracer cannot follow (say one that calls ``np.where``
or raises an array to a power), and small arrays, are evaluated on whole arrays instead.

The sizes below were chosen by measurement (``benchmarks/``) on a 2-core x86 machine with
1 MiB of L2 cache per core and 32 MiB of L3.
"""

import contextlib
import contextvars
import functools
import itertools
import math
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from .tree import map_state, state_arrays

BLOCK_BYTES = 1 << 19
"""Bytes per block of each array: 512 KiB (64 Ki float64) beat 128 and 256 KiB, though the
six or so blocks a rule keeps live then spill from L2 to L3, because each block costs ~15
calls into NumPy, between which two threads take turns holding the GIL; 1 MiB lost again."""

TRACE_MIN_BYTES = 1 << 17
"""Smaller arrays are updated whole: tracing costs more than it saves, temporaries are cheap."""

PARALLEL_MIN_BYTES = 1 << 19
"""Below this many bytes of params in blocks, one thread does all (handing over costs more)."""

CHUNK_BLOCKS = 4
"""Blocks a thread takes at a time from the step's shared list of work (a piece)."""

CHECK_BYTES = 1 << 22
"""Bytes of a gradient a thread checks at a time (before the update, for NaN and inf)."""


def _default_threads():
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, int(os.environ.get("OPTIMLAB_NUM_THREADS", cpus)))


THREADS = _default_threads()
"""Threads used by ``step`` (``OPTIMLAB_NUM_THREADS`` overrides the number of usable CPUs)."""


BACKENDS = ("auto", "fused", "blocks")

BACKEND = os.environ.get("OPTIMLAB_BACKEND", "auto").strip() or "auto"
"""The backend of ``step`` outside any :func:`backend` block (``OPTIMLAB_BACKEND`` sets it)."""

_backend = contextvars.ContextVar("optimlab_backend", default=None)


def _check_backend(name):
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {name!r}")
    return name


@contextlib.contextmanager
def backend(name):
    """Within the block, ``step`` uses backend ``name``: ``"auto"``, ``"fused"`` (the kernel
    compiled by Numba from the trace; raises ``ImportError`` without Numba) or ``"blocks"``
    (the replay of the trace on blocks by NumPy). Both give the bits of ``update``."""
    token = _backend.set(_check_backend(name))
    try:
        yield
    finally:
        _backend.reset(token)


def current_backend():
    """``"fused"`` or ``"blocks"``: what ``step`` uses here and now."""
    from . import fused

    name = _check_backend(_backend.get() or BACKEND)
    if name == "auto":
        return "fused" if fused.available() else "blocks"
    if name == "fused" and not fused.available():
        raise ImportError("the 'fused' backend of step() needs Numba: pip install 'optimlab[jit]'"
                          " (or numba==0.68.1), or use the 'blocks' backend")
    return name


class Untraceable(Exception):
    """The rule did something other than elementwise ufunc calls on arrays and constants."""


# -- tracing ------------------------------------------------------------------------------------
def _recorded(ufunc):
    """``x <op> y`` and ``y <op> x`` for a stand-in x: the ufunc call ndarray would make."""

    def forward(self, other):
        return self.tape.record(ufunc, (self, other))

    def reflected(self, other):
        return self.tape.record(ufunc, (other, self))

    return forward, reflected


class _Var(NDArrayOperatorsMixin):
    """A stand-in for an array inside a traced rule: arithmetic on it records ufunc calls."""

    __slots__ = ("tape", "index", "dtype", "ndim")

    def __init__(self, tape, index, dtype, ndim):
        self.tape, self.index, self.dtype, self.ndim = tape, index, dtype, ndim

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs or ufunc.nout != 1 or ufunc.signature is not None:
            raise Untraceable(f"{ufunc.__name__}.{method} with {sorted(kwargs)}")
        return self.tape.record(ufunc, inputs)

    def __array_function__(self, func, types, args, kwargs):
        if func is np.ndim:  # the rank is part of the trace's key; the shape is not
            return self.ndim
        raise Untraceable(func.__name__)

    def __array__(self, dtype=None, copy=None):
        raise Untraceable("conversion to an array")

    def __bool__(self):
        raise Untraceable("a branch on array values")

    # The operators rules use, recorded without NumPy's dispatch (the mixin has the others).
    __add__, __radd__ = _recorded(np.add)
    __sub__, __rsub__ = _recorded(np.subtract)
    __mul__, __rmul__ = _recorded(np.multiply)
    __truediv__, __rtruediv__ = _recorded(np.divide)

    def __neg__(self):
        return self.tape.record(np.negative, (self,))

    # ndarray turns ``x ** 2`` into ``square(x)`` and ``x ** 0.5`` into ``sqrt(x)``; rather than
    # mimic that (and risk other last bits), powers of arrays take the whole-array path.
    def __pow__(self, other):
        raise Untraceable("a power of an array")

    __rpow__ = __ipow__ = __pow__


_WEAK = (float, int, complex)  # Python scalars take the array's dtype (NEP 50)


def _dtype_or_type(x):
    """What NumPy's type resolution sees of a constant operand: a number or an array (an
    array hyperparameter, a batch of runs; the driver checks that it broadcasts by rows)."""
    if type(x) in _WEAK:
        return type(x)
    if isinstance(x, np.generic | np.ndarray) and x.dtype.kind in "biuf":
        return x.dtype
    raise Untraceable(f"an operand of type {type(x).__name__}")  # a sympy object, a list...


@functools.lru_cache(maxsize=1024)
def _loop(ufunc, operand_dtypes):
    return ufunc.resolve_dtypes((*operand_dtypes, None))


class _Tape:
    """The ufunc calls of one evaluation of a rule, in order."""

    def __init__(self, ndim):
        self.ndim = ndim
        self.dtypes = []  # dtype of every variable: the inputs first, then each result
        self.consts = []  # constant operands, as arrays of the dtype their ufunc loop uses
        self.code = []  # (ufunc, operands, result); operand = ("v", var) or ("c", const index)

    def input(self, dtype):
        self.dtypes.append(dtype)
        return _Var(self, len(self.dtypes) - 1, dtype, self.ndim)

    def record(self, ufunc, inputs):
        """Record ``ufunc(*inputs)``; return the stand-in for its result."""
        operands, kinds, constants = [], [], []
        for k, x in enumerate(inputs):
            if type(x) is _Var:
                if x.tape is not self:
                    raise Untraceable("a value from another trace")
                operands.append(("v", x.index))
                kinds.append(x.dtype)
            else:
                operands.append(("c", len(self.consts) + len(constants)))
                kinds.append(_dtype_or_type(x))
                constants.append((k, x))
        loop = _loop(ufunc, tuple(kinds))
        dtype = loop[-1]
        if (ufunc in _TIMES_ONE and len(inputs) == 2 and len(constants) == 1
                and getattr(constants[0][1], "ndim", 0) == 0 and constants[0][1] == 1):
            k = constants[0][0]
            x = inputs[1 - k]
            if x.dtype == dtype and (ufunc is np.multiply or k == 1):
                return x  # x * 1, 1 * x and x / 1 are x, bit for bit: the call is skipped
        # What NumPy does with a constant operand, once rather than in every block: a Python
        # number takes the loop's dtype (NEP 50), a NumPy scalar or array is cast to it.
        self.consts.extend(np.array(x, dtype=loop[k]) for k, x in constants)
        self.dtypes.append(dtype)
        self.code.append((ufunc, tuple(operands), len(self.dtypes) - 1))
        return _Var(self, len(self.dtypes) - 1, dtype, self.ndim)


_TIMES_ONE = (np.multiply, np.divide)


def _flatten_state(state):
    """The leaves of a state that may hold stand-ins, in the order of ``state_arrays``."""
    if isinstance(state, np.ndarray | np.generic | _Var):
        return [state]
    if isinstance(state, tuple):
        return [a for s in state for a in _flatten_state(s)]
    return []


def trace(transform, state, dtype, ndim, t, check_grads=False):
    """Record ``transform.update`` at step ``t`` for params of ``dtype`` and rank ``ndim`` and a
    state like ``state``. With ``check_grads``, the program also checks every gradient it
    reads (``step(check="while_writing")``), as it checks every update.

    Returns ``(program, constants)``: the :class:`Program` depends only on the sequence of
    operations (it is compiled once and cached), the constants on ``t``. Raises
    :class:`Untraceable` if the rule leaves the subset of NumPy the replay supports; errors
    of the rule itself (a bad schedule value) propagate.
    """
    tape = _Tape(ndim)
    dtype = np.dtype(dtype)
    g, p = tape.input(dtype), tape.input(dtype)
    slots = []

    def stand_in(a):
        slots.append(tape.input(dtype))
        return slots[-1]

    u, state_out = transform.update(g, map_state(stand_in, state), p, t)
    new = _flatten_state(state_out)
    if not isinstance(u, _Var) or len(new) != len(slots) or not all(
            isinstance(v, _Var) and v.tape is tape for v in new):
        raise Untraceable("the rule's result is not computed from its inputs")
    slot_out = tuple(v.index for v in new)
    key = (tuple(tape.code), tuple(tape.dtypes), u.index, slot_out, check_grads)
    program = _programs.get(key)
    if program is None:
        if len(_programs) > 256:
            _programs.clear()
        program = _programs[key] = Program(tape, u.index, slot_out, dtype, check_grads)
    return program, tape.consts


_programs = {}


# -- compiling a trace into a block loop ---------------------------------------------------------
class NonFiniteUpdate(FloatingPointError):
    """Raised inside a block loop; the driver re-raises it naming the array and the step."""


def _check_finite(u):
    if not finite(u):
        raise NonFiniteUpdate


def _copy(src, out):
    np.copyto(out, src, casting="same_kind")


_sum = np.add.reduce


class Program:
    """A traced rule as a loop over blocks, ready to run on any arrays of its dtype and rank.

    Registers: ``R0``, ``R1`` are the blocks of ``grads`` and ``params``, ``R2 ... R{k+1}``
    those of the state's k arrays, ``T0, T1, ...`` scratch blocks, ``c0, c1, ...`` the
    constants (arrays, 0-d for numbers, so that NumPy need not convert a Python scalar in
    every call; they are given to :meth:`run`, as they change from step to step). Results go to the scratch
    blocks by linear-scan register allocation; a new state value goes straight into its
    state array once the old value is no longer read; then the update is checked and added
    to the params (with ``check_grads``, the gradient block is checked first, in the same
    pass). ``source`` is the generated loop, for the curious.
    """

    def __init__(self, tape, u, slot_out, dtype, check_grads=False):
        self.dtype = dtype
        self.check_grads = check_grads
        n_in = 2 + len(slot_out)
        code = _live(tape.code, {u, *slot_out})
        end = len(code)
        last_use = {v: end for v in (u, *slot_out)}
        for k, (_, operands, _) in enumerate(code):
            for kind, i in operands:
                if kind == "v":
                    last_use[i] = max(last_use.get(i, -1), k)
        defined_at = {res: k for k, (_, _, res) in enumerate(code)}

        direct = {}  # result variable -> the state register it is written to
        for k, v in enumerate(slot_out):
            old = 2 + k
            if (v >= n_in and tape.dtypes[v] == dtype and slot_out.count(v) == 1
                    and old not in slot_out and last_use.get(old, -1) <= defined_at[v]):
                direct[v] = f"R{old}"

        self.temp_dtypes = []
        free = {}

        def new_temp(dt):
            if free.get(dt):
                return free[dt].pop()
            self.temp_dtypes.append(dt)
            return f"T{len(self.temp_dtypes) - 1}"

        reg = {i: f"R{i}" for i in range(n_in)}
        lines = [(_check_finite, ["R0"], None)] if check_grads else []
        for k, (ufunc, operands, res) in enumerate(code):
            args = [reg[i] if kind == "v" else f"c{i}" for kind, i in operands]
            for kind, i in operands:  # a value read for the last time frees its block
                if kind == "v" and last_use[i] == k and reg[i].startswith("T"):
                    free.setdefault(tape.dtypes[i], []).append(reg[i])
                    last_use[i] = -1
            reg[res] = direct.get(res) or new_temp(tape.dtypes[res])
            lines.append((ufunc, args, reg[res]))
        u_reg = reg[u]
        if tape.dtypes[u] != dtype:  # the update in the params' dtype, as update() casts it
            lines.append((_copy, [u_reg], new_temp(dtype)))
            u_reg = lines[-1][2]
        lines.append((_check_finite, [u_reg], None))
        for k, v in enumerate(slot_out):
            if v != 2 + k and v not in direct:
                lines.append((_copy, [reg[v]], f"R{2 + k}"))
        lines.append((np.add, ["R1", u_reg], "R1"))

        self._lines, self._n_in, self._n_consts = lines, n_in, len(tape.consts)
        self.source, self.loop = self.loop_for(())

    @property
    def lines(self):
        """One ``(function, argument registers, result register or None)`` per recorded call."""
        return self._lines

    @property
    def n_inputs(self):
        """Registers ``R0 ... R{n-1}``: grads, params and the state's arrays."""
        return self._n_in

    def loop_for(self, row_consts):
        """``(source, loop)`` slicing the constants ``row_consts`` by rows with the arrays."""
        return _generate(self._lines, self._n_in, len(self.temp_dtypes), self._n_consts,
                         row_consts)

    def run(self, flats, temps, consts, lo, hi, block, row_consts=()):
        """Update ``flats`` = ``(grads, params, *state)`` from index ``lo`` to ``hi`` along the
        first axis, ``block`` at a time, with ``temps`` (scratch arrays of a block's shape,
        of ``temp_dtypes``). Views are 1-D (elements), or 2-D (runs x values per run) when
        the constants ``row_consts`` hold one value per run."""
        loop = self.loop if not row_consts else self.loop_for(row_consts)[1]
        loop(flats, temps, consts, lo, hi, block)


def _live(code, outputs):
    """The instructions that the outputs depend on, in order."""
    needed, live = set(outputs), []
    for ins in reversed(code):
        if ins[2] in needed:
            live.append(ins)
            needed.update(i for kind, i in ins[1] if kind == "v")
    return live[::-1]


_loops = {}


def _generate(lines, n_in, n_temps, n_consts, row_consts=()):
    """Python source for a block loop running ``lines``, compiled once per distinct program."""
    names = {}  # function -> its name in the loop
    for f, _, _ in lines:
        if f not in names:
            name = f.__name__.lstrip("_")
            names[f] = name if name not in names.values() else f"{name}_{len(names)}"
    body = []
    for f, args, out in lines:
        call = f"{names[f]}({', '.join(args)}"
        body.append(f"{call}, out={out})" if out else f"{call})")

    def unpack(names, source):
        return [f"{', '.join(names)}, = {source}"] if names else []

    consts = [f"C{i}" if i in row_consts else f"c{i}" for i in range(n_consts)]
    source = "\n".join([
        "def loop(flats, temps, consts, lo, hi, block):",
        *("    " + line for line in unpack([f"F{i}" for i in range(n_in)], "flats")
          + unpack([f"T{i}" for i in range(n_temps)], "temps") + unpack(consts, "consts")),
        "    for start in range(lo, hi, block):",
        "        stop = min(start + block, hi)",
        *(f"        R{i} = F{i}[start:stop]" for i in range(n_in)),
        *(f"        c{i} = C{i}[start:stop]" for i in sorted(row_consts)),
        *(["        if stop - start < block:",
           f"            {', '.join(f'T{i}' for i in range(n_temps))}, = "
           f"(t[:stop - start] for t in temps)"] if n_temps else []),
        *("        " + line for line in body),
    ]) + "\n"
    if source not in _loops:
        namespace = {name: f for f, name in names.items()}
        exec(compile(source, "<optimlab.fast loop>", "exec"), namespace)  # noqa: S102
        if len(_loops) > 256:
            _loops.clear()
        _loops[source] = namespace["loop"]
    return source, _loops[source]


# -- running programs on blocks, on several threads ---------------------------------------------
class _Task(NamedTuple):
    """One array's update: its program and constants, the views of its arrays, the size of
    a block (along the views' first axis) and the constants that hold one value per row."""

    program: Program
    consts: list
    flats: list
    block: int
    path: str
    row_consts: tuple = ()
    kernel: object = None  # the compiled loop (optimlab.fused), when the backend is "fused"


def block_size(dtype):
    """Elements per block for ``dtype``: ``BLOCK_BYTES`` of it."""
    return max(1, BLOCK_BYTES // np.dtype(dtype).itemsize)


class _Scratch:
    """One thread's scratch arrays: ``arrays[dtype]`` is a list of them."""

    __slots__ = ("arrays", "__weakref__")

    def __init__(self):
        self.arrays = {}


_local = threading.local()
_caches = weakref.WeakSet()  # every live thread's _Scratch, for scratch_bytes()
_pool, _pool_size = None, 0
_pool_lock = threading.Lock()


def scratch_bytes():
    """Bytes held in scratch blocks by all threads (a few blocks each, whatever the N)."""
    return sum(a.nbytes for cache in list(_caches) for have in cache.arrays.values()
               for a in have)


def _scratch(dtypes, block):
    """This thread's scratch arrays of ``block`` elements of ``dtypes``, kept from step to step
    (a step allocates nothing of the arrays' size)."""
    cache = getattr(_local, "scratch", None)
    if cache is None:
        cache = _local.scratch = _Scratch()
        _caches.add(cache)
    taken, out = {}, []
    for dt in dtypes:
        have = cache.arrays.setdefault(dt, [])
        k = taken[dt] = taken.get(dt, -1) + 1
        if k == len(have):
            have.append(np.empty(0, dt))
        if have[k].size < block:
            have[k] = np.empty(block, dt)
        out.append(have[k][:block])
    return out


def _executor():
    """The persistent pool of ``THREADS - 1`` workers (the calling thread is the other one)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != THREADS - 1:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool_size = THREADS - 1
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="optimlab")
        return _pool


def _chunks(tasks, threads):
    """The work of a step as ``(task, start, stop, block)`` pieces for ``threads`` threads.

    Blocks hold ``BLOCK_BYTES`` (less in an array too small to give every thread one), and
    a piece ``CHUNK_BLOCKS`` of them (fewer when there are not two pieces per thread).
    A compiled kernel (``task.kernel``) has no blocks to keep in the cache: its pieces are
    "guided", as OpenMP calls it, each ``1 / (2 * threads)`` of what remains of the array and
    at least ``CHUNK_BLOCKS`` blocks, so that each thread first streams a long contiguous
    stretch (measured: a quarter faster than pieces of four blocks) and the small pieces at
    the end still even out the threads.
    """
    sizes = [len(task.flats[0]) for task in tasks]
    blocks = [min(task.block, -(-n // threads)) for task, n in zip(tasks, sizes, strict=True)]
    count = sum(-(-n // b) for n, b in zip(sizes, blocks, strict=True))
    per_chunk = max(1, min(CHUNK_BLOCKS, count // (2 * threads)))
    chunks = []
    for task, n, block in zip(tasks, sizes, blocks, strict=True):
        if task.kernel is None:
            chunks.extend((task, start, min(start + per_chunk * block, n), block)
                          for start in range(0, n, per_chunk * block))
            continue
        start = 0
        while start < n:
            stop = min(n, start + max(CHUNK_BLOCKS * task.block, (n - start) // (2 * threads)))
            chunks.append((task, start, stop, block))
            start = stop
    return chunks


def run_blocks(tasks, t, threads):
    """Run the tasks' programs on ``threads`` threads that take chunks in turn from a shared
    list, so that a thread the system holds back delays no one (dynamic, not static, shares).

    After a non-finite update the other threads stop taking chunks; the error names the
    array and the step.
    """
    chunks = _chunks(tasks, threads)
    taken = itertools.count()  # next() on it is atomic under the GIL
    failed = []

    def work(_):
        for i in taken:
            if i >= len(chunks) or failed:
                return
            task, start, stop, block = chunks[i]
            if task.kernel is not None:
                if task.kernel(start, stop):
                    failed.append(task.path)
                    raise FloatingPointError(_nonfinite_message(task, t))
                continue
            shape = (block, *task.flats[0].shape[1:])
            temps = [t.reshape(shape) for t in _scratch(task.program.temp_dtypes,
                                                         math.prod(shape))]
            try:
                task.program.run(task.flats, temps, task.consts, start, stop, block,
                                 task.row_consts)
            except NonFiniteUpdate:
                failed.append(task.path)
                raise FloatingPointError(_nonfinite_message(task, t)) from None
            except BaseException:
                failed.append(task.path)
                raise

    run_parallel(work, [None] * min(threads, len(chunks)))


def run_parallel(fn, args):
    """``[fn(a) for a in args]``, the first here and the others on the pool's threads (with
    this thread's context, so ``np.errstate`` holds there too).

    Waits for every call to end before returning or raising: no thread writes to the arrays
    once ``step`` has returned.
    """
    if len(args) == 1:
        return [fn(args[0])]
    pool = _executor()
    futures = [pool.submit(contextvars.copy_context().run, fn, a) for a in args[1:]]
    error, results = None, []
    try:
        results.append(fn(args[0]))
    except BaseException as exc:  # re-raised below, once the pool is done
        error = exc
    for future in futures:
        try:
            results.append(future.result())
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error
    return results


def all_finite(arrays):
    """True if every element of every array is finite.

    Large arrays are read in pieces by all threads, from the end back to the start: the
    update that follows starts at the beginning, where the last pieces read may still be in
    the cache. A non-finite piece stops the reading. With the fused backend, a compiled loop
    reads them (:func:`optimlab.fused.count_nonfinite`).
    """
    pieces = []
    for a in arrays:
        flat = flat_views([a]) if a.nbytes > CHECK_BYTES else None
        if flat is None:
            pieces.append(a)
        else:
            step = CHECK_BYTES // a.itemsize
            pieces.extend(flat[0][i:i + step] for i in range(0, a.size, step))
    pieces.reverse()
    size = sum(a.nbytes for a in pieces)
    taken, bad = itertools.count(), []
    compiled = size >= TRACE_MIN_BYTES and current_backend() == "fused"

    def check(a):
        if compiled:
            from .fused import count_nonfinite

            count = count_nonfinite(a.reshape(-1) if a.flags.c_contiguous else a)
            if count is not None:
                return count == 0
        return finite(a)

    def work(_):
        for i in taken:
            if i >= len(pieces) or bad:
                return
            if not check(pieces[i]):
                bad.append(i)

    run_parallel(work, [None] * (min(THREADS, len(pieces)) if size >= PARALLEL_MIN_BYTES else 1))
    return not bad


def finite(a):
    """True if every element of ``a`` is finite: a sum is one fast read, finite when every
    element is (overflow aside, which the exact test settles)."""
    return math.isfinite(_sum(a, axis=None)) or bool(np.isfinite(a).all())


def flat_views(arrays):
    """1-D views of ``arrays`` in one common element order, or None if one is not contiguous."""
    if all(a.flags.c_contiguous for a in arrays):
        return [a.reshape(-1) for a in arrays]
    if all(a.flags.f_contiguous for a in arrays):
        return [a.T.reshape(-1) for a in arrays]
    return None


# -- the driver ---------------------------------------------------------------------------------
def step_in_place(transform, pieces, t, check_grads=False):
    """Apply ``transform`` at step ``t`` in place to ``pieces`` = [(path, p, g, s)], whose
    gradients are known to be finite, or, with ``check_grads``, are checked here: those of
    arrays updated whole before anything is written, the others by the block loops as they
    read them (a non-finite one raises once params and state are partly written).
    ``transform`` may also be a list with one transform per piece (parameter groups,
    :func:`optimlab.partition`).

    Every trace is made before anything is written, so that an error of the rule (a schedule
    returning a bad value) leaves params and state untouched.
    """
    rules = transform if isinstance(transform, list) else [transform] * len(pieces)
    whole, tasks, traces = [], [], {}
    for (path, p, g, s), rule in zip(pieces, rules, strict=True):
        task = None
        if p.nbytes >= TRACE_MIN_BYTES:
            key = (id(rule), p.dtype, p.ndim, map_state(lambda a: True, s))
            if key not in traces:
                try:
                    traces[key] = trace(rule, s, p.dtype, p.ndim, t, check_grads)
                except Untraceable:
                    traces[key] = None
            if traces[key] is not None:
                task = _task(*traces[key], path, [g, p, *state_arrays(s)])
        if task is None:
            whole.append((rule, path, p, g, s))
        else:
            tasks.append(task)
    if tasks and current_backend() == "fused":  # compiled (once) before anything is written
        from .fused import task_kernel

        tasks = [task._replace(kernel=task_kernel(task.program, task.consts, task.flats,
                                                  task.row_consts)) for task in tasks]
    if check_grads:
        for _, path, _, g, _ in whole:
            if not finite(g):
                raise FloatingPointError(nonfinite_gradient_message([path], t))
    for rule, path, p, g, s in whole:
        update_whole(rule, path, p, g, s, t)
    if tasks:
        size = sum(task.flats[1].nbytes for task in tasks)
        run_blocks(tasks, t, THREADS if size >= PARALLEL_MIN_BYTES else 1)


def _task(program, consts, path, arrays):
    """The task that updates ``arrays`` = ``(grads, params, *state)`` with ``program``, or None
    if they or the constants do not suit the block loop (then ``update_whole`` does it)."""
    p = arrays[1]
    if all(np.ndim(c) == 0 for c in consts):  # any blocks of the flattened arrays will do
        flats = flat_views(arrays)
        return None if flats is None else _Task(program, consts, flats,
                                                block_size(p.dtype), path)
    # Array hyperparameters, one value per run along the first axis (shape (K, 1, ..., 1)):
    # blocks of whole runs, of the arrays seen as (K, values per run).
    if p.ndim == 0 or not all(a.flags.c_contiguous for a in arrays):
        return None
    runs, width = p.shape[0], math.prod(p.shape[1:])
    shaped, row_consts = [], []
    for i, c in enumerate(consts):
        if np.ndim(c) == 0:
            shaped.append(c)
            continue
        if c.ndim > p.ndim:
            return None
        full = (1,) * (p.ndim - c.ndim) + c.shape
        if full[0] not in (1, runs) or any(n != 1 for n in full[1:]):
            return None
        shaped.append(c.reshape(full[0], 1))
        if full[0] == runs > 1:
            row_consts.append(i)
    views = [a.reshape(runs, width) for a in arrays]
    block = max(1, BLOCK_BYTES // (width * p.itemsize))
    return _Task(program, shaped, views, block, path, tuple(row_consts))


def _nonfinite_message(task, t):
    if task.program.check_grads and not finite(task.flats[0]):
        return (nonfinite_gradient_message([task.path], t) + ", found while writing "
                "(step(check='while_writing')): params and state are partly updated")
    return _nonfinite_update_message(task.path, t)


def _nonfinite_update_message(path, t):
    return (f"the update for {path} became non-finite at step {t} (is eps 0 where a gradient "
            "is 0, or are params non-finite?); params and state may be partly updated")


def nonfinite_gradient_message(paths, t):
    """The error for non-finite gradients of the params at ``paths`` at step ``t``."""
    grads = ", ".join("grads" + path[len("params"):] for path in paths)
    return f"non-finite gradient at step {t} in {grads}"


def update_whole(transform, path, p, g, s, t):
    """The rule on whole arrays, its results written into ``p`` and the arrays of ``s``."""
    u, s_new = transform.update(g, s, p, t)
    u = np.asarray(u, dtype=p.dtype)
    targets, sources = state_arrays(s), state_arrays(s_new)
    if u.shape != p.shape or len(sources) != len(targets) or any(
            np.shape(src) != dst.shape for dst, src in zip(targets, sources, strict=True)):
        raise ValueError(f"the update or new state for {path} does not have the shape of "
                         f"{path}, {p.shape}; do the hyperparameter arrays broadcast to it?")
    if not finite(u):
        raise FloatingPointError(_nonfinite_update_message(path, t))
    for dst, src in zip(targets, sources, strict=True):
        if dst is not src:
            dst[...] = src
    p += u
