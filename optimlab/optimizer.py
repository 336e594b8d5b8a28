"""The optimizer object: a transform applied to every array of a parameter tree, with checks.

    opt = ol.adam(lr=1e-3)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)   # pure
    params = ol.apply_updates(params, updates)
    state = opt.step(params, grads, state)              # in place, for large arrays

``update`` never modifies its arguments. ``step`` evaluates the *same* rule on cache-sized
blocks of the flattened arrays and writes the results into ``params`` and the state's arrays
(``optimlab.fast``).
"""

from typing import Any, NamedTuple

import numpy as np

from . import fast, precision
from .fast import finite as _finite
from .precision import describe as _name
from .transforms import ChainState
from .tree import leaves, map_leaves, map_state, state_arrays, unzip


class OptState(NamedTuple):
    """``count``: updates made so far; ``inner``: per-array states, in the structure of params."""

    count: Any
    inner: Any


class Optimizer:
    """An update rule (a :class:`~optimlab.transforms.Transform`) lifted to parameter trees.

    Made by the constructors (:func:`optimlab.adam` and friends); ``hyperparams`` records the
    arguments they were given. ``nonfinite`` is the policy for a NaN or infinite gradient:
    ``"raise"`` (default) raises :class:`FloatingPointError` naming the step and the array;
    ``"skip"`` returns zero updates and the state unchanged (the step does not count).

    ``state_dtype``, ``param_update`` and ``seed``: the dtype of the state (and of the
    rule's arithmetic) and how low-precision params take the step; see
    :mod:`optimlab.precision`. The defaults keep the state in the params' dtype (float64 or
    float32; float16 and bfloat16 params are refused without a ``state_dtype``).
    """

    def __init__(self, transform, name, hyperparams, nonfinite="raise", *, state_dtype=None,
                 param_update="nearest", seed=0):
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"nonfinite must be 'raise' or 'skip'; got {nonfinite!r}")
        self.transform = transform
        self.name = name
        self.hyperparams = dict(hyperparams)
        self.nonfinite = nonfinite
        self.state_dtype = precision.check_state_dtype(state_dtype)
        self.param_update = precision.check_param_update(param_update)
        self.seed = precision.check_seed(seed)
        self._layouts = {}  # (rank, dtype) -> the layout and dtypes of the state init() makes

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams.items())
        return f"{self.name}({args})"

    def skip_nonfinite(self):
        """The same optimizer, but a step with a NaN or infinite gradient is skipped."""
        return Optimizer(self.transform, self.name, self.hyperparams, nonfinite="skip",
                         state_dtype=self.state_dtype, param_update=self.param_update,
                         seed=self.seed)

    # -- the pure API -------------------------------------------------------------------------
    def init(self, params):
        """The initial state for ``params`` (an ndarray or a dict/list/tuple of them)."""
        def leaf(path, p, opt=self):
            p = _check_param(path, p)
            return opt._init_leaf(p, opt._state_dtype(path, p))

        return OptState(0, self._map_leaves(leaf, params))

    def update(self, grads, state, params):
        """Return ``(updates, new_state)``; ``params + updates`` are the new parameters."""
        return self._update(grads, state, params)

    def _update(self, grads, state, params, check_updates=True):
        """``update``; with ``check_updates=False`` a non-finite update (from finite gradients)
        is returned instead of raising (``optimlab.models.train`` freezes such runs)."""
        t = _check_state(state) + 1

        def leaf(path, p, g, s, opt=self):
            p = _check_param(path, p)
            g = _check_grad(path, g, p)
            dtype = opt._state_dtype(path, p)
            opt._check_slots(path, s, p)
            if not _finite(g):
                return None
            if opt._plain(p, dtype):
                u, s_new = opt.transform.update(g, s, p, t)
                u = np.asarray(u, dtype=p.dtype)
                s_new = _cast_state(s_new, p.dtype)
            else:
                opt._check_dtypes(path, s, p, writable=False)
                u, s_new = opt._mixed_update(path, g, s, p, t, dtype)
            if check_updates:
                u = _check_update(path, u, t)
            if u.shape != p.shape or any(
                    np.shape(a) != p.shape for a in state_arrays(s_new)):
                raise ValueError(f"the update for {path} has shape {u.shape}, not {p.shape}: "
                                 "do the hyperparameter arrays broadcast against it?")
            return _Leaf((u, s_new))

        # 0/0 or overflow is reported by the checks below, as an error naming the step,
        # not as a NumPy warning first.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = self._map_leaves(leaf, params, grads, state.inner,
                                   names=("grads", "state.inner"))
        if any(o is None for o in leaves(out)):
            return self._nonfinite(grads, state, params, t)
        updates, inner = unzip(out, 2, params)
        return updates, OptState(t, inner)

    # -- the fast path ------------------------------------------------------------------------
    def step(self, params, grads, state, *, check="before_writing"):
        """Update ``params`` and the arrays of ``state`` in place; return the new state.

        The same numbers as ``update`` followed by ``apply_updates``, bit for bit, without
        their temporary arrays: the rule is traced once per step and replayed on cache-sized
        blocks of the flattened arrays (of whole runs, for a batch of runs), or run by a loop
        compiled from the same trace (``optimlab.fused``), on all cores (see
        ``optimlab.fast``; small arrays are updated whole).

        ``check``: when the gradients are checked for NaN and infinity.

        - ``"before_writing"`` (default): all of them, before anything is written; a
          non-finite one raises (or, with :meth:`skip_nonfinite`, skips the step) leaving
          params and state untouched. This reads the gradients one more time.
        - ``"while_writing"``: each value as the update reads it, in the same pass; a
          non-finite one raises ``FloatingPointError`` naming the array and the step once
          params and state are partly updated (as after a non-finite update). The step then
          moves only the bytes it must (torch's fused kernel checks nothing); for a loop
          that stops at the first error. Arrays updated whole (small, untraceable or
          non-contiguous ones, and those with a wider state) are still checked before
          anything is written. Not with :meth:`skip_nonfinite`.

        A non-finite *update* from finite gradients (say 0/0 with ``eps=0``) is only seen
        while writing: it raises, leaving params and state partly updated.
        """
        if check not in ("before_writing", "while_writing"):
            raise ValueError(f"check must be 'before_writing' or 'while_writing'; got {check!r}")
        if check == "while_writing" and self.nonfinite == "skip":
            raise ValueError("check='while_writing' finds a non-finite gradient after writing "
                             "has begun, too late to skip the step; this optimizer skips such "
                             "steps (skip_nonfinite()): use check='before_writing'")
        t = _check_state(state) + 1
        checked = leaves(self._map_leaves(self._check_step_leaf, params, grads, state.inner,
                                          names=("grads", "state.inner")))
        # Arrays whose state has their dtype go to the fast path; the others (another
        # state_dtype, a param_update, bfloat16) are computed whole by update()'s own code.
        pieces = [piece[:4] for piece in checked if piece[5] is None]
        mixed = [piece for piece in checked if piece[5] is not None]
        # One transform for all arrays, or (parameter groups) the transform of each array.
        transforms = [piece[4] for piece in checked if piece[5] is None]
        if len({id(tr) for tr in transforms}) == 1:
            transforms = transforms[0]
        inline = check == "while_writing"
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # Inline, only the arrays the fast path does not update are checked first.
            first = [piece[2] for piece in (mixed if inline else checked)]
            if first and not fast.all_finite(first):
                if self.nonfinite == "skip":
                    return state
                self._nonfinite(grads, state, params, t)
            results = [_step_whole(piece, t) for piece in mixed]
            if pieces:
                fast.step_in_place(transforms, pieces, t, check_grads=inline)
            for (_, p, _, s, _, _), (u, s_new) in zip(mixed, results, strict=True):
                for dst, src in zip(state_arrays(s), state_arrays(s_new), strict=True):
                    dst[...] = src
                p[...] = p + u
        return OptState(t, state.inner)

    def _check_step_leaf(self, path, p, g, s, opt=None):
        opt = self if opt is None else opt
        p = _check_param(path, p)
        if not p.flags.writeable:
            raise ValueError(f"{path} is read-only; step() updates params in place")
        g = _check_grad(path, g, p)
        dtype = opt._state_dtype(path, p)
        opt._check_slots(path, s, p)
        if opt._plain(p, dtype) and not precision.is_bfloat16(p.dtype):
            for a in state_arrays(s):
                if not a.flags.writeable or a.dtype != p.dtype:
                    raise ValueError(f"state.inner at {path} must hold writable {p.dtype} arrays "
                                     "for step(); use update() with this state")
            return _Leaf((path, p, g, s, opt.transform, None))
        opt._check_dtypes(path, s, p, writable=True)
        return _Leaf((path, p, g, s, opt.transform, (opt, dtype)))

    # -- precision ----------------------------------------------------------------------------
    def _state_dtype(self, path, p):
        """The dtype of the state of ``p`` (checked against the params' dtype)."""
        if self.state_dtype is None:
            if precision.is_low(p.dtype):
                raise TypeError(
                    f"{path} has dtype {_name(p.dtype)}; optimlab updates float16 and bfloat16 "
                    "params only with the state kept in float32: give the constructor "
                    "state_dtype=np.float32 (mixed precision), or the params' own dtype to "
                    f"keep the state in {_name(p.dtype)} deliberately (eps=1e-8 rounds to 0 in "
                    "float16, betas[1]=0.999 to 1 in bfloat16; see optimlab.precision)")
            return p.dtype
        dtype = self.state_dtype
        if self.param_update == "stochastic" and dtype.itemsize <= p.dtype.itemsize:
            raise ValueError(f"param_update='stochastic' rounds the sum computed in state_dtype "
                             f"to the params' dtype; it needs a state_dtype wider than "
                             f"{path}'s {_name(p.dtype)}; got state_dtype={_name(dtype)}")
        return dtype

    def _plain(self, p, dtype):
        """True when the state has the params' dtype and the params take the step as it is."""
        return dtype == p.dtype and self.param_update == "nearest"

    def _init_leaf(self, p, dtype):
        if self._plain(p, dtype):
            return _cast_state(self.transform.init(p), p.dtype)
        s = _cast_state(self.transform.init(p.astype(dtype)), dtype)
        if self.param_update == "master":
            return ChainState((s, precision.MasterState(p.astype(dtype))))
        if self.param_update == "kahan":
            return ChainState((s, precision.KahanState(np.zeros_like(p))))
        return s

    def _mixed_update(self, path, g, s, p, t, dtype):
        """``update`` for an array whose state is not plain (see :mod:`optimlab.precision`)."""
        policy = self.param_update
        rule_state, extra = (s[0], s[1]) if policy in ("master", "kahan") else (s, None)
        p_s = extra.theta if policy == "master" else p.astype(dtype)
        u_s, rule_new = self.transform.update(g.astype(dtype), rule_state, p_s, t)
        u_s = np.asarray(u_s).astype(dtype, copy=False)
        rule_new = _cast_state(rule_new, dtype)
        if policy == "nearest":
            return u_s.astype(p.dtype), rule_new
        if policy == "master":
            theta = np.asarray(p_s + u_s).astype(dtype, copy=False)
            new = theta.astype(p.dtype)
            return _diff(new, p), ChainState((rule_new, precision.MasterState(theta)))
        if policy == "kahan":
            y = _diff(u_s.astype(p.dtype), extra.c)
            new = np.asarray(p + y).astype(p.dtype, copy=False)
            u = _diff(new, p)
            return u, ChainState((rule_new, precision.KahanState(_diff(u, y))))
        new = precision.stochastic_round(np.asarray(p_s + u_s).astype(dtype, copy=False),
                                         p.dtype, precision.rng_for(self.seed, t, path))
        return _diff(new, p), rule_new

    def _check_dtypes(self, path, s, p, writable):
        """The state of a non-plain array must have the dtypes its ``init`` gives."""
        expected = self._layouts[(p.ndim, p.dtype)][1]
        got = tuple(a.dtype for a in state_arrays(s))
        if got != expected:
            raise TypeError(f"state.inner at {path} holds arrays of dtypes "
                            f"({', '.join(map(_name, got))}) but this optimizer keeps "
                            f"({', '.join(map(_name, expected))}) for {_name(p.dtype)} params; "
                            "was the state made by its init()?")
        if writable and not all(a.flags.writeable for a in state_arrays(s)):
            raise ValueError(f"state.inner at {path} must hold writable arrays for step()")

    # -- parameter groups ---------------------------------------------------------------------
    def _leaf_optimizers(self, params):
        """The optimizer that updates each array of ``params``, as a tree in params' structure;
        None when it is this one everywhere (a :class:`~optimlab.Partition` routes
        each array to the optimizer of its group)."""
        return None

    def _map_leaves(self, fn, params, *others, names=()):
        """``map_leaves(fn, params, *others)``, with the array's optimizer as a last argument
        to ``fn`` when the arrays do not all share this one."""
        rules = self._leaf_optimizers(params)
        if rules is None:
            return map_leaves(fn, params, *others, names=names)
        return map_leaves(fn, params, *others, rules, names=(*names, "labels"))

    def _check_slots(self, path, s, p):
        """``s`` must be a state this optimizer's ``init`` makes for ``p``: same kind, same shapes."""
        key = (p.ndim, p.dtype)
        if key not in self._layouts:
            made = self._init_leaf(np.zeros((1,) * p.ndim, p.dtype), self._state_dtype("", p))
            self._layouts[key] = (_layout(made), tuple(a.dtype for a in state_arrays(made)))
        layout = self._layouts[key][0]
        if _layout(s) != layout:
            raise ValueError(f"state.inner at {path} was not made by this optimizer's init(): "
                             f"expected {_describe(layout)}, got {_describe(_layout(s))}")
        for a in state_arrays(s):
            if a.shape != p.shape:
                raise ValueError(f"state.inner at {path} holds an array of shape {a.shape} but "
                                 f"{path} has shape {p.shape}; was the state made for other params?")

    def _nonfinite(self, grads, state, params, t):
        if self.nonfinite == "skip":
            return map_leaves(lambda _, p: np.zeros_like(p), params), state
        # Only reached after the structures matched, so params' walk reaches every gradient.
        found = map_leaves(lambda path, p, g: None if _finite(np.asarray(g)) else path,
                           params, grads)
        bad = [path for path in leaves(found) if path is not None]
        raise FloatingPointError(fast.nonfinite_gradient_message(bad, t) + "; fix the gradient, "
                                 "or use opt.skip_nonfinite() to skip such steps")


def apply_updates(params, updates):
    """``params + updates``, leaf by leaf, in the structure and dtypes of ``params``."""

    def leaf(path, p, u):
        p = _check_param(path, p, allow_any_float=True)
        u = np.asarray(u)
        if u.shape != p.shape:
            raise ValueError(f"updates at {path} has shape {u.shape} but params has {p.shape}")
        return np.asarray(p + u).astype(p.dtype, copy=False)  # an array also for 0-d params

    return map_leaves(leaf, params, updates, names=("updates",))


class _Leaf(tuple):
    """A (param, grad, state) triple, kept whole by the tree walkers."""

    _fields = ()


def _diff(a, b):
    """``a - b`` in the dtype of ``a`` (the params' format)."""
    return np.asarray(a - b).astype(a.dtype, copy=False)


def _step_whole(piece, t):
    """The (update, new state) of one non-plain array for ``step``, checked, not yet written."""
    path, p, g, s, _, (opt, dtype) = piece
    u, s_new = opt._mixed_update(path, g, s, p, t, dtype) if not opt._plain(p, dtype) else (
        opt.transform.update(g, s, p, t))
    u = np.asarray(u, dtype=p.dtype)
    s_new = _cast_state(s_new, dtype) if opt._plain(p, dtype) else s_new
    if not _finite(u):
        raise FloatingPointError(f"the update for {path} became non-finite at step {t} "
                                 "(is eps 0 where a gradient is 0, or are params non-finite?); "
                                 "params and state may be partly updated")
    return u, s_new


def _cast_state(s, dtype):
    return map_state(lambda a: np.asarray(a).astype(dtype, copy=False), s)


def _check_state(state):
    if not isinstance(state, OptState):
        raise TypeError(f"state must be the OptState returned by init() or update(); "
                        f"got {type(state).__name__}")
    return state.count


def _check_param(path, p, allow_any_float=False):
    if not isinstance(p, np.ndarray):
        raise TypeError(f"{path} must be a NumPy array; got {type(p).__name__}")
    if not precision.is_float(p.dtype):
        raise TypeError(f"{path} has dtype {p.dtype}; params must be float32 or float64 arrays "
                        "(float16 and bfloat16 ones with a state_dtype: see optimlab.precision)")
    return p


def _check_grad(path, g, p):
    gpath = "grads" + path[len("params"):]
    g = np.asarray(g)
    if g.shape != p.shape:
        raise ValueError(f"{gpath} has shape {g.shape} but {path} has shape {p.shape}")
    if g.dtype != p.dtype:
        if not np.can_cast(g.dtype, p.dtype, "same_kind"):
            raise TypeError(f"{gpath} has dtype {g.dtype}, which cannot be cast to {path}'s "
                            f"{p.dtype}")
        g = g.astype(p.dtype)
    return g


def _layout(state):
    """The kinds of a state's parts: NamedTuple names, "array" and None, nested."""
    if isinstance(state, np.ndarray | np.generic):
        return "array"
    if isinstance(state, tuple):
        return (type(state).__name__, *(_layout(x) for x in state))
    return None if state is None else type(state).__name__


def _describe(layout):
    if isinstance(layout, tuple):
        name, *parts = layout
        return f"{name}({', '.join(map(_describe, parts))})" if name != "ChainState" \
            else ", ".join(d for d in map(_describe, parts) if d != "EmptyState()")
    return str(layout)


def _check_update(path, u, t):
    if not _finite(u):
        raise FloatingPointError(f"the update for {path} became non-finite at step {t} "
                                 "(is eps 0 where a gradient is 0, or are params non-finite?)")
    return u
