"""idx_events_error_trgm (migration audit 0006) and EventQuerySet.error_contains.

Run against the embedded server (no pg_trgm: the migration skips the index)
and against a DATABASE_URL server with contrib (the index serves the filter).
"""

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit.models import Event
from tests.audit.exp_helpers import event, store

pytestmark = pytest.mark.django_db


def pg_trgm_available() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        return cursor.fetchone() is not None


def index_definition() -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_events_error_trgm'")
        row = cursor.fetchone()
        return row[0] if row else None


def plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def test_the_migration_builds_the_index_exactly_where_pg_trgm_is_available():
    definition = index_definition()
    assert (definition is not None) == pg_trgm_available()
    if definition:
        assert "gin (error_message gin_trgm_ops)" in definition
        assert "WHERE (error_message IS NOT NULL)" in definition


@pytest.mark.django_db(transaction=True)
def test_the_migration_unapplies_and_reapplies():
    # Outside a test transaction: the index is built and dropped CONCURRENTLY.
    executor = MigrationExecutor(connection)
    executor.migrate([("audit", "0005_entity_last_event")])
    assert index_definition() is None
    # Every app's latest migrations: going back in audit also unapplied the
    # migrations of the apps that depend on it (streams' feed table).
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert (index_definition() is not None) == pg_trgm_available()


def test_a_rare_substring_is_found_through_the_trigram_index_where_there_is_one():
    # Without pg_trgm (the embedded server) the same query must still find
    # the one event, by reading the table: the answer never depends on it.
    indexed = index_definition() is not None
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO events (event_uuid, timestamp, event_type, caller, subject,
                                subject_type, target, success, error_message, payload)
            SELECT gen_random_uuid(), now() - i * interval '1 second', 'user_login',
                   'u' || i, 'u' || i, 'user', NULL, false,
                   'invalid credentials for u' || i, '{}'
            FROM generate_series(1, 5000) AS i
            """
        )
    (rare,) = store(event(success=False, error_message="Quota EXCEEDED on node n042"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE events")
    qs = Event.objects.error_contains("exceeded on NODE")

    sql, params = qs.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        # A plan choice, not a timing: with scans priced out, only an index
        # that serves ILIKE can answer without reading every row.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    conditions = [
        node.get("Index Cond", "")
        for node in plan_nodes(plan[0]["Plan"])
        if node.get("Index Name") == "idx_events_error_trgm"
    ]

    # The pattern is the index condition: the trigrams pick the rows. (Django's
    # icontains, UPPER(error_message) LIKE ..., could only read all the index.)
    if indexed:
        assert conditions and "~~*" in conditions[0]
    else:
        assert conditions == []
    assert [str(e.event_uuid) for e in qs] == [rare["event_uuid"]]


@pytest.mark.parametrize(("text", "expected"), [("%", ["50% full"]), ("_", ["no_space"])])
def test_like_wildcards_in_the_text_match_only_themselves(text, expected):
    store(
        event(success=False, error_message="50% full"),
        event(success=False, error_message="no_space"),
        event(success=False, error_message="nospace"),
    )
    assert [e.error_message for e in Event.objects.error_contains(text)] == expected
