"""Static files as production serves them: hashed names, compressed, cached
for a year; plotly.js only on the pages that draw charts; no page asks for a
file that is not there."""

import gzip
import re
from itertools import pairwise

import brotli
import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.templatetags.static import static
from django.utils import timezone

from audit.ingest import ingest
from audit.models import Entity
from dashboards.entities import SEARCH_KINDS
from demo.history import generate
from tests.conftest import browser_login, make_user, screenshot

# ManifestStaticFilesStorage puts 12 hex digits of the content's MD5 before
# the extension: app.874c76ba0f1a.css.
HASHED = re.compile(r"/static/[^?#]+\.[0-9a-f]{12}\.[a-z0-9]+$")
PLOTLY = "vendor/plotly/plotly-cartesian.min.js"
A_YEAR = "max-age=31536000, public, immutable"


def static_references(html: str) -> list[str]:
    return re.findall(r'(?:src|href|data-plotly)="(/static/[^"]+)"', html)


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_pages_link_every_static_file_by_its_hashed_name(viewer_client):
    html = viewer_client.get("/").content.decode()
    references = static_references(html)
    assert any("/vendor/plotly/plotly-cartesian.min." in url for url in references)
    assert any("/css/app." in url for url in references)
    assert [url for url in references if not HASHED.search(url)] == []


@pytest.mark.parametrize(
    ("encoding", "decompress"), [("br", brotli.decompress), ("gzip", gzip.decompress)]
)
def test_a_hashed_file_comes_compressed_and_cached_for_a_year(client, encoding, decompress):
    url = static(PLOTLY)
    assert HASHED.search(url)
    response = client.get(url, HTTP_ACCEPT_ENCODING=f"{encoding}, identity")
    assert response.status_code == 200
    assert response["Cache-Control"] == A_YEAR
    assert response["Content-Encoding"] == encoding
    source = (settings.BASE_DIR / "static" / PLOTLY).read_bytes()
    sent = body(response)
    assert decompress(sent) == source
    # 1.5 MB of plotly.js travels as about a third of that or less.
    assert len(sent) < len(source) / 3


def test_a_client_that_cannot_decompress_gets_the_file_as_it_is(client):
    response = client.get(static("vendor/htmx/htmx.min.js"))
    assert response.status_code == 200
    assert "Content-Encoding" not in response
    source = settings.BASE_DIR / "static" / "vendor" / "htmx" / "htmx.min.js"
    assert body(response) == source.read_bytes()


def test_a_file_asked_for_by_its_plain_name_is_not_kept_for_a_year(client):
    # Its content may change under the same name: a browser must ask again soon.
    response = client.get("/static/css/app.css")
    assert response.status_code == 200
    assert "immutable" not in response["Cache-Control"]
    assert "max-age=60" in response["Cache-Control"]


def test_a_missing_static_file_is_a_404(client):
    assert client.get("/static/css/no-such-file.3f2a9c1b0e7d.css").status_code == 404


# --- in the browser ---------------------------------------------------------------------


@pytest.fixture
def portal(transactional_db):
    """A demo history, the demo facilities and an administrator, who sees
    every page and every link."""
    for name in ("viewer", "analyst", "admin"):
        Group.objects.get_or_create(name=name)
    ingest(list(generate(3000, days=400, seed=2, end=timezone.now())))
    call_command("seed_facilities", verbosity=0)
    return make_user("static-admin", "admin")


def pages(admin) -> list[tuple[str, int, bool]]:
    """(path, status of the page, draws charts) for every kind of page."""
    entity = {
        kind: Entity.objects.filter(kind=kind).exclude(state=Entity.GONE).order_by("name").first()
        for kind in ("user", "organization", "project", "experiment")
    }
    user, org, project = entity["user"].name, entity["organization"].name, entity["project"].name
    experiment = entity["experiment"]
    # A prefix that several names share: the search lists them (one match
    # would redirect to its page, which draws charts).
    names = sorted(
        n.lower()
        for n in Entity.objects.filter(kind__in=SEARCH_KINDS).values_list("name", flat=True)
    )
    shared = next(a[:1] for a, b in pairwise(names) if a[:1] == b[:1])
    return [
        ("/", 200, True),
        ("/top/", 200, False),
        (f"/users/{user}/", 200, True),
        (f"/orgs/{org}/", 200, True),
        (f"/projects/{project}/", 200, True),
        (f"/experiments/{experiment.scope}/{experiment.name}/", 200, True),
        (f"/users/{user}/timeline/", 200, False),
        (f"/search/?q={shared}", 200, False),
        ("/events/", 200, False),
        ("/catalog/", 200, False),
        ("/facilities/", 200, False),
        ("/facilities/map/", 200, False),
        ("/api/v1/docs", 200, False),
        # The page of an entity nobody has heard of draws no chart.
        ("/users/nobody-of-that-name/", 404, False),
        ("/no-such-page/", 404, False),
    ]


@pytest.mark.browser
def test_no_page_asks_for_a_missing_file_and_only_chart_pages_load_plotly(
    browser_page, live_server, portal
):
    page = browser_page
    browser_login(page, live_server, portal)
    seen: list = []
    failed: list = []
    page.on("response", lambda response: seen.append(response))
    page.on("requestfailed", lambda request: failed.append(request.url))
    for path, status, charts in pages(portal):
        seen.clear()
        response = page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
        if path == "/api/v1/docs":
            # Swagger UI loads after the load event, then fetches the schema:
            # on a busy machine that can start after "networkidle", and the
            # next page's navigation would abort it. Wait until it is drawn.
            page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
        assert response.status == status, path
        broken = [(r.status, r.url) for r in seen if r.status >= 400 and r.url != response.url]
        assert broken == [], path
        assert failed == [], path
        static_files = [r for r in seen if "/static/" in r.url]
        assert static_files, path
        assert [r.url for r in static_files if not HASHED.search(r.url)] == [], path
        # Cached for a year (a 304 of a revalidation carries no body to check).
        assert {r.headers.get("cache-control") for r in static_files if r.status == 200} <= {
            A_YEAR
        }, path
        plotly = [r for r in seen if "/vendor/plotly/" in r.url]
        assert bool(plotly) == charts, path
        if charts:
            # Chromium asks for brotli, and gets it.
            assert plotly[0].headers.get("content-encoding") == "br"
            page.wait_for_selector(".chart .main-svg")
            if path == "/":
                screenshot(page, "static_files_overview_charts")
    assert page.blocked_requests == []


@pytest.mark.browser
def test_the_map_draws_its_markers_and_outline_from_hashed_files(browser_page, live_server, portal):
    page = browser_page
    browser_login(page, live_server, portal)
    page.goto(f"{live_server.url}/facilities/map/")
    # The world outline, fetched by its hashed name, is drawn; so is every
    # facility's marker, with the vendored Leaflet.
    page.locator(".folium-map[data-world-outline=loaded]").wait_for()
    assert page.locator(".facility-marker[data-facility]").count() == 6
    fonts = page.evaluate("[...document.fonts].filter((f) => f.status === 'error').length")
    assert fonts == 0
    screenshot(page, "static_files_map_document")
