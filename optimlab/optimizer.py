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

from . import fast
from .fast import finite as _finite
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
    """

    def __init__(self, transform, name, hyperparams, nonfinite="raise"):
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"nonfinite must be 'raise' or 'skip'; got {nonfinite!r}")
        self.transform = transform
        self.name = name
        self.hyperparams = dict(hyperparams)
        self.nonfinite = nonfinite
        self._layouts = {}  # (rank, dtype) -> the layout of the state init() makes

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams.items())
        return f"{self.name}({args})"

    def skip_nonfinite(self):
        """The same optimizer, but a step with a NaN or infinite gradient is skipped."""
        return Optimizer(self.transform, self.name, self.hyperparams, nonfinite="skip")

    # -- the pure API -------------------------------------------------------------------------
    def init(self, params):
        """The initial state for ``params`` (an ndarray or a dict/list/tuple of them)."""
        def leaf(path, p, opt=self):
            p = _check_param(path, p)
            return _cast_state(opt.transform.init(p), p.dtype)

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
            opt._check_slots(path, s, p)
            if not _finite(g):
                return None
            u, s_new = opt.transform.update(g, s, p, t)
            u = np.asarray(u, dtype=p.dtype)
            if check_updates:
                u = _check_update(path, u, t)
            if u.shape != p.shape or any(
                    np.shape(a) != p.shape for a in state_arrays(s_new)):
                raise ValueError(f"the update for {path} has shape {u.shape}, not {p.shape}: "
                                 "do the hyperparameter arrays broadcast against it?")
            return _Leaf((u, _cast_state(s_new, p.dtype)))

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
    def step(self, params, grads, state):
        """Update ``params`` and the arrays of ``state`` in place; return the new state.

        The same numbers as ``update`` followed by ``apply_updates``, bit for bit, without
        their temporary arrays: the rule is traced once per step and replayed on cache-sized
        blocks of the flattened arrays (of whole runs, for a batch of runs), on all cores
        (see ``optimlab.fast``; small arrays are updated whole). Every gradient is
        checked before anything is written: a NaN or infinite one raises (or, with
        :meth:`skip_nonfinite`, skips the step) leaving params and state untouched. A
        non-finite *update* with finite gradients (say 0/0 with ``eps=0``) is only seen
        while writing: it raises, leaving params and state partly updated.
        """
        t = _check_state(state) + 1
        checked = self._map_leaves(self._check_step_leaf, params, grads, state.inner,
                                   names=("grads", "state.inner"))
        pieces = [piece[:4] for piece in leaves(checked)]
        # One transform for all arrays, or (parameter groups) the transform of each array.
        transforms = [piece[4] for piece in leaves(checked)]
        if len({id(tr) for tr in transforms}) == 1:
            transforms = transforms[0]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if not fast.all_finite([g for _, _, g, _ in pieces]):
                if self.nonfinite == "skip":
                    return state
                self._nonfinite(grads, state, params, t)
            fast.step_in_place(transforms, pieces, t)
        return OptState(t, state.inner)

    def _check_step_leaf(self, path, p, g, s, opt=None):
        opt = self if opt is None else opt
        p = _check_param(path, p)
        if not p.flags.writeable:
            raise ValueError(f"{path} is read-only; step() updates params in place")
        g = _check_grad(path, g, p)
        opt._check_slots(path, s, p)
        for a in state_arrays(s):
            if not a.flags.writeable or a.dtype != p.dtype:
                raise ValueError(f"state.inner at {path} must hold writable {p.dtype} arrays "
                                 "for step(); use update() with this state")
        return _Leaf((path, p, g, s, opt.transform))

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
            self._layouts[key] = _layout(self.transform.init(np.zeros((1,) * p.ndim, p.dtype)))
        if _layout(s) != self._layouts[key]:
            raise ValueError(f"state.inner at {path} was not made by this optimizer's init(): "
                             f"expected {_describe(self._layouts[key])}, got {_describe(_layout(s))}")
        for a in state_arrays(s):
            if a.shape != p.shape:
                raise ValueError(f"state.inner at {path} holds an array of shape {a.shape} but "
                                 f"{path} has shape {p.shape}; was the state made for other params?")

    def _nonfinite(self, grads, state, params, t):
        if self.nonfinite == "skip":
            return map_leaves(lambda _, p: np.zeros_like(p), params), state
        # Only reached after the structures matched, so params' walk reaches every gradient.
        found = map_leaves(lambda path, p, g: None if _finite(np.asarray(g)) else
                           "grads" + path[len("params"):], params, grads)
        bad = [path for path in leaves(found) if path is not None]
        raise FloatingPointError(f"non-finite gradient at step {t} in {', '.join(bad)}; "
                                 "fix the gradient, or use opt.skip_nonfinite() to skip such steps")


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
    if p.dtype.kind != "f":
        raise TypeError(f"{path} has dtype {p.dtype}; params must be float32 or float64 arrays")
    if p.dtype == np.float16 and not allow_any_float:
        raise TypeError(f"{path} has dtype float16, whose range cannot hold squared gradients "
                        "and eps (they underflow to 0 and 0/0 gives NaN); use float32 or float64")
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
