"""The Content-Security-Policy (sphere_stats/security.py and
ContentSecurityPolicyMiddleware): every page carries it with a nonce of its
own, scripts run only from /static/ or with that nonce, and no template
holds a script the policy would refuse (an inline handler, a bare inline
<script>). tests/test_pages_browser.py checks in Chromium that no page
reports a violation."""

import re
from pathlib import Path

import pytest

from facilities import maps
from facilities.models import Facility
from facilities.status import CurrentStatus
from sphere_stats.security import content_security_policy

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    "/",
    "/top/",
    "/events/",
    "/catalog/",
    "/facilities/",
    "/facilities/map/",
    "/api/v1/",
    "/api/v1/docs",
    "/admin/",
    "/no-such-page/",
]
NONCE = re.compile(r"script-src 'self' 'nonce-([A-Za-z0-9_-]{22,})'(;|$)")
INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.I)


def directives(header: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


def nonce_of(response) -> str:
    match = NONCE.search(response["Content-Security-Policy"])
    assert match, response["Content-Security-Policy"]
    return match.group(1)


@pytest.mark.django_db
def test_every_page_has_the_policy_with_a_fresh_nonce(admin_client, client):
    seen = set()
    for path in [*PAGES, "/accounts/login/"]:
        for _ in range(2):
            response = (client if path == "/accounts/login/" else admin_client).get(path)
            assert response.status_code in (200, 404), path
            assert response["Content-Type"].startswith("text/html"), path
            policy = directives(response["Content-Security-Policy"])
            assert "unsafe-inline" not in policy["script-src"], path
            assert "unsafe-eval" not in policy["script-src"], path
            assert policy["object-src"] == "'none'" and policy["base-uri"] == "'self'"
            assert policy["default-src"] == "'self'" and policy["form-action"] == "'self'"
            seen.add(nonce_of(response))
    # Two requests of each page: never the same nonce twice.
    assert len(seen) == 2 * (len(PAGES) + 1)


@pytest.mark.django_db
def test_only_the_map_document_may_be_framed_and_only_by_this_site(admin_client):
    page = directives(admin_client.get("/facilities/")["Content-Security-Policy"])
    framed = directives(admin_client.get("/facilities/map/")["Content-Security-Policy"])
    assert page["frame-ancestors"] == "'none'"
    assert framed["frame-ancestors"] == "'self'"
    assert page["frame-src"] == "'self'"


@pytest.mark.django_db
def test_the_map_documents_inline_scripts_carry_the_responses_nonce(admin_client):
    Facility.objects.create(
        slug="isi", name="</script><script>alert(1)</script>", latitude=34, longitude=-118
    )
    response = admin_client.get("/facilities/map/")
    nonce = nonce_of(response)
    html = response.content.decode()
    tags = SCRIPT_TAG.findall(html)
    inline = [attrs for attrs in tags if "src=" not in attrs]
    assert inline, "folium builds the map in inline scripts"
    assert all(attrs == f' nonce="{nonce}"' for attrs in inline), inline
    # A name is data inside a script (escaped), never a script of its own.
    assert "<script>alert(1)" not in html
    assert len(tags) == len(SCRIPT_TAG.findall(maps.render_map(maps.facility_map([], {}), "x")))


def test_the_map_renders_with_the_nonce_it_is_given():
    facility = Facility(slug="isi", name="ISI", latitude=34, longitude=-118)
    status = CurrentStatus(status="up", since=None, last_report=None, stale=False)
    html = maps.render_map(maps.facility_map([facility], {"isi": status}), nonce="abc")
    assert "<script>" not in html and '<script nonce="abc">' in html


@pytest.mark.parametrize(
    ("tile_url", "source"),
    [
        ("", None),
        ("https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png", "https://*.tile.openstreetmap.org"),
        ("https://tiles.example.org:8443/{z}/{x}/{y}.png", "https://tiles.example.org:8443"),
        ("http://{s}{r}.maps.example.org/{z}/{x}/{y}", "http://*.maps.example.org"),
    ],
)
def test_images_come_from_this_site_and_the_tile_server_only(settings, tile_url, source):
    settings.MAP_TILE_URL = tile_url
    images = directives(content_security_policy("n"))["img-src"].split()
    assert images[:2] == ["'self'", "data:"]
    assert images[2:] == ([source] if source else [])


def test_no_template_holds_a_script_the_policy_refuses():
    """An inline handler (onclick="…") never runs under the policy, nor does an
    inline <script> without the nonce: they belong in static/js/."""
    refused = []
    for template in sorted((ROOT / "templates").rglob("*.html")):
        text = template.read_text()
        name = template.relative_to(ROOT)
        refused += [f"{name}: handler {m.group(0)!r}" for m in INLINE_HANDLER.finditer(text)]
        for attrs in SCRIPT_TAG.findall(text):
            data = 'type="application/json"' in attrs  # data, never executed
            if "src=" not in attrs and "nonce=" not in attrs and not data:
                refused.append(f"{name}: <script{attrs}>")
        if "javascript:" in text:
            refused.append(f"{name}: a javascript: URL")
        # htmx runs a trigger filter [ … ] through Function(), which the
        # policy (no 'unsafe-eval') refuses.
        refused += [
            f"{name}: hx-trigger filter {m.group(0)!r}"
            for m in re.finditer(r'hx-trigger="[^"]*\[[^"]*"', text)
        ]
    assert refused == []
