"""The map page in Chromium with no network: only the live server answers."""

import re
from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.core.management import call_command
from django.utils import timezone

from tests.conftest import SCREENSHOTS, browser_login, screenshot
from tests.factories import allocation, report, reporting

pytestmark = [
    pytest.mark.browser,
    # Real transactions: the live server's threads see the committed rows. The
    # role groups the flush removes come back through post_migrate.
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def viewer(transactional_db):
    """A viewer whose group is made here if a previous flush removed it."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("mapviewer", password="pw-mapviewer")
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    return user


MARKER = '.facility-marker[data-facility="{}"]'


@pytest.fixture
def demo_facilities():
    from io import StringIO

    call_command("seed_facilities", stdout=StringIO())
    now = timezone.now()
    # Two days of reports every ten minutes (so no silence turns a day grey),
    # each facility ending in its current state.
    start = now - timedelta(days=2)
    for slug in ("isi", "utah", "mass"):
        reporting(slug, start, now - timedelta(minutes=2), "up")
    for slug, began, status, message, last in (
        ("wisc", timedelta(hours=3), "down", "power failure in machine room B", 1),
        ("clemson", timedelta(hours=6), "maintenance", "switch firmware upgrade", 3),
        ("tacc", timedelta(hours=1), "degraded", "storage array rebuilding", 4),
    ):
        reporting(slug, start, now - began - timedelta(minutes=10), "up")
        reporting(slug, now - began, now - timedelta(minutes=last), status, message)
    hosts = [f"wisc-n{i:03d}" for i in range(1, 13)]
    allocation(
        "realization",
        "allocated",
        "wisc",
        now - timedelta(hours=5),
        experiment="botnet",
        project="carolp",
        resources=hosts,
    )
    allocation(
        "materialization",
        "allocated",
        "wisc",
        now - timedelta(hours=5),
        experiment="botnet",
        project="carolp",
        resources=hosts,
    )
    allocation(
        "materialization",
        "allocated",
        "wisc",
        now - timedelta(hours=2),
        experiment="dns",
        project="davep",
        success=False,
        error="image boot timeout",
    )


def marker_status(frame, slug: str) -> str:
    return frame.locator(MARKER.format(slug)).get_attribute("data-status")


def marker_label(frame, slug: str) -> str:
    return frame.locator(MARKER.format(slug)).inner_text()


def watch(page) -> list[str]:
    """Record the page's uncaught errors and console errors, in every frame."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return errors


@pytest.fixture
def open_page(chromium, live_server):
    """Pages of a given width and colour scheme that, like `browser_page`,
    can reach only the live server (page.blocked_requests lists the rest);
    a phone's has touch and a mobile viewport."""
    contexts = []

    def open_(width: int = 1440, scheme: str = "light"):
        phone = width < 600
        context = chromium.new_context(
            viewport={"width": width, "height": 844 if phone else 900},
            color_scheme=scheme,
            has_touch=phone,
            is_mobile=phone,
        )
        contexts.append(context)
        page = context.new_page()
        page.blocked_requests = []

        def route(route):
            if route.request.url.startswith(live_server.url):
                return route.continue_()
            page.blocked_requests.append(route.request.url)
            return route.abort()

        page.route("**/*", route)
        page.errors = watch(page)
        return page

    yield open_
    for context in contexts:
        context.close()


def map_ready(page):
    frame = page.frame_locator("#facility-map")
    frame.locator(".folium-map[data-world-outline=loaded]").wait_for()
    frame.locator(MARKER.format("wisc")).wait_for()
    page.wait_for_function("() => window.sphereFacilities !== undefined")
    return frame


def test_a_viewer_clicks_a_marker_and_sees_that_facility_offline(
    browser_page, live_server, viewer, demo_facilities
):
    page = browser_page
    errors = watch(page)
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/facilities/")
    frame = map_ready(page)
    # Each marker says its facility and status in words, not by colour alone.
    assert marker_status(frame, "wisc") == "down"
    assert marker_label(frame, "wisc") == "Wisconsin · Down"
    assert marker_label(frame, "clemson") == "Clemson · Maintenance"
    assert marker_label(frame, "isi") == "USC ISI · Up"
    # A mark on the map's window: it survives only if the map is not reloaded.
    frame.locator("body").evaluate("() => { window.kept = 1; }")

    frame.locator(MARKER.format("wisc")).click()
    page.wait_for_selector('#facility-panel[data-selected="wisc"]')
    panel = page.locator("#facility-panel")
    assert "Wisconsin" in panel.inner_text()
    assert "power failure in machine room B" in panel.inner_text()
    assert "12 of 48 nodes in use" in panel.inner_text()
    assert "image boot timeout" in panel.inner_text()
    assert page.url == f"{live_server.url}/facilities/wisc/"
    assert page.locator(".uptime-bar span").count() == 90
    assert frame.locator("body").evaluate("() => window.kept") == 1
    # The chosen marker is marked, for the eye and for screen readers.
    assert frame.locator(MARKER.format("wisc")).get_attribute("aria-current") == "true"
    assert "selected" in frame.locator(MARKER.format("wisc")).get_attribute("class")
    page.wait_for_timeout(300)
    screenshot(page, "facilities_wisc_panel")

    # A new report arrives; the minute's refresh relabels the marker in place.
    report("wisc", timezone.now(), "up")
    page.evaluate(
        "() => htmx.ajax('GET', '/facilities/status/', {target: '#facility-status', swap: 'outerHTML'})"
    )
    frame.locator(MARKER.format("wisc") + '[data-status="up"]').wait_for()
    assert marker_label(frame, "wisc") == "Wisconsin · Up"
    assert frame.locator("body").evaluate("() => window.kept") == 1

    # Offline by default: not one request left the server, and no errors.
    assert errors == []
    assert page.blocked_requests == []


def test_a_marker_clicked_before_the_page_script_runs_opens_the_facility_url(
    browser_page, live_server, viewer, demo_facilities
):
    page = browser_page
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/facilities/")
    frame = page.frame_locator("#facility-map")
    frame.locator(MARKER.format("clemson")).wait_for()
    page.wait_for_function("() => window.sphereFacilities !== undefined")
    page.evaluate("() => { delete window.sphereFacilities; }")  # as if not run yet

    frame.locator(MARKER.format("clemson")).click()
    page.wait_for_url(f"{live_server.url}/facilities/clemson/")
    page.wait_for_selector('#facility-panel[data-selected="clemson"]')
    assert "switch firmware upgrade" in page.locator("#facility-panel").inner_text()


def test_without_tiles_the_world_outline_draws(browser_page, live_server, viewer, demo_facilities):
    page = browser_page
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/facilities/tacc/")
    frame = page.frame_locator("#facility-map")
    frame.locator(".folium-map[data-world-outline=loaded]").wait_for()
    countries = frame.locator(".leaflet-world-pane path").count()
    assert countries > 100
    assert page.locator("#facility-panel").get_attribute("data-selected") == "tacc"
    assert frame.locator(MARKER.format("tacc")).get_attribute("aria-current") == "true"
    page.wait_for_timeout(300)
    screenshot(page, "facilities_tiles_blocked")


@pytest.fixture
def seeded_demo():
    """What `make run` shows, smaller: seed_demo's history, then a round of
    the demo reporter."""
    from io import StringIO

    call_command("seed_demo", "--events", "20000", "--days", "365", stdout=StringIO(), verbosity=0)
    call_command("demo_reporter", "--once", verbosity=0)


def test_the_seeded_demo_map_is_coloured_and_its_facilities_partly_in_use(
    browser_page, live_server, viewer, seeded_demo
):
    page = browser_page
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/facilities/")
    frame = page.frame_locator("#facility-map")
    frame.locator(MARKER.format("isi")).wait_for()
    page.wait_for_function("() => window.sphereFacilities !== undefined")
    expected = {"isi": "up", "wisc": "down", "clemson": "maintenance", "tacc": "degraded"}
    for slug, status in expected.items():
        assert marker_status(frame, slug) == status

    frame.locator(MARKER.format("utah")).click()
    page.wait_for_selector('#facility-panel[data-selected="utah"]')
    panel = page.locator("#facility-panel").inner_text()
    used, capacity = (int(n) for n in re.search(r"(\d+) of (\d+) nodes in use", panel).groups())
    assert 0.2 <= used / capacity <= 0.7
    # Days of unbroken reports: the latest days are coloured, not grey, and
    # no silence shows among the status changes.
    days = page.locator(".uptime-bar span")
    assert [days.nth(i).get_attribute("data-status") for i in range(85, 90)] != ["unknown"] * 5
    assert "unknown" not in page.locator("ol.changes").inner_text()
    page.wait_for_timeout(300)
    screenshot(page, "facilities_demo_panel")


def test_a_sort_survives_a_reload_with_the_panel_open(
    browser_page, live_server, viewer, demo_facilities
):
    page = browser_page
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/facilities/")
    page.wait_for_function("() => window.sphereFacilities !== undefined")
    page.locator('[data-facility-link="wisc"]').click()
    page.wait_for_selector('#facility-panel[data-selected="wisc"]')
    page.locator("#facility-status th a", has_text="Status").click()
    page.wait_for_url(f"{live_server.url}/facilities/wisc/?sort=status")
    page.reload()
    page.wait_for_selector('#facility-panel[data-selected="wisc"]')
    first = page.locator("#facility-status tbody tr").first.get_attribute("data-facility")
    assert first == "wisc"  # down, the worst state, first


# --- phones, keyboards, axe, offline ------------------------------------------------


def in_viewport(page, selector: str) -> bool:
    """The element's top is on screen (the panel is taller than a phone)."""
    return page.evaluate(
        """(selector) => {
            const box = document.querySelector(selector).getBoundingClientRect();
            return box.top >= 0 && box.top < window.innerHeight;
        }""",
        selector,
    )


def document_width(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth")


def violations(page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']}: {v['help']} ({', '.join(n['target'][0] for n in v['nodes'][:5])})"
        for v in results.response["violations"]
    ]


@pytest.mark.parametrize(
    ("width", "scheme"), [(1440, "light"), (1440, "dark"), (390, "light"), (390, "dark")]
)
def test_the_pages_and_the_map_pass_axe_and_fit_the_screen(
    open_page, live_server, viewer, demo_facilities, width, scheme
):
    page = open_page(width, scheme)
    browser_login(page, live_server, viewer)
    for name, path in (
        ("index", "/facilities/"),
        ("detail", "/facilities/wisc/"),
        ("map", "/facilities/map/?selected=wisc"),
    ):
        page.goto(f"{live_server.url}{path}")
        if name == "map":
            page.locator(".folium-map[data-world-outline=loaded]").wait_for()
        else:
            map_ready(page)
        if name == "detail":
            # The day-by-day table under the uptime bar, open, is checked too.
            page.locator(".uptime-days summary").click()
        page.wait_for_timeout(200)
        screenshot(page, f"facilities_{name}_{width}_{scheme}")
        assert violations(page) == [], f"{path} at {width} px, {scheme}"
        assert document_width(page) <= width, f"{path} scrolls sideways at {width} px"
    assert page.errors == []
    assert page.blocked_requests == []


def test_a_marker_tapped_on_a_phone_brings_its_panel_into_view(
    open_page, live_server, viewer, demo_facilities
):
    page = open_page(390)
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/facilities/")
    frame = map_ready(page)
    before = page.evaluate(
        "() => document.querySelector('#facility-panel').getBoundingClientRect().top"
    )
    assert before > 300  # below the map

    frame.locator(MARKER.format("tacc")).tap()
    page.wait_for_selector('#facility-panel[data-selected="tacc"]')
    # The page scrolls the panel's top up to the top of the screen, its
    # status in view.
    page.wait_for_function(
        "() => { const t = document.querySelector('#facility-panel').getBoundingClientRect().top;"
        " return t >= 0 && t < 100; }"
    )
    assert in_viewport(page, "#facility-panel .panel-status")
    assert "storage array rebuilding" in page.locator("#facility-panel").inner_text()
    assert document_width(page) <= 390
    # What the phone shows, not the whole page.
    page.screenshot(path=str(SCREENSHOTS / "facilities_phone_tapped.png"))
    assert page.errors == []


def active_marker(page) -> str | None:
    """The facility of the marker focused inside the map, if the map has the focus."""
    return page.evaluate(
        """() => {
            const frame = document.querySelector('#facility-map');
            if (document.activeElement !== frame) { return null; }
            const el = frame.contentDocument.activeElement;
            return el ? el.getAttribute('data-facility') : null;
        }"""
    )


def test_a_keyboard_user_tabs_to_a_marker_opens_it_with_enter_and_closes_it_with_escape(
    open_page, live_server, viewer, demo_facilities
):
    page = open_page(1440)
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/facilities/")
    map_ready(page)
    page.locator("#facilities-tz").focus()
    reached = []
    for _ in range(20):
        page.keyboard.press("Tab")
        slug = active_marker(page)
        if slug:
            reached.append(slug)
        if len(reached) == 2:
            break
    assert len(reached) == 2, "Tab never reached two map markers"
    slug = reached[-1]

    page.keyboard.press("Enter")
    page.wait_for_selector(f'#facility-panel[data-selected="{slug}"]')
    # The panel takes the focus, so a screen reader reads its heading.
    page.wait_for_function("() => document.activeElement.id === 'facility-panel-title'")

    page.keyboard.press("Escape")
    page.wait_for_selector("#facility-panel:not([data-selected])")
    page.wait_for_function(
        f"() => document.querySelector('#facility-map').contentDocument.activeElement.dataset.facility === '{slug}'"
    )
    assert active_marker(page) == slug
    assert page.url == f"{live_server.url}/facilities/"
    assert page.errors == []


def test_escape_closes_a_panel_opened_from_the_table_and_gives_the_focus_back(
    open_page, live_server, viewer, demo_facilities
):
    page = open_page(1440)
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/facilities/?sort=status")
    map_ready(page)
    page.locator('[data-facility-link="clemson"]').focus()
    page.keyboard.press("Enter")
    page.wait_for_selector('#facility-panel[data-selected="clemson"]')
    page.keyboard.press("Escape")
    page.wait_for_selector("#facility-panel:not([data-selected])")
    page.wait_for_function(
        "() => document.activeElement.getAttribute('data-facility-link') === 'clemson'"
    )
    assert page.url == f"{live_server.url}/facilities/?sort=status"


def test_with_a_tile_url_the_tiles_are_drawn_over_the_outline(
    browser_page, live_server, viewer, demo_facilities, settings
):
    # A "tile server" on the live server: one small image for every tile.
    settings.MAP_TILE_URL = (
        f"{live_server.url}/static/vendor/leaflet/images/layers.png?{{z}}/{{x}}/{{y}}"
    )
    page = browser_page
    errors = watch(page)
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/facilities/")
    frame = map_ready(page)
    frame.locator(".leaflet-tile-pane img.leaflet-tile-loaded").first.wait_for()
    above = frame.locator("body").evaluate(
        """() => {
            const z = (name) => Number(getComputedStyle(document.querySelector(name)).zIndex);
            return z('.leaflet-tile-pane') > z('.leaflet-world-pane');
        }"""
    )
    assert above
    assert errors == []
    assert page.blocked_requests == []
