import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def fresh_cache():
    """The usage counts are cached (facilities.summary); each test starts without them."""
    cache.clear()
    yield
    cache.clear()
