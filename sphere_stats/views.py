import sys

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from sphere_stats import ratelimit
from sphere_stats.api import api_error
from sphere_stats.middleware import DATABASE_DOWN, database_unavailable_response
from sphere_stats.ratelimit import client_ip


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and compose."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DATABASE_DOWN:
        return JsonResponse({"db": "unavailable"}, status=503, headers={"Retry-After": "5"})
    return JsonResponse({"db": "ok"})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api_error(404, "No such API endpoint.")
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    # Exceptions from middleware (a session read while PostgreSQL restarts)
    # arrive here rather than in a view; an outage still answers 503.
    exc = sys.exc_info()[1]
    if isinstance(exc, DATABASE_DOWN):
        return database_unavailable_response(request)
    if request.path.startswith("/api/"):
        return api_error(500, "Internal error; it has been logged.")
    return render(request, "500.html", status=500)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api_error(400, "Bad request.")
    return render(request, "400.html", status=400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return api_error(403, "Forbidden.")
    return render(request, "403.html", status=403)


class ThrottledLoginView(auth_views.LoginView):
    """The login page, refusing (429) a username/address pair after too many
    failures in a window (settings.LOGIN_FAILURE_*; counted in the cache)."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        username = request.POST.get("username", "")[:150]
        ip = client_ip(request)
        if ratelimit.login_blocked(username, ip):
            minutes = max(1, settings.LOGIN_FAILURE_WINDOW // 60)
            form = self.get_form()
            context = self.get_context_data(
                form=form,
                throttled=(
                    "Too many failed attempts to log in. Wait up to "
                    f"{minutes} minutes, then try again."
                ),
            )
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(settings.LOGIN_FAILURE_WINDOW)
            return response
        response = super().post(request, *args, **kwargs)
        if request.user.is_authenticated:
            ratelimit.login_succeeded(username, ip)
        else:
            ratelimit.login_failed(username, ip)
        return response


@require_GET
def api_home(request: HttpRequest) -> HttpResponse:
    """Getting started with the JSON API: public, like the schema it points to."""
    base = request.build_absolute_uri("/api/v1/")
    return render(request, "sphere_stats/api_home.html", {"base": base.rstrip("/")})
