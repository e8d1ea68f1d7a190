"""Charts in a real browser: a click on a bar lists exactly its events in the
explorer, the previous period's overlay is a toggle kept in the URL, and the
charts take the page's colours in the dark scheme."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.ingest import ingest
from audit.models import Entity
from demo.history import generate
from tests.conftest import browser_login, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def history(roles):
    now = timezone.now()
    events = list(generate(3000, days=120, seed=3, end=now))
    # An outage and a maintenance window ten and twenty days ago, so the
    # charts have bands to draw whatever reports the demo history holds.
    for days, slug, state in ((10, "utah", "down"), (20, "isi", "maintenance")):
        for minutes in range(0, 6 * 60, 10):
            at = now - timedelta(days=days) + timedelta(minutes=minutes)
            events.append(
                {
                    "event_uuid": str(uuid.uuid4()),
                    "timestamp": at.isoformat(),
                    "event_type": "facility_status",
                    "caller": f"{slug}-controller",
                    "subject": slug,
                    "subject_type": "facility",
                    "success": True,
                    "payload": {"status": state},
                }
            )
    ingest(events)


def _plot(name: str) -> str:
    return f"document.querySelector('#chart-{name} .js-plotly-plot')"


def test_clicking_a_bar_opens_the_explorer_on_its_events(
    browser_page, live_server, roles, analyst, history
):
    page = browser_page
    browser_login(page, live_server, analyst)
    page.goto(f"{live_server.url}/?period=30d&res=1d&tz=America/New_York")
    page.wait_for_selector("#chart-logins .main-svg")
    # The tallest bar of succeeded logins: its box on screen and its count.
    bars = page.locator("#chart-logins .trace.bars").first.locator(".point path")
    heights = [bars.nth(i).bounding_box()["height"] for i in range(bars.count())]
    tallest = max(range(len(heights)), key=heights.__getitem__)
    trace = page.evaluate(f"{_plot('logins')}.data[0]")
    y = trace["y"][tallest]
    assert y > 0
    bars.nth(tallest).scroll_into_view_if_needed()
    box = bars.nth(tallest).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    # A hand over a point that opens something.
    page.wait_for_function(
        f"() => ({_plot('logins')}.querySelector('.nsewdrag').style.cursor === 'pointer')"
    )
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url("**/events/?**")
    assert page.url.endswith(trace["customdata"][tallest])
    count = page.locator(".explorer-count strong").first.inner_text()
    assert int(count.replace(",", "")) == y
    assert page.locator("table.explorer-table tbody tr").count() == min(y, 50)
    assert page.blocked_requests == []


def test_the_previous_period_toggle_stays_in_the_url(
    browser_page, live_server, roles, viewer, history
):
    page = browser_page
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/?period=30d&tz=UTC")
    page.wait_for_selector("#chart-events_by_type .main-svg")
    dashed = f"{_plot('events_by_type')}.data.some((t) => t.line && t.line.dash === 'dash')"
    assert page.evaluate(dashed) is False
    page.check("#compare-previous")
    page.wait_for_function("() => (location.search.includes('compare=previous'))")
    page.wait_for_function(f"() => ({_plot('events_by_type')} && {dashed})")
    assert "period=30d" in page.url
    # A new period keeps the overlay: the toggle belongs to the controls' form.
    page.wait_for_function("() => (!document.querySelector('.htmx-request'))")
    page.select_option("select[name=period]", "90d")
    page.wait_for_function("() => (location.search.includes('period=90d'))")
    assert "compare=previous" in page.url
    page.wait_for_function("() => (!document.querySelector('.htmx-request'))")
    page.wait_for_selector("#chart-events_by_type .main-svg")
    assert page.is_checked("#compare-previous")
    assert page.evaluate(dashed) is True
    # The facility bands are drawn, with their legend (each chart is drawn
    # on its own: the logins may come after the types).
    page.wait_for_function(f"() => ({_plot('logins')} && {_plot('logins')}.layout)")
    shapes = page.evaluate(f"{_plot('logins')}.layout.shapes.length")
    assert shapes >= 2
    page.locator("#chart-logins .legendtext", has_text="Facility down: ").first.wait_for()
    legend = page.locator("#chart-logins .legendtext").all_text_contents()
    assert any(t.startswith("Facility down: ") and "utah" in t for t in legend)
    assert any(t.startswith("Facility maintenance: ") and "isi" in t for t in legend)
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        # Every chart redrawn inside its card; on a phone the growth chart
        # stands in one column and the types' legend moves on top.
        page.wait_for_function(
            "() => ("
            """[...document.querySelectorAll('.chart-card')].every((card) => {
                const svg = card.querySelector('.main-svg');
                return svg && svg.getBoundingClientRect().right
                    <= card.getBoundingClientRect().right + 1;
            })"""
            ")"
        )
        fit = page.evaluate(f"{_plot('entity_growth')}.dataset.fit || 'wide'")
        assert fit == ("narrow" if width == 390 else "wide")
        screenshot(page, f"charts_overview_compare_{width}")
    # Unticked: gone from the URL, and the dashed lines with it.
    page.uncheck("#compare-previous")
    page.wait_for_function("() => (!location.search.includes('compare'))")
    page.wait_for_function(f"() => ({_plot('events_by_type')} && !({dashed}))")
    assert page.blocked_requests == []


def test_an_entity_page_and_the_dark_scheme(browser_page, live_server, roles, analyst, history):
    page = browser_page
    browser_login(page, live_server, analyst)
    project = Entity.objects.filter(kind="project").exclude(state="gone").order_by("name").first()
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/projects/{project.name}/?period=90d")
        page.wait_for_selector("#chart-entity_activity .main-svg")
        assert page.locator("#chart-entity_activity .colorbar").count() == 1
        screenshot(page, f"charts_project_90d_{width}")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/?period=90d")
    # Every chart drawn, those below the fold too (drawn when the browser is
    # idle): a screenshot taken at the first one showed empty cards.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.chart-card')]"
        ".every((card) => card.querySelector('.main-svg'))"
    )
    screenshot(page, "charts_overview_90d_1440")

    # A page whose stylesheet draws it dark: the charts follow, when the
    # preference changes too (no reload).
    page.add_style_tag(
        content="@media (prefers-color-scheme: dark) {"
        " :root { --ink: #e5e7eb; --text: #e5e7eb; --line: #374151; --bg: #0f172a;"
        " --card: #111827; } body { background: var(--bg); color: var(--ink); }"
        " .card { background: var(--card); } }"
    )
    font = f"{_plot('entity_growth')}.layout.font.color"
    grid = f"{_plot('entity_growth')}.layout.yaxis3.gridcolor"
    page_text = (
        "(getComputedStyle(document.documentElement).getPropertyValue('--text')"
        " || getComputedStyle(document.documentElement).getPropertyValue('--ink')).trim()"
    )
    light = page.evaluate(page_text)
    assert page.evaluate(font) == light
    page.emulate_media(color_scheme="dark")
    page.wait_for_function(f"() => ({font} === '#e5e7eb')")
    assert page.evaluate(grid) == "#374151"
    screenshot(page, "charts_overview_dark_1440")
    page.emulate_media(color_scheme="light")
    page.wait_for_function(f"() => ({font} === {page_text})")
    assert page.blocked_requests == []
