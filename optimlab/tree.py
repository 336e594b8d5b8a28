"""Parameter containers: an ndarray, or a dict, list or tuple of them (nested freely).

Every function here walks the structure of ``params`` and reads the other trees at the same
places, so that a mismatch is reported with the path where it occurs.
"""

import numpy as np


def _items(tree):
    if isinstance(tree, dict):
        return list(tree.items())
    return list(enumerate(tree))


def is_container(tree):
    return isinstance(tree, dict | list | tuple) and not hasattr(tree, "_fields")


def _same_structure(ref, other, path, other_name):
    if isinstance(ref, dict):
        if not isinstance(other, dict) or set(other) != set(ref):
            keys = sorted(map(repr, other)) if isinstance(other, dict) else type(other).__name__
            raise ValueError(f"{other_name} does not match the structure of params at {path}: "
                             f"expected a dict with keys {sorted(map(repr, ref))}, got {keys}")
    elif not isinstance(other, list | tuple) or hasattr(other, "_fields") or len(other) != len(ref):
        got = f"{type(other).__name__} of length {len(other)}" if isinstance(other, list | tuple) \
            else type(other).__name__
        raise ValueError(f"{other_name} does not match the structure of params at {path}: "
                         f"expected a {type(ref).__name__} of length {len(ref)}, got {got}")


def map_leaves(fn, params, *others, names=(), path="params"):
    """Call ``fn(path, p, *others_at_p)`` at every array of ``params``; return the results in
    the structure of params. ``names`` name the other trees in error messages."""
    if not is_container(params):
        return fn(path, params, *others)
    for other, name in zip(others, names, strict=False):
        _same_structure(params, other, path, name)
    out = {}
    for key, p in _items(params):
        sub = f"{path}[{key!r}]"
        out[key] = map_leaves(fn, p, *(o[key] for o in others), names=names, path=sub)
    if isinstance(params, dict):
        return out
    return type(params)(out[i] for i in range(len(params)))


def leaves(tree):
    """The arrays of a parameter tree, in order."""
    if not is_container(tree):
        return [tree]
    return [leaf for _, sub in _items(tree) for leaf in leaves(sub)]


def unzip(tree, n, like):
    """Split a tree whose leaves are n-tuples into n trees, following the structure of ``like``."""
    return tuple(_pick(tree, like, i) for i in range(n))


def _pick(tree, like, i):
    if not is_container(like):
        return tree[i]
    picked = {k: _pick(tree[k], sub, i) for k, sub in _items(like)}
    if isinstance(like, dict):
        return picked
    return type(like)(picked[j] for j in range(len(like)))


def state_arrays(state):
    """The ndarrays held in a (nested NamedTuple/tuple) state, in order."""
    if isinstance(state, np.ndarray | np.generic):
        return [state]
    if isinstance(state, tuple):
        return [a for s in state for a in state_arrays(s)]
    return []


def map_state(fn, state):
    """Apply ``fn`` to every ndarray of a state, keeping its NamedTuple/tuple structure."""
    if isinstance(state, np.ndarray | np.generic):
        return fn(state)
    if hasattr(state, "_fields"):
        return type(state)(*(map_state(fn, s) for s in state))
    if isinstance(state, tuple):
        return type(state)(map_state(fn, s) for s in state)
    return state
