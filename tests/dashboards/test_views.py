"""Every dashboards page, on an empty database and on demo data, as a full
page and as its htmx partial."""

import pytest
import time_machine

from audit.demo import generate
from audit.ingest import ingest
from audit.models import Entity
from tests.dashboards.conftest import NOW

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
    assert "Pending users" in body
    assert "No events in this period." in body
    assert "vendor/plotly/plotly.min.js" in body


def test_the_overview_shows_cards_charts_and_their_data_links(viewer_client, demo):
    response = viewer_client.get("/?period=90d&tz=America/New_York")
    body = response.content.decode()
    assert response.status_code == 200
    for name in ("entity_growth", "events_by_type", "logins", "active_users"):
        assert f'id="chart-{name}"' in body
        assert f"/api/v1/stats/{name}?period=90d&amp;tz=America%2FNew_York&amp;format=csv" in body
    assert "Plotly.newPlot" in body
    assert "cdn" not in body.lower()


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
    assert "/events/export?format=csv&amp;subject_type=user&amp;subject=" in analyst_body


def test_the_timeline_pages_back_by_keyset(analyst_client, demo):
    busiest = Entity.objects.filter(kind="user").order_by("name").values_list("name", flat=True)
    for name in busiest:
        body = analyst_client.get(f"/users/{name}/").content.decode()
        if "Older events" in body:
            break
    else:
        pytest.skip("no user with more than one page of events")
    more = body.split('id="timeline-more"', 1)[1]
    next_url = more.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    older = analyst_client.get(next_url, **HTMX)
    assert older.status_code == 200
    assert "<tr" in older.content.decode()
    assert analyst_client.get(f"/users/{name}/timeline/?cursor=garbage").status_code == 404


def test_anonymous_visitors_are_sent_to_login(client):
    assert client.get("/").status_code == 302
    assert client.get("/users/alice/").status_code == 302
