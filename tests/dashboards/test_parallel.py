"""A page's stats computed side by side (dashboards/parallel.py), on the
pool's own connections: with committed rows (a real transaction per test, as
in production), the overview, the top-N page and a user's page show exactly
what the same stats computed one after another show, and a statement past
the web's timeout in one of them answers 503."""

import re
import threading

import pytest
import time_machine
from django.test import Client

from audit.ingest import ingest
from dashboards import parallel
from demo.history import generate
from sphere_stats import db
from tests.dashboards.conftest import NOW
from tests.sphere_stats.test_database_down import events_locked, web_request_with_statement_timeout

pytestmark = pytest.mark.django_db(transaction=True)
PAGES = [
    "/?period=30d",
    "/?period=1y&tz=Asia/Kolkata",
    "/top/?period=90d",
    "/users/chen/?period=90d&tz=Asia/Kolkata",
]


@pytest.fixture
def history(analyst) -> Client:
    ingest(list(generate(1500, days=400, seed=41, end=NOW)), now=NOW)
    client = Client()
    client.force_login(analyst)
    with time_machine.travel(NOW, tick=False):
        yield client


def _page_text(response) -> str:
    # The CSRF token differs from request to request; all else is the stats.
    return re.sub(
        r'csrfmiddlewaretoken" value="[^"]*"|"csrfToken": "[^"]*"|[a-zA-Z0-9]{64}',
        "",
        response.content.decode(),
    )


def _threads_seen(monkeypatch) -> set[str]:
    seen: set[str] = set()
    run = parallel._run

    def spy(call, web):
        seen.add(threading.current_thread().name)
        return run(call, web)

    monkeypatch.setattr(parallel, "_run", spy)
    return seen


@pytest.mark.parametrize("path", PAGES)
def test_stats_side_by_side_show_what_one_after_another_show(history, settings, monkeypatch, path):
    settings.STATS_CACHE_SECONDS = 0
    settings.STATS_THREADS = 0
    alone = history.get(path)
    settings.STATS_THREADS = 4
    threads = _threads_seen(monkeypatch)
    together = history.get(path)
    assert alone.status_code == together.status_code == 200
    # Not vacuously: the pool computed them, on threads other than this one.
    assert threads and all(name.startswith("stats") for name in threads)
    assert _page_text(together) == _page_text(alone)


def test_a_stat_past_the_web_timeout_on_the_pool_answers_503(
    history, analyst, settings, monkeypatch
):
    settings.STATS_CACHE_SECONDS = 0
    settings.STATS_THREADS = 4
    threads = _threads_seen(monkeypatch)
    page = Client(raise_request_exception=False)
    page.force_login(analyst)
    # The pool's next connections are new ones: they take the web's timeout.
    parallel.close_connections()
    with web_request_with_statement_timeout(settings, 300), events_locked():
        response = page.get("/?period=30d")
    assert threads
    assert response.status_code == 503
    assert "Temporarily unavailable" in response.content.decode()
    parallel.close_connections()
    db.reset_unreachable()
    assert page.get("/?period=30d").status_code == 200
