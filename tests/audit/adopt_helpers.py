"""Helpers for the adoption, writer and verify_aggregates tests.

Two kinds: the real clients an operator uses (psql, `manage.py`, gunicorn)
driven as subprocesses against a database of their own on the server the
test suite runs on; and the checks that every pre-aggregate, and every stat
read from them, equals the raw `events` table.
"""

import json
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import psycopg
import requests
from django.conf import settings
from django.db import connection

from audit import triggers
from audit.models import Entity, Event
from dashboards.stats import STATS
from tests.dashboards.conftest import make_window

ROOT = Path(settings.BASE_DIR)
SEED_ROWS = json.loads((ROOT / "tests" / "fixtures" / "seed_rows.json").read_text())

# The portal's table, verbatim from the SPHERE request (less its trailing spaces).
SEED_DDL = """
CREATE TABLE IF NOT EXISTS events (
    event_uuid    UUID PRIMARY KEY,
    timestamp     TIMESTAMPTZ NOT NULL,
    event_type    TEXT NOT NULL,

    caller        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    subject_type  TEXT NOT NULL,
    target        TEXT,

    success       BOOLEAN NOT NULL,
    error_message TEXT,

    payload       JSONB NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX IF NOT EXISTS idx_events_timestamp
    ON events (timestamp DESC);

CREATE INDEX IF NOT EXISTS idx_events_event_type
    ON events (event_type);

CREATE INDEX IF NOT EXISTS idx_events_caller
    ON events (caller);

CREATE INDEX IF NOT EXISTS idx_events_subject
    ON events (subject_type, subject);

CREATE INDEX IF NOT EXISTS idx_events_target
    ON events (target);
"""
SEED_INDEXES = (
    "events_pkey",
    "idx_events_timestamp",
    "idx_events_event_type",
    "idx_events_caller",
    "idx_events_subject",
    "idx_events_target",
)
# One more index of the portal's own, which adoption must leave alone.
PORTAL_INDEX = "portal_events_member_kind"
PORTAL_INDEX_DDL = f"CREATE INDEX {PORTAL_INDEX} ON events ((payload->>'kind'), timestamp);"
EVENT_COLUMNS = Event.COLUMNS


# --- the server the suite runs on, reached by the real clients --------------------------


def server() -> dict[str, str]:
    """Host (a TCP host or a socket directory), port and user of the test
    suite's PostgreSQL, from Django's own connection settings."""
    s = connection.settings_dict
    return {"host": s["HOST"] or "", "port": str(s["PORT"] or ""), "user": s["USER"] or ""}


def database_url(name: str, user: str = "") -> str:
    """A DATABASE_URL for database `name` on the suite's server (a socket
    directory percent-encoded as the host, as embedded_db writes it), as
    `user` (the suite's own by default)."""
    s = server()
    host = quote(s["host"], safe="") if s["host"].startswith("/") else s["host"]
    port = f":{s['port']}" if s["port"] else ""
    return f"postgresql://{user or s['user']}@{host}{port}/{name}"


def psql(
    database: str, sql: str, *, tuples: bool = False, user: str = "", check: bool = True
) -> str | subprocess.CompletedProcess:
    """Run `sql` through the psql binary as `user` (stdin, stop at the first
    error); its stdout, or with check=False the finished process."""
    s = server()
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database]
    args += [f"--{k}={v}" for k, v in (("host", s["host"]), ("port", s["port"])) if v]
    args += [f"--username={user or s['user']}"] if user or s["user"] else []
    args += ["-A", "-t"] if tuples else []
    result = subprocess.run(args, input=sql, capture_output=True, text=True, timeout=120)
    if not check:
        return result
    assert result.returncode == 0, f"psql failed:\n{sql[:2000]}\n{result.stderr}"
    return result.stdout


def literal(value) -> str:
    """An SQL literal for psql (standard_conforming_strings: quotes doubled)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        value = json.dumps(value)
    return "'" + str(value).replace("'", "''") + "'"


def insert_sql(rows: Iterable[dict]) -> str:
    values = ",\n".join(
        "(" + ", ".join(literal(row[c]) for c in EVENT_COLUMNS) + ")" for row in rows
    )
    return f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES\n{values};\n"


@contextmanager
def scratch_roles(*prefixes: str) -> Iterator[list[str]]:
    """New login roles (no superuser), dropped afterwards; drop their
    databases first."""
    names = [f"{prefix}_{secrets.token_hex(4)}" for prefix in prefixes]
    for name in names:
        psql("postgres", f'CREATE ROLE "{name}" LOGIN;')
    try:
        yield names
    finally:
        for name in names:
            psql("postgres", f'DROP ROLE IF EXISTS "{name}";')


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the suite's server, dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    psql("postgres", f'CREATE DATABASE "{name}";')
    try:
        yield name
    finally:
        psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')


def manage(url: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python manage.py ARGS` with DATABASE_URL=url, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=app_env(url),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def app_env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_DEBUG", "TEST_DATABASE_NAME")}
    return {
        **env,
        "DATABASE_URL": url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        **extra,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(url: str, **extra_env: str) -> Iterator[str]:
    """gunicorn serving the app against `url` on a free loopback port; its base URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "sphere_stats.wsgi", "-b", f"127.0.0.1:{port}"),
            *("-w", "1", "--threads", "2", "--log-level", "warning"),
        ],
        cwd=ROOT,
        env=app_env(url, **extra_env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code < 500:
                    break
            except requests.RequestException:  # refused, or slow to answer under load
                pass
            assert proc.poll() is None, f"gunicorn exited:\n{proc.stderr.read()}"
            assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def logged_in(base: str, username: str, password: str) -> requests.Session:
    """A session signed in through the login form, as a person would."""
    session = requests.Session()
    page = session.get(f"{base}/accounts/login/", timeout=30)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        f"{base}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=30,
    )
    assert answer.url.rstrip("/") == base, f"login failed: {answer.status_code} {answer.url}"
    return session


# --- writing to the test database on connections of their own --------------------------


def own_connection() -> psycopg.Connection:
    """A psycopg connection (autocommit) to the test database, apart from Django's."""
    s = connection.settings_dict
    params = {"dbname": s["NAME"], "user": s["USER"], "host": s["HOST"], "port": s["PORT"]}
    return psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True)


def as_tuple(event: dict) -> tuple:
    return tuple(json.dumps(event[c]) if c == "payload" else event[c] for c in EVENT_COLUMNS)


INSERT_ONE = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
)


def insert_each(conn: psycopg.Connection, events: list[dict]) -> None:
    """One autocommit INSERT per event."""
    with conn.cursor() as cursor:
        for event in events:
            cursor.execute(INSERT_ONE, as_tuple(event))


def copy_in(conn: psycopg.Connection, events: list[dict]) -> None:
    """COPY events FROM STDIN, one statement for all of them."""
    columns = ", ".join(EVENT_COLUMNS)
    with conn.cursor() as cursor, cursor.copy(f"COPY events ({columns}) FROM STDIN") as copy:
        for event in events:
            copy.write_row(as_tuple(event))


def insert_select(conn: psycopg.Connection, events: list[dict]) -> None:
    """One multi-row INSERT … SELECT from a JSON array."""
    conn.execute(
        f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM jsonb_to_recordset(%s::jsonb) AS r("
        "event_uuid uuid, timestamp timestamptz, event_type text, caller text, subject text, "
        "subject_type text, target text, success boolean, error_message text, payload jsonb)",
        [json.dumps(events)],
    )


# --- the pre-aggregates and the stats against the raw table -------------------------------


# entity_changes_hourly is kept from entity_intervals by triggers of its own
# (audit migration 0008): its deltas per hour, recomputed from the intervals,
# written out here as well as in triggers.differences(). A stored 0 is a
# group whose entries and exits cancelled out.
CHANGES_DRIFT = """
SELECT kind, hour, state, coalesce(s.delta, 0), coalesce(r.delta, 0)
FROM entity_changes_hourly AS s FULL JOIN (
    SELECT kind, hour, state, sum(d) AS delta FROM (
        SELECT kind, date_trunc('hour', valid_from, 'UTC') AS hour, state, 1 AS d
        FROM entity_intervals
        UNION ALL
        SELECT kind, date_trunc('hour', valid_to, 'UTC'), state, -1
        FROM entity_intervals WHERE valid_to IS NOT NULL
    ) AS changes GROUP BY 1, 2, 3
) AS r USING (kind, hour, state)
WHERE coalesce(s.delta, 0) <> coalesce(r.delta, 0)
ORDER BY 1, 2, 3 LIMIT 100
"""


def exact_after(table, statement: str, params: dict | None = None) -> int:
    """Run `statement` on `events` in the test's connection and return the
    rows it touched; the count table `table` (an aggregates.CountTable)
    still equals `events` after it."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        rowcount = cursor.rowcount
        assert table.differences(cursor, None, None) == []
        return rowcount


def drift() -> dict[str, list[str]]:
    """Every pre-aggregate's differences from `events` (empty when exact),
    entity_changes_hourly's from entity_intervals included."""
    found = {name: lines for name, lines in triggers.differences() if lines}
    with connection.cursor() as cursor:
        cursor.execute(CHANGES_DRIFT)
        changes = [
            f"entity_changes_hourly {row[:3]}: stored {row[3]}, intervals say {row[4]}"
            for row in cursor.fetchall()
        ]
    if changes:
        found["entity_changes_hourly"] = changes
    return found


def _filters(stat, rng: random.Random) -> dict | None:
    filters = {p.name: p.default for p in stat.params}
    if "name" in filters:
        kind = rng.choice(["user", "organization", "project"])
        names = list(
            Entity.objects.filter(kind=kind).order_by("name").values_list("name", flat=True)
        )
        if not names:
            return None
        filters |= {"kind": kind, "name": rng.choice(names)}
    return filters


MINUTE = timedelta(minutes=1)
ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Auckland")


def random_queries(rng: random.Random, now, n: int) -> list[dict]:
    """`period=all` and n random custom windows ending up to 200 days before `now`."""
    queries = [{"period": "all", "tz": rng.choice(ZONES)}]
    for _ in range(n):
        end = now - rng.randrange(0, 200 * 24 * 60) * MINUTE
        start = end - rng.randrange(60, 90 * 24 * 60) * MINUTE
        query = {"since": start.isoformat(), "until": end.isoformat(), "tz": rng.choice(ZONES)}
        if rng.random() < 0.6:
            query["res"] = rng.choice(["1h", "1d", "7d"])
        queries.append(query)
    return queries


def stats_differing(now, queries: list[dict], rng: random.Random) -> list[tuple]:
    """(stat, query, filters) of each pre-aggregated stat whose answer
    differs from the one computed from `events` alone; compared is how many."""
    differing, compared = [], 0
    for query in queries:
        try:
            window = make_window(now, **query)
        except ValueError:
            continue  # too many buckets for the resolution chosen
        for stat in STATS.values():
            if not stat.uses_preaggregates:
                continue
            filters = _filters(stat, rng)
            if filters is None:
                continue
            compared += 1
            if (
                stat.compute(window, filters, "auto").rows
                != stat.compute(window, filters, "raw").rows
            ):
                differing.append((stat.name, query, filters))
    assert compared, "no stat was compared"
    return differing


def new_uuid() -> str:
    return str(uuid.uuid4())
