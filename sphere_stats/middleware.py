from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from sphere_stats.api import RETRY_AFTER_SECONDS, database_unavailable

DATABASE_DOWN = (OperationalError, InterfaceError)


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 for a database outage: JSON under /api/, a friendly page elsewhere."""
    if request.path.startswith("/api/"):
        return database_unavailable()
    # Rendered without the request: context processors would look up the
    # user and session, which need the database that just failed.
    response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """Turns a lost database connection in a view into a 503, not a 500.

    Django's connection health checks then reconnect on the next request, so
    the app recovers by itself when PostgreSQL returns.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        if isinstance(exception, DATABASE_DOWN):
            return database_unavailable_response(request)
        return None
