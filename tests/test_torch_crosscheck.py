"""optimlab against torch.optim itself: same keywords, same float64 trajectories.

Each case runs STEPS updates from the same start, on a parameter-dependent gradient, through
``torch.optim.<Class>`` and through ``ol.<constructor>`` with the same keyword arguments, for
two parameter tensors in one group (so torch's multi-tensor path really batches). Trajectories
must agree elementwise to |a - b| <= 1e-12 * max(1, |b|) (scale-aware).

torch is checked in three modes: its default (on CPU tensors torch picks the for-loop
implementation; foreach is its default only on CUDA), ``foreach=True`` (the multi-tensor
implementation) and ``foreach=False``. Without torch these tests are skipped, unless
OPTIMLAB_REQUIRE_TORCH=1 (set in CI) turns the absence into a failure (see conftest.py).
"""

import numpy as np
import pytest

import optimlab as ol

STEPS = 120
RTOL = 1e-12
IMPLEMENTATIONS = {"default": {}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}

_rng = np.random.default_rng(7)
_Q, _ = np.linalg.qr(_rng.normal(size=(10, 10)))
A = _Q @ np.diag(np.geomspace(0.5, 5.0, 10)) @ _Q.T
PHASE = _rng.uniform(0.0, 2 * np.pi, size=10)
START = {"w": _rng.normal(scale=2.0, size=(2, 3)), "b": _rng.normal(scale=2.0, size=4)}


def grad(x, t):
    """Gradient at update t of 1/2 (x - c_t)^T A (x - c_t) - (1/6) sum cos(3x), x of 10 values:
    the centre c_t moves, so the optimizers chase it and never sit at a stationary point."""
    centre = 1.5 * np.sin(t / 15.0 + PHASE)
    return A @ (x - centre) + 0.5 * np.sin(3.0 * x)


def flat(w, b):
    return np.concatenate([np.ravel(w), np.ravel(b)])


def scaled_difference(actual, expected):
    assert actual.shape == expected.shape
    assert np.isfinite(actual).all() and np.isfinite(expected).all()
    return float((np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))).max())


def run_optimlab(opt, steps=STEPS):
    params = {k: v.copy() for k, v in START.items()}
    state = opt.init(params)
    path = [flat(params["w"], params["b"])]
    for t in range(1, steps + 1):
        g = grad(path[-1], t)
        grads = {"w": g[:6].reshape(2, 3), "b": g[6:]}
        updates, state = opt.update(grads, state, params)
        params = ol.apply_updates(params, updates)
        path.append(flat(params["w"], params["b"]))
    return np.stack(path)


def run_torch(torch, cls, kwargs, steps=STEPS, scheduler=None):
    w = torch.tensor(START["w"], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(START["b"], dtype=torch.float64, requires_grad=True)
    opt = cls([w, b], **kwargs)
    sched = scheduler(opt) if scheduler else None
    path = [flat(w.detach().numpy(), b.detach().numpy())]
    for t in range(1, steps + 1):
        g = grad(path[-1], t)
        w.grad = torch.tensor(g[:6].reshape(2, 3), dtype=torch.float64)
        b.grad = torch.tensor(g[6:], dtype=torch.float64)
        opt.step()
        if sched is not None:
            sched.step()
        path.append(flat(w.detach().numpy().copy(), b.detach().numpy().copy()))
    return np.stack(path)


def check(torch, torch_name, ol_opt, kwargs, impl, scheduler=None):
    cls = getattr(torch.optim, torch_name)
    expected = run_torch(torch, cls, {**kwargs, **IMPLEMENTATIONS[impl]}, scheduler=scheduler)
    err = scaled_difference(run_optimlab(ol_opt), expected)
    assert err <= RTOL, f"{torch_name}({kwargs}) [{impl}]: max scaled difference {err:.3e}"
    # A guard against a vacuous pass: the run went somewhere.
    assert np.abs(expected[-1] - expected[0]).max() > 0.5
    return err


CASES = [
    ("SGD", "sgd", dict(lr=0.05)),
    ("SGD", "sgd", dict(lr=0.05, weight_decay=0.1)),
    ("SGD", "sgd", dict(lr=0.03, momentum=0.9)),
    ("SGD", "sgd", dict(lr=0.03, momentum=0.9, dampening=0.3)),
    ("SGD", "sgd", dict(lr=0.03, momentum=0.9, nesterov=True)),
    ("SGD", "sgd", dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.05)),
    ("SGD", "sgd", dict(lr=0.04, momentum=0.7, dampening=0.5, weight_decay=0.2)),
    ("Adagrad", "adagrad", dict(lr=0.5)),
    ("Adagrad", "adagrad", dict(lr=0.5, lr_decay=0.05)),
    ("Adagrad", "adagrad", dict(lr=0.3, initial_accumulator_value=0.3, eps=1e-3)),
    ("Adagrad", "adagrad", dict(lr=0.6, lr_decay=0.01, weight_decay=0.1)),
    ("RMSprop", "rmsprop", dict(lr=0.01)),
    ("RMSprop", "rmsprop", dict(lr=0.01, alpha=0.9, eps=1e-4)),
    ("RMSprop", "rmsprop", dict(lr=0.005, momentum=0.9)),
    ("RMSprop", "rmsprop", dict(lr=0.01, centered=True)),
    ("RMSprop", "rmsprop", dict(lr=0.005, alpha=0.95, momentum=0.5, centered=True,
                                weight_decay=0.1)),
    ("RMSprop", "rmsprop", dict(lr=0.01, weight_decay=0.2)),
    ("Adam", "adam", dict(lr=0.02)),
    ("Adam", "adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-3)),
    ("Adam", "adam", dict(lr=0.02, weight_decay=0.1)),
    ("Adam", "adam", dict(lr=0.02, amsgrad=True)),
    ("Adam", "adam", dict(lr=0.03, betas=(0.7, 0.95), weight_decay=0.05, amsgrad=True)),
    ("Adam", "adam", dict(lr=0.02, betas=(0.0, 0.99))),
    ("Adam", "adam", dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", "adamw", dict(lr=0.02)),
    ("AdamW", "adamw", dict(lr=0.02, weight_decay=0.1)),
    ("AdamW", "adamw", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.3)),
    ("AdamW", "adamw", dict(lr=0.02, weight_decay=0.1, amsgrad=True)),
]


def case_id(case):
    torch_name, _, kwargs = case
    return f"{torch_name}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_torch(torch, case, impl):
    torch_name, ol_name, kwargs = case
    check(torch, torch_name, getattr(ol, ol_name)(**kwargs), kwargs, impl)


def test_defaults_match_torch(torch):
    # No keywords but lr: the defaults themselves must agree (AdamW's weight_decay=1e-2, ...).
    for torch_name, ol_name, lr in [("SGD", "sgd", 0.05), ("Adagrad", "adagrad", 0.5),
                                    ("RMSprop", "rmsprop", 0.01), ("Adam", "adam", 0.02),
                                    ("AdamW", "adamw", 0.02)]:
        check(torch, torch_name, getattr(ol, ol_name)(lr=lr), dict(lr=lr),
              "default")


def warmup_then_decay(count):
    return min(1.0, (count + 1) / 10) * 0.97**count


SCHEDULED = [
    ("SGD", "sgd", dict(lr=0.05, momentum=0.9)),
    ("SGD", "sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("Adagrad", "adagrad", dict(lr=0.5, lr_decay=0.02)),
    ("RMSprop", "rmsprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("Adam", "adam", dict(lr=0.03, amsgrad=True, weight_decay=0.05)),
    ("AdamW", "adamw", dict(lr=0.03, weight_decay=0.2)),
]


@pytest.mark.parametrize("impl", ["default", "foreach"])
@pytest.mark.parametrize("case", SCHEDULED, ids=case_id)
def test_lambda_lr_scheduler(torch, case, impl):
    # torch: LambdaLR, stepped once after each optimizer.step(), so update t uses
    # base_lr * f(t - 1); optimlab: lr = a callable of count = updates already made.
    torch_name, ol_name, kwargs = case
    base = kwargs["lr"]
    opt = getattr(ol, ol_name)(**{**kwargs, "lr": lambda count: base * warmup_then_decay(count)})
    check(torch, torch_name, opt, kwargs, impl,
          scheduler=lambda o: torch.optim.lr_scheduler.LambdaLR(o, warmup_then_decay))


def test_scheduler_matters(torch):
    # Guard: the schedule changes the torch trajectory, so the test above can fail.
    kwargs = dict(lr=0.05, momentum=0.9)
    plain = run_torch(torch, torch.optim.SGD, kwargs)
    scheduled = run_torch(torch, torch.optim.SGD, kwargs, scheduler=lambda o: (
        torch.optim.lr_scheduler.LambdaLR(o, warmup_then_decay)))
    assert np.abs(plain - scheduled).max() > 0.1


def test_step_lr_and_cosine_schedules(torch):
    sched = ol.schedules
    pairs = [
        (sched.step_decay(0.03, step_size=25, gamma=0.5),
         lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=25, gamma=0.5)),
        (sched.cosine(0.03, total_steps=STEPS, final=0.001),
         lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS, eta_min=0.001)),
    ]
    for schedule, make in pairs:
        check(torch, "Adam", ol.adam(lr=schedule, amsgrad=True),
              dict(lr=0.03, amsgrad=True), "default", scheduler=make)
