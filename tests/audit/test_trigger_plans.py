"""The insert trigger finds a statement's entities by their key, however
stale the statistics its kept plans were made from.

PL/pgSQL keeps a trigger's plans for the connection's life. Planned while
`entities` was empty, or analyzed empty, a plan that reads the whole table
(or all entities of a kind) for every name a statement mentions stays so as
the table grows: ingest then slows with every entity added (a load into a
new database fell from 8,600 to 2,900 events/s within 200,000 events). What
the statement read is taken from PostgreSQL's counters of the transaction
(pg_stat_get_xact_*), as it ran.
"""

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


def entity_reads() -> tuple[int, int]:
    """(sequential scans of `entities`, entries its indexes returned) in this
    transaction so far."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_numscans('entities'::regclass),"
            " (SELECT sum(pg_stat_get_xact_tuples_returned(indexrelid))::bigint"
            "  FROM pg_index WHERE indrelid = 'entities'::regclass)"
        )
        return cursor.fetchone()


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
    scans, entries = entity_reads()
    ingest(logins, now=NOW)
    scans_after, entries_after = entity_reads()

    assert scans_after == scans, "entities was read whole"
    # One entry per name for the probe, one for the fold's look at the
    # stored row; a plan that reads every user for each name reads 90,000.
    assert entries_after - entries <= 3 * len(names)
