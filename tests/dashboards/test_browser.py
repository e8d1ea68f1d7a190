"""A real browser changes the period and time zone and sees the charts change."""

import pytest
from django.db import models
from django.utils import timezone

from audit.ingest import ingest
from audit.models import Entity
from demo.history import generate
from tests.conftest import browser_login, screenshot

pytestmark = pytest.mark.browser


def _chart_x(page, name: str) -> list[str]:
    return page.evaluate(f"document.querySelector('#chart-{name} .js-plotly-plot').data[0].x")


def _chart_data(page, name: str) -> list:
    """Each trace's x and y of a chart, as Plotly holds them on its div."""
    return page.evaluate(
        f"document.querySelector('#chart-{name} .js-plotly-plot').data.map((t) => [t.x, t.y])"
    )


@pytest.fixture
def history(roles):
    ingest(list(generate(3000, days=400, seed=2, end=timezone.now())))


def test_changing_period_and_time_zone_redraws_the_charts(
    browser_page, live_server, roles, viewer, history
):
    page = browser_page
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/?period=30d&res=1d")
    page.wait_for_selector("#chart-logins .main-svg")
    # Every chart fits inside its card: a chart drawn while the page was still
    # being parsed once came out twice as wide and covered its neighbour.
    # (Checked before the screenshot, whose viewport change resizes them.)
    overflowing = page.evaluate(
        """[...document.querySelectorAll('.chart-card')].filter((card) => {
            const plot = card.querySelector('.main-svg');
            return plot && plot.getBoundingClientRect().right > card.getBoundingClientRect().right + 1;
        }).map((card) => card.id)"""
    )
    assert overflowing == []
    screenshot(page, "dashboards_overview_30d_utc")
    before = _chart_x(page, "logins")
    assert 30 <= len(before) <= 31

    page.select_option("select[name=period]", "1y")
    page.wait_for_function(
        "() => ("
        "document.querySelector('#chart-logins .js-plotly-plot') && "
        "document.querySelector('#chart-logins .js-plotly-plot').data[0].x.length > 300"
        ")"
    )
    assert "period=1y" in page.url
    page.wait_for_function("() => (!document.querySelector('.htmx-request'))")
    utc_days = _chart_data(page, "logins")

    page.fill("input[name=tz]", "Asia/Tokyo")
    page.press("input[name=tz]", "Enter")
    page.wait_for_function(
        "() => (document.querySelector('.window-label').textContent.includes('Asia/Tokyo'))"
    )
    page.wait_for_selector("#chart-entity_growth .main-svg")
    assert "tz=Asia%2FTokyo" in page.url
    page.wait_for_function("() => (!document.querySelector('.htmx-request'))")
    page.wait_for_selector("#chart-logins .main-svg")
    # Days now start at Tokyo's midnight, nine hours before UTC's: the same
    # logins fall into other days, so the bars themselves changed.
    tokyo_days = _chart_data(page, "logins")
    assert len(tokyo_days[0][0]) > 300
    assert tokyo_days != utc_days
    # The charts below the first are drawn when the browser is idle: the
    # screenshot waits for the last of them, the active users.
    page.wait_for_selector("#chart-active_users .main-svg")
    screenshot(page, "dashboards_overview_1y_tokyo")
    assert page.blocked_requests == []

    # Back: the controls show the window of the URL gone back to (1 year,
    # UTC), not the one the page was first loaded with (30 days).
    page.go_back()
    page.wait_for_function("() => (!location.search.includes('Asia'))")
    page.wait_for_function(
        "() => (!document.querySelector('.window-label').textContent.includes('Asia/Tokyo'))"
    )
    assert page.input_value("select[name=period]") == "1y"
    assert page.input_value("input[name=tz]") == "UTC"
    assert page.input_value("select[name=res]") == "1d"
    page.go_forward()
    page.wait_for_function(
        "() => (document.querySelector('.window-label').textContent.includes('Asia/Tokyo'))"
    )
    assert page.input_value("input[name=tz]") == "Asia/Tokyo"

    # The pushed URL reproduces the view on its own.
    page.goto(page.url)
    page.wait_for_selector("#chart-logins .main-svg")
    assert page.input_value("input[name=tz]") == "Asia/Tokyo"
    assert page.input_value("select[name=period]") == "1y"


def test_an_entity_page_draws_its_heatmap(browser_page, live_server, roles, analyst, history):
    page = browser_page
    browser_login(page, live_server, analyst)
    project = Entity.objects.filter(kind="project").exclude(state="gone").order_by("name").first()
    page.goto(f"{live_server.url}/projects/{project.name}/?period=1y")
    page.wait_for_selector("#chart-entity_activity .main-svg")
    assert page.locator("#timeline-rows tr").count() > 1
    screenshot(page, "dashboards_project_page")
    page.goto(f"{live_server.url}/top/?period=90d")
    page.wait_for_selector("#table-top_projects")
    screenshot(page, "dashboards_top")
    assert page.blocked_requests == []


def test_a_busy_users_page_in_new_york_draws_their_year_and_types(
    browser_page, live_server, roles, analyst, history
):
    from audit.models import Event

    page = browser_page
    browser_login(page, live_server, analyst)
    busiest = (
        Event.objects.filter(caller__in=Entity.objects.filter(kind="user").values("name"))
        .values_list("caller", flat=True)
        .order_by()
        .annotate(types=models.Count("event_type", distinct=True), n=models.Count("event_uuid"))
        .order_by("-types", "-n")[0]
    )
    page.goto(f"{live_server.url}/users/{busiest}/?period=1y&tz=America/New_York")
    page.wait_for_selector("#chart-entity_activity .main-svg")
    # The heatmap holds as many events as the same year counted from raw events.
    shown = page.evaluate(
        "document.querySelector('#chart-entity_activity .js-plotly-plot').data[0].z"
        ".flat().reduce((a, b) => a + (b || 0), 0)"
    )
    from dashboards.stats import STATS
    from sphere_stats.windows import Window

    year = Window.from_query({"period": "1y", "tz": "America/New_York"})
    raw = STATS["entity_activity"].compute(
        year, {"kind": "user", "name": busiest, "project": ""}, "raw"
    )
    assert shown == sum(n for _, n in raw.rows) > 0
    assert page.locator("#table-entity_events tbody tr").count() > 1
    screenshot(page, "dashboards_user_page_new_york")
    assert page.blocked_requests == []


@pytest.fixture
def seed_rows(roles):
    from tests.dashboards.test_lifecycle_pages import SEED_ROWS

    assert ingest(SEED_ROWS).accepted == 8


@pytest.mark.parametrize("width", [1440, 390])
def test_the_overview_and_the_seeds_org_read_at_desktop_and_phone_widths(
    browser_page, live_server, roles, analyst, seed_rows, width
):
    page = browser_page
    page.set_viewport_size({"width": width, "height": 900})
    browser_login(page, live_server, analyst)

    def overflowing() -> list[str]:
        """Elements reaching past the viewport's right edge, but for those
        inside a box that scrolls or clips them: at 390 px a wide table
        scrolls inside its card, and the page never scrolls sideways."""
        return page.evaluate(
            """[...document.querySelectorAll('body *')].filter((el) => {
                if (el.getBoundingClientRect().right <= window.innerWidth + 1) return false;
                for (let box = el.parentElement; box; box = box.parentElement) {
                    if (getComputedStyle(box).overflowX !== 'visible') return false;
                }
                return true;
            }).map((el) => el.tagName.toLowerCase() + '.' + el.className).slice(0, 5)"""
        )

    page.goto(f"{live_server.url}/?period=all")
    page.wait_for_selector("#chart-logins .main-svg")
    cards = page.locator(".entity-cards .stat-card")
    assert cards.count() == 6
    organizations = page.locator("#card-organization")
    assert " ".join(organizations.inner_text().split()) == (
        "Organizations 1 +1 1 active 0 pending 0 frozen"
    )
    # Each card shows its whole breakdown: no state wraps out of its card.
    for i in range(cards.count()):
        box, inner = cards.nth(i).bounding_box(), cards.nth(i).locator(".breakdown")
        if inner.count():
            assert (
                inner.bounding_box()["x"] + inner.bounding_box()["width"] <= box["x"] + box["width"]
            )
    # Taken before the layout is checked, so that a failure can be looked at.
    screenshot(page, f"dashboards_overview_seed_{width}")
    assert overflowing() == []

    page.goto(f"{live_server.url}/orgs/orgtest/")
    page.wait_for_selector("#chart-entity_activity .main-svg")
    assert page.locator("h1 .badge").inner_text() == "active"
    note = page.locator(".note.predates")
    assert " ".join(note.inner_text().split()) == (
        "First seen 2026-04-23 20:50:23 UTC in org_member_added; no creation event was "
        "recorded, so it may be older."
    )
    assert page.locator("#members tbody tr").all_inner_texts()[0].split()[0] == "testuser"
    screenshot(page, f"dashboards_orgtest_{width}")
    assert overflowing() == []
    assert page.blocked_requests == []
