"""What the served app gives away, and what it keeps to itself: gunicorn as
`make run` and the container start it (deploy/gunicorn.conf.py) sends no
Server header, and `make` writes var/secret_key readable by its owner only."""

import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.db import connection

from bench import servers

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gunicorn(transactional_db, tmp_path: Path) -> Iterator[str]:
    """gunicorn with the deployed configuration, on the test database."""
    env = {
        **os.environ,
        "DATABASE_URL": servers.database_url(connection.settings_dict),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_DEBUG": "false",
        "HTTPS": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
    }
    args = ("--log-level", "warning")
    with servers.gunicorn(env, workers=1, args=args, preload=False) as (url, _):
        yield url


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
