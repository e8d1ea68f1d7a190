"""Every page of the portal in Chromium, at a desktop's and a phone's width, in
the light and the dark colour scheme: nothing scrolls sideways, axe-core finds
no violation, the Content-Security-Policy refuses nothing the page does, and
a full-page screenshot is kept for a person to look at
(var/screenshots/pages/<page>-<width>-<scheme>.png)."""

from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from audit.ingest import ingest
from audit.models import Entity, Event
from demo.history import generate
from tests.conftest import SCREENSHOTS, browser_login, make_user

pytestmark = [
    pytest.mark.browser,
    # The test database is made for tests that ask for it; the rows are
    # loaded and committed once by the module's `site` fixture below.
    pytest.mark.django_db,
]

# Width, height and colour scheme of each browser context.
VIEWS = [
    (1440, 900, "light"),
    (1440, 900, "dark"),
    (390, 844, "light"),
    (390, 844, "dark"),
]

# The pages, in the order a visitor might meet them. A path with {names}
# is filled from the demo data the module loads; `None` = logged out.
PAGES = {
    "overview": "/",
    "top": "/top/",
    "user": "/users/{user}/",
    "org": "/orgs/{org}/",
    "project": "/projects/{project}/",
    "experiment": "/experiments/{experiment}/",
    "timeline": "/projects/{project}/timeline/",
    "search": "/search/?q={query}",
    "explorer": "/events/",
    "event": "/events/{event}/",
    "catalog": "/catalog/",
    "facilities": "/facilities/",
    "map": "/facilities/map/",
    "facility": "/facilities/wisc/",
    "alerts": "/alerts/",
    "api-home": "/api/v1/",
    "api-docs": "/api/v1/docs",
    "login": "/accounts/login/",
    "404": "/no-such-page/",
}
LOGGED_OUT = {"login"}
# What shows that a page has finished drawing, beyond the network going quiet.
READY = {
    "api-docs": "#swagger-ui .opblock",
    "map": ".folium-map",
    # static/js/charts.js marks the page once every chart is drawn (those
    # out of view are drawn after the load event).
    **dict.fromkeys(
        ("overview", "user", "org", "project", "experiment"), "html[data-charts=drawn]"
    ),
}

# The map document is drawn inside the facilities page's iframe, where axe
# checks it as part of that page; opened alone, the rules about a whole
# page (one main landmark, one h1) would judge a frame as if it were a page.
FRAME_ONLY = {
    "map": {"landmark-one-main": {"enabled": False}, "page-has-heading-one": {"enabled": False}}
}

AXE = Axe()

# Run in every document and frame before its own scripts: each refusal of the
# Content-Security-Policy (sphere_stats/security.py) is kept, to be read back.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.violatedDirective} refused ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile}:${event.lineNumber} (${event.sample})`);
});
"""


@pytest.fixture(scope="module")
def site(django_db_setup, django_db_blocker):
    """One live server and one load of demo data for the whole module.

    The demo history is loaded once and committed (the live server's threads
    read it through their own connections); pytest-django's `live_server`
    would flush it after every test, so the module runs its own server and
    flushes the tables itself at the end. The flush's post_migrate signal
    brings back the role groups, as it does after any transactional test."""
    from pytest_django.live_server_helper import LiveServer

    with django_db_blocker.unblock():
        for role in ("viewer", "analyst", "admin"):
            Group.objects.get_or_create(name=role)
        call_command("seed_facilities", stdout=StringIO())
        ingest(list(generate(3000, days=400, seed=2, end=timezone.now())))
        admin = make_user("pagesadmin", "admin")
        _alert_rules()
        experiment = (
            Entity.objects.filter(kind="experiment").exclude(state="gone").order_by("name").first()
        )
        user = Entity.objects.filter(kind="user").exclude(state="gone").order_by("name").first()
        names = {
            "user": user.name,
            "org": Entity.objects.filter(kind="organization")
            .exclude(state="gone")
            .order_by("name")[0]
            .name,
            "project": experiment.scope,
            "experiment": f"{experiment.scope}/{experiment.name}",
            # A prefix two entities share: the list of matches, not the
            # jump straight to a single one.
            "query": next(
                name[:1]
                for name in Entity.objects.order_by("name").values_list("name", flat=True)
                if Entity.objects.filter(name__istartswith=name[:1]).count() > 1
            ),
            # A failed event: its page shows the error block too.
            "event": Event.objects.filter(success=False)
            .order_by("-timestamp")
            .values_list("event_uuid", flat=True)[0],
        }
        # Static files through WhiteNoise from the collected tree, as in
        # production (hashed names), not through the finders.
        server = LiveServer("localhost", start=False)
        server.thread.static_handler = _no_static_handler
        server.start()
        server._live_server_modified_settings.enable()
        try:
            yield server.url, admin, names
        finally:
            server._live_server_modified_settings.disable()
            server.stop()
            call_command("flush", interactive=False, verbosity=0)


def _alert_rules() -> None:
    """Rules with incidents for the alerts page: every facility that is not up
    is an open incident, and the worker's last run is shown."""
    from alerts.jobs import evaluate_rules
    from alerts.models import AlertRule
    from notify.models import Channel
    from sphere_stats.worker import Job, run_job

    ops = Channel.objects.create(
        name="Operations webhook", kind="webhook", url="http://127.0.0.1:9/"
    )
    rule = AlertRule.objects.create(
        name="A facility is in trouble",
        kind="facility_status",
        statuses=["down", "degraded", "maintenance", "silent"],
    )
    rule.channels.add(ops)
    AlertRule.objects.create(
        name="Password guessing", kind="failed_logins", username="*", threshold=20, window=10
    )
    run_job(Job("alerts.evaluate", 15, evaluate_rules))


@pytest.fixture(scope="module", params=VIEWS, ids=[f"{w}-{s}" for w, _, s in VIEWS])
def view(request, chromium, site):
    """A logged-in and a logged-out browser context at one size and scheme."""
    url, admin, _ = site
    width, height, scheme = request.param
    contexts = {}
    for who in ("admin", "anonymous"):
        context = chromium.new_context(
            viewport={"width": width, "height": height}, color_scheme=scheme
        )
        context.blocked = []
        context.add_init_script(RECORD_CSP_VIOLATIONS)

        def route(route, blocked=context.blocked):
            if route.request.url.startswith(url):
                return route.continue_()
            blocked.append(route.request.url)
            return route.abort()

        context.route("**/*", route)
        contexts[who] = context
    login_page = contexts["admin"].new_page()
    browser_login(login_page, _Server(url), admin)
    login_page.close()
    yield contexts, width, scheme
    for context in contexts.values():
        context.close()


def _no_static_handler(app):
    return app


class _Server:
    def __init__(self, url: str):
        self.url = url


def _path(name: str, names: dict) -> str:
    return PAGES[name].format(**names)


def _axe_report(violations: list[dict]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"][:8]:
            lines.append(f"    {', '.join(map(str, node['target']))}")
            lines.append(f"      {node['html'][:160]}")
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"      {summary[:300]}")
        if len(violation["nodes"]) > 8:
            lines.append(f"    … and {len(violation['nodes']) - 8} more")
    return "\n".join(lines)


@pytest.mark.parametrize("name", list(PAGES))
def test_every_page_fits_the_screen_and_passes_axe(name, site, view):
    url, _, names = site
    contexts, width, scheme = view
    context = contexts["anonymous" if name in LOGGED_OUT else "admin"]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Chromium also says so on the console (the map's frame included).
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    try:
        target = url + _path(name, names)
        response = page.goto(target, wait_until="networkidle")
        assert response.status == (404 if name == "404" else 200)
        # Not sent to the login page instead.
        assert urlsplit(page.url).path == urlsplit(target).path
        if name in READY:
            page.wait_for_selector(READY[name])
        # Each frame gets its own copy of axe (read from the installed
        # package, never fetched), so the map inside the facilities page is
        # checked as part of that page.
        for frame in page.frames:
            frame.evaluate(AXE.axe_script)

        path = SCREENSHOTS / "pages" / f"{name}-{width}-{scheme}.png"
        Path(path.parent).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)

        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= width, f"{name} is {scroll_width} px wide at {width} px"

        options = {"resultTypes": ["violations"], "rules": FRAME_ONLY.get(name, {})}
        results = page.evaluate("(options) => axe.run(document, options)", options)
        violations = results["violations"]
        assert violations == [], f"axe on {name} at {width} px, {scheme}:\n" + _axe_report(
            violations
        )
        assert errors == []
        assert context.blocked == []
        violations = [v for frame in page.frames for v in frame.evaluate("window.__cspViolations")]
        assert violations == [] and refused == [], f"CSP on {name}: {violations} {refused}"
    finally:
        page.close()


def test_the_navigation_folds_into_a_menu_on_a_phone(site, view):
    """On a phone the links hide under "Menu" until it is pressed; on a wide
    screen they show without it. The first Tab reaches "Skip to main
    content", which moves the focus past the header."""
    url, _, _ = site
    contexts, width, scheme = view
    page = contexts["admin"].new_page()
    try:
        page.goto(url + "/top/", wait_until="networkidle")
        menu = page.locator("summary", has_text="Menu")
        catalog = page.locator("nav[aria-label=Main] a", has_text="Catalog")
        if width < 700:
            assert catalog.is_hidden()
            menu.click()
            assert catalog.is_visible()
            page.screenshot(path=str(SCREENSHOTS / "pages" / f"menu-{width}-{scheme}.png"))
            box = catalog.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width
            catalog.click()
            page.wait_for_url("**/catalog/")
        else:
            assert menu.is_hidden()
            assert catalog.is_visible()
            assert page.locator("input[name=q][aria-label='Search entities']").is_visible()

        page.keyboard.press("Tab")
        skip = page.locator(".skip-link")
        assert page.evaluate("document.activeElement.className") == "skip-link"
        assert skip.bounding_box()["y"] >= 0
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
    finally:
        page.close()
