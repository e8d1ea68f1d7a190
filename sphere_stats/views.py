import sys

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME, get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from sphere_stats import db, ratelimit
from sphere_stats.api import RETRY_AFTER_SECONDS, api_error
from sphere_stats.middleware import DATABASE_DOWN, database_unavailable_response
from sphere_stats.ratelimit import client_ip

# /healthz answers within 2 s: PostgreSQL gets a second for the check, and the
# worker waits 1.5 s at most for each answer (sphere_stats.db.deadline).
HEALTHZ_STATEMENT_TIMEOUT_MS = 1000
HEALTHZ_WAIT_SECONDS = 1.5
HEALTHZ_CHECK_SQL = "SELECT 1"


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and compose.

    With a read replica, also its state ("ok", "lagging" beyond
    REPLICA_MAX_LAG_SECONDS, or "down") and how many seconds behind
    it is: for the operator, never a failure of this instance, whose pages
    then read from the primary. No "replica" key without one."""
    try:
        with (
            db.deadline(HEALTHZ_WAIT_SECONDS),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(
                "SELECT set_config('statement_timeout', %(ms)s, true),"
                " set_config('lock_timeout', %(ms)s, true)",
                {"ms": str(HEALTHZ_STATEMENT_TIMEOUT_MS)},
            )
            cursor.execute(HEALTHZ_CHECK_SQL)
    except DATABASE_DOWN:
        return JsonResponse(
            {"db": "unavailable"}, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    return JsonResponse({"db": "ok", **_replica_health()})


def _replica_health() -> dict:
    # Only with a replica configured: {"db": "ok"} stays the whole answer
    # of an instance without one.
    return {"replica": db.replica_state().as_json()} if db.replica_configured() else {}


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


def login_username(request: HttpRequest) -> str:
    """The username a login POST names, as the login form reads it: stripped,
    then NFKC-normalised as the user model normalises usernames. Every spelling
    that logs in to one account so counts against one failure counter (the
    counter itself ignores case: sphere_stats.ratelimit)."""
    username = request.POST.get("username", "").strip()
    user_model = get_user_model()
    max_length = user_model._meta.get_field(user_model.USERNAME_FIELD).max_length or 150
    if len(username) > max_length:
        # The form refuses it (before normalising: slow on huge input), so it
        # logs in to no account; any key will do, a short one is kinder to the cache.
        return username[:max_length]
    return user_model.normalize_username(username)


class ThrottledLoginView(auth_views.LoginView):
    """The login page, refusing (429) a username/address pair after too many
    failures in a window (settings.LOGIN_FAILURE_*; counted in PostgreSQL,
    once for every worker and replica: sphere_stats.ratelimit)."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        username = login_username(request)
        ip = client_ip(request)
        # Counted before the password is checked, and refused on the count
        # this attempt got: concurrent guesses cannot all pass one check.
        if not ratelimit.login_attempt(username, ip):
            minutes = max(1, settings.LOGIN_FAILURE_WINDOW // 60)
            return self.refuse(
                f"Too many failed attempts to log in. Wait up to {minutes} minutes, then try again."
            )
        response = super().post(request, *args, **kwargs)
        if request.user.is_authenticated:
            ratelimit.login_succeeded(username, ip)
        return response

    def refuse(self, message: str) -> HttpResponse:
        # An unbound form: showing the posted one validates it, which checks
        # the password, and the page would tell a right guess from a wrong one.
        form = self.get_form_class()(self.request)
        context = self.get_context_data(form=form, throttled=message)
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(settings.LOGIN_FAILURE_WINDOW)
        return response


class ThrottledAdminLoginView(ThrottledLoginView):
    """The admin site's login page (staff only) behind the same throttle."""

    template_name = "admin/login.html"
    authentication_form = AdminAuthenticationForm

    def refuse(self, message: str) -> HttpResponse:
        # admin/login.html has no place for `throttled`; its base shows messages.
        messages.error(self.request, message)
        return super().refuse(message)


@never_cache
@login_not_required
def admin_login(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
    """admin.site.login through the throttle (set in urls.py)."""
    # AdminSite.login, with ThrottledAdminLoginView for its LoginView: Django
    # has no hook for the view class, only for the form and the template.
    site = admin.site
    if request.method == "GET" and site.has_permission(request):
        return redirect("admin:index")
    context = {
        **site.each_context(request),
        "title": "Log in",
        "subtitle": None,
        "app_path": request.get_full_path(),
        "username": request.user.get_username(),
    }
    if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
        context[REDIRECT_FIELD_NAME] = reverse("admin:index", current_app=site.name)
    context.update(extra_context or {})
    request.current_app = site.name
    return ThrottledAdminLoginView.as_view(extra_context=context)(request)


@require_GET
def api_home(request: HttpRequest) -> HttpResponse:
    """Getting started with the JSON API: public, like the schema it points to."""
    base = request.build_absolute_uri("/api/v1/")
    return render(request, "sphere_stats/api_home.html", {"base": base.rstrip("/")})
