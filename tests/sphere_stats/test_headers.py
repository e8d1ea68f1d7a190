"""What the served app gives away, and what it keeps to itself: gunicorn as
`make run` and the container start it (deploy/gunicorn.conf.py) sends no
Server header, and `make` writes var/secret_key readable by its owner only."""

import contextlib
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from django.conf import settings
from django.db import connection

from tests.sphere_stats.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gunicorn(transactional_db, tmp_path: Path) -> Iterator[str]:
    """gunicorn with the deployed configuration, on the test database."""
    port = free_port()
    database_url = urlunsplit(
        urlsplit(settings.DATABASE_URL)._replace(path="/" + connection.settings_dict["NAME"])
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "sphere_stats.wsgi",
         "--config", "deploy/gunicorn.conf.py", "-b", f"127.0.0.1:{port}", "-w", "1",
         "--log-level", "warning"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_DEBUG": "false",
            "HTTPS": "false",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
        },
        # Its own process group: teardown stops the workers too, which would
        # otherwise keep their connections to the test database open.
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                requests.get(f"{url}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None, "gunicorn exited"
                time.sleep(0.2)
        yield url
    finally:
        server.send_signal(signal.SIGQUIT)  # gunicorn's quick shutdown
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)


def test_gunicorn_names_no_server_and_no_version(gunicorn):
    for path in ("/accounts/login/", "/healthz", "/no-such-page/", "/api/v1/events"):
        response = requests.get(gunicorn + path, timeout=10)
        assert "Server" not in response.headers, (path, response.headers.get("Server"))
        assert "gunicorn" not in str(response.headers).lower()
    page = requests.get(gunicorn + "/accounts/login/", timeout=10)
    assert page.status_code == 200
    assert "script-src 'self' 'nonce-" in page.headers["Content-Security-Policy"]


def _make_secret_key(directory: Path) -> Path:
    subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "var/secret_key",
         f"BIN={Path(sys.executable).parent}"],
        cwd=directory, check=True, capture_output=True,
    )  # fmt: skip
    return directory / "var" / "secret_key"


def test_make_writes_the_secret_key_for_its_owner_only(tmp_path):
    key = _make_secret_key(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) >= 50
    # A key file made before, readable by everyone: the key stays, the mode
    # is fixed.
    key.write_text("an-older-key-" + "x" * 50 + "\n")
    key.chmod(0o644)
    _make_secret_key(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text() == "an-older-key-" + "x" * 50 + "\n"
