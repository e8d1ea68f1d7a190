"""The WSGI handlers behind sphere_stats.wsgi.application."""

import time
from contextlib import contextmanager

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

from sphere_stats import db
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
        # A web request: its waits on PostgreSQL are bounded (sphere_stats.db),
        # also while its body streams and when the response closes, where
        # Django checks a connection that had an error.
        with db.web_request():
            if environ.get("PATH_INFO") == INGEST_PATH and environ.get("REQUEST_METHOD") == "POST":
                result = self._ingest(environ, start_response)
            else:
                result = self.pages(environ, start_response)
        file_wrapper = environ.get("wsgi.file_wrapper")
        if file_wrapper is not None and isinstance(result, file_wrapper):
            return result  # a file, sent by the server (sendfile): no database
        return BoundedBody(result)

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


class BoundedBody:
    """A response's body, iterated and closed as part of the web request."""

    def __init__(self, response) -> None:
        self.response = response

    def __iter__(self):
        chunks = iter(self.response)
        while True:
            with db.web_request():
                try:
                    chunk = next(chunks)
                except StopIteration:
                    return
            yield chunk

    def close(self) -> None:
        with db.web_request():
            close = getattr(self.response, "close", None)
            if close is not None:
                close()
