"""Every dashboards page, on an empty database and on demo data, as a full
page and as its htmx partial."""

from datetime import timedelta

import pytest
import time_machine

from audit.ingest import ingest
from audit.models import Entity, Event
from demo.history import generate
from tests.conftest import offsite_hosts
from tests.dashboards.conftest import NOW, event

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def demo(db):
    ingest(list(generate(1500, days=120, seed=5, end=NOW)), now=NOW)


@pytest.fixture(autouse=True)
def _frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


def _entity_urls() -> list[str]:
    urls = []
    for kind, prefix in (("user", "users"), ("organization", "orgs"), ("project", "projects")):
        entity = Entity.objects.filter(kind=kind).order_by("name").first()
        urls.append(f"/{prefix}/{entity.name}/")
    experiment = Entity.objects.filter(kind="experiment").order_by("name").first()
    urls.append(f"/experiments/{experiment.scope}/{experiment.name}/")
    return urls


def test_the_overview_works_on_an_empty_database(viewer_client):
    response = viewer_client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    users = body.split('id="card-user"', 1)[1].split('<div class="card stat-card"', 1)[0]
    assert '<div class="label">Users</div>' in users
    assert "0</span> pending" in users
    assert '<div class="label">Active realizations</div>' in body
    assert "No events in this period." in body
    assert "vendor/plotly/plotly-cartesian.min." in body


def test_the_overview_shows_cards_charts_and_their_data_links(viewer_client, demo):
    response = viewer_client.get("/?period=90d&tz=America/New_York")
    body = response.content.decode()
    assert response.status_code == 200
    for name in ("entity_growth", "events_by_type", "logins", "active_users"):
        assert f'id="chart-{name}"' in body
        assert f"/api/v1/stats/{name}?period=90d&amp;tz=America%2FNew_York&amp;format=csv" in body
    assert body.count('class="chart-figure"') == 4
    assert offsite_hosts(body) == set()  # no CDN, nothing from the network


def test_an_htmx_request_gets_only_the_page_body(viewer_client, demo):
    response = viewer_client.get("/?period=7d", **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body
    assert 'id="chart-logins"' in body
    assert "HX-Request" in response["Vary"]


def test_a_bad_window_shows_the_default_with_a_message(viewer_client):
    response = viewer_client.get("/?tz=Mars/Olympus")
    assert response.status_code == 200
    assert "unknown time zone" in response.content.decode()


def test_the_top_page_lists_every_top_n(viewer_client, demo):
    response = viewer_client.get("/top/?period=90d&n=3&by=experiments")
    body = response.content.decode()
    assert response.status_code == 200
    for name in ("top_projects", "top_users", "failed_logins", "top_orgs", "top_errors"):
        assert f'id="table-{name}"' in body
    assert "n=3" in body and "by=experiments" in body
    assert viewer_client.get("/top/?n=3", **HTMX).content.decode().count("<html") == 0


def test_the_top_page_works_empty(viewer_client):
    assert viewer_client.get("/top/").status_code == 200


def test_every_entity_page_renders_for_demo_data(analyst_client, demo):
    for url in _entity_urls():
        response = analyst_client.get(url + "?period=1y")
        assert response.status_code == 200, url
        body = response.content.decode()
        assert 'id="chart-entity_activity"' in body
        assert 'id="timeline-rows"' in body
        assert analyst_client.get(url, **HTMX).content.decode().count("<html") == 0


def test_an_unknown_entity_is_a_404_page(viewer_client):
    response = viewer_client.get("/users/nobody/")
    assert response.status_code == 404
    assert "No events mention" in response.content.decode()


def test_viewers_see_the_page_but_not_the_timeline(viewer_client, analyst_client, demo):
    url = _entity_urls()[0]
    viewer_body = viewer_client.get(url).content.decode()
    assert "The full timeline of events is shown to analysts." in viewer_body
    assert 'id="timeline-rows"' not in viewer_body
    assert viewer_client.get(url + "timeline/").status_code == 403
    analyst_body = analyst_client.get(url).content.decode()
    assert "/events/export?format=csv&amp;entity=user%3A" in analyst_body


PAGE = 2  # events per timeline page, so that every entity's has several


def _busiest(kind: str) -> tuple[str, str]:
    """(name, project) of the entity of `kind` most events involve."""
    found = [
        (Event.objects.involving(kind, e.name, e.scope).count(), e.name, e.scope)
        for e in Entity.objects.filter(kind=kind).order_by("name")
    ]
    _, name, project = max(found)
    return name, project


@pytest.mark.parametrize("kind", ["user", "organization", "project", "experiment"])
def test_the_timeline_pages_back_through_every_involved_event_once(
    analyst_client, demo, kind, monkeypatch
):
    # Each way of being involved (about it, by it, naming it) is read apart
    # and merged: page after page, every involved event once, newest first.
    monkeypatch.setattr("dashboards.views.TIMELINE_PAGE", PAGE)
    name, project = _busiest(kind)
    expected = list(
        Event.objects.involving(kind, name, project)
        .newest_first()
        .values_list("event_uuid", flat=True)
    )
    assert len(expected) > 2 * PAGE, (kind, name, len(expected))
    path = {"user": "users", "organization": "orgs", "project": "projects"}.get(kind)
    url = f"/{path}/{name}/" if path else f"/experiments/{project}/{name}/"
    seen, response = [], analyst_client.get(url)
    while True:
        timeline = response.context["timeline"]
        seen += [e.event_uuid for e in timeline["events"]]
        if not timeline["next_url"]:
            break
        response = analyst_client.get(timeline["next_url"], **HTMX)
        assert response.status_code == 200
    assert seen == expected
    assert analyst_client.get(url + "timeline/?cursor=garbage").status_code == 404


def test_anonymous_visitors_are_sent_to_login(client):
    assert client.get("/").status_code == 302
    assert client.get("/users/alice/").status_code == 302


HISTORY_RESTORE = {**HTMX, "HTTP_HX_HISTORY_RESTORE_REQUEST": "true"}


@pytest.mark.parametrize(
    ("url", "selected"),
    [
        (
            "/?period=7d&res=1h&tz=Asia/Tokyo",
            ['<option value="7d" selected>', '<option value="1h" selected>'],
        ),
        (
            "/top/?period=90d&tz=Asia/Tokyo&n=3&by=experiments",
            [
                '<option value="90d" selected>',
                'name="n" min="1" max="100" value="3"',
                'value="experiments" selected',
            ],
        ),
        ("/users/alice/?period=1y&tz=Asia/Tokyo", ['<option value="1y" selected>']),
    ],
)
def test_an_htmx_body_brings_the_window_controls_of_its_url(viewer_client, dataset, url, selected):
    body = viewer_client.get(url, **HTMX).content.decode()
    assert "<html" not in body
    # One form, replacing the page's own out of band: after Back, htmx's
    # snapshot of the page then shows the window it holds, not the first one.
    assert body.count('id="window-controls"') == 1
    controls = body.split('id="window-controls"', 1)[1].split("</form>", 1)[0]
    assert 'hx-swap-oob="true"' in controls
    assert 'name="tz" id="window-tz" list="window-zones" value="Asia/Tokyo"' in controls
    for option in selected:
        assert option in controls
    assert controls.count(" selected") == len([s for s in selected if "selected" in s])


def test_a_history_restore_gets_the_full_page(viewer_client, dataset):
    for url in ("/?period=7d", "/top/?n=3", "/users/alice/"):
        response = viewer_client.get(url, **HISTORY_RESTORE)
        body = response.content.decode()
        assert "<html" in body, url
        assert body.count('id="window-controls"') == 1
        assert "hx-swap-oob" not in body
        assert "HX-History-Restore-Request" in response["Vary"]


def test_the_full_page_has_its_controls_once_and_in_place(viewer_client, dataset):
    body = viewer_client.get("/?period=24h").content.decode()
    assert body.count('id="window-controls"') == 1
    assert "hx-swap-oob" not in body
    assert body.index('id="window-controls"') < body.index('id="page-body"')


def test_the_top_page_says_when_it_shows_only_some_failed_logins(viewer_client, dataset):
    body = viewer_client.get("/top/?since=2026-03-06&until=2026-03-09&n=1").content.decode()
    failed = body.split('id="table-failed_logins"', 1)[1].split("</section>", 1)[0]
    assert "Showing 1 of 2 users; the CSV and JSON hold all of them." in failed
    assert "/api/v1/stats/failed_logins?" in failed and "n=0" in failed and "n=1" not in failed
    # The other tables keep their top N, downloads included.
    users = body.split('id="table-top_users"', 1)[1].split("</section>", 1)[0]
    assert "n=1" in users and "Showing" not in users
    every = viewer_client.get("/top/?since=2026-03-06&until=2026-03-09&n=2").content.decode()
    assert "Showing" not in every


def test_the_failure_rate_card_shows_the_change_in_points(viewer_client, dataset):
    # March 9 in New York: 1 failure in 4 events, against 2 in 11 the day before.
    body = viewer_client.get("/?since=2026-03-09&until=2026-03-09&tz=America/New_York")
    body = body.content.decode()
    assert "+6.82 pp vs 18.18%" in body
    assert "−63.6% vs 11" in body  # events: a count, so a relative change


def test_the_timeline_page_names_the_zone_of_its_times(analyst_client, dataset):
    body = analyst_client.get("/users/mallory/timeline/?tz=America/New_York").content.decode()
    assert "<th>Time (America/New_York)</th>" in body
    # The failed login at 04:00 UTC on March 9 is midnight in New York.
    assert "2026-03-09 00:00:00 EDT" in body


def test_an_experiment_page_shows_its_description(viewer_client, dataset):
    ingest(
        [
            event(
                "2026-03-09T15:00:00Z",
                "experiment_created",
                "exp2",
                "experiment",
                caller="carol",
                payload={"project": "botnets", "description": "worm spread on a LAN"},
            )
        ],
        now=NOW,
    )
    body = viewer_client.get("/experiments/botnets/exp2/").content.decode()
    assert "<tr><th>Description</th><td>worm spread on a LAN</td></tr>" in body
    assert "<th>Category</th>" not in body


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata"])
def test_a_user_page_heatmap_counts_each_event_involving_them_once(viewer_client, dataset, tz):
    # alice on March 6: created, activated by ops, isi created, her own and
    # bob's membership added by her, botnets created; on March 7 (also in
    # Kolkata, whose day starts at 18:30 UTC): two logins and botnets deleted.
    body = viewer_client.get(f"/users/alice/?tz={tz}").content.decode()
    assert "Fri 2026-03-06: 6 events" in body
    assert "Sat 2026-03-07: 3 events" in body


def test_the_top_tables_escape_what_they_show_link_names_and_right_align_numbers(viewer_client):
    markup = "<script>alert(1)</script>"
    ts = (NOW - timedelta(hours=2)).isoformat()
    failed = event(
        ts, "user_login", "mallory", "user", caller="mallory", success=False, error=markup
    )
    ingest([failed], now=NOW)
    body = viewer_client.get("/top/").content.decode()
    assert markup not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    users = body.split('id="table-top_users"')[1].split("</table>")[0]
    assert '<tr><td><a href="/users/mallory/">mallory</a></td><td class="num">1</td>' in users
