"""Refuse to serve with settings that would be unsafe in production, and the
Content-Security-Policy every response carries."""

import secrets
from urllib.parse import urlsplit

from asgiref.local import Local
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


# --- Content-Security-Policy -------------------------------------------------
#
# Scripts run only from this host's static files, or inline with the
# request's nonce (the folium map document is the one page that needs it).
# No 'unsafe-inline' and no 'unsafe-eval' for scripts: an injected <script>,
# event handler attribute or `javascript:` URL does not run. Styles keep
# 'unsafe-inline': plotly.js injects its own <style> element, and plotly,
# Leaflet and htmx set style attributes from script.

_request = Local()


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def current_nonce() -> str:
    """The nonce of the request being answered in this thread ("" outside a
    request), for code that renders a document without the request at hand,
    like facilities.maps.render_map; as Django's current language and time
    zone are per request, so is this."""
    return getattr(_request, "csp_nonce", "")


def set_current_nonce(nonce: str) -> None:
    _request.csp_nonce = nonce


def _tile_origin(url: str) -> str:
    """The origin of a Leaflet tile URL template, as a CSP source: a label
    with a placeholder ({s}.tile.example.org) becomes a wildcard."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    labels = ["*" if "{" in label else label for label in parts.netloc.split(".")]
    while len(labels) > 1 and labels[1] == "*":  # {s}{r}.x or {a}.{b}.x: one wildcard
        labels.pop(0)
    if "*" in labels[1:]:  # a wildcard CSP cannot express: trust the scheme's hosts
        return f"{parts.scheme}:"
    return f"{parts.scheme}://{'.'.join(labels)}"


# X-Frame-Options (XFrameOptionsMiddleware, @xframe_options_sameorigin on the
# map document) -> the same rule as a CSP directive, for browsers that follow
# only the CSP one. Without the header (@xframe_options_exempt) none is set.
FRAME_ANCESTORS = {"DENY": "'none'", "SAMEORIGIN": "'self'"}


def content_security_policy(nonce: str, x_frame_options: str = "DENY") -> str:
    images = ["'self'", "data:"]
    tiles = _tile_origin(settings.MAP_TILE_URL)
    if tiles:
        images.append(tiles)
    directives = {
        "default-src": "'self'",
        "script-src": f"'self' 'nonce-{nonce}'",
        "style-src": "'self' 'unsafe-inline'",
        "img-src": " ".join(images),
        # Font Awesome's and Bootstrap's fonts in the map, from /static/.
        "font-src": "'self' data:",
        "connect-src": "'self'",
        "frame-src": "'self'",
        "frame-ancestors": FRAME_ANCESTORS.get(x_frame_options.upper(), ""),
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items() if value)
