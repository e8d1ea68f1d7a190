"""The map page, its htmx panel and status fragment, and the framed map."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from tests.factories import allocation, facility, report, reporting

NOW = datetime(2026, 4, 23, 21, 0, tzinfo=UTC)
HTMX = {"HTTP_HX_REQUEST": "true"}

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db):
    """Two facilities: isi down with a materialization and a failure, utah up."""
    facility("isi", name="USC ISI", capacity_nodes=64)
    facility("utah", name="Utah", latitude=40.76, longitude=-111.84, capacity_nodes=96)
    report("isi", NOW - timedelta(days=3), "up")
    reporting(
        "isi",
        NOW - timedelta(hours=2),
        NOW - timedelta(minutes=1),
        "down",
        "power failure in machine room B",
        caller="opsbob",
    )
    report("utah", NOW - timedelta(minutes=2), "up")
    t = NOW - timedelta(hours=5)
    allocation(
        "realization",
        "allocated",
        "isi",
        t,
        experiment="botnet",
        project="carolp",
        resources=["isi-n001", "isi-n002"],
        caller="carol",
    )
    allocation(
        "materialization",
        "allocated",
        "isi",
        t,
        experiment="botnet",
        project="carolp",
        resources=["isi-n001", "isi-n002"],
        caller="carol",
    )
    allocation(
        "realization",
        "allocated",
        "isi",
        t,
        experiment="dns",
        project="davep",
        success=False,
        error="insufficient resources at facility",
        caller="dave",
    )


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def test_the_page_lists_every_facility_with_its_status(viewer_client, demo):
    response = viewer_client.get("/facilities/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="facility-map"' in html
    assert "USC ISI" in html and "Utah" in html
    assert 'class="badge status-down"' in html
    assert 'class="badge status-up"' in html
    assert 'hx-trigger="every 60s"' in html
    assert "Pick a facility" in html


def test_the_detail_url_opens_with_that_facility_panel(viewer_client, demo):
    html = viewer_client.get("/facilities/isi/").content.decode()
    assert 'data-selected="isi"' in html
    assert "power failure in machine room B" in html
    assert 'src="/facilities/map/?selected=isi"' in html


def test_an_htmx_request_gets_only_the_panel(viewer_client, demo):
    response = viewer_client.get("/facilities/isi/?tz=America/Los_Angeles", **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<aside id="facility-panel"')
    assert "<html" not in html
    assert "HX-Request" in response["Vary"]
    # Down since 2 hours ago, shown in the display zone (19:00 UTC = 12:00 PDT).
    assert "badge big status-down" in html
    assert "2026-04-23 12:00 PDT" in html
    assert "opsbob" in html
    # Resources, the materialization with its experiment link, the failure.
    assert re.search(r'<b class="in-use">2</b> of 64 nodes', html)
    assert 'href="/experiments/carolp/botnet/"' in html
    assert "insufficient resources at facility" in html
    # 90 days of uptime, the last ones coloured by the outage.
    assert html.count('data-date="') == 90
    assert 'data-date="2026-04-23" data-status="down"' in html
    assert 'data-date="2026-04-19" data-status="unknown"' in html


def test_the_panel_lists_status_changes(viewer_client, demo):
    html = viewer_client.get("/facilities/isi/", **HTMX).content.decode()
    changes = html[html.index('<ol class="changes">') :]
    assert changes.index("status-down") < changes.index("status-up")


def test_an_unknown_facility_is_404(viewer_client, demo):
    assert viewer_client.get("/facilities/nowhere/").status_code == 404


def test_a_bad_time_zone_shows_its_error_and_keeps_the_rest_of_the_page(viewer_client, demo):
    response = viewer_client.get("/facilities/isi/?tz=Mars/Olympus&sort=-name")
    assert response.status_code == 200
    html = response.content.decode()
    # The error beside the one zone field, which falls back to UTC.
    assert "unknown time zone &#x27;Mars/Olympus&#x27;" in html
    assert 'aria-invalid="true" aria-describedby="facilities-tz-error"' in html
    assert 'id="facilities-tz" list="window-zones" value="UTC"' in html
    # The panel, the sort and the table are still as asked, times in UTC.
    assert 'data-selected="isi"' in html
    assert "2026-04-23 19:00 UTC" in html
    assert html.index('data-facility="utah"') < html.index('data-facility="isi"')


def test_a_bad_time_zone_in_an_htmx_fragment_is_a_400_that_says_why(viewer_client, demo):
    response = viewer_client.get("/facilities/isi/?tz=Mars/Olympus", **HTMX)
    assert response.status_code == 400
    assert "unknown time zone" in response.content.decode()


def test_the_page_uses_the_shared_zone_field_with_every_zone(viewer_client, demo):
    html = viewer_client.get("/facilities/?tz=Asia/Kolkata").content.decode()
    assert '<input name="tz" id="facilities-tz" list="window-zones" value="Asia/Kolkata"' in html
    assert '<option value="Pacific/Auckland">' in html  # beyond the common few
    assert "<select" not in html


def test_a_bad_sort_shows_its_error_and_sorts_by_name(viewer_client, demo):
    response = viewer_client.get("/facilities/?sort=colour&tz=Asia/Tokyo")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Sort: sort must be one of name," in html
    assert html.index('data-facility="isi"') < html.index('data-facility="utah"')
    assert 'value="Asia/Tokyo"' in html


def test_a_bad_sort_in_the_status_fragment_is_a_400(viewer_client, demo):
    assert viewer_client.get("/facilities/status/?sort=colour", **HTMX).status_code == 400


def test_the_table_sorts_by_status_worst_first(viewer_client, demo):
    html = viewer_client.get("/facilities/status/?sort=status", **HTMX).content.decode()
    assert html.index('data-facility="isi"') < html.index('data-facility="utah"')
    html = viewer_client.get("/facilities/status/?sort=-status", **HTMX).content.decode()
    assert html.index('data-facility="utah"') < html.index('data-facility="isi"')
    # The header links reverse the current order and keep a plain href.
    assert 'href="/facilities/?sort=status"' in html


def test_the_status_fragment_carries_statuses_for_the_markers(viewer_client, demo):
    response = viewer_client.get("/facilities/status/", **HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="facility-status"')
    assert '"isi": {"status": "down", "label": "Down"}' in html
    assert "HX-Request" in response["Vary"]


def test_the_status_fragment_without_htmx_redirects_to_the_page(viewer_client, demo):
    response = viewer_client.get("/facilities/status/?sort=kind")
    assert response.status_code == 302
    assert response["Location"] == "/facilities/?sort=kind"


def test_the_map_references_no_remote_url_but_the_tile_server(viewer_client, demo, settings):
    settings.MAP_TILE_URL = "https://tiles.example.org/{z}/{x}/{y}.png"
    response = viewer_client.get("/facilities/map/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "L.map(" in html
    assert html.count("window.sphereMap.add(") == 2
    without_tiles = html.replace(settings.MAP_TILE_URL, "")
    assert re.findall(r"https?://[^\s\"'<>]+", without_tiles) == []
    assert re.search(r'src="/static/vendor/leaflet/leaflet\.\w+\.js"', html)
    assert re.search(r"/static/vendor/world/world\.\w+\.geojson", html)
    assert "L.tileLayer(" in html


def test_the_map_document_has_a_language_a_title_and_lets_readers_zoom(viewer_client, demo):
    html = viewer_client.get("/facilities/map/").content.decode()
    assert html.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert "<title>Map of facilities and their status</title>" in html
    assert re.findall(r'<meta name="viewport"[^>]*>', html) == [
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
    ]
    # The labelled, focusable markers come from the facilities app's script.
    assert re.search(r'src="/static/facilities/map\.\w+\.js"', html)
    assert re.search(r'href="/static/facilities/map\.\w+\.css"', html)


def test_the_map_without_a_tile_url_draws_only_the_world_outline(viewer_client, demo, settings):
    settings.MAP_TILE_URL = ""
    html = viewer_client.get("/facilities/map/").content.decode()
    assert "L.tileLayer" not in html
    assert "world." in html and ".geojson" in html
    assert re.findall(r"https?://[^\s\"'<>]+", html) == []


def test_the_map_colours_markers_by_status(viewer_client, demo):
    html = viewer_client.get("/facilities/map/").content.decode()
    assert re.search(r'window\.sphereMap\.add\("isi", "USC ISI",\s+"down"', html)
    assert re.search(r'window\.sphereMap\.add\("utah", "Utah",\s+"up"', html)


def test_anonymous_visitors_are_sent_to_the_login_page(demo):
    response = Client().get("/facilities/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert Client().get("/facilities/map/").status_code == 302


def test_the_public_map_hides_usernames_and_error_messages(demo, settings):
    settings.FACILITIES_PUBLIC = True
    anonymous = Client()
    page = anonymous.get("/facilities/")
    assert page.status_code == 200
    assert anonymous.get("/facilities/map/").status_code == 200
    html = anonymous.get("/facilities/isi/", **HTMX).content.decode()
    assert "badge big status-down" in html
    assert "realization_allocated" in html
    for private in ("opsbob", "carol", "dave", "insufficient resources", "botnet"):
        assert private not in html


def test_a_signed_in_user_without_a_role_is_refused_a_private_map(demo, django_user_model):
    user = django_user_model.objects.create_user("norole", password="x")
    client = Client()
    client.force_login(user)
    assert client.get("/facilities/").status_code == 403


def test_a_signed_in_user_without_a_role_sees_the_public_map_as_anonymous_visitors_do(
    demo, django_user_model, settings
):
    settings.FACILITIES_PUBLIC = True
    user = django_user_model.objects.create_user("norole", password="x")
    client = Client()
    client.force_login(user)
    assert client.get("/facilities/").status_code == 200
    assert client.get("/facilities/map/").status_code == 200
    html = client.get("/facilities/isi/", **HTMX).content.decode()
    assert "badge big status-down" in html
    assert "The viewer role shows which experiments these are." in html
    for private in ("opsbob", "carol", "dave", "insufficient resources", "botnet"):
        assert private not in html


def test_the_data_as_of_time_is_in_the_display_zone(viewer_client, demo):
    html = viewer_client.get("/facilities/status/?tz=America/Los_Angeles", **HTMX).content.decode()
    assert 'Data as of <time datetime="2026-04-23T21:00:00+00:00">14:00</time> PDT' in html
    # The page shows it too (the fragment refreshes it every minute).
    html = viewer_client.get("/facilities/?tz=Asia/Tokyo").content.decode()
    assert ">06:00</time> JST" in html


def test_the_uptime_bar_says_in_words_what_its_colours_show(viewer_client, demo):
    html = viewer_client.get("/facilities/isi/", **HTMX).content.decode()
    # isi: one report 3 days ago (up for 15 minutes), down since 2 hours
    # ago, silent otherwise.
    summary = "Worst status of each day: 1 day up, 1 day down, 88 days unknown, over 90 days"
    assert f'role="img" aria-label="{summary}"' in html
    key = html[html.index('<ul class="uptime-key') :]
    key = key[: key.index("</ul>")]
    assert re.sub(r"<[^>]+>", " ", key).split() == (
        "Up 1 Degraded 0 Down 1 Maintenance 0 Unknown 88".split()
    )
    days = html[html.index('<details class="uptime-days">') :]
    assert "1 day not fully up" in days
    assert "Thu Apr 23" in days and "Down 9.5%, Unknown 90.5%" in days


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(900, "15 minutes"), (60, "1 minute"), (30, "30 seconds"), (90, "1 minute 30 seconds")],
)
def test_the_staleness_limit_is_said_in_words(viewer_client, demo, settings, seconds, words):
    settings.FACILITY_STALE_AFTER = seconds
    html = viewer_client.get("/facilities/").content.decode()
    assert f"the interval its controller gave, at least {words}) shows" in html


def test_a_sort_click_pushes_the_page_url_with_the_open_panel(viewer_client, demo):
    # The table refresh made from /facilities/isi/ (htmx names the page).
    html = viewer_client.get(
        "/facilities/status/?sort=kind",
        HTTP_HX_CURRENT_URL="http://testserver/facilities/isi/?sort=kind",
        **HTMX,
    ).content.decode()
    assert 'href="/facilities/isi/?sort=-kind"' in html
    assert 'hx-push-url="/facilities/isi/?sort=-kind"' in html
    assert 'hx-get="/facilities/status/?sort=-kind"' in html
    # Picking a facility keeps the sort in the URL it pushes.
    assert 'hx-get="/facilities/utah/?sort=kind"' in html


def test_reloading_a_sorted_page_keeps_the_sort_and_the_panel(viewer_client, demo):
    html = viewer_client.get("/facilities/isi/?sort=-name").content.decode()
    assert 'data-selected="isi"' in html
    assert html.index('data-facility="utah"') < html.index('data-facility="isi"')
    assert 'href="/facilities/isi/?sort=kind"' in html
    # Closing the panel keeps the sort too.
    assert 'class="panel-close" href="/facilities/?sort=-name"' in html


def test_a_report_under_a_minute_old_is_just_now_not_zero_minutes(viewer_client, demo):
    report("utah", NOW - timedelta(seconds=20), "down", "fire alarm")
    table = viewer_client.get("/facilities/status/", **HTMX).content.decode()
    panel = viewer_client.get("/facilities/utah/", **HTMX).content.decode()
    assert ">just now</time>" in table
    assert "(just now)" in panel
    assert "0 minutes" not in table + panel
    # One minute is singular (timesince keeps number and unit together).
    html = viewer_client.get("/facilities/isi/", **HTMX).content.decode()
    assert "(1\xa0minute ago)" in html
