"""Fixtures of the loss tests."""

import jax
import pytest


@pytest.fixture(scope="module")
def mesh():
    """A 2 x 2 ``("data", "model")`` mesh of simulated CPU devices (tokens x vocabulary)."""
    if len(jax.devices()) < 4:
        pytest.skip("needs 4 devices (tests/conftest.py simulates 8 CPU devices)")
    return jax.make_mesh((2, 2), ("data", "model"), devices=jax.devices()[:4])
