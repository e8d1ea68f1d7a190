"""Controls that forgive: a bad window field keeps its default and shows its
error beside it while the rest of the view stays; one searchable zone list;
auto-refresh and "data as of"; shared URLs without empty fields."""

import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
import time_machine
from django.http import QueryDict
from django.test import Client

from sphere_stats.models import ApiToken
from sphere_stats.windows import (
    COMMON_ZONES,
    Window,
    WindowError,
    known_zones,
    resolve_zone,
    zone_choices,
)
from tests.dashboards.conftest import dataset  # noqa: F401 (the fixture, for these tests)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def token_client(db) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue('t', ['read'])[1]}")


def window(query: str) -> Window:
    return Window.forgiving(QueryDict(query), now=NOW)


def selected(html: str, name: str) -> str:
    select = re.search(rf'<select name="{name}".*?</select>', html, re.S).group(0)
    found = re.search(r'<option value="([^"]*)" selected>', select)
    return found.group(1) if found else ""


# --- parsing -----------------------------------------------------------------------


def test_a_bad_zone_keeps_the_period_and_resolution_asked_for():
    w = window("period=7d&res=1h&tz=Mars/Olympus")
    assert (w.period, w.resolution, w.resolution_chosen) == ("7d", "1h", True)
    assert w.tz_name == "UTC"
    assert list(w.field_errors) == ["tz"]
    assert "unknown time zone 'Mars/Olympus'" in w.field_errors["tz"]


def test_every_bad_field_has_its_own_error_and_only_it_is_replaced():
    w = window("period=custom&since=2026-03-01&until=someday&res=2h&tz=Europe/Berlin")
    assert list(w.field_errors) == ["until", "res"]
    assert w.tz_name == "Europe/Berlin"
    assert w.end == NOW  # until's default
    assert w.start == datetime(2026, 2, 28, 23, 0, tzinfo=UTC)  # since as asked, in Berlin
    assert not w.resolution_chosen


def test_a_custom_range_without_a_valid_since_shows_the_default_length_before_until():
    w = window("period=custom&since=garbage&until=2026-03-05")
    assert list(w.field_errors) == ["since"]
    assert w.end == datetime(2026, 3, 6, tzinfo=UTC)
    assert w.length.days == 30


def test_the_strict_parse_names_the_first_bad_field():
    with pytest.raises(WindowError) as caught:
        Window.from_query(QueryDict("period=2w&res=9d&tz=Nowhere"), now=NOW)
    assert caught.value.field == "tz"


@pytest.mark.parametrize(
    ("asked", "zone"),
    [
        ("Asia/Kolkata", "Asia/Kolkata"),
        ("asia/kolkata", "Asia/Kolkata"),
        ("Asia/kolkata", "Asia/Kolkata"),
        ("kolkata", "Asia/Kolkata"),
        ("new york", "America/New_York"),
        (" utc ", "UTC"),
    ],
)
def test_a_zone_is_forgiven_its_case_and_a_missing_region(asked, zone):
    assert resolve_zone(asked) == zone
    assert window(f"tz={asked}").tz_name == zone


def test_a_city_two_zones_share_is_not_guessed_but_both_are_suggested():
    w = window("tz=indianapolis")
    assert w.tz_name == "UTC"
    assert "America/Indiana/Indianapolis" in w.field_errors["tz"]
    assert "America/Indianapolis" in w.field_errors["tz"]


def test_a_misspelt_zone_suggests_the_closest():
    assert "did you mean Europe/Berlin" in window("tz=Europe/Berlim").field_errors["tz"]


def test_the_zone_list_holds_every_iana_zone_the_common_ones_first():
    choices = zone_choices()
    assert list(choices[: len(COMMON_ZONES)]) == COMMON_ZONES
    assert set(choices) == known_zones()
    assert len(choices) == len(set(choices)) > 400


# --- the stats pages -----------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
@pytest.mark.usefixtures("dataset")
def test_a_bad_zone_on_a_stats_page_keeps_period_and_resolution_and_shows_the_error(viewer_client):
    response = viewer_client.get("/?period=7d&res=1h&tz=Mars/Olympus")
    html = response.content.decode()
    assert response.status_code == 200
    assert selected(html, "period") == "7d"
    assert selected(html, "res") == "1h"
    assert "Last 7 days · Hourly buckets · UTC" in html
    field = re.search(r'<input name="tz" id="window-tz"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in field and 'aria-describedby="window-tz-error"' in field
    assert re.search(r'id="window-tz-error">unknown time zone &#x27;Mars/Olympus&#x27;', html)
    # No field but the zone is marked.
    assert html.count('aria-invalid="true"') == 1


@time_machine.travel(NOW, tick=False)
@pytest.mark.usefixtures("dataset")
def test_a_bad_resolution_on_the_top_page_keeps_the_zone_and_n(viewer_client):
    html = viewer_client.get("/top/?period=90d&res=3h&tz=Asia/Tokyo&n=3").content.decode()
    assert 'id="window-res-error">must be one of 1h, 1d, 7d, 30d' in html
    assert 'value="Asia/Tokyo"' in html and 'name="n" min="1" max="100" value="3"' in html


@time_machine.travel(NOW, tick=False)
@pytest.mark.usefixtures("dataset")
def test_a_range_too_long_to_chart_is_refused_on_since_only(viewer_client):
    html = viewer_client.get("/?since=1001-01-02&tz=Europe/Paris").content.decode()
    assert 'id="window-since-error">reaches back too far' in html
    assert 'value="Europe/Paris"' in html


@time_machine.travel(NOW, tick=False)
@pytest.mark.usefixtures("dataset")
def test_the_api_still_refuses_a_bad_zone_naming_it_and_takes_a_forgiven_one(token_client):
    bad = token_client.get("/api/v1/stats/logins?tz=Mars/Olympus")
    assert bad.status_code == 400
    assert bad.json()["details"][0]["field"] == "tz"
    assert token_client.get("/api/v1/stats/logins?tz=kolkata").json()["window"]["tz"] == (
        "Asia/Kolkata"
    )


@time_machine.travel(NOW, tick=False)
@pytest.mark.usefixtures("dataset")
def test_refresh_60_renders_the_poll_and_keeps_the_choice(viewer_client):
    html = viewer_client.get("/?period=7d&refresh=60").content.decode()
    assert selected(html, "refresh") == "60"
    poll = re.search(r'<span id="window-poll".*?</span>', html, re.S).group(0)
    assert 'hx-trigger="every 60s, sphere:catch-up"' in poll
    assert 'hx-include="closest form"' in poll and 'hx-push-url="false"' in poll
    # The body an htmx request (the poll's own) brings keeps polling.
    body = viewer_client.get("/?period=7d&refresh=60", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-swap-oob="true"' in body and "every 60s" in body
    assert selected(body, "refresh") == "60"


@time_machine.travel(NOW, tick=False)
@pytest.mark.usefixtures("dataset")
def test_without_refresh_nothing_polls_and_a_bad_one_says_so(viewer_client):
    assert "window-poll" not in viewer_client.get("/?period=7d").content.decode()
    html = viewer_client.get("/?period=7d&refresh=5").content.decode()
    assert "window-poll" not in html
    assert 'id="window-refresh-error">must be off, 60 or 300 seconds' in html
    assert selected(html, "period") == "7d"


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("path", ["/", "/top/", "/users/alice/"])
@pytest.mark.usefixtures("dataset")
def test_every_stats_page_says_when_its_data_is_from_in_its_zone(viewer_client, settings, path):
    settings.STATS_CACHE_SECONDS = 30
    html = viewer_client.get(f"{path}?tz=Asia/Kolkata").content.decode()
    assert re.search(
        r"Data as of <time datetime=\"2026-03-10T17:30:00\+05:30\">17:30</time> Asia/Kolkata", html
    )
    assert "figures cached up to 30 s" in html


@time_machine.travel(NOW, tick=False)
def test_the_explorer_has_no_refresh_choice(analyst_client):
    html = analyst_client.get("/events/?tz=UTC").content.decode()
    assert 'name="refresh"' not in html and "Data as of" not in html


# --- in a browser --------------------------------------------------------------------


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


@pytest.mark.browser
def test_pushed_urls_carry_no_empty_field_and_keep_refresh(
    browser_page, live_server, roles, viewer
):
    from tests.conftest import browser_login, screenshot

    page = browser_page
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/?period=30d")
    page.select_option("#window-res", "1d")
    page.wait_for_url("**res=1d**")
    assert query_of(page.url) == [("period", "30d"), ("res", "1d"), ("tz", "UTC")]

    page.select_option("#window-refresh", "60")
    page.wait_for_url("**refresh=60**")
    assert all(value for _, value in query_of(page.url))
    page.wait_for_selector("#window-poll[hx-trigger^='every 60s']", state="attached")

    # A custom range, then back to a period: since and until leave the URL.
    page.fill("#window-since", "2026-01-01T00:00")
    page.wait_for_url("**period=custom**")
    assert dict(query_of(page.url))["since"] == "2026-01-01T00:00"
    page.select_option("#window-period", "7d")
    page.wait_for_url("**period=7d**")
    names = [name for name, _ in query_of(page.url)]
    assert "since" not in names and "until" not in names
    assert dict(query_of(page.url))["refresh"] == "60"

    # A bad zone: its error beside the field, the rest of the view kept.
    page.fill("#window-tz", "Mars/Olympus")
    page.press("#window-tz", "Enter")
    page.wait_for_selector("#window-tz-error")
    assert page.locator("#window-period").input_value() == "7d"
    assert page.locator("#window-res").input_value() == "1d"
    assert page.get_attribute("#window-tz", "aria-describedby") == "window-tz-error"
    screenshot(page, "controls_bad_zone")

    # The poll fetches the body again without adding a history entry.
    url, stamp = page.url, page.get_attribute("#window-as-of time", "datetime")
    history = page.evaluate("history.length")
    page.evaluate("htmx.trigger('#window-poll', 'sphere:catch-up')")
    page.wait_for_function(
        "() => ("
        f"document.querySelector('#window-as-of time').getAttribute('datetime') !== '{stamp}'"
        ")"
    )
    assert page.url == url and page.evaluate("history.length") == history
    assert page.blocked_requests == []


@pytest.mark.browser
def test_a_plain_submission_leaves_out_empty_fields(browser_page, live_server, roles, viewer):
    from tests.conftest import browser_login

    page = browser_page
    browser_login(page, live_server, viewer)
    page.goto(f"{live_server.url}/top/?period=7d")
    # The browser's own serialisation (form.submit() fires no submit event)
    # keeps every empty field: the baseline.
    page.evaluate(
        "HTMLFormElement.prototype.submit.call(document.getElementById('window-controls'))"
    )
    page.wait_for_url("**res=**")
    assert ("res", "") in query_of(page.url)
    # Without htmx on the form (a copy without its hx- attributes and
    # listeners), Apply submits a plain GET, through controls.js.
    page.evaluate(
        """const f = document.getElementById('window-controls'); const g = f.cloneNode(true);
        for (const a of [...g.attributes]) if (a.name.startsWith('hx-')) g.removeAttribute(a.name);
        f.replaceWith(g)"""
    )
    page.click("#window-controls button[type=submit]")
    page.wait_for_function("() => (!location.search.includes('res='))")
    assert query_of(page.url) == [("period", "7d"), ("tz", "UTC"), ("n", "10"), ("by", "events")]
