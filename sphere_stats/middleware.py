from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from sphere_stats.api import RETRY_AFTER_SECONDS, api_error, database_unavailable

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


def _has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path:
        return True
    return any(
        "\x00" in key or any("\x00" in value for value in values)
        for key, values in request.GET.lists()
    )


class RejectNulMiddleware:
    """Answers 400 to a URL whose path or query string holds a NUL byte.

    PostgreSQL text cannot store NUL: the value would reach a query and end
    as a 500 (DataError) in whichever view looks it up. One check here covers
    every view, present and future, instead of one in each form and schema.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not _has_nul(request):
            return self.get_response(request)
        message = "The URL contains a NUL byte (%00), which no parameter may hold."
        if request.path.startswith("/api/"):
            return api_error(400, message)
        # Rendered without the request: the user and session middleware have
        # not run yet, and the page needs neither.
        return HttpResponse(render_to_string("400.html", {"message": message}), status=400)
