import pytest

from ..tiny import varied


@pytest.fixture(scope="module")
def model():
    return varied()
