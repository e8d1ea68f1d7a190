import psycopg
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from sphere_stats import db, security
from sphere_stats.api import RETRY_AFTER_SECONDS, api_error, database_unavailable

DATABASE_DOWN = (OperationalError, InterfaceError)


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 for a database outage: JSON under /api/, a friendly page elsewhere."""
    if request.path.startswith("/api/"):
        return database_unavailable()
    if request.path == "/healthz":  # what the view itself answers
        return JsonResponse(
            {"db": "unavailable"}, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    # Rendered without the request: context processors would look up the
    # user and session, which need the database that just failed.
    response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """Turns a lost, refused or timed-out database connection in a view into
    a 503, not a 500 (a timeout is a django.db.OperationalError too: psycopg's
    QueryCanceled, or sphere_stats.db.DatabaseTimeout).

    In a web request (sphere_stats.handlers.Application) it also connects
    before the view, so that a database that does not answer is noted once
    and the worker's next requests in DB_RETRY_SECONDS answer 503 at once,
    rather than each waiting for its own connect timeout. (A refused
    connection costs no wait, and trips nothing.) While presumed down, every
    request but static files answers 503, even one that needs no database.

    Django's connection health checks then reconnect on the next request, so
    the app recovers by itself when PostgreSQL returns.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if db.in_web_request():
            if db.presumed_unreachable():
                return database_unavailable_response(request)
            try:
                db.open_connection()
            except DATABASE_DOWN as exc:
                # A connect that timed out is not tried again by the view.
                # One refused at once costs nothing to try again: the view
                # runs, and answers as it does without a database (a 401
                # needs none) or fails fast with a 503 of its own.
                if isinstance(exc.__cause__, psycopg.errors.ConnectionTimeout):
                    db.database_unreachable()
                    return database_unavailable_response(request)
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


class ContentSecurityPolicyMiddleware:
    """Gives each request a fresh nonce (request.csp_nonce, `{{ request.csp_nonce }}`
    in a template) and each response the Content-Security-Policy with it
    (sphere_stats.security.content_security_policy).

    Outside XFrameOptionsMiddleware, so that it sees that middleware's
    header and states the same framing rule as frame-ancestors."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.csp_nonce = security.new_nonce()
        security.set_current_nonce(request.csp_nonce)
        try:
            response = self.get_response(request)
        finally:
            security.set_current_nonce("")
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = security.content_security_policy(
                request.csp_nonce, response.get("X-Frame-Options", "")
            )
        return response
