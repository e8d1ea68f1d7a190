"""Every URL of the project, checked for anonymous visitors, viewers, analysts
and admins (and, for the JSON API, no token, a token without the scope and a
token with it) against the ACCESS table below.

The URL configuration is walked at collection time: a URL that is added
without a row in ACCESS fails `test_every_url_has_an_access_rule`, which says
what to add. A row whose URL is gone fails too, so the table stays the truth.
ninja serves every method of a path from one view, so for the API the
operations themselves are read and compared with the table: a new method on
an existing path fails as a new URL does.
"""

import inspect
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from ninja.operation import PathView

from sphere_stats.models import ApiToken
from sphere_stats.roles import Role


@dataclass(frozen=True)
class Page:
    """A page behind @role_required(role): anonymous -> login, lower roles -> 403."""

    role: Role


@dataclass(frozen=True)
class Api:
    """A ninja operation per method, each needing a token scope (or one of a
    tuple of scopes); `session` is the lowest role whose logged-in browser
    session is accepted too."""

    methods: dict[str, str | tuple[str, ...]]
    session: Role | None = None


def scopes_of(accepted: str | tuple[str, ...]) -> tuple[str, ...]:
    return (accepted,) if isinstance(accepted, str) else accepted


@dataclass(frozen=True)
class Public:
    """Open to everyone (login, health, API docs). `methods`: what to try."""

    methods: tuple[str, ...] = ("GET",)
    allowed_status: tuple[int, ...] = field(default=(200,))


ADMIN_SITE = "admin site"  # every URL under admin/: staff (the admin role) only

ACCESS: dict[str, object] = {
    # dashboards
    "": Page(Role.VIEWER),
    "top/": Page(Role.VIEWER),
    "search/": Page(Role.VIEWER),
    "search/suggest/": Page(Role.VIEWER),
    "users/<str:name>/": Page(Role.VIEWER),
    "users/<str:name>/timeline/": Page(Role.ANALYST),
    "orgs/<str:name>/": Page(Role.VIEWER),
    "orgs/<str:name>/timeline/": Page(Role.ANALYST),
    "projects/<str:name>/": Page(Role.VIEWER),
    "projects/<str:name>/timeline/": Page(Role.ANALYST),
    "experiments/<str:project>/<str:name>/": Page(Role.VIEWER),
    "experiments/<str:project>/<str:name>/timeline/": Page(Role.ANALYST),
    # audit
    "catalog/": Page(Role.VIEWER),
    "events/": Page(Role.ANALYST),
    "events/export": Page(Role.ANALYST),
    "events/<uuid:event_uuid>/": Page(Role.ANALYST),
    # facilities (FACILITIES_PUBLIC is off by default)
    "facilities/": Page(Role.VIEWER),
    "facilities/map/": Page(Role.VIEWER),
    "facilities/status/": Page(Role.VIEWER),
    "facilities/<slug:slug>/": Page(Role.VIEWER),
    # alerts: the rules and incidents, for staff
    "alerts/": Page(Role.ADMIN),
    # the JSON API
    "api/": Public(),
    "api/v1/": Public(),
    "api/v1/openapi.json": Public(),
    "api/v1/docs": Public(),
    "api/v1/events": Api({"GET": "read", "POST": "ingest"}),
    "api/v1/events/export": Api({"GET": "read"}),
    "api/v1/events/<event_uuid>": Api({"GET": "read"}),
    # A producer (ingest) validates its events against the catalog's schemas.
    "api/v1/catalog": Api({"GET": ("ingest", "read")}),
    "api/v1/stats/": Api({"GET": "read"}, session=Role.VIEWER),
    "api/v1/stats/<name>": Api({"GET": "read"}, session=Role.VIEWER),
    "api/v1/entities/<kind>/<name>": Api({"GET": "read"}, session=Role.VIEWER),
    "api/v1/facilities": Api({"GET": "read"}),
    "api/v1/facilities/<slug>": Api({"GET": "read"}),
    # the project
    "healthz": Public(),
    # A metrics token or an address in METRICS_ALLOWED_NETWORKS
    # (tests/sphere_stats/test_metrics.py); anyone else gets 401.
    "metrics": Public(allowed_status=(401,)),
    "accounts/login/": Public(),
    # Logout is POST only; GET answers 405 to anyone.
    "accounts/logout/": Public(methods=("GET",), allowed_status=(405,)),
    "admin/": ADMIN_SITE,
}

SAMPLE_VALUES = {"uuid": str(uuid.uuid4()), "slug": "isi", "int": "1", "path": "a/b"}
CONVERTER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def walk(resolver: URLResolver, prefix: str = ""):
    """(route, pattern) for every URL pattern, recursively."""
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if getattr(pattern, "namespace", None) == "admin":
                yield route, pattern
                continue
            yield from walk(pattern, route)
        else:
            assert isinstance(pattern, URLPattern)
            yield route, pattern


def concrete(route: str) -> str:
    """A URL for a route, with a sample value for each parameter."""

    def value(match: re.Match) -> str:
        converter = match.group("converter") or "str"
        if match.group("name") == "event_uuid":
            return SAMPLE_VALUES["uuid"]
        return SAMPLE_VALUES.get(converter, "alice")

    return "/" + CONVERTER.sub(value, route)


def ninja_path_view(pattern: URLPattern | URLResolver) -> PathView | None:
    """The ninja PathView behind a URL pattern, if any: it holds the operation
    of every method of its path, whichever of the path's patterns resolves."""
    callback = getattr(pattern, "callback", None)  # None for an include()
    if callback is None:
        return None
    view = inspect.unwrap(callback)
    owner = getattr(view, "__self__", None)  # ninja < 1.4 routes to a bound method
    if isinstance(owner, PathView):
        return owner
    for cell in getattr(view, "__closure__", None) or ():
        if isinstance(cell.cell_contents, PathView):
            return cell.cell_contents
    return None


def one_per_route(patterns) -> tuple[list, dict[str, list]]:
    """(route, pattern) once per route, the pattern Django resolves (the
    first); and the routes that several views share, with their patterns."""
    by_route = defaultdict(list)
    for route, pattern in patterns:
        by_route[route].append(pattern)
    shared = {}
    for route, found in by_route.items():
        # ninja adds one pattern per operation of a path, all with one view.
        views = {ninja_path_view(p) or p for p in found}
        if len(views) > 1:
            shared[route] = found
    return sorted((route, found[0]) for route, found in by_route.items()), shared


# Routes two views share on purpose; the first one listed in urls.py answers.
SHADOWED = {"api/v1/": "the getting-started page, in front of ninja's own API root"}

ROUTES, SHARED_ROUTES = one_per_route(walk(get_resolver()))
ROLES = ("anonymous", "viewer", "analyst", "admin")
ROLE_OF = {
    "anonymous": Role.NONE,
    "viewer": Role.VIEWER,
    "analyst": Role.ANALYST,
    "admin": Role.ADMIN,
}


def test_every_url_has_an_access_rule():
    missing = [route for route, _ in ROUTES if route not in ACCESS]
    assert not missing, (
        "These URLs have no access rule. Add each to ACCESS in "
        "tests/sphere_stats/test_url_access.py, e.g.\n"
        + "\n".join(f'    "{route}": Page(Role.VIEWER),' for route in missing)
    )


def test_no_two_views_share_a_route_unless_on_purpose():
    # Only the first would ever answer; the rule checked for it could be another's.
    unexpected = sorted(set(SHARED_ROUTES) - set(SHADOWED))
    assert not unexpected, "Several views have these routes; only the first answers: " + ", ".join(
        f"{route} ({len(SHARED_ROUTES[route])} views)" for route in unexpected
    )
    assert not sorted(set(SHADOWED) - set(SHARED_ROUTES)), "remove these rows from SHADOWED"


def test_each_api_path_has_exactly_the_operations_its_rule_names():
    problems = []
    for route, pattern in ROUTES:
        path_view = ninja_path_view(pattern)
        if path_view is None:
            continue
        rule = ACCESS.get(route)
        methods = {m for op in path_view.operations for m in op.methods}
        if not isinstance(rule, Api | Public):
            problems.append(f"{route}: a ninja path needs an Api (or Public) rule, not {rule}")
            continue
        if methods != set(rule.methods):
            problems.append(
                f"{route}: ninja has {sorted(methods)}, the table {sorted(rule.methods)}; "
                "add each new method to its Api rule with its scope"
            )
        if isinstance(rule, Public):
            continue
        for op in path_view.operations:
            scopes = {s for cb in op.auth_callbacks for s in getattr(cb, "scopes", ())}
            for method in op.methods:
                if not op.auth_callbacks:
                    problems.append(f"{method} {route} has no auth")
                elif method in rule.methods and scopes != set(scopes_of(rule.methods[method])):
                    problems.append(
                        f"{method} {route}: tokens need {sorted(scopes)}, "
                        f"the table says {rule.methods[method]!r}"
                    )
    assert not problems, "\n".join(problems)


def test_the_access_table_names_no_url_that_is_gone():
    routes = {route for route, _ in ROUTES}
    assert not sorted(set(ACCESS) - routes), "remove these rows from ACCESS"


def test_page_decorators_agree_with_the_access_table():
    disagree = []
    for route, pattern in ROUTES:
        rule = ACCESS.get(route)
        if isinstance(rule, Page):
            role = getattr(pattern.callback, "required_role", None)
            if role != rule.role:
                disagree.append(f"{route}: view requires {role}, table says {rule.role}")
    assert not disagree, "\n".join(disagree)


@pytest.fixture
def clients(viewer_client, analyst_client, admin_client) -> dict[str, Client]:
    return {
        "anonymous": Client(),
        "viewer": viewer_client,
        "analyst": analyst_client,
        "admin": admin_client,
    }


def _denied_page(response, who: str) -> bool:
    if who == "anonymous":
        return response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    return response.status_code == 403


PAGE_ROUTES = [r for r, _ in ROUTES if isinstance(ACCESS.get(r), Page)]


@pytest.mark.parametrize("route", PAGE_ROUTES)
def test_each_page_lets_in_exactly_the_roles_its_rule_names(route, clients):
    rule = ACCESS[route]
    url = concrete(route)
    for who in ROLES:
        response = clients[who].get(url)
        if ROLE_OF[who] >= rule.role:
            assert not _denied_page(response, who), f"{who} was refused {url}"
            assert response.status_code < 500, f"{who} got {response.status_code} on {url}"
        else:
            assert _denied_page(response, who), (
                f"{who} got {response.status_code} on {url}, which needs {rule.role.name}"
            )


PUBLIC_ROUTES = [r for r, _ in ROUTES if isinstance(ACCESS.get(r), Public)]


@pytest.mark.parametrize("route", PUBLIC_ROUTES)
def test_public_urls_answer_everyone(route, clients):
    rule = ACCESS[route]
    for who in ROLES:
        for method in rule.methods:
            response = getattr(clients[who], method.lower())(concrete(route))
            assert response.status_code in rule.allowed_status, (who, route, response.status_code)


API_ROUTES = [r for r, _ in ROUTES if isinstance(ACCESS.get(r), Api)]


@pytest.mark.parametrize("route", API_ROUTES)
def test_each_api_operation_needs_a_token_with_its_scope(route, clients):
    rule = ACCESS[route]
    url = concrete(route)
    for method, accepted in rule.methods.items():
        scope, *_ = scopes_of(accepted)
        others = [s for s in ("ingest", "read") if s not in scopes_of(accepted)]
        # A token with no scope at all is the wrong one where either will do.
        wrong = ApiToken.issue(f"wrong-{uuid.uuid4()}", others)[1]
        right = ApiToken.issue(f"right-{uuid.uuid4()}", [scope])[1]
        revoked_token, revoked = ApiToken.issue(f"revoked-{uuid.uuid4()}", [scope])
        ApiToken.objects.filter(pk=revoked_token.pk).update(revoked_at="2026-01-01T00:00Z")

        def call(headers: dict, client: Client | None = None, method: str = method):
            client = client or Client()
            kwargs = {"content_type": "application/json", "data": "{}"} if method == "POST" else {}
            return getattr(client, method.lower())(url, headers=headers, **kwargs)

        assert call({}).status_code == 401, f"{method} {url} without a token"
        assert call({"Authorization": "Bearer sst_not-a-token"}).status_code == 401
        assert call({"Authorization": f"Bearer {revoked}"}).status_code == 401
        assert call({"Authorization": f"Bearer {wrong}"}).status_code == 403
        assert call({"X-API-Key": wrong}).status_code == 403
        ok = call({"Authorization": f"Bearer {right}"})
        assert ok.status_code not in (401, 403) and ok.status_code < 500, (method, url, ok)
        for who in ROLES[1:]:
            response = call({}, clients[who])
            if rule.session is not None and ROLE_OF[who] >= rule.session:
                assert response.status_code not in (401, 403), (who, method, url)
            else:
                assert response.status_code in (401, 403), (who, method, url, response)


def admin_urls() -> list[str]:
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        opts = model._meta
        urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        urls.append(reverse("admin:app_list", args=[opts.app_label]))
    return sorted(set(urls))


def test_the_admin_site_is_for_the_admin_role_only(clients):
    assert ACCESS["admin/"] == ADMIN_SITE
    for url in admin_urls():
        for who in ("anonymous", "viewer", "analyst"):
            response = clients[who].get(url)
            assert response.status_code == 302, (who, url, response.status_code)
            assert response["Location"].startswith("/admin/login/"), (who, url)
        response = clients["admin"].get(url)
        assert response.status_code == 200, (url, response.status_code)
