"""Refuse to serve with settings that would be unsafe in production."""

from django.conf import settings
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

KNOWN_DEFAULT_KEYS = {
    settings.DEV_SECRET_KEY if hasattr(settings, "DEV_SECRET_KEY") else "",
    "changeme",
    "change-me",
    "secret",
    "replace-me",
    "django-insecure",
    # The placeholder of .env.example.
    "change-me-to-a-long-random-string",
}


def weak_secret_key(key: str) -> bool:
    """Django's own rule (the security.W009 check of `check --deploy`), so
    a key this accepts is one Django accepts too."""
    return (
        len(key) < SECRET_KEY_MIN_LENGTH
        or len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or key.startswith(SECRET_KEY_INSECURE_PREFIX)
    )


def startup_problems() -> list[str]:
    if settings.DEBUG:
        return []
    problems = []
    key = settings.SECRET_KEY or ""
    if key in KNOWN_DEFAULT_KEYS or weak_secret_key(key):
        problems.append(
            "SECRET_KEY is missing, a known default or too weak: Django wants at least "
            f"{SECRET_KEY_MIN_LENGTH} characters, {SECRET_KEY_MIN_UNIQUE_CHARACTERS} of them "
            f"different, not starting with {SECRET_KEY_INSECURE_PREFIX!r}. Set SECRET_KEY "
            "to a long random value "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    if not settings.ALLOWED_HOSTS:
        problems.append("ALLOWED_HOSTS is empty: set it to the host names this server answers.")
    return problems


def check_startup() -> None:
    problems = startup_problems()
    if problems:
        raise ImproperlyConfigured(
            "sphere_stats refuses to start with DEBUG off:\n  - " + "\n  - ".join(problems)
        )
