"""Shared fixtures for optimlab's tests.

torch is optional: the cross-checks against ``torch.optim`` are skipped when it is absent,
unless the environment sets ``OPTIMLAB_REQUIRE_TORCH=1`` (CI does), in which case a missing
torch is a failure, so that the cross-checks cannot silently stop running.
"""

import importlib
import os

import pytest
from hypothesis import settings

# No example database: the property tests write nothing into the working tree.
settings.register_profile("optimlab", database=None)
settings.load_profile("optimlab")

TORCH_REASON = ("torch is not installed; the torch.optim cross-checks need it "
                "(pip install torch==2.13.0, CPU wheel)")


def torch_required():
    """True when the environment demands that the torch cross-checks run."""
    return os.environ.get("OPTIMLAB_REQUIRE_TORCH", "").strip() not in ("", "0")


def import_torch():
    """Import torch; skip the calling test without it, or fail if torch is required."""
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        if torch_required():
            pytest.fail(f"OPTIMLAB_REQUIRE_TORCH is set but torch cannot be imported: {exc}",
                        pytrace=False)
    return pytest.importorskip("torch", reason=TORCH_REASON, exc_type=ImportError)


@pytest.fixture(scope="session")
def torch():
    """The torch module (skips, or fails under OPTIMLAB_REQUIRE_TORCH=1, when it is absent)."""
    return import_torch()


# optax and Keras (3, JAX backend) are optional in the same way: OPTIMLAB_REQUIRE_OPTAX=1 and
# OPTIMLAB_REQUIRE_KERAS=1 (set in CI) turn their absence into a failure.
OPTAX_REASON = ("optax is not installed; the optax cross-checks need it "
                "(pip install --no-deps -r requirements-ci.lock)")
KERAS_REASON = ("keras is not installed; the Keras cross-checks need it with the JAX backend "
                "(pip install --no-deps -r requirements-ci.lock)")


def _required(variable):
    return os.environ.get(variable, "").strip() not in ("", "0")


def _import_or_skip(name, variable, reason, setup=None):
    try:
        if setup is not None:
            setup()
        return importlib.import_module(name)
    except ImportError as exc:
        if _required(variable):
            pytest.fail(f"{variable} is set but {name} cannot be imported: {exc}", pytrace=False)
        pytest.skip(f"{reason} ({exc})")


def _enable_x64():
    jax = importlib.import_module("jax")
    jax.config.update("jax_enable_x64", True)  # float64 arrays, as the cross-checks need


@pytest.fixture(scope="session")
def optax():
    """optax, with JAX's 64-bit mode on (skips, or fails under OPTIMLAB_REQUIRE_OPTAX=1)."""
    return _import_or_skip("optax", "OPTIMLAB_REQUIRE_OPTAX", OPTAX_REASON, _enable_x64)


def _keras_setup():
    os.environ["KERAS_BACKEND"] = "jax"  # read once, at Keras's first import
    _enable_x64()


@pytest.fixture(scope="session")
def keras():
    """Keras 3 on the JAX backend with float64 as floatx (skips, or fails under
    OPTIMLAB_REQUIRE_KERAS=1, when it is absent)."""
    module = _import_or_skip("keras", "OPTIMLAB_REQUIRE_KERAS", KERAS_REASON, _keras_setup)
    if module.backend.backend() != "jax":
        pytest.fail(f"Keras was imported with the {module.backend.backend()!r} backend before the "
                    "cross-checks could select JAX (KERAS_BACKEND=jax)", pytrace=False)
    module.config.set_floatx("float64")
    return module
