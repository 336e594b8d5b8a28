"""Bad input fails early and clearly: the error names the argument, the value and what is valid.

Every ``match`` below is a regular expression against the whole message's start, so a test
fails if the message loses the argument's name, the offending value or the valid range.
"""

import math
import re
import warnings

import numpy as np
import pytest

import optimlab as ol

CONSTRUCTORS = {"sgd": ol.sgd, "adagrad": ol.adagrad, "rmsprop": ol.rmsprop, "adam": ol.adam,
                "adamw": ol.adamw}
WITH_EPS = ["adagrad", "rmsprop", "adam", "adamw"]
NAN = math.nan


def message(text):
    """A regex matching ``text`` literally at the start of the message."""
    return "^" + re.escape(text)


# --- hyperparameters at construction -----------------------------------------------------------

@pytest.mark.parametrize("value, shown", [(-0.1, "-0.1"), (NAN, "nan"), (math.inf, "inf")])
@pytest.mark.parametrize("name", list(CONSTRUCTORS))
def test_bad_lr(name, value, shown):
    with pytest.raises(ValueError, match=message(f"lr must be >= 0; got {shown}")):
        CONSTRUCTORS[name](lr=value)


@pytest.mark.parametrize("value, shown", [(-1e-8, "-1e-08"), (NAN, "nan")])
@pytest.mark.parametrize("name", WITH_EPS)
def test_bad_eps(name, value, shown):
    with pytest.raises(ValueError, match=message(f"eps must be >= 0; got {shown}")):
        CONSTRUCTORS[name](eps=value)


@pytest.mark.parametrize("value, shown", [(-0.01, "-0.01"), (NAN, "nan")])
@pytest.mark.parametrize("name", list(CONSTRUCTORS))
def test_bad_weight_decay(name, value, shown):
    with pytest.raises(ValueError, match=message(f"weight_decay must be >= 0; got {shown}")):
        CONSTRUCTORS[name](weight_decay=value)


@pytest.mark.parametrize("value, shown", [(-0.5, "-0.5"), (NAN, "nan"), (1.0, "1.0")])
@pytest.mark.parametrize("name", ["sgd", "rmsprop"])
def test_bad_momentum(name, value, shown):
    with pytest.raises(ValueError, match=message(f"momentum must be in [0, 1); got {shown}")):
        CONSTRUCTORS[name](momentum=value)


@pytest.mark.parametrize("value, shown", [(-0.1, "-0.1"), (NAN, "nan"), (1.0, "1.0")])
def test_bad_alpha(value, shown):
    with pytest.raises(ValueError, match=message(f"alpha must be in [0, 1); got {shown}")):
        ol.rmsprop(alpha=value)


@pytest.mark.parametrize("value, shown", [(-0.1, "-0.1"), (NAN, "nan")])
def test_bad_lr_decay(value, shown):
    with pytest.raises(ValueError, match=message(f"lr_decay must be >= 0; got {shown}")):
        ol.adagrad(lr_decay=value)


@pytest.mark.parametrize("value, shown", [(-0.1, "-0.1"), (NAN, "nan")])
def test_bad_initial_accumulator_value(value, shown):
    with pytest.raises(ValueError,
                       match=message(f"initial_accumulator_value must be >= 0; got {shown}")):
        ol.adagrad(initial_accumulator_value=value)


@pytest.mark.parametrize("value, shown", [(-0.1, "-0.1"), (NAN, "nan"), (1.5, "1.5")])
def test_bad_dampening(value, shown):
    with pytest.raises(ValueError, match=message(f"dampening must be in [0, 1]; got {shown}")):
        ol.sgd(momentum=0.9, dampening=value)


@pytest.mark.parametrize("betas, text", [
    ((1.0, 0.999), "betas[0] must be in [0, 1); got 1.0"),
    ((-0.1, 0.999), "betas[0] must be in [0, 1); got -0.1"),
    ((NAN, 0.999), "betas[0] must be in [0, 1); got nan"),
    ((0.9, 1.0), "betas[1] must be in [0, 1); got 1.0"),
    ((0.9, 1.5), "betas[1] must be in [0, 1); got 1.5"),
    ((0.9, -0.5), "betas[1] must be in [0, 1); got -0.5"),
])
@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_bad_betas(name, betas, text):
    with pytest.raises(ValueError, match=message(text)):
        CONSTRUCTORS[name](betas=betas)


@pytest.mark.parametrize("betas", [(0.9,), (0.9, 0.99, 0.999), 0.9])
def test_betas_must_be_a_pair(betas):
    with pytest.raises(ValueError, match=message("betas must be a pair (beta1, beta2); got")):
        ol.adam(betas=betas)


def test_bad_element_of_a_hyperparameter_array_is_located():
    with pytest.raises(ValueError, match=message("lr must be >= 0; got -0.2 at index (1, 0)")):
        ol.adam(lr=np.array([[0.1], [-0.2], [0.3]]))
    with pytest.raises(ValueError, match=message("betas[1] must be in [0, 1); got 1.0 at index")):
        ol.adam(betas=(0.9, np.array([0.99, 1.0])))


@pytest.mark.parametrize("kwargs", [dict(lr="0.1"), dict(lr=True), dict(lr=None),
                                    dict(weight_decay=[0.1, "x"])])
def test_non_numbers_are_a_type_error(kwargs):
    (name, value), = kwargs.items()
    with pytest.raises(TypeError, match=message(f"{name} must be a real number")):
        ol.sgd(**kwargs)


@pytest.mark.parametrize("kwargs, shown", [
    (dict(momentum=0.0, nesterov=True), "momentum=0.0, dampening=0.0"),
    (dict(nesterov=True), "momentum=0.0, dampening=0.0"),
    (dict(momentum=0.9, dampening=0.1, nesterov=True), "momentum=0.9, dampening=0.1"),
    (dict(momentum=np.array([0.9, 0.0]), nesterov=True), "momentum=array([0.9, 0. ])"),
])
def test_nesterov_needs_momentum_and_no_dampening(kwargs, shown):
    with pytest.raises(ValueError, match=message(
            "nesterov=True requires momentum > 0 and dampening = 0; got " + shown)):
        ol.sgd(**kwargs)


def test_batched_nesterov_is_accepted_when_every_row_is_valid():
    opt = ol.sgd(momentum=np.array([0.5, 0.9]), dampening=np.zeros(2), nesterov=True)
    assert opt.hyperparams["nesterov"] is True


@pytest.mark.parametrize("flag", ["nesterov", "lr_in_buffer", "decoupled_weight_decay"])
def test_flags_must_be_booleans(flag):
    with pytest.raises(TypeError, match=message(f"{flag} must be True or False; got 'yes'")):
        ol.sgd(momentum=0.9, **{flag: "yes"})


@pytest.mark.parametrize("name, flag", [("adam", "amsgrad"), ("adam", "eps_hat"),
                                        ("adamw", "bias_correction"), ("rmsprop", "centered"),
                                        ("adagrad", "eps_inside")])
def test_more_flags_must_be_booleans(name, flag):
    with pytest.raises(TypeError, match=message(f"{flag} must be True or False; got 1")):
        CONSTRUCTORS[name](**{flag: 1})


@pytest.mark.parametrize("kwargs, text", [
    (dict(amsgrad_max="max"), "amsgrad_max must be one of 'raw', 'corrected'; got 'max'"),
    (dict(decay_order="later"), "decay_order must be one of 'before', 'after'; got 'later'"),
])
def test_choices(kwargs, text):
    with pytest.raises(ValueError, match=message(text)):
        ol.adamw(**kwargs)


@pytest.mark.parametrize("make, text", [
    (lambda: ol.adam(schedule_multiplier=0.5), "schedule_multiplier scales decoupled weight decay"),
    (lambda: ol.adamw(schedule_multiplier=-1.0), "schedule_multiplier must be >= 0; got -1.0"),
    (lambda: ol.adam(decay_order="after"), "decay_order='after' is a form of decoupled"),
    (lambda: ol.adamw(eps_hat=True, amsgrad=True, amsgrad_max="corrected"),
     "eps_hat=True works on the raw v"),
    (lambda: ol.sgd(lr_in_buffer=True, decoupled_weight_decay=True),
     "lr_in_buffer=True is the plain heavy-ball form"),
])
def test_incompatible_variants(make, text):
    with pytest.raises(ValueError, match=message(text)):
        make()


def test_nonfinite_policy_is_checked():
    with pytest.raises(ValueError, match=message("nonfinite must be 'raise' or 'skip'; got 'x'")):
        ol.Optimizer(ol.sgd().transform, "sgd", {}, nonfinite="x")


# --- mismatched params, grads and state --------------------------------------------------------

PARAMS = {"w": np.ones((2, 3)), "layers": [np.zeros(3), np.ones(4)]}


def grads_like(params):
    return {"w": np.full((2, 3), 0.5), "layers": [np.full(3, -1.0), np.full(4, 2.0)]}


@pytest.mark.parametrize("grads, text", [
    ({"w": np.ones(6), "layers": [np.ones(3), np.ones(4)]},
     "grads['w'] has shape (6,) but params['w'] has shape (2, 3)"),
    ({"w": np.ones((2, 3)), "layers": [np.ones(3), np.ones((4, 1))]},
     "grads['layers'][1] has shape (4, 1) but params['layers'][1] has shape (4,)"),
    ({"w": np.ones((2, 3))},
     "grads does not match the structure of params at params: expected a dict with keys"),
    ({"w": np.ones((2, 3)), "layers": [np.ones(3)]},
     "grads does not match the structure of params at params['layers']: expected a list of "
     "length 2, got list of length 1"),
    ({"w": np.ones((2, 3)), "layers": np.ones(7)},
     "grads does not match the structure of params at params['layers']: expected a list of "
     "length 2, got ndarray"),
    ([np.ones((2, 3)), [np.ones(3), np.ones(4)]],
     "grads does not match the structure of params at params: expected a dict"),
])
def test_grads_that_do_not_match_params(grads, text):
    opt = ol.adam()
    with pytest.raises(ValueError, match=message(text)):
        opt.update(grads, opt.init(PARAMS), PARAMS)


def test_state_made_for_other_params():
    opt = ol.adam()
    other = {"w": np.ones((3, 2)), "layers": [np.zeros(3), np.ones(4)]}
    with pytest.raises(ValueError, match=message(
            "state.inner at params['w'] holds an array of shape (3, 2) but params['w'] has "
            "shape (2, 3)")):
        opt.update(grads_like(PARAMS), opt.init(other), PARAMS)
    fewer = {"w": np.ones((2, 3)), "layers": [np.zeros(3)]}
    with pytest.raises(ValueError, match=message(
            "state.inner does not match the structure of params at params['layers']")):
        opt.update(grads_like(PARAMS), opt.init(fewer), PARAMS)


def test_state_must_be_an_optstate():
    opt = ol.sgd()
    state = opt.init(PARAMS)
    with pytest.raises(TypeError, match=message(
            "state must be the OptState returned by init() or update(); got tuple")):
        opt.update(grads_like(PARAMS), tuple(state), PARAMS)


def test_grads_of_another_kind_are_refused():
    params = np.ones(3)
    with pytest.raises(TypeError, match=message(
            "grads has dtype complex128, which cannot be cast to params's float64")):
        ol.sgd().update(np.ones(3, complex), ol.sgd().init(params), params)


def test_apply_updates_checks_shapes():
    with pytest.raises(ValueError, match=message(
            "updates at params['w'] has shape (3, 2) but params has (2, 3)")):
        ol.apply_updates({"w": np.ones((2, 3))}, {"w": np.ones((3, 2))})
    with pytest.raises(ValueError, match=message("updates does not match the structure")):
        ol.apply_updates({"w": np.ones(2)}, {"v": np.ones(2)})


# --- parameter dtypes --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_params_are_refused(dtype):
    name = np.dtype(dtype).name
    with pytest.raises(TypeError, match=message(
            f"params['b'] has dtype {name}; params must be float32 or float64 arrays")):
        ol.adam().init({"w": np.ones(2), "b": np.ones(2, dtype)})


def test_float16_params_are_refused_without_a_state_dtype():
    # float16 params need the state in float32 (or, deliberately, in float16): see
    # tests/test_precision.py for what they do with it.
    with pytest.raises(TypeError, match=message("params[1] has dtype float16")):
        ol.adam().init([np.ones(2), np.ones(2, np.float16)])
    # ... at update too, whatever state is passed.
    state = ol.adam().init(np.ones(2, np.float32))
    with pytest.raises(TypeError, match="float16.*state kept in float32.*state_dtype=np.float32"):
        ol.adam().update(np.ones(2, np.float16), state, np.ones(2, np.float16))


@pytest.mark.parametrize("params", [[1.0, 2.0], 3.0, {"w": [1.0]}])
def test_params_must_be_arrays(params):
    with pytest.raises(TypeError, match=r"^params(\[.*\])? must be a NumPy array; got"):
        ol.sgd().init(params)


# --- non-finite gradients ----------------------------------------------------------------------

def run_with_bad_gradient(opt, bad, at_step=3):
    params = {"w": np.ones(3), "b": np.zeros(2)}
    state = opt.init(params)
    for t in range(1, at_step):
        updates, state = opt.update({"w": np.full(3, 0.1 * t), "b": np.ones(2)}, state, params)
        params = ol.apply_updates(params, updates)
    grads = {"w": np.array([0.1, bad, 0.2]), "b": np.ones(2)}
    return params, state, grads


@pytest.mark.parametrize("bad", [NAN, math.inf, -math.inf])
@pytest.mark.parametrize("name", list(CONSTRUCTORS))
def test_nonfinite_gradient_raises_naming_the_step(name, bad):
    opt = CONSTRUCTORS[name]()
    params, state, grads = run_with_bad_gradient(opt, bad)
    with pytest.raises(FloatingPointError, match=message(
            "non-finite gradient at step 3 in grads['w']")):
        opt.update(grads, state, params)


def test_nonfinite_gradient_raises_in_step_and_writes_nothing():
    opt = ol.adam()
    params, state, grads = run_with_bad_gradient(opt, NAN)
    before = {k: v.copy() for k, v in params.items()}
    m_before = state.inner["w"].m.copy()
    with pytest.raises(FloatingPointError, match="step 3"):
        opt.step(params, grads, state)
    np.testing.assert_array_equal(params["w"], before["w"])
    np.testing.assert_array_equal(state.inner["w"].m, m_before)


@pytest.mark.parametrize("name", list(CONSTRUCTORS))
def test_skip_nonfinite_skips_the_step(name):
    opt = CONSTRUCTORS[name](weight_decay=0.1).skip_nonfinite()
    params, state, grads = run_with_bad_gradient(opt, NAN)
    updates, new_state = opt.update(grads, state, params)
    assert all(np.all(u == 0) for u in updates.values())
    assert new_state is state or (new_state.count == state.count == 2)
    # The step after the skipped one is update number 3, as if the bad one never came.
    clean = {"w": np.full(3, 0.3), "b": np.ones(2)}
    u_after_skip, s_after_skip = opt.update(clean, new_state, params)
    u_direct, s_direct = CONSTRUCTORS[name](weight_decay=0.1).update(clean, state, params)
    assert s_after_skip.count == 3
    for k in u_direct:
        np.testing.assert_array_equal(u_after_skip[k], u_direct[k])


def test_skip_nonfinite_in_step():
    opt = ol.adam().skip_nonfinite()
    params, state, grads = run_with_bad_gradient(opt, math.inf)
    before = params["w"].copy()
    new_state = opt.step(params, grads, state)
    assert new_state.count == 2
    np.testing.assert_array_equal(params["w"], before)


# --- schedules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CONSTRUCTORS))
def test_schedule_returning_a_negative_value_raises_at_that_step(name):
    opt = CONSTRUCTORS[name](lr=lambda count: 0.01 * (2 - count))  # 0.02, 0.01, 0.0, -0.01
    params, state = np.ones(2), opt.init(np.ones(2))
    for _ in range(3):  # counts 0, 1, 2 are fine
        updates, state = opt.update(np.ones(2), state, params)
        params = ol.apply_updates(params, updates)
    with pytest.raises(ValueError, match=message(
            "lr (schedule value at count 3) must be >= 0; got -0.01")):
        opt.update(np.ones(2), state, params)


@pytest.mark.parametrize("value, shown", [(NAN, "nan"), (math.inf, "inf")])
def test_schedule_returning_nonfinite_raises(value, shown):
    opt = ol.sgd(lr=lambda count: value)
    with pytest.raises(ValueError, match=message(
            f"lr (schedule value at count 0) must be >= 0; got {shown}")):
        opt.update(np.ones(2), opt.init(np.ones(2)), np.ones(2))


def test_schedule_returning_a_non_number_raises():
    opt = ol.adam(lr=lambda count: "fast")
    with pytest.raises(TypeError, match=message("lr schedule returned 'fast' at count 0")):
        opt.update(np.ones(2), opt.init(np.ones(2)), np.ones(2))


def test_schedule_multiplier_is_checked_under_its_own_name():
    opt = ol.adamw(schedule_multiplier=lambda count: -1.0)
    with pytest.raises(ValueError, match=message(
            "schedule_multiplier (schedule value at count 0) must be >= 0; got -1.0")):
        opt.update(np.ones(2), opt.init(np.ones(2)), np.ones(2))
    opt = ol.adamw(lr=lambda count: -1.0, schedule_multiplier=1.0)
    with pytest.raises(ValueError, match=message("lr (schedule value at count 0) must be >= 0")):
        opt.update(np.ones(2), opt.init(np.ones(2)), np.ones(2))


def test_adagrad_lr_decay_applies_to_a_scheduled_lr_and_checks_it():
    opt = ol.adagrad(lr=lambda count: -0.1, lr_decay=0.1)
    with pytest.raises(ValueError, match=message("lr (schedule value at count 0) must be >= 0")):
        opt.update(np.ones(2), opt.init(np.ones(2)), np.ones(2))


# --- valid edge values are accepted ------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: ol.sgd(lr=0.0, momentum=0.0, dampening=1.0, weight_decay=0.0),
    lambda: ol.adam(betas=(0.0, 0.0), eps=0.0),
    lambda: ol.rmsprop(alpha=0.0, momentum=0.0, eps=0.0),
    lambda: ol.adagrad(lr_decay=0.0, initial_accumulator_value=0.0, eps=0.0),
    lambda: ol.adamw(betas=(np.array([0.0, 0.9]), np.array([0.5, 0.999])), weight_decay=0.0),
])
def test_boundary_values_are_valid(make):
    assert make() is not None


def test_state_of_another_optimizer_is_refused_clearly():
    params = np.ones(3)
    momentum_state = ol.sgd(lr=0.1, momentum=0.9).init(params)
    with pytest.raises(ValueError, match=r"state.inner at params was not made by this "
                                         r"optimizer's init\(\): expected AdamState"):
        ol.adam().update(np.ones(3), momentum_state, params)
    with pytest.raises(ValueError, match="was not made by this optimizer's init"):
        ol.adam().step(params, np.ones(3), momentum_state)


def test_hyperparameter_array_that_does_not_fit_the_params_is_named():
    params = np.ones((2, 3))
    opt = ol.sgd(lr=np.full((1, 2, 1), 0.1))  # one rank too many: broadcasts to (1, 2, 3)
    with pytest.raises(ValueError, match=r"update for params has shape \(1, 2, 3\), not \(2, 3\)"):
        opt.update(np.ones((2, 3)), opt.init(params), params)


def test_huge_finite_gradients_do_not_warn():
    # The fast finite check sums the gradient; an overflowing sum must not leak a warning.
    params = np.zeros(4, np.float32)
    opt = ol.sgd(lr=1e-30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        u, _ = opt.update(np.full(4, 3e38, np.float32), opt.init(params), params)
        opt.step(params, np.full(4, 3e38, np.float32), opt.init(params))
    assert np.all(np.isfinite(u))
