"""A real Prometheus scrapes the app as deployed (gunicorn with two workers,
deploy/gunicorn.conf.py, a multiprocess directory) with a `metrics` token,
and its query API answers what the database and the requests say; every
query of the Grafana dashboard runs there too."""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from django.conf import settings
from django.db import connection

from bench.servers import free_port
from facilities.models import Facility
from sphere_stats.models import ApiToken
from tests.factories import like
from tests.sphere_stats.test_metrics import dashboard_expressions

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is missing (apt-get install prometheus; .ci/run installs it)",
)


def wait_for(what: str, check: Callable[[], object], seconds: float = 20) -> object:
    """check()'s first truthy answer, polled until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            answer = check()
        except requests.RequestException:  # not listening, or not answering yet
            answer = None
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def token(transactional_db) -> str:
    # Committed (transactional_db), so gunicorn's workers find it.
    return ApiToken.issue("prometheus", ["metrics", "ingest"])[1]


@pytest.fixture
def app_port() -> int:
    return free_port()


@pytest.fixture
def prometheus(tmp_path: Path, token: str, app_port: int) -> Iterator[str]:
    """Prometheus scraping the app's /metrics every second with the token; its
    base URL. Started first: it takes 5 s to begin scraping a new target
    (its discovery updates are throttled), which gunicorn's start then overlaps."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: sphere_stats\n"
        "    metrics_path: /metrics\n"
        "    authorization:\n"
        "      type: Bearer\n"
        f"      credentials: {token}\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{app_port}']\n"
    )
    server = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("Prometheus", lambda: requests.get(f"{url}/-/ready", timeout=1).ok)
        yield url
    finally:
        server.terminate()
        server.wait(15)


@pytest.fixture
def app(transactional_db, tmp_path: Path, app_port: int, prometheus: str) -> Iterator[str]:
    """gunicorn as `make run` starts it, on the test database; its base URL."""
    database_url = urlunsplit(
        urlsplit(settings.DATABASE_URL)._replace(path="/" + connection.settings_dict["NAME"])
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "sphere_stats.wsgi",
         "--config", "deploy/gunicorn.conf.py", "-b", f"127.0.0.1:{app_port}", "-w", "2",
         "--log-level", "warning"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_DEBUG": "false",
            "HTTPS": "false",
            "RATE_LIMIT_INGEST": "0",
            # Created and emptied by deploy/gunicorn.conf.py's on_starting.
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
        },
    )  # fmt: skip
    url = f"http://127.0.0.1:{app_port}"
    try:
        wait_for("gunicorn", lambda: requests.get(f"{url}/healthz", timeout=2).ok, 30)
        yield url
    finally:
        server.send_signal(signal.SIGQUIT)  # gunicorn's quick shutdown
        server.wait(15)


def query(prometheus_url: str, promql: str) -> list[dict]:
    answer = requests.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
    body = answer.json()
    assert answer.ok and body["status"] == "success", (promql, body)
    return body["data"]["result"]


UP = 'up{job="sphere_stats"}'


def latest_expr(metric: str, **labels: str) -> str:
    """max_over_time of `metric` over the last minute, per series."""
    matchers = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"max_over_time({metric}{{{matchers}}}[1m])"


def test_prometheus_scrapes_the_counts_the_database_holds(app, token, prometheus):
    Facility.objects.create(slug="isi", name="ISI", latitude=34, longitude=-118, capacity_nodes=8)
    ago = datetime.now(UTC) - timedelta(minutes=5)
    login, failed = like(timestamp=ago), like(timestamp=ago, success=False)
    posts = [[login()], [login(), login()], [failed()], [login(), failed()], [login()]]
    for body in posts:
        # A connection each, so that either worker may take each request.
        sent = requests.post(
            f"{app}/api/v1/events",
            data=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Connection": "close"},
            timeout=10,
        )
        assert sent.status_code == 201, sent.text
    posted_at = time.time()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events WHERE event_type = 'user_login' AND success")
        logins = cursor.fetchone()[0]
    assert logins == 5

    def value(promql: str) -> list[float]:
        return [float(r["value"][1]) for r in query(prometheus, promql)]

    # The target up, in a scrape begun after the last POST was answered.
    # timestamp() reads a sample's own time only from a bare selector: of
    # `up == 1` it would give the query's time, true after any earlier scrape.
    wait_for(
        "a successful scrape after the last POST",
        lambda: value(f"timestamp({UP}) and {UP} == 1") > [posted_at],
    )

    # The highest sample of the last minute rather than the instant value: a
    # later scrape that timed out on a busy machine marks every series stale,
    # and an instant query then finds none. These figures only grow.
    assert value(
        latest_expr("sphere_events_total", event_type="user_login", outcome="success")
    ) == [logins]
    # Answered by either worker, the ingest figures are both workers' summed.
    assert value(f"sum({latest_expr('sphere_ingest_requests_total', status='201')})") == [
        len(posts)
    ]
    assert value(f"sum({latest_expr('sphere_ingest_request_seconds_count')})") == [len(posts)]
    assert value(latest_expr("sphere_facility_nodes_capacity", facility="isi")) == [8]

    # The dashboard's queries as Grafana sends them, with two scrapes at
    # least in their window (rate() needs two samples).
    wait_for("two scrapes", lambda: value(f"count_over_time({UP}[1m])") >= [2])
    for title, expr in dashboard_expressions():
        # Polled: one scrape timing out under load empties instant queries
        # until the next scrape.
        wait_for(
            f"data for {title}: {expr}",
            lambda expr=expr: query(prometheus, expr.replace("$__rate_interval", "1m")),
        )
