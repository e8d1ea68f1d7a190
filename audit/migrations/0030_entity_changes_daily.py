"""entity_changes_daily: entity_changes_hourly per UTC day.

The growth chart adds up each bucket's entity changes (dashboards/stats/
counts.py, entity_growth): with hours alone a year's daily chart read every
hour of the year, some 56,000 rows at 10M events. With this table a whole
UTC day inside one bucket is one row per kind and state, as the event counts
read event_counts_daily (daily_plan); only the hours a zone's day takes
from the next UTC day stay hourly.

The functions of the triggers on entity_intervals (migrations 0008 and 0027)
are replaced by ones writing the three tables, in the same statement order
under the same advisory lock. The table's rows for the intervals stored
before are summed from them in the same transaction, so that the triggers
and the backfill see the same intervals, and a migration undone and done
again leaves the table whole.

The SQL view stats_entities_daily (migration 0014) summed the hourly table
per day; it now reads the daily one.

The SQL is written out here, by migration 0027's helpers and from
migration 0014's view, as this migration runs it, so that later changes to
the application code cannot change what it did.
"""

from importlib import import_module

from django.db import migrations

# Migration 0027's own helpers, which write the trigger functions for a set
# of tables: a migration is history, so they stay as that migration ran them.
_monthly = import_module("audit.migrations.0027_entity_changes_monthly")
LOCK_KEY = _monthly.LOCK_KEY  # pg_advisory_xact_lock key of entity_changes_hourly
_deltas = _monthly._deltas
_functions = _monthly._functions


# stats_entities_daily as migration 0014 made it, and the same over the
# daily table: only its `changes` step differs.
HOURLY_VIEW = import_module("audit.migrations.0014_sql_views").ENTITIES_DAILY[0]
FROM_HOURS = """
    SELECT date_trunc('day', hour, 'UTC') AS day, kind, state, sum(delta) AS delta
    FROM entity_changes_hourly
    GROUP BY 1, 2, 3
"""
assert FROM_HOURS in HOURLY_VIEW
DAILY_VIEW = HOURLY_VIEW.replace(
    FROM_HOURS, "\n    SELECT day, kind, state, delta FROM entity_changes_daily\n"
)

HOURLY_AND_MONTHLY = {
    "hour": ("entity_changes_hourly", "hour"),
    "month": ("entity_changes_monthly", "month"),
}
ALL_THREE = {**HOURLY_AND_MONTHLY, "day": ("entity_changes_daily", "day")}

SQL = f"""
CREATE TABLE entity_changes_daily (
    kind text NOT NULL,
    day timestamptz NOT NULL,
    state text NOT NULL,
    delta bigint NOT NULL,
    PRIMARY KEY (kind, day, state)
);
{_functions(ALL_THREE)}
SELECT pg_advisory_xact_lock({LOCK_KEY});
INSERT INTO entity_changes_daily (kind, day, state, delta)
SELECT kind, at, state, sum(d) FROM ({" UNION ALL ".join(_deltas("entity_intervals", 1, "day"))})
    AS changes GROUP BY 1, 2, 3 HAVING sum(d) <> 0;
ANALYZE entity_changes_daily;
{DAILY_VIEW};
"""

REVERSE = f"""
{HOURLY_VIEW};
{_functions(HOURLY_AND_MONTHLY)}
DROP TABLE IF EXISTS entity_changes_daily;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0029_memberships_org_since"),
    ]

    operations = [migrations.RunSQL(SQL, REVERSE)]
