"""Safe settings: DEBUG off by default, the server refuses insecure settings,
HTTPS turns on secure cookies and HSTS, and `check --deploy` passes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz"
PRODUCTION = {"SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": "stats.example.org", "HTTPS": "true"}
# DJANGO_ALLOW_ASYNC_UNSAFE: set by the browser fixture, refused by check --deploy.
CLEARED = (
    "DJANGO_DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "HTTPS",
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "sphere_stats.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def setting(name: str, **env: str) -> str:
    result = run_python(f"from django.conf import settings; print(settings.{name})", **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_debug_is_off_unless_asked_for():
    assert setting("DEBUG") == "False"
    assert setting("DEBUG", DJANGO_DEBUG="true") == "True"


def test_a_misspelt_debug_value_stops_the_server_instead_of_guessing():
    result = run_python(
        "from django.conf import settings; settings.DEBUG", DJANGO_DEBUG="yes please"
    )
    assert result.returncode != 0
    assert "DJANGO_DEBUG='yes please' is not a boolean" in result.stderr


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"ALLOWED_HOSTS": "stats.example.org"}, "SECRET_KEY is missing"),
        ({"ALLOWED_HOSTS": "stats.example.org", "SECRET_KEY": "changeme"}, "SECRET_KEY is missing"),
        (
            {
                "ALLOWED_HOSTS": "stats.example.org",
                "SECRET_KEY": "change-me-to-a-long-random-string",
            },
            "a known default",
        ),
        ({"SECRET_KEY": GOOD_KEY}, "ALLOWED_HOSTS is empty"),
    ],
)
def test_the_server_refuses_to_start_with_unsafe_settings(env, complaint):
    result = run_python("import sphere_stats.wsgi", **env)
    assert result.returncode != 0
    assert "refuses to start with DEBUG off" in result.stderr
    assert complaint in result.stderr


def test_the_server_starts_with_a_real_key_and_hosts():
    result = run_python("import sphere_stats.wsgi; print('started')", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_https_turns_on_secure_cookies_hsts_and_the_redirect():
    code = (
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_SSL_REDIRECT)"
    )
    on = run_python(code, **PRODUCTION)
    assert on.stdout.split() == ["True", "True", "31536000", "True"], on.stderr
    off = run_python(code, **{**PRODUCTION, "HTTPS": "false"})
    assert off.stdout.split() == ["False", "False", "0", "False"], off.stderr


def test_check_deploy_passes_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k not in CLEARED}, **PRODUCTION},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_demo_admin_is_never_created_on_a_server_with_a_public_host_name(db, settings):
    settings.ALLOWED_HOSTS = ["stats.example.org"]
    with pytest.raises(CommandError, match="for a local checkout only"):
        call_command("demo_setup", events=0)


def test_pages_may_not_be_framed_by_other_sites(viewer_client):
    response = viewer_client.get("/catalog/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
