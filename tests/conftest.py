from __future__ import annotations

import pytest

from tests.azurite import Azurite, free_port


@pytest.fixture(scope="session")
def azurite():
    """The real Azurite table service, shared by the session (tables are unique per test)."""
    az = Azurite(free_port())
    az.start()
    yield az
    az.stop()


@pytest.fixture
def azurite_private():
    """An Azurite of the test's own, for tests that stop and restart it."""
    az = Azurite(free_port())
    az.start()
    yield az
    az.stop()
