"""Refuse to serve with settings that would be unsafe in production."""

from django.conf import settings
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


def startup_problems() -> list[str]:
    if settings.DEBUG:
        return []
    problems = []
    key = settings.SECRET_KEY or ""
    if not key or key in KNOWN_DEFAULT_KEYS or key.startswith("django-insecure") or len(key) < 32:
        problems.append(
            "SECRET_KEY is missing, a known default or shorter than 32 characters: "
            "set SECRET_KEY to a long random value "
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
