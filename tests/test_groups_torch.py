"""Decay masks and parameter groups against torch.optim's parameter groups, in float64.

Three parameter arrays: a weight matrix ``W`` (decayed) and a bias ``b`` and a gain ``gain``
(not decayed, the usual rule). torch gets them as parameter groups,
``[{"params": [W], "weight_decay": wd}, {"params": [b, gain], "weight_decay": 0.0}]``
(different learning rates per group, or two torch optimizers for two optimizer families);
optimlab as ``mask=`` or ``ol.partition``. STEPS updates on a gradient with a random part
(seeded), through ``update`` and through the in-place ``step``. Trajectories must agree to
|a - b| <= 1e-12 * max(1, |b|), elementwise; ``step`` must equal ``update`` bit for bit.
Without torch these tests are skipped, unless OPTIMLAB_REQUIRE_TORCH=1 (see conftest.py).
"""

import numpy as np
import pytest

import optimlab as ol

STEPS = 150
RTOL = 1e-12
SHAPES = {"W": (3, 4), "b": (4,), "gain": (4,)}
SIZE = sum(int(np.prod(s)) for s in SHAPES.values())

_rng = np.random.default_rng(11)
_Q, _ = np.linalg.qr(_rng.normal(size=(SIZE, SIZE)))
A = _Q @ np.diag(np.geomspace(0.3, 4.0, SIZE)) @ _Q.T
NOISE = _rng.normal(scale=0.5, size=(STEPS + 1, SIZE))
START = {k: _rng.normal(scale=1.5, size=s) for k, s in SHAPES.items()}
START["gain"] = 1.0 + 0.1 * START["gain"]


def flat(tree):
    return np.concatenate([np.ravel(tree[k]) for k in SHAPES])


def unflat(x):
    out, i = {}, 0
    for k, s in SHAPES.items():
        n = int(np.prod(s))
        out[k] = x[i:i + n].reshape(s)
        i += n
    return out


def grad(x, t):
    """A quadratic pull toward 1 plus a nonlinear part and fresh seeded noise at every step."""
    return A @ (x - 1.0) + 0.3 * np.sin(2.0 * x) + NOISE[t]


def run_optimlab(opt, fast):
    params = {k: v.copy() for k, v in START.items()}
    state = opt.init(params)
    path = [flat(params)]
    for t in range(1, STEPS + 1):
        grads = unflat(grad(path[-1], t))
        if fast:
            state = opt.step(params, grads, state)
        else:
            updates, state = opt.update(grads, state, params)
            params = ol.apply_updates(params, updates)
        path.append(flat(params))
    return np.stack(path)


def run_torch(torch, make, scheduler=None):
    """``make(tensors)`` returns a list of torch optimizers over the tensors (a dict)."""
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
               for k, v in START.items()}
    optimizers = make(tensors)
    schedulers = [scheduler(o) for o in optimizers] if scheduler else []
    path = [flat({k: v.detach().numpy() for k, v in tensors.items()})]
    for t in range(1, STEPS + 1):
        for k, g in unflat(grad(path[-1], t)).items():
            tensors[k].grad = torch.tensor(g, dtype=torch.float64)
        for o in optimizers:
            o.step()
        for s in schedulers:
            s.step()
        path.append(flat({k: v.detach().numpy().copy() for k, v in tensors.items()}))
    return np.stack(path)


def scaled_difference(actual, expected):
    assert actual.shape == expected.shape
    assert np.isfinite(actual).all() and np.isfinite(expected).all()
    return float((np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))).max())


def warmup_cosine(count):
    return min(1.0, (count + 1) / 10) * 0.5 * (1 + np.cos(np.pi * min(count, STEPS) / STEPS))


def groups(t, decay, no_decay, **common):
    """torch param groups: W with ``decay`` options, b and gain with ``no_decay`` ones."""
    return [{"params": [t["W"]], **decay}, {"params": [t["b"], t["gain"]], **no_decay}], common


def by_weight(p):
    return {k: k == "W" for k in p}


# (id, optimlab optimizer, torch optimizers, LambdaLR multiplier or None)
CASES = [
    ("SGD momentum, masked decay",
     lambda: ol.sgd(lr=0.02, momentum=0.9, weight_decay=0.1, mask=by_weight),
     lambda torch, t, impl: [torch.optim.SGD(
         *groups(t, dict(weight_decay=0.1), dict(weight_decay=0.0))[:1], lr=0.02, momentum=0.9,
         **impl)], None),
    ("SGD nesterov, masked decay, schedule",
     lambda: ol.sgd(lr=lambda c: 0.03 * warmup_cosine(c), momentum=0.8, nesterov=True,
                    weight_decay=0.2, mask={"W": True, "b": False, "gain": False}),
     lambda torch, t, impl: [torch.optim.SGD(
         *groups(t, dict(weight_decay=0.2), dict(weight_decay=0.0))[:1], lr=0.03, momentum=0.8,
         nesterov=True, **impl)], warmup_cosine),
    ("Adam L2, masked",
     lambda: ol.adam(lr=0.02, weight_decay=0.05, mask=by_weight),
     lambda torch, t, impl: [torch.optim.Adam(
         *groups(t, dict(weight_decay=0.05), dict(weight_decay=0.0))[:1], lr=0.02, **impl)],
     None),
    ("Adam L2 amsgrad, masked, schedule",
     lambda: ol.adam(lr=lambda c: 0.03 * warmup_cosine(c), betas=(0.8, 0.99), weight_decay=0.1,
                     amsgrad=True, mask=by_weight),
     lambda torch, t, impl: [torch.optim.Adam(
         *groups(t, dict(weight_decay=0.1), dict(weight_decay=0.0))[:1], lr=0.03,
         betas=(0.8, 0.99), amsgrad=True, **impl)], warmup_cosine),
    ("AdamW, masked",
     lambda: ol.adamw(lr=0.02, weight_decay=0.3, mask=by_weight),
     lambda torch, t, impl: [torch.optim.AdamW(
         *groups(t, dict(weight_decay=0.3), dict(weight_decay=0.0))[:1], lr=0.02, **impl)],
     None),
    ("AdamW, masked, schedule",
     lambda: ol.adamw(lr=lambda c: 0.05 * warmup_cosine(c), weight_decay=0.5, mask=by_weight),
     lambda torch, t, impl: [torch.optim.AdamW(
         *groups(t, dict(weight_decay=0.5), dict(weight_decay=0.0))[:1], lr=0.05, **impl)],
     warmup_cosine),
    ("AdamW groups with their own lr, schedule",
     lambda: ol.partition(
         {"decay": ol.adamw(lr=lambda c: 0.02 * warmup_cosine(c), weight_decay=0.2),
          "no_decay": ol.adamw(lr=lambda c: 0.05 * warmup_cosine(c), weight_decay=0.0,
                               betas=(0.85, 0.995))},
         lambda p: {k: "decay" if k == "W" else "no_decay" for k in p}),
     lambda torch, t, impl: [torch.optim.AdamW(
         *groups(t, dict(weight_decay=0.2, lr=0.02),
                 dict(weight_decay=0.0, lr=0.05, betas=(0.85, 0.995)))[:1], **impl)],
     warmup_cosine),
    ("SGD momentum groups with their own momentum",
     lambda: ol.partition({"decay": ol.sgd(lr=0.02, momentum=0.9, weight_decay=0.1),
                           "no_decay": ol.sgd(lr=0.05, momentum=0.5, dampening=0.2)},
                          {"W": "decay", "b": "no_decay", "gain": "no_decay"}),
     lambda torch, t, impl: [torch.optim.SGD(
         *groups(t, dict(weight_decay=0.1, lr=0.02, momentum=0.9),
                 dict(weight_decay=0.0, lr=0.05, momentum=0.5, dampening=0.2))[:1], **impl)],
     None),
    ("AdamW on W, SGD on b and gain (two torch optimizers)",
     lambda: ol.partition({"adamw": ol.adamw(lr=0.02, weight_decay=0.1),
                           "sgd": ol.sgd(lr=0.05, momentum=0.9)},
                          {"W": "adamw", "b": "sgd", "gain": "sgd"}),
     lambda torch, t, impl: [torch.optim.AdamW([t["W"]], lr=0.02, weight_decay=0.1, **impl),
                             torch.optim.SGD([t["b"], t["gain"]], lr=0.05, momentum=0.9,
                                             **impl)], None),
]
IMPLEMENTATIONS = {"default": {}, "foreach": {"foreach": True}}


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_param_groups(torch, case, impl):
    _, make_ol, make_torch, multiplier = case
    scheduler = None if multiplier is None else (
        lambda o: torch.optim.lr_scheduler.LambdaLR(o, multiplier))
    expected = run_torch(torch, lambda t: make_torch(torch, t, IMPLEMENTATIONS[impl]), scheduler)
    pure = run_optimlab(make_ol(), fast=False)
    err = scaled_difference(pure, expected)
    assert err <= RTOL, f"{case[0]} [{impl}]: max scaled difference {err:.3e}"
    assert run_optimlab(make_ol(), fast=True).tobytes() == pure.tobytes()
    # Guards against a vacuous pass: the runs went somewhere, and the masked arrays were
    # really left undecayed (with decay on every array, torch's trajectory is different).
    assert np.abs(expected[-1] - expected[0]).max() > 0.5


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_decaying_every_array_would_differ(torch, name):
    # The mask matters: torch with one group (decay everywhere) is far from the masked run.
    make_ol = {"SGD": lambda **kw: ol.sgd(lr=0.02, momentum=0.9, weight_decay=0.3, **kw),
               "Adam": lambda **kw: ol.adam(lr=0.02, weight_decay=0.3, **kw),
               "AdamW": lambda **kw: ol.adamw(lr=0.02, weight_decay=0.3, **kw)}[name]
    kwargs = dict(lr=0.02, weight_decay=0.3, **({"momentum": 0.9} if name == "SGD" else {}))
    everywhere = run_torch(torch, lambda t: [getattr(torch.optim, name)(list(t.values()),
                                                                        **kwargs)])
    assert scaled_difference(run_optimlab(make_ol(), fast=False), everywhere) <= RTOL
    masked = run_optimlab(make_ol(mask=by_weight), fast=False)
    assert scaled_difference(masked, everywhere) > 1e-3
