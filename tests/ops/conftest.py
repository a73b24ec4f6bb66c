"""Fixtures of the ``jaxvision.ops`` tests."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def x64():
    """Runs the test with ``jax_enable_x64`` on (float64 arrays stay float64), then restores
    the previous setting; jitted functions retrace under it (x64 is part of their cache key)."""
    with jax.enable_x64(True):
        yield
