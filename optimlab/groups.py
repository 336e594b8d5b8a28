r"""Parameter groups and decay masks: a different optimizer for different arrays of one tree.

    opt = ol.partition({"decay": ol.adamw(lr=1e-3, weight_decay=0.1),
                        "no_decay": ol.adamw(lr=1e-3, weight_decay=0.0)},
                       labels={"W": "decay", "b": "no_decay"})
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)   # pure
    state = opt.step(params, grads, state)              # in place, fast

Every array of ``params`` gets a *label*, and the optimizer of that label updates it:
for an array :math:`\theta_i` with label :math:`\ell_i`,

.. math::
    u_i = \mathrm{update}_{\ell_i}(g_i, s_i, \theta_i, t),

with one step count :math:`t` for all groups (they step together). This is what
``torch.optim`` calls *parameter groups* (a list of ``{"params": [...], "lr": ...,
"weight_decay": ...}`` dicts given to one optimizer; see "Per-parameter options" in the
``torch.optim`` documentation) and what optax calls ``optax.multi_transform(transforms,
param_labels)``. The decay masks of the constructors (``ol.adamw(..., mask=...)``, optax's
``optax.masked`` / ``add_decayed_weights(mask=...)``) are the two-group special case: the
optimizer itself where the mask is True, the same optimizer with ``weight_decay=0`` where it
is False (see :func:`masked`).

The state is the one each array's optimizer makes for it, in the structure of ``params``
(``state.inner["W"].m`` as for a single optimizer), with one shared ``count``.

**Labels.** A tree in the structure of params whose leaves are labels (strings, or any
hashable value that is not a dict, list or tuple), or a callable ``params -> tree``
evaluated at every ``init``, ``update`` and ``step``. A label may also stand for a whole
sub-tree (``{"encoder": "frozen", "head": "train"}`` when ``params["encoder"]`` is a dict),
as in optax. A tree that does not match params, a label that is not a key of
``optimizers`` or a leaf of the wrong kind raise a ``ValueError``/``TypeError`` naming the
place in params. An optimizer whose label no array carries is allowed (as in optax): a
label function then works for models with and without, say, biases;
:meth:`Partition.groups` lists which arrays each optimizer updates, for a check.
"""

import numpy as np

from .optimizer import Optimizer
from .tree import _same_structure, is_container, map_leaves


class Partition(Optimizer):
    """Several optimizers, each updating the arrays of ``params`` that carry its label.

    It has the :class:`~optimlab.optimizer.Optimizer` contract: ``init``, the pure
    ``update``, ``apply_updates`` and the in-place ``step`` (bit for bit the same numbers),
    the same checks of params, gradients and state, and a policy for non-finite gradients:
    ``nonfinite=None`` takes the members' common policy (they must agree: the groups take
    each step together, so a step is raised or skipped as a whole), or give ``"raise"`` or
    ``"skip"``. Make one with :func:`partition` (or a constructor's ``mask=``).
    """

    def __init__(self, optimizers, labels, *, name="partition", hyperparams=None,
                 nonfinite=None, label_name="labels"):
        if not isinstance(optimizers, dict) or not optimizers:
            raise TypeError("optimizers must be a non-empty dict label -> Optimizer; got "
                            f"{optimizers!r}")
        for key, opt in optimizers.items():
            if is_container(key) or not _hashable(key):
                raise TypeError(f"the labels of optimizers must be hashable values other than "
                                f"dicts, lists and tuples; got {key!r}")
            if not isinstance(opt, Optimizer):
                raise TypeError(f"optimizers[{key!r}] must be an Optimizer (ol.adam(...) and "
                                f"friends, or a partition); got {type(opt).__name__}")
        if nonfinite is None:
            policies = {key: opt.nonfinite for key, opt in optimizers.items()}
            if len(set(policies.values())) > 1:
                raise ValueError("the optimizers disagree about non-finite gradients "
                                 f"({', '.join(f'{k!r}: {v!r}' for k, v in policies.items())});"
                                 " the groups take each step together: make them agree, or "
                                 "give nonfinite='raise' or 'skip'")
            nonfinite = next(iter(policies.values()))
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"nonfinite must be None, 'raise' or 'skip'; got {nonfinite!r}")
        self.optimizers = dict(optimizers)
        if not callable(labels):  # a fixed tree: its labels are checked now, its shape later
            _check_tree(labels, label_name)
            _walk(labels, label_name, self._check_label)
        self.labels = labels
        self.label_name = label_name
        self.name = name
        self.hyperparams = dict(hyperparams) if hyperparams is not None else dict(
            optimizers=self.optimizers, labels=labels)
        self.nonfinite = nonfinite

    @property
    def transform(self):
        raise AttributeError("a partition has one transform per group, not one transform; "
                             "use opt.optimizers[label].transform")

    def skip_nonfinite(self):
        """The same partition, but a step with a NaN or infinite gradient is skipped."""
        return Partition(self.optimizers, self.labels, name=self.name,
                         hyperparams=self.hyperparams, nonfinite="skip",
                         label_name=self.label_name)

    def label_tree(self, params):
        """The label of every array of ``params``, as a tree in params' structure (checked)."""
        tree = self.labels(params) if callable(self.labels) else self.labels
        shown = f"{self.label_name}(params)" if callable(self.labels) else self.label_name
        if callable(self.labels):
            _check_tree(tree, shown)
        tree = _broadcast(tree, params, "params", shown)
        return map_leaves(lambda path, p, label: self._check_label(f"{shown} at {path}", label),
                          params, tree, names=(shown,))

    def groups(self, params):
        """``{label: [paths of the arrays it updates]}``, for every label (empty lists for an
        optimizer no array uses)."""
        out = {key: [] for key in self.optimizers}
        map_leaves(lambda path, p, label: out[label].append(path), params,
                   self.label_tree(params))
        return out

    def _check_label(self, where, label):
        if not _hashable(label):
            raise TypeError(f"{where} must be one label (a key of optimizers: "
                            f"{_keys(self.optimizers)}); got {_short(label)}")
        if label not in self.optimizers:
            raise ValueError(f"{where} is {label!r}, which is not a label of the "
                             f"optimizers: {_keys(self.optimizers)}")
        return label

    def _leaf_optimizers(self, params):
        labels = self.label_tree(params)
        # A member that is itself a partition routes each array on: it labels the whole tree
        # (its own labels must match params), and the arrays of its group take its choice.
        routed = {}
        for key, opt in self.optimizers.items():
            sub = opt._leaf_optimizers(params)
            routed[key] = sub if sub is not None else map_leaves(lambda path, p, o=opt: o, params)
        keys = list(self.optimizers)
        return map_leaves(lambda path, p, label, *subs: subs[keys.index(label)],
                          params, labels, *(routed[k] for k in keys))


class _MaskPartition(Partition):
    """A constructor's ``mask=``: labels True (decay) and False (no decay), bools only."""

    def _check_label(self, where, label):
        if not isinstance(label, bool | np.bool_):
            raise TypeError(f"{where} must be True (decay) or False (no decay), one bool per "
                            f"parameter array (or sub-tree); got {_short(label)}")
        return bool(label)

    def skip_nonfinite(self):
        return _MaskPartition(self.optimizers, self.labels, name=self.name,
                              hyperparams=self.hyperparams, nonfinite="skip",
                              label_name=self.label_name)


def partition(optimizers, labels, *, nonfinite=None):
    r"""One optimizer made of several: ``optimizers[label]`` updates the arrays of params whose
    label is ``label`` (torch.optim's parameter groups, optax's ``multi_transform``).

    Args:
        optimizers: a dict ``label -> Optimizer`` (a constructor's result, or a partition).
        labels: a tree of labels in the structure of params (a label may stand for a whole
            sub-tree), or a callable ``params -> tree`` of them.
        nonfinite: the policy for a non-finite gradient: None (default) takes the optimizers'
            common one (``opt.skip_nonfinite()`` or not); ``"raise"`` or ``"skip"``.

    Returns:
        A :class:`Partition`, with ``init``, ``update`` and ``step`` as any optimizer. An
        optimizer that no array uses is allowed; ``opt.groups(params)`` shows the routing.

    Example (the usual decay / no-decay groups: no weight decay for biases and gains)::

        opt = ol.partition({"decay": ol.adamw(lr=1e-3, weight_decay=0.1),
                            "no_decay": ol.adamw(lr=1e-3, weight_decay=0.0)},
                           lambda params: {k: "decay" if k.startswith("W") else "no_decay"
                                           for k in params})

    is ``torch.optim.AdamW([{"params": weights, "weight_decay": 0.1},
    {"params": others, "weight_decay": 0.0}], lr=1e-3)``.
    """
    return Partition(optimizers, labels, nonfinite=nonfinite)


def masked(decay, no_decay, mask):
    """The optimizer of a constructor's ``mask=``: ``decay`` where ``mask`` is True, ``no_decay``
    (the same optimizer with ``weight_decay=0``) where it is False.

    ``mask`` is a tree of bools in the structure of params (a bool may stand for a sub-tree)
    or a callable ``params -> tree``; e.g. ``lambda p: {k: v.ndim >= 2 for k, v in p.items()}``
    decays the weight matrices and not the biases (the usual rule; what optax's examples and
    BERT's ``no_decay`` list do).
    """
    hyper = {**decay.hyperparams, "mask": mask}
    return _MaskPartition({True: decay, False: no_decay}, mask, name=decay.name,
                          hyperparams=hyper, nonfinite=decay.nonfinite, label_name="mask")


def _check_tree(tree, shown):
    """A labels tree must be made of dicts, lists, tuples and labels (no arrays of labels)."""
    if isinstance(tree, np.ndarray) and tree.ndim > 0:
        raise TypeError(f"{shown} must be a tree of labels in the structure of params (one "
                        f"label per array), not an array of shape {tree.shape}")


def _walk(tree, path, check):
    """Call ``check(path, label)`` at every leaf of a labels tree."""
    if is_container(tree):
        for key, sub in (tree.items() if isinstance(tree, dict) else enumerate(tree)):
            _walk(sub, f"{path}[{key!r}]", check)
    else:
        check(path, tree)


def _broadcast(tree, params, path, shown):
    """``tree`` in the full structure of params: a leaf of ``tree`` where params has a sub-tree
    labels all of it. Containers must match params' (same keys or lengths)."""
    if not is_container(params):
        if is_container(tree):
            raise ValueError(f"{shown} does not match the structure of params at {path}: "
                             f"expected one label for this array, got a {type(tree).__name__}")
        return tree
    if not is_container(tree):
        return map_leaves(lambda _, p: tree, params, path=path)
    _same_structure(params, tree, path, shown)
    items = params.items() if isinstance(params, dict) else enumerate(params)
    out = {key: _broadcast(tree[key], sub, f"{path}[{key!r}]", shown) for key, sub in items}
    if isinstance(params, dict):
        return out
    return type(params)(out[i] for i in range(len(params)))


def _hashable(x):
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _keys(optimizers):
    return ", ".join(map(repr, optimizers))


def _short(x):
    text = repr(x)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} of type {type(x).__name__}"
