"""GET /metrics: Prometheus's text format, read from the pre-aggregates and the
facilities' summary at scrape time, plus the ingest's own counts, summed
across processes in prometheus_client's multiprocess mode; for a `metrics`
token or an address in METRICS_ALLOWED_NETWORKS only."""

import ipaddress
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from audit.aggregates import ENTITIES
from facilities.models import Facility
from sphere_stats.env import envnetworks
from sphere_stats.models import ApiToken
from tests.factories import event
from tests.sphere_stats.test_database_down import database_down
from tests.sphere_stats.test_wsgi import call

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "sphere_stats.json"


@pytest.fixture
def metrics_token(db) -> str:
    return ApiToken.issue("prometheus", ["metrics"])[1]


@pytest.fixture
def scrape(metrics_token: str):
    """GET /metrics with a metrics token: {sample name: {labels: value}}."""
    client = Client(HTTP_AUTHORIZATION=f"Bearer {metrics_token}")

    def scrape() -> dict[str, dict[frozenset, float]]:
        response = client.get("/metrics")
        assert response.status_code == 200, response.content
        return samples(response.content.decode())

    return scrape


def samples(text: str) -> dict[str, dict[frozenset, float]]:
    found: dict[str, dict[frozenset, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def labels(**pairs: str) -> frozenset:
    return frozenset(pairs.items())


def sql(query: str, params: dict | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def events_by_type_and_outcome() -> dict[frozenset, float]:
    return {
        labels(event_type=event_type, outcome="success" if success else "failure"): n
        for event_type, success, n in sql(
            "SELECT event_type, success, count(*) FROM events GROUP BY 1, 2"
        )
    }


# --- the format ------------------------------------------------------------------------


def test_the_scrape_is_prometheus_text_with_every_figure(scrape, post_events):
    Facility.objects.create(slug="isi", name="ISI", latitude=34.0, longitude=-118.4)
    assert post_events(event()).status_code == 201
    found = scrape()
    for name in (
        "sphere_events_total",
        "sphere_entities",
        "sphere_facility_status",
        "sphere_facility_nodes_in_use",
        "sphere_facility_nodes_capacity",
        "sphere_ingest_events_total",
        "sphere_ingest_request_seconds_bucket",
        "sphere_ingest_request_seconds_count",
    ):
        assert found.get(name), f"{name} is missing"


def test_the_answer_has_the_text_formats_content_type_and_is_never_cached(metrics_token):
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "no-cache" in response["Cache-Control"]
    assert response.content.decode().startswith("# HELP")


# --- events, entities, facilities: read from the database at scrape time ---------------


def test_events_total_equals_the_events_table_after_ingest_and_after_a_raw_insert(
    scrape, post_events
):
    sent = [
        event(),
        event(),
        event(success=False, error_message="bad password"),
        event(event_type="user_created", subject="bob", caller="admin"),
        event(event_type="something_uncatalogued", subject="x", subject_type="thing"),
    ]
    assert post_events(sent).status_code == 201
    assert scrape()["sphere_events_total"] == events_by_type_and_outcome()
    assert scrape()["sphere_events_total"][labels(event_type="user_login", outcome="success")] == 2

    # Written around the API: the triggers on `events` keep the pre-aggregate.
    sql(
        "INSERT INTO events (event_uuid, timestamp, event_type, caller, subject, subject_type, "
        "success, payload) VALUES (%(u1)s, now() - interval '3 days', 'user_login', 'carol', "
        "'carol', 'user', true, '{}'), (%(u2)s, now(), 'user_login', 'dave', 'dave', 'user', "
        "false, '{}')",
        {"u1": uuid.uuid4(), "u2": uuid.uuid4()},
    )
    totals = scrape()["sphere_events_total"]
    assert totals == events_by_type_and_outcome()
    assert totals[labels(event_type="user_login", outcome="success")] == 3
    assert totals[labels(event_type="user_login", outcome="failure")] == 2


def test_a_prune_lowers_events_total(scrape, post_events):
    assert post_events([event(), event()]).status_code == 201
    sql("DELETE FROM events WHERE event_uuid IN (SELECT event_uuid FROM events LIMIT 1)")
    totals = scrape()["sphere_events_total"]
    assert totals == {labels(event_type="user_login", outcome="success"): 1}


def test_the_entities_gauge_equals_the_fold_of_the_events(scrape, post_events):
    at = timezone.now() - timedelta(hours=1)

    def lifecycle(event_type: str, subject_type: str, subject: str, minutes: int, **payload):
        return event(
            event_type=event_type,
            subject_type=subject_type,
            subject=subject,
            caller="admin",
            timestamp=(at + timedelta(minutes=minutes)).isoformat(),
            payload=payload,
        )

    sent = [
        lifecycle("user_created", "user", "erin", 0),
        lifecycle("user_activated", "user", "erin", 1),
        lifecycle("user_created", "user", "frank", 2),
        lifecycle("user_created", "user", "grace", 3),
        lifecycle("user_frozen", "user", "grace", 4),
        lifecycle("user_created", "user", "heidi", 5),
        lifecycle("user_deleted", "user", "heidi", 6),
        lifecycle("org_created", "organization", "acme", 7, category="academic"),
        lifecycle("project_created", "project", "proj1", 8, category="research"),
        lifecycle("experiment_created", "experiment", "exp1", 9, project="proj1"),
        # Seen in a login only: the user predates the log and is active.
        event(subject="ivan", caller="ivan"),
    ]
    assert post_events(sent).status_code == 201

    with connection.cursor() as cursor:
        folded = ENTITIES.folded(cursor, ENTITIES.all_keys(cursor))
    want: dict[frozenset, float] = {}
    for kind, _, _, state, *_ in folded:
        if state != "gone":
            key = labels(kind=kind, state=state)
            want[key] = want.get(key, 0) + 1
    have = {key: n for key, n in scrape()["sphere_entities"].items() if n}
    assert have == want
    assert have[labels(kind="user", state="active")] == 2  # erin, ivan
    assert have[labels(kind="user", state="frozen")] == 1
    # Every state of every kind is there, at 0 when empty; gone is not a state here.
    gauge = scrape()["sphere_entities"]
    assert gauge[labels(kind="realization", state="active")] == 0
    assert not [key for key in gauge if ("state", "gone") in key]


def test_facility_gauges_give_each_status_and_the_nodes_in_use_against_capacity(
    scrape, post_events
):
    Facility.objects.create(slug="isi", name="ISI", latitude=34, longitude=-118, capacity_nodes=10)
    Facility.objects.create(slug="utah", name="Utah", latitude=40, longitude=-111, capacity_nodes=4)
    Facility.objects.create(slug="mit", name="MIT", latitude=42, longitude=-71)
    now = timezone.now()

    def status(slug: str, state: str, minutes_ago: int) -> dict:
        return event(
            event_type="facility_status",
            subject_type="facility",
            subject=slug,
            caller=f"{slug}-controller",
            timestamp=(now - timedelta(minutes=minutes_ago)).isoformat(),
            payload={"status": state},
        )

    def allocated(kind: str, name: str, resources: list[str]) -> dict:
        return event(
            event_type=f"{kind}_allocated",
            subject_type=kind,
            subject=name,
            target="isi",
            caller="alice",
            payload={
                "project": "proj1",
                "experiment": "exp1",
                "facility": "isi",
                "resources": resources,
            },
        )

    sent = [
        status("isi", "up", 30),
        status("isi", "degraded", 2),
        # Older than FACILITY_STALE_AFTER (15 minutes): unknown, as on the map.
        status("utah", "up", 60),
        allocated("realization", "r1", ["n1", "n2", "n3"]),
        # A materialization runs on its realization's hosts: n3 counts once.
        allocated("materialization", "m1", ["n3", "n4"]),
    ]
    assert post_events(sent).status_code == 201

    found = scrape()
    statuses = found["sphere_facility_status"]
    for slug, current in (("isi", "degraded"), ("utah", "unknown"), ("mit", "unknown")):
        for state in ("up", "degraded", "down", "maintenance", "unknown"):
            assert statuses[labels(facility=slug, status=state)] == (state == current), (
                slug,
                state,
            )
    assert found["sphere_facility_nodes_in_use"] == {
        labels(facility="isi"): 4,
        labels(facility="utah"): 0,
        labels(facility="mit"): 0,
    }
    assert found["sphere_facility_nodes_capacity"] == {
        labels(facility="isi"): 10,
        labels(facility="utah"): 4,
        labels(facility="mit"): 0,
    }


# --- the ingest's own figures ----------------------------------------------------------


def test_ingest_event_counters_count_accepted_duplicate_conflicting_and_rejected(
    scrape, post_events
):
    def counts() -> dict[str, float]:
        return {
            dict(key)["result"]: value
            for key, value in scrape()["sphere_ingest_events_total"].items()
        }

    before = counts()
    assert set(before) == {"accepted", "duplicate", "conflict", "rejected"}
    first, second = event(), event()
    assert post_events([first, second]).status_code == 201
    assert post_events([first]).json()["duplicates"] == 1
    changed = {**second, "caller": "mallory"}
    assert post_events([changed]).json()["conflicts"]
    invalid = event(event_type="user_created", subject="")
    assert post_events([event(), event(), invalid]).status_code == 400
    assert post_events(b"{not json").status_code == 400  # no events to count

    after = counts()
    assert {result: after[result] - before[result] for result in after} == {
        "accepted": 2,
        "duplicate": 1,
        "conflict": 1,
        "rejected": 3,
    }


@pytest.mark.django_db(transaction=True)
def test_ingest_requests_are_counted_by_status_and_timed_through_the_wsgi_app():
    # Through the application gunicorn serves (the test client bypasses it).
    token = ApiToken.issue("both", ["ingest", "metrics"])[1]
    bearer = f"Bearer {token}"

    def figures() -> tuple[dict[str, float], float]:
        status, _, body = call("GET", "/metrics", authorization=bearer)
        assert status == 200
        found = samples(body.decode())
        by_status = {
            dict(key)["status"]: value
            for key, value in found.get("sphere_ingest_requests_total", {}).items()
        }
        return by_status, found["sphere_ingest_request_seconds_count"][frozenset()]

    def post(body: bytes, **headers: str) -> int:
        return call("POST", "/api/v1/events", body, **headers)[0]

    before, timed_before = figures()
    assert post(json.dumps(event()).encode(), authorization=bearer) == 201
    assert post(json.dumps(event()).encode(), authorization=bearer) == 201
    assert post(b"[]", authorization=bearer) == 400
    assert post(json.dumps(event()).encode()) == 401
    after, timed_after = figures()

    moved = {code: after[code] - before.get(code, 0) for code in after}
    assert {code: n for code, n in moved.items() if n} == {"201": 2, "400": 1, "401": 1}
    assert timed_after - timed_before == 4


def test_multiprocess_mode_sums_the_counts_of_every_process(tmp_path, metrics_token, settings):
    # Two processes, as two gunicorn workers, each answering through the WSGI
    # application into one PROMETHEUS_MULTIPROC_DIR.
    worker = (
        "import io, sys, django\n"
        "django.setup()\n"
        "from sphere_stats.handlers import Application\n"
        "app = Application()\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    environ = {'REQUEST_METHOD': 'POST', 'PATH_INFO': '/api/v1/events',\n"
        "        'SERVER_NAME': 'testserver', 'SERVER_PORT': '80', 'HTTP_HOST': 'testserver',\n"
        "        'CONTENT_TYPE': 'application/json', 'CONTENT_LENGTH': '2',\n"
        "        'wsgi.input': io.BytesIO(b'{}'), 'wsgi.url_scheme': 'http',\n"
        "        'wsgi.errors': sys.stderr}\n"
        "    b''.join(app(environ, lambda status, headers, exc_info=None: None))\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sphere_stats.settings",
        "DATABASE_URL": django_settings.DATABASE_URL,
        "ALLOWED_HOSTS": "testserver",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    for posts in (2, 3):
        done = subprocess.run(
            [sys.executable, "-c", worker, str(posts)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("counter_*.db"))) == 2

    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    text = response.content.decode()
    found = samples(text)
    # No token: a 401, counted and timed in each process, summed by the scrape
    # (and nothing of this process's own counts, which no file holds).
    assert found["sphere_ingest_requests_total"] == {labels(status="401"): 5}
    assert found["sphere_ingest_request_seconds_count"] == {frozenset(): 5}
    assert found["sphere_ingest_events_total"][labels(result="rejected")] == 0
    # The database's figures come from the scrape alone, once, not per process.
    assert text.count("# TYPE sphere_entities gauge") == 1
    assert text.count("# TYPE sphere_ingest_requests_total counter") == 1


# --- who may scrape --------------------------------------------------------------------


def test_without_a_token_the_answer_is_the_apis_401(db):
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert response.json()["error"].startswith("Missing or invalid API token")
    assert response.json()["details"] == []
    assert response["WWW-Authenticate"] == 'Bearer realm="sphere_stats"'


def test_a_revoked_or_unknown_token_gets_401(db):
    token, raw = ApiToken.issue("old-prometheus", ["metrics"])
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer sst_nothing").status_code == 401


def test_a_token_without_the_metrics_scope_gets_403(read_token, ingest_token):
    for token in (read_token, ingest_token):
        response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 403
        assert response.json() == {"error": "This token lacks the 'metrics' scope.", "details": []}


def test_a_metrics_token_is_let_in_as_bearer_or_api_key(metrics_token):
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}").status_code == 200
    assert Client().get("/metrics", HTTP_X_API_KEY=metrics_token).status_code == 200


def test_an_address_inside_metrics_allowed_networks_needs_no_token(db, settings):
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.1.0.0/16")]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::ffff:10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.2.0.1").get("/metrics").status_code == 401
    # Behind the proxy, the address it reports is the client's.
    settings.CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    behind = Client(REMOTE_ADDR="10.1.0.9")
    assert behind.get("/metrics", HTTP_X_REAL_IP="203.0.113.7").status_code == 401
    assert behind.get("/metrics", HTTP_X_REAL_IP="10.1.9.9").status_code == 200


def test_no_address_is_let_in_by_default(db):
    assert django_settings.METRICS_ALLOWED_NETWORKS == []
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401


def test_metrics_allowed_networks_takes_cidrs_and_refuses_anything_else(monkeypatch):
    monkeypatch.setenv("METRICS_ALLOWED_NETWORKS", " 10.0.0.0/8, 192.168.1.5 ,2001:db8::/32")
    assert [str(n) for n in envnetworks("METRICS_ALLOWED_NETWORKS")] == [
        "10.0.0.0/8",
        "192.168.1.5/32",
        "2001:db8::/32",
    ]
    for bad in ("10.0.0.0/33", "10.0.0.1/8", "prometheus.internal", "10.0.0.0/8;10.1.0.0/16"):
        monkeypatch.setenv("METRICS_ALLOWED_NETWORKS", bad)
        with pytest.raises(ImproperlyConfigured, match="METRICS_ALLOWED_NETWORKS"):
            envnetworks("METRICS_ALLOWED_NETWORKS")


def test_a_bad_network_stops_the_settings_from_loading():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sphere_stats.settings"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": django_settings.DATABASE_URL,
            "METRICS_ALLOWED_NETWORKS": "10.0.0.1/8",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loaded.returncode != 0
    assert "METRICS_ALLOWED_NETWORKS: '10.0.0.1/8' is not a network" in loaded.stderr


def test_create_api_token_issues_a_metrics_token(db, capsys):
    call_command("create_api_token", "prometheus", "--scope", "metrics")
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    assert ApiToken.objects.authenticate(raw).scopes == ["metrics"]


def test_only_get_is_answered(metrics_token):
    response = Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
    assert response.status_code == 405


# --- a database outage ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_database_outage_during_a_scrape_answers_503_and_recovers(settings):
    token = ApiToken.issue("prometheus", ["metrics"])[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", raise_request_exception=False)
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    for who in (client, Client(raise_request_exception=False)):  # by token, by address
        with database_down():
            response = who.get("/metrics")
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert response.json()["error"].startswith("The database is unavailable")
        assert who.get("/metrics").status_code == 200


# --- the Grafana dashboard ---------------------------------------------------------------


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, rows included."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    panels += [inner for panel in panels for inner in panel.get("panels", [])]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


SERIES_OF_TYPE = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def test_every_dashboard_query_reads_metrics_the_app_exposes(metrics_token):
    # Every family the app declares, with or without samples yet (no ingest
    # request has been answered here).
    text = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}").content
    exposed = {
        family.name + suffix
        for family in text_string_to_metric_families(text.decode())
        for suffix in SERIES_OF_TYPE.get(family.type, ("",))
    }
    expressions = dashboard_expressions()
    assert len(expressions) >= 8
    read = set()
    for title, expr in expressions:
        names = set(re.findall(r"\bsphere_[a-z_]+", expr))
        assert names, f"{title}: {expr} reads no sphere_stats metric"
        assert names <= exposed, f"{title}: {sorted(names - exposed)} are not exposed"
        read |= names
    # Events, failures, entities, facility status, nodes, ingest rate and latency.
    assert {
        "sphere_events_total",
        "sphere_entities",
        "sphere_facility_status",
        "sphere_facility_nodes_in_use",
        "sphere_facility_nodes_capacity",
        "sphere_ingest_requests_total",
        "sphere_ingest_request_seconds_bucket",
    } <= read
    assert any("histogram_quantile(0.99" in expr for _, expr in expressions)


def test_the_dashboard_takes_its_data_source_from_a_variable_and_provisioning_loads_it():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert source == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])

    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    providers = yaml.safe_load((provisioning / "dashboards.yml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"]
    sources = yaml.safe_load((provisioning / "datasources.yml").read_text())["datasources"]
    assert sources[0]["type"] == "prometheus"
