"""The WSGI handlers behind sphere_stats.wsgi.application."""

import time
from contextlib import contextmanager

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

from sphere_stats.metrics import ingest_answered

# What a token-authenticated API call needs of settings.MIDDLEWARE, in its
# order: the security headers (and HTTPS redirect), the 503 for a database
# outage, and the Host check against ALLOWED_HOSTS. Sessions, CSRF, users,
# messages, WhiteNoise, htmx and the frame headers serve browsers; for the
# one URL every portal service posts to, they were a fifth of the Python
# time of a single-event POST.
API_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "sphere_stats.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.common.CommonMiddleware",
]
INGEST_PATH = "/api/v1/events"


@contextmanager
def _middleware(names: list[str]):
    # BaseHandler.load_middleware reads settings.MIDDLEWARE and nothing
    # else; this runs once, at import, before any request is served.
    kept = settings.MIDDLEWARE
    settings.MIDDLEWARE = names
    try:
        yield
    finally:
        settings.MIDDLEWARE = kept


class ApiHandler(WSGIHandler):
    """Django's WSGI handler with API_MIDDLEWARE only: the same URLconf,
    views, signals (connection health checks) and exception handling."""

    def load_middleware(self, is_async: bool = False) -> None:
        assert set(API_MIDDLEWARE) <= set(settings.MIDDLEWARE), "API_MIDDLEWARE drifted"
        with _middleware(API_MIDDLEWARE):
            super().load_middleware(is_async)


class Application:
    """The WSGI application: POST /api/v1/events through ApiHandler, every
    other request through the full middleware of settings.MIDDLEWARE."""

    def __init__(self) -> None:
        self.pages = WSGIHandler()
        self.ingest = ApiHandler()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == INGEST_PATH and environ.get("REQUEST_METHOD") == "POST":
            return self._ingest(environ, start_response)
        return self.pages(environ, start_response)

    def _ingest(self, environ, start_response):
        # Timed and counted by status here, around the whole handler, so that
        # /metrics sees every answer: the 401s, 413s and 503s too, which the
        # view never reaches or never returns.
        started = time.perf_counter()
        status = "500"

        def counting_start_response(status_line, headers, exc_info=None):
            nonlocal status
            status = status_line[:3]
            return start_response(status_line, headers, exc_info)

        try:
            return self.ingest(environ, counting_start_response)
        finally:
            ingest_answered(status, time.perf_counter() - started)
