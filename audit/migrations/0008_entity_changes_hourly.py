"""entity_changes_hourly, and two narrow indexes for one user's activity.

entity_changes_hourly (kind, hour, state, delta): for each UTC hour, how many
entities entered (+1 at an interval's valid_from) and left (-1 at its
valid_to) each state. Entities in a state at any moment t are the sum of the
deltas of the hours before t, plus the intervals beginning or ending in
t's own partial hour (dashboards/queries.py, entity_counts_at and
entity_growth): a few thousand rows a year instead of the 1.9M intervals.

Statement triggers on entity_intervals keep it exact: every change to the
intervals (ingest's resume and replace, rebuild_aggregates, a prune's
rebuild) adds or takes back exactly its rows' deltas, in the same
transaction. The triggers take one transaction advisory lock before their
upsert: two transactions changing intervals would otherwise update the same
hourly rows in different orders (a delete, then an insert) and could
deadlock. Every other lock of ingest is taken before the first interval
changes, so this one, taken last and held to commit, cannot close a cycle.
TRUNCATE (the test suite's flush) empties it too.

There is no Django model for it: it is written only by these triggers and
read only by dashboards/queries.py.

idx_events_user_by_others: events about a user made by someone else
(activations, freezes, deletions by ops), which the user page's heatmap
counts apart from the user's own events (by caller, from
event_counts_daily_caller). A few rows per user, so it costs ingest nothing
visible; without it, telling them apart reads every login of the user.

idx_daily_caller_caller: one caller's days (the heatmap's year) without
reading every caller's rows of each day. Only columns ingest never updates,
so its upserts of the daily counts stay HOT updates.

Non-atomic: both indexes are built CONCURRENTLY, each in its own RunSQL, so
that migrating a live portal database never blocks its writers (ingest
writes event_counts_daily_caller too). The table, its triggers and its
backfill then go in one transaction (RunPython, atomic=True): the triggers
and the backfill must see the same intervals, and a failure leaves nothing
behind.
"""

from django.db import migrations

LOCK_KEY = 7_400_042  # pg_advisory_xact_lock key of entity_changes_hourly


def _deltas(rows: str, sign: int) -> list[str]:
    """+sign at each interval's start, -sign at its end, per UTC hour."""
    return [
        f"SELECT kind, date_trunc('hour', valid_from, 'UTC') AS hour, state, {sign} AS d "
        f"FROM {rows}",
        f"SELECT kind, date_trunc('hour', valid_to, 'UTC'), state, {-sign} "
        f"FROM {rows} WHERE valid_to IS NOT NULL",
    ]


def _trigger(op: str, referencing: str, arms: list[str]) -> str:
    # One function per operation: a transition table exists only in the
    # triggers that declare it.
    name = f"entity_changes_hourly_{op.lower()}"
    changes = " UNION ALL ".join(arms)
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_KEY});
    INSERT INTO entity_changes_hourly AS c (kind, hour, state, delta)
    SELECT kind, hour, state, sum(d) FROM ({changes}) AS changes
    GROUP BY 1, 2, 3 HAVING sum(d) <> 0
    ORDER BY 1, 2, 3
    ON CONFLICT (kind, hour, state) DO UPDATE SET delta = c.delta + excluded.delta;
    RETURN NULL;
END
$$;
CREATE TRIGGER {name} AFTER {op} ON entity_intervals {referencing}
    FOR EACH STATEMENT EXECUTE FUNCTION {name}();
"""


# Built before the transaction below, outside any transaction: that one then
# locks no table ingest writes but entity_intervals, so a migration running
# during ingest waits for it instead of deadlocking.
USER_BY_OTHERS_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_user_by_others ON events (subject, timestamp)
    WHERE subject_type = 'user' AND caller <> subject
"""
DAILY_CALLER_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_daily_caller_caller
    ON event_counts_daily_caller (caller, day)
"""

SQL = f"""
CREATE TABLE entity_changes_hourly (
    kind text NOT NULL,
    hour timestamptz NOT NULL,
    state text NOT NULL,
    delta bigint NOT NULL,
    PRIMARY KEY (kind, hour, state)
);
{_trigger("INSERT", "REFERENCING NEW TABLE AS new_rows", _deltas("new_rows", 1))}
{_trigger("DELETE", "REFERENCING OLD TABLE AS old_rows", _deltas("old_rows", -1))}
{
    _trigger(
        "UPDATE",
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        _deltas("new_rows", 1) + _deltas("old_rows", -1),
    )
}
CREATE FUNCTION entity_changes_hourly_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_KEY});
    TRUNCATE entity_changes_hourly;
    RETURN NULL;
END
$$;
CREATE TRIGGER entity_changes_hourly_truncate AFTER TRUNCATE ON entity_intervals
    FOR EACH STATEMENT EXECUTE FUNCTION entity_changes_hourly_truncate();

INSERT INTO entity_changes_hourly (kind, hour, state, delta)
SELECT kind, hour, state, sum(d) FROM ({" UNION ALL ".join(_deltas("entity_intervals", 1))})
    AS changes GROUP BY 1, 2, 3 HAVING sum(d) <> 0;
ANALYZE entity_changes_hourly;

"""

REVERSE = """
DROP TRIGGER IF EXISTS entity_changes_hourly_insert ON entity_intervals;
DROP TRIGGER IF EXISTS entity_changes_hourly_delete ON entity_intervals;
DROP TRIGGER IF EXISTS entity_changes_hourly_update ON entity_intervals;
DROP TRIGGER IF EXISTS entity_changes_hourly_truncate ON entity_intervals;
DROP FUNCTION IF EXISTS entity_changes_hourly_insert();
DROP FUNCTION IF EXISTS entity_changes_hourly_delete();
DROP FUNCTION IF EXISTS entity_changes_hourly_update();
DROP FUNCTION IF EXISTS entity_changes_hourly_truncate();
DROP TABLE IF EXISTS entity_changes_hourly;
"""


def run_script(sql: str):
    """RunSQL's execution of `sql`, for a RunPython that can be atomic."""

    def run(apps, schema_editor) -> None:
        for statement in schema_editor.connection.ops.prepare_sql_script(sql):
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY: see the top

    dependencies = [
        ("audit", "0007_daily_counts"),
    ]

    operations = [
        migrations.RunSQL(
            USER_BY_OTHERS_INDEX, "DROP INDEX CONCURRENTLY IF EXISTS idx_events_user_by_others"
        ),
        migrations.RunSQL(
            DAILY_CALLER_INDEX, "DROP INDEX CONCURRENTLY IF EXISTS idx_daily_caller_caller"
        ),
        migrations.RunPython(run_script(SQL), run_script(REVERSE), atomic=True),
    ]
