"""optimlab: the optimizers of *Optimizers from first principles*, small, exact and vectorized.

    import optimlab as ol
    opt = ol.adam(lr=1e-3)                              # torch.optim's names and defaults
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)   # pure
    params = ol.apply_updates(params, updates)
    state = opt.step(params, grads, state)              # in place, fast

Parameter groups: ``ol.partition({"decay": ol.adamw(...), "no_decay": ol.sgd(...)}, labels)``;
decay masks: ``ol.adamw(..., mask={"W": True, "b": False})`` (:mod:`optimlab.groups`).

Every update rule is written once (:mod:`optimlab.transforms`) and runs on arrays, on
blocks of arrays (``step``) and on sympy symbols (:mod:`optimlab.symbolic`).
"""

import importlib

from . import groups, ops, transforms
from .groups import Partition, partition
from .optimizer import Optimizer, OptState, apply_updates
from .optimizers import adagrad, adam, adamw, inverse_time_decay, rmsprop, sgd
from .transforms import Transform, chain


def run(opt, objective, x0, steps):
    """Shortcut for :func:`optimlab.runner.run`."""
    from .runner import run as _run

    return _run(opt, objective, x0, steps)

__version__ = "0.1.0"

_LAZY = ("symbolic", "schedules", "objectives", "runner", "plotting", "datasets", "models", "listing",
         "translation", "fused")


def __getattr__(name):
    # Submodules that import sympy or matplotlib load on first use, keeping `import optimlab` light.
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'optimlab' has no attribute {name!r}")


__all__ = ["Optimizer", "OptState", "Partition", "Transform", "adagrad", "adam", "adamw",
           "apply_updates", "chain", "groups", "inverse_time_decay", "ops", "partition", "precision",
           "rmsprop", "run", "sgd", "transforms", *_LAZY]
