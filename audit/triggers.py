"""How the pre-aggregates declared in audit/aggregates.py are kept exact:
the statement-level triggers on `events` made from the declarations, their
installation after every `migrate`, rebuilds and the check against `events`.

`install()` runs after every `migrate` (audit/apps.py): it (re)creates the
trigger functions from the declarations and rebuilds, with a progress bar,
each pre-aggregate whose declaration changed since it was last built (all of
them on a database adopted with rows in it). The digest of each declaration
is kept in `aggregate_definitions`.
"""

import hashlib
from collections.abc import Iterator
from datetime import datetime

from django.db import connection, transaction
from tqdm import tqdm

from audit import entity_append
from audit.aggregate_tables import CountTable
from audit.aggregates import (
    AGGREGATES,
    ALLOCATIONS,
    COUNT_TABLES,
    DERIVED_TABLES,
    ENTITIES,
    ENTITY_CHANGE_TABLES,
    FACILITY_RUNS,
    MEMBERSHIPS,
)
from audit.entity_fold import REFRESH_FUNCTION

# A trigger's statements are planned once per connection and the plans kept
# (PL/pgSQL), so a plan made while `entities` or `events` was empty, or
# analyzed empty by `migrate`, stayed a sequential scan as they grew: each
# statement's probe of `entities` then read the whole table, and a load into
# a new database slowed from 8,600 to 2,900 events/s within 200,000 events
# (seed_demo; a 10M bulk load in one transaction, which autovacuum's ANALYZE
# never sees, ran at 1,000/s). The triggers touch a few rows of big tables,
# through their indexes, whatever the statistics say: sequential scans are
# priced out while they run (and the functions they call).
TRIGGER_SETTINGS = "SET search_path FROM CURRENT SET enable_seqscan = off"


def trigger_sql(op: str, referencing: str, body: list[str]) -> str:
    """The statement-level trigger on `events` for `op` running `body`, and its function."""
    name = f"sphere_stats_events_{op.lower()}"
    statements = "\n    ".join(f"{s};" for s in body)
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER {TRIGGER_SETTINGS} AS $fn$
DECLARE kinds text[]; scopes text[]; names text[]; seen_at timestamptz[];
BEGIN
    {statements}
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE TRIGGER {name} AFTER {op} ON events {referencing}
    FOR EACH STATEMENT EXECUTE FUNCTION {name}();
"""


def _applied(rows: str, sign: int) -> list[str]:
    return [s for aggregate in AGGREGATES for s in aggregate.apply_sql(rows, sign)]


def _inserted(rows: str) -> list[str]:
    """The insert trigger's statements, the upserts as CTEs of the statement
    that finds the entities to fold: one executor start instead of eight,
    a third of what the trigger cost a single-row INSERT. The entities are
    folded by audit/entity_append.py (new steps onto the stored rows), not
    ENTITIES.apply_sql's refold of every touched entity's history."""
    own = (ENTITIES, FACILITY_RUNS)  # statements of their own, after the upserts
    upserts = [s for a in AGGREGATES if a not in own for s in a.apply_sql(rows, 1)]
    find, fold = entity_append.insert_sql(rows)
    ctes = ", ".join(f"upsert{i} AS ({sql})" for i, sql in enumerate(upserts))
    return [f"WITH {ctes} {find}", *fold, *FACILITY_RUNS.apply_sql(rows, 1)]


TRIGGERS_SQL = "\n".join(
    [
        REFRESH_FUNCTION,
        FACILITY_RUNS.function_sql,
        trigger_sql("INSERT", "REFERENCING NEW TABLE AS new_rows", _inserted("new_rows")),
        trigger_sql("DELETE", "REFERENCING OLD TABLE AS old_rows", _applied("old_rows", -1)),
        # Events are immutable here, but not to psql: an UPDATE is a delete
        # of the old rows and an insert of the new ones.
        trigger_sql(
            "UPDATE",
            "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
            _applied("old_rows", -1) + _applied("new_rows", 1),
        ),
        # A TRUNCATE that names the derived tables too (Django's flush) has
        # emptied them already and still holds them: those are skipped.
        trigger_sql(
            "TRUNCATE",
            "",
            [
                f"BEGIN TRUNCATE {table}; EXCEPTION WHEN object_in_use THEN NULL; END"
                for table in DERIVED_TABLES
            ],
        ),
    ]
)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- install, rebuild, verify ---------------------------------------------------------------


def _progress(total: int, desc: str, stream) -> tqdm:
    return tqdm(total=total, desc=desc, unit="chunk", file=stream, disable=stream is None)


def _locked_chunk(cursor) -> None:
    # Writers wait for the chunk (a month of counts, a few thousand
    # entities) instead of committing rows the rebuild's reads miss and its
    # deletes take back; readers never wait.
    cursor.execute("LOCK TABLE events IN SHARE MODE")


def rebuild_one(aggregate, stream=None, start=None, end=None) -> None:
    """Recompute one pre-aggregate from `events`, chunk by chunk, each chunk
    a transaction of its own."""
    with connection.cursor() as cursor:
        if isinstance(aggregate, CountTable):
            whole = start is None and end is None
            chunks = aggregate.time_span(cursor) if whole else [(start, end)]
            with _progress(len(chunks) + whole, aggregate.table, stream) as bar:
                for lo, hi in chunks:
                    with transaction.atomic():
                        _locked_chunk(cursor)
                        aggregate.rebuild(cursor, lo, hi)
                    bar.update()
                if whole:
                    # Rows outside the months that hold events have none.
                    span = {
                        "lo": chunks[0][0] if chunks else None,
                        "hi": chunks[-1][1] if chunks else None,
                    }
                    with transaction.atomic():
                        _locked_chunk(cursor)
                        cursor.execute(
                            f"DELETE FROM {aggregate.table} WHERE %(lo)s::timestamptz IS NULL "
                            f"OR {aggregate.time} < %(lo)s OR {aggregate.time} >= %(hi)s",
                            span,
                        )
                    bar.update()
        elif aggregate in (MEMBERSHIPS, ALLOCATIONS, *ENTITY_CHANGE_TABLES, FACILITY_RUNS):
            with transaction.atomic(), _progress(1, aggregate.table, stream) as bar:
                _locked_chunk(cursor)
                aggregate.rebuild(cursor)
                bar.update()
        else:
            # No keys: one empty chunk, which takes the lock and refreshes nothing.
            chunks = aggregate.chunks(cursor) or [[]]
            with _progress(len(chunks), "entities", stream) as bar:
                for keys in chunks:
                    with transaction.atomic():
                        _locked_chunk(cursor)
                        aggregate.refresh(cursor, keys)
                    bar.update()
        analyze(cursor, aggregate.name, vacuum=True)


def analyze(cursor, table: str, *, vacuum: bool = False) -> None:
    """Fresh statistics for `table`, unless it is empty.

    An empty table is left as it is, never analyzed: PostgreSQL then
    assumes ten pages for it, where statistics of an empty table say it has
    none, and every plan made from them (the triggers' plans are kept for
    the connection's life) scans whatever index comes first, or the table,
    as it grows.

    `vacuum`: a table just rebuilt by DELETE and INSERT (a pre-aggregate,
    not `events`) has no visibility map yet, so every index-only scan of
    its pages visits the heap too (the 1-year active users at 1M events:
    131 ms before a VACUUM, 42 after) until autovacuum comes by: it is
    vacuumed as well, where it can be (not inside a transaction block)."""
    cursor.execute(f"SELECT EXISTS (SELECT FROM {table})")
    if not cursor.fetchone()[0]:
        return
    command = "VACUUM ANALYZE" if vacuum and not connection.in_atomic_block else "ANALYZE"
    cursor.execute(f"{command} {table}")


def install(stream=None, force: bool = False) -> list[str]:
    """(Re)create the triggers on `events` from the declarations, then
    rebuild each pre-aggregate whose declaration is new or changed (all, with
    force). Returns the names rebuilt."""
    with connection.cursor() as cursor:
        # CREATE INDEX CONCURRENTLY IF NOT EXISTS skips an index that an
        # interrupted build left invalid: the planner never uses it.
        cursor.execute(
            "SELECT indexrelid::regclass::text FROM pg_index "
            "WHERE indrelid = 'events'::regclass AND NOT indisvalid ORDER BY 1"
        )
        invalid = [name for (name,) in cursor.fetchall()]
    if invalid:
        raise RuntimeError(
            "Invalid indexes on events (an interrupted CREATE INDEX CONCURRENTLY): "
            + ", ".join(invalid)
            + ". Drop each (DROP INDEX CONCURRENTLY name;) and run migrate again."
        )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(TRIGGERS_SQL)
        cursor.execute("SELECT name, digest FROM aggregate_definitions")
        built = dict(cursor.fetchall())
    rebuilt = []
    if any(built.get(a.name) != digest(a.definition) for a in AGGREGATES) or force:
        # Fresh statistics first: a table adopted or restored moments ago
        # may never have been analyzed, and the rebuild's plans rely on them.
        with connection.cursor() as cursor:
            analyze(cursor, "events")
    for aggregate in AGGREGATES:
        wanted = digest(aggregate.definition)
        if force or built.get(aggregate.name) != wanted:
            rebuild_one(aggregate, stream)
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO aggregate_definitions (name, digest, built_at) "
                    "VALUES (%(name)s, %(digest)s, now()) ON CONFLICT (name) DO UPDATE "
                    "SET digest = excluded.digest, built_at = excluded.built_at",
                    {"name": aggregate.name, "digest": wanted},
                )
            rebuilt.append(aggregate.name)
    return rebuilt


def rebuild_counts(start: datetime | None = None, end: datetime | None = None) -> None:
    """Recompute the counting pre-aggregates for the hours and days
    overlapping [start, end), and all of org_memberships and facility_allocations."""
    with transaction.atomic(), connection.cursor() as cursor:
        for table in COUNT_TABLES:
            table.rebuild(cursor, start, end)
        MEMBERSHIPS.rebuild(cursor)
        ALLOCATIONS.rebuild(cursor)


def rebuild_entities() -> int:
    """Recompute every entity and its intervals; returns how many there are."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM entity_intervals")
        cursor.execute("DELETE FROM entities")
        for keys in ENTITIES.chunks(cursor):
            ENTITIES.refresh(cursor, keys)
        cursor.execute("SELECT count(*) FROM entities")
        return cursor.fetchone()[0]


def rebuild_aggregates(start: datetime | None = None, end: datetime | None = None) -> None:
    """Make every pre-aggregate agree with `events` again (the counts for
    [start, end), None: unbounded; memberships, allocations, entities and
    facility runs whole)."""
    with transaction.atomic():
        rebuild_counts(start, end)
        rebuild_entities()
        with connection.cursor() as cursor:
            FACILITY_RUNS.rebuild(cursor)


def differences(
    start: datetime | None = None, end: datetime | None = None
) -> Iterator[tuple[str, list[str]]]:
    """(pre-aggregate, its differences from `events`) for each one: the
    counts of the hours and days overlapping [start, end), every membership
    and allocation, every entity (in chunks), every facility run."""
    with connection.cursor() as cursor:
        for table in COUNT_TABLES:
            yield table.table, table.differences(cursor, start, end)
        yield MEMBERSHIPS.table, MEMBERSHIPS.differences(cursor)
        yield ALLOCATIONS.table, ALLOCATIONS.differences(cursor)
        yield (
            "entities",
            [
                line
                for keys in ENTITIES.chunks(cursor)
                for line in ENTITIES.differences(cursor, keys)
            ],
        )
        for changes in ENTITY_CHANGE_TABLES:
            yield changes.table, changes.differences(cursor)
        yield FACILITY_RUNS.table, FACILITY_RUNS.differences(cursor)
