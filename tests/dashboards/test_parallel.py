"""A page's stats computed side by side (dashboards/parallel.py), on the
pool's own connections: with committed rows (a real transaction per test, as
in production), the overview, the top-N page and a user's page show exactly
what the same stats computed one after another show, and a statement past
the web's timeout in one of them answers 503."""

import re
import threading
import time

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


@pytest.mark.parametrize("path", ["/?period=30d", "/top/?period=30d"])
def test_a_stat_past_the_web_timeout_on_the_pool_answers_503(
    history, analyst, settings, monkeypatch, path
):
    settings.STATS_CACHE_SECONDS = 0
    settings.STATS_THREADS = 4
    threads = _threads_seen(monkeypatch)
    page = Client(raise_request_exception=False)
    page.force_login(analyst)
    # The pool's next connections are new ones: they take the web's timeout.
    parallel.close_connections()
    with web_request_with_statement_timeout(settings, 300), events_locked():
        response = page.get(path)
    assert threads
    assert response.status_code == 503
    assert "Temporarily unavailable" in response.content.decode()
    parallel.close_connections()
    db.reset_unreachable()
    assert page.get(path).status_code == 200


def _tracked(running: list, peak: list, lock: threading.Lock, value: int):
    def call() -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return value

    return call


@pytest.mark.parametrize("width", [1, 2, 3])
def test_a_width_runs_that_many_at_once_and_keeps_the_order(settings, width):
    settings.STATS_THREADS = 4
    running, peak, lock = [0], [0], threading.Lock()
    calls = [_tracked(running, peak, lock, value) for value in range(7)]
    assert parallel.in_parallel(calls, width=width) == list(range(7))
    assert peak[0] == width
    # Not vacuously: without a width, every thread of the pool ran at once.
    peak[0] = 0
    assert parallel.in_parallel(calls) == list(range(7))
    assert peak[0] == parallel._workers > width


def test_an_error_in_a_lane_reaches_the_page(settings):
    settings.STATS_THREADS = 4

    def fails() -> int:
        raise ValueError("this stat failed")

    with pytest.raises(ValueError, match="this stat failed"):
        parallel.in_parallel([lambda: 1, fails, lambda: 3, lambda: 4], width=2)
