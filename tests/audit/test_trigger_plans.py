"""The insert trigger finds a statement's entities by their key, however
stale the statistics its kept plans were made from.

PL/pgSQL keeps a trigger's plans for the connection's life. Planned while
`entities` was empty, or analyzed empty, a plan that reads the whole table
(or all entities of a kind) for every name a statement mentions stays so as
the table grows: ingest then slows with every entity added (a load into a
new database fell from 8,600 to 2,900 events/s within 200,000 events). The
plans are read from auto_explain, as PostgreSQL runs them.
"""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from audit.aggregates import COUNT_TABLES, ENTITIES
from audit.ingest import ingest
from audit.triggers import rebuild_one
from tests.factories import like

pytestmark = pytest.mark.django_db

user_created = like(event_type="user_created", subject_type="user", caller="ops")
login = like(event_type="user_login", subject_type="user")
NOW = datetime.now(UTC)


def plans_of(store) -> list[str]:
    """The plans of every statement `store()` runs, the triggers' included."""
    notices: list[str] = []
    connection.ensure_connection()

    def handler(diagnostic) -> None:
        notices.append(diagnostic.message_primary)

    connection.connection.add_notice_handler(handler)
    with connection.cursor() as cursor:
        cursor.execute("LOAD 'auto_explain'")
        cursor.execute("SET LOCAL auto_explain.log_min_duration = 0")
        cursor.execute("SET LOCAL auto_explain.log_nested_statements = on")
        cursor.execute("SET LOCAL client_min_messages = log")
    try:
        store()
    finally:
        connection.connection.remove_notice_handler(handler)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL client_min_messages = notice")
            cursor.execute("SET LOCAL auto_explain.log_min_duration = -1")
    return notices


def test_the_entity_probe_reads_its_key_in_a_new_database_after_migrate():
    with connection.cursor() as cursor:
        # The tables as a new database has them: never analyzed (the update
        # is rolled back with the test).
        cursor.execute(
            "UPDATE pg_class SET reltuples = -1, relpages = 0"
            " WHERE oid IN ('entities'::regclass, 'events'::regclass)"
        )
    # What `migrate` does to a new database: every pre-aggregate is rebuilt
    # and its statistics refreshed; then the first statements plan.
    rebuild_one(ENTITIES)
    rebuild_one(COUNT_TABLES[0])
    with connection.cursor() as cursor:
        cursor.execute("DISCARD PLANS")
    names = [f"u{i}" for i in range(300)]
    start = NOW - timedelta(hours=2)
    ingest([user_created(subject=n, timestamp=start) for n in names], now=NOW)
    logins = [login(caller=n, subject=n, timestamp=start + timedelta(minutes=1)) for n in names]
    plans = plans_of(lambda: ingest(logins, now=NOW))

    probes = [p for p in plans if re.search(r"on entities x\b", p)]
    assert probes, "no plan probed entities"
    for plan in probes:
        assert "Seq Scan on entities" not in plan
        scan = re.search(
            r"Index (?:Only )?Scan using (\w+) on entities x\s+\(.*\n\s+Index Cond: (.*)", plan
        )
        assert scan, plan
        # The primary key (kind, scope, name), all three: one row per name.
        assert scan.group(1) == "entities_pkey", plan
        assert "name =" in scan.group(2), plan
