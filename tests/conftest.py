"""Shared fixtures. Every test runs against a real PostgreSQL (the embedded
server, or DATABASE_URL), never SQLite and never a mock of the database."""

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.management import call_command
from django.test import Client, override_settings

from bench.servers import CHROMIUM, CHROMIUM_FLAGS
from sphere_stats.embedded_db import ensure_database_url
from sphere_stats.models import ApiToken, forget_tokens

# --- the database ----------------------------------------------------------------


def pytest_configure(config):
    # Without DATABASE_URL: the embedded PostgreSQL, started before any test
    # (and before pytest-xdist starts its workers, which inherit the URL),
    # as manage.py starts it. pytest-django has read the settings already,
    # which name that same server (embedded_db.url()) when DATABASE_URL is
    # unset; nothing has connected yet.
    ensure_database_url()


# --- static files, collected as in production ---------------------------------------

COLLECTED_STATIC = Path(__file__).resolve().parent.parent / "var" / "test-static"


def _static_fingerprint() -> str:
    """A hash of every file collectstatic would collect and of how it
    collects them: the same sources give the same collected tree."""
    digest = hashlib.sha256(
        f"{django_settings.STORAGES['staticfiles']} {version('django')} {version('whitenoise')}".encode()
    )
    found = {}
    for finder in finders.get_finders():
        for path, storage in finder.list(["CVS", ".*", "*~"]):
            found.setdefault(path, storage.path(path))
    for path in sorted(found):
        digest.update(path.encode() + b"\0" + Path(found[path]).read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session", autouse=True)
def _collected_static_files():
    """Pages link hashed, compressed static files, and WhiteNoise serves
    them, as `make run` does (CompressedManifestStaticFilesStorage):
    collectstatic runs once per content of the static files, into
    var/test-static/<hash>/, shared by every session and xdist worker (a lock
    lets one of them build it)."""
    COLLECTED_STATIC.mkdir(parents=True, exist_ok=True)
    target = COLLECTED_STATIC / _static_fingerprint()
    with open(COLLECTED_STATIC / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "staticfiles.json").exists():
            # Built aside and renamed: an interrupted build leaves no tree
            # that looks complete.
            building = COLLECTED_STATIC / f".building-{os.getpid()}"
            shutil.rmtree(building, ignore_errors=True)
            with override_settings(STATIC_ROOT=building):
                call_command("collectstatic", interactive=False, verbosity=0)
            building.rename(target)
        # Marks the tree as in use; a tree no session has used for 3 hours
        # goes (static files edited often would otherwise pile them up), and
        # so does whatever an interrupted build left.
        os.utime(target)
        for tree in COLLECTED_STATIC.iterdir():
            if tree.is_dir() and (
                tree.name.startswith(".") or tree.stat().st_mtime < time.time() - 3 * 3600
            ):
                shutil.rmtree(tree, ignore_errors=True)
    # The live server (pytest-django) puts Django's StaticFilesHandler in
    # front of the app, which serves /static/ from the finders by plain names
    # only; let those requests through to WhiteNoise, as in production.
    patch = pytest.MonkeyPatch()
    patch.setattr(StaticFilesHandler, "_should_handle", lambda self, path: False)
    # Servers the tests start as processes (gunicorn) serve the same tree.
    patch.setenv("STATIC_ROOT", str(target))
    with override_settings(STATIC_ROOT=target):
        yield target
    patch.undo()


@pytest.fixture(autouse=True)
def _stats_computed_afresh(settings):
    # A test ingests, then reads a page: it must see what it just wrote, and
    # never a result cached by an earlier test at the same frozen time. The
    # cache itself is tested in tests/dashboards/test_stat_cache.py.
    settings.STATS_CACHE_SECONDS = 0


@pytest.fixture(autouse=True)
def _tokens_looked_up_afresh():
    # Each test starts with an empty per-process token cache, as a new
    # worker would (tests/sphere_stats/test_token_cache.py tests the cache).
    forget_tokens()


@pytest.fixture
def ingest_token(db) -> str:
    return ApiToken.issue("test-ingest", ["ingest"])[1]


@pytest.fixture
def read_token(db) -> str:
    return ApiToken.issue("test-read", ["read"])[1]


@pytest.fixture
def api_client(ingest_token: str, read_token: str) -> Client:
    """A client whose requests carry a token with both scopes."""
    token = ApiToken.issue("test-both", ["ingest", "read"])[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def post_events(api_client: Client) -> Callable:
    """POST a JSON body (any shape) to the ingest API and return the response."""

    def post(body, content_type: str = "application/json"):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return api_client.post("/api/v1/events", data=data, content_type=content_type)

    return post


def make_user(username: str, role: str | None) -> User:
    user = User.objects.create_user(username, password="pw-" + username)
    if role:
        # get_or_create: a transactional test's flush empties the groups table.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def roles(transactional_db):
    """The role groups, for a transactional test: its flush removes the ones
    the migrations created."""
    for name in ("viewer", "analyst", "admin"):
        Group.objects.get_or_create(name=name)


@pytest.fixture
def viewer(db) -> User:
    return make_user("viewer1", "viewer")


@pytest.fixture
def analyst(db) -> User:
    return make_user("analyst1", "analyst")


@pytest.fixture
def admin_user(db) -> User:
    return make_user("admin1", "admin")


@pytest.fixture
def viewer_client(viewer: User) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


@pytest.fixture
def analyst_client(analyst: User) -> Client:
    client = Client()
    client.force_login(analyst)
    return client


@pytest.fixture
def admin_client(admin_user: User) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


# --- the browser ---------------------------------------------------------------

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"


def pytest_collection_modifyitems(config, items):
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(
        reason=f"browser test: {CHROMIUM} is missing (apt-get install chromium to run it)"
    )
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    # Playwright runs an event loop in this thread; the ORM calls the tests make
    # between page actions are synchronous and safe here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium, live_server):
    """A fresh page that can reach only the live server: any other request is
    aborted, so a CDN reference would break the page visibly."""
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    allowed = live_server.url

    def route(route):
        if route.request.url.startswith(allowed):
            return route.continue_()
        page.blocked_requests.append(route.request.url)
        return route.abort()

    page.blocked_requests = []
    page.route("**/*", route)
    yield page
    context.close()


def browser_login(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", "pw-" + user.username)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


# A URL naming a host (scheme-relative too): a page that loads or links
# anything from one other than the test server's would need the network.
# The SVG namespace is a name, never fetched.
_HOSTED_URL = re.compile(r"(?:https?:)?//([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_NOT_FETCHED = {"www.w3.org"}


def offsite_hosts(page: str) -> set[str]:
    """The hosts other than the test server's that `page` names in a URL."""
    return {host for host in _HOSTED_URL.findall(page) if host not in _NOT_FETCHED}


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's test database, whose drop at the end of the run
    waits for no one: the threads that compute a page's stats side by side
    (dashboards/parallel.py) keep connections to it, closed first."""
    yield
    from dashboards import parallel

    parallel.close_connections()
