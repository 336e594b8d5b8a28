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
