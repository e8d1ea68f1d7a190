import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.cache import cache

from bench import servers


@pytest.fixture(autouse=True)
def _empty_cache():
    # Rate-limit and login-failure counters live in the cache, which outlives
    # a test; each test starts from none.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The default PBKDF2 costs ~0.5 s per user; these tests make three per test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- nginx in front of the test server -------------------------------------------------


@contextmanager
def running_nginx(tmp_path: Path, upstream: str):
    """deploy/nginx/sphere_stats.conf proxying to `upstream` (host:port), on
    loopback ports, with a self-signed certificate."""
    if not shutil.which("nginx") or not shutil.which("openssl"):
        pytest.skip("nginx or openssl is missing (apt-get install nginx-light)")
    with servers.nginx(upstream, tmp_path) as urls:
        yield urls


@pytest.fixture
def nginx(live_server, tmp_path):
    """nginx in front of the live test server."""
    with running_nginx(tmp_path, live_server.url.removeprefix("http://")) as urls:
        yield urls


@pytest.fixture
def nginx_without_upstream(tmp_path):
    """nginx whose web service is down: nothing listens on its upstream port."""
    with running_nginx(tmp_path, f"127.0.0.1:{servers.free_port()}") as urls:
        yield urls
