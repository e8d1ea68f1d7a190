"""entity_changes_monthly: entity_changes_hourly per UTC month.

The entities in each state at a moment t are the deltas of every hour before
t's (dashboards/stats/counts.py, entity_counts_at): with hours alone that
read every hour of the log's history, some 56,000 rows for a year at 10M
events, growing year after year. With this table they are the whole months
before t's month, plus the hours of t's own month: some hundreds of rows
however long the log.

The functions of the triggers on entity_intervals (migration 0008) are
replaced by ones writing both tables, in the same statement order under the
same advisory lock. The table's rows for the intervals stored before are
summed from them in the same transaction, so that the triggers and the
backfill see the same intervals, and a migration undone and done again
leaves the table whole.

The SQL is written out here, as this migration runs it, so that later
changes to the application code cannot change what it did.
"""

from django.db import migrations

LOCK_KEY = 7_400_042  # pg_advisory_xact_lock key of entity_changes_hourly


def _deltas(rows: str, sign: int, unit: str) -> list[str]:
    """+sign at each interval's start, -sign at its end, per UTC `unit`."""
    return [
        f"SELECT kind, date_trunc('{unit}', valid_from, 'UTC') AS at, state, {sign} AS d "
        f"FROM {rows}",
        f"SELECT kind, date_trunc('{unit}', valid_to, 'UTC'), state, {-sign} "
        f"FROM {rows} WHERE valid_to IS NOT NULL",
    ]


def _upsert(table: str, column: str, changes: list[str]) -> str:
    return f"""
    INSERT INTO {table} AS c (kind, {column}, state, delta)
    SELECT kind, at, state, sum(d) FROM ({" UNION ALL ".join(changes)}) AS changes
    GROUP BY 1, 2, 3 HAVING sum(d) <> 0
    ORDER BY 1, 2, 3
    ON CONFLICT (kind, {column}, state) DO UPDATE SET delta = c.delta + excluded.delta;"""


def _function(op: str, units: dict[str, tuple[str, str]], sides: list[tuple[str, int]]) -> str:
    """The trigger function of `op`: one upsert per table in `units`
    ({unit: (table, column)}), of the deltas of `sides` ([(rows, sign)])."""
    upserts = "".join(
        _upsert(table, column, [arm for rows, sign in sides for arm in _deltas(rows, sign, unit)])
        for unit, (table, column) in units.items()
    )
    return f"""
CREATE OR REPLACE FUNCTION entity_changes_hourly_{op}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_KEY});{upserts}
    RETURN NULL;
END
$$;
"""


def _functions(units: dict[str, tuple[str, str]]) -> str:
    truncates = "".join(f"\n    TRUNCATE {table};" for table, _ in units.values())
    return (
        _function("insert", units, [("new_rows", 1)])
        + _function("delete", units, [("old_rows", -1)])
        + _function("update", units, [("new_rows", 1), ("old_rows", -1)])
        + f"""
CREATE OR REPLACE FUNCTION entity_changes_hourly_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_KEY});{truncates}
    RETURN NULL;
END
$$;
"""
    )


HOURLY = {"hour": ("entity_changes_hourly", "hour")}
BOTH = {**HOURLY, "month": ("entity_changes_monthly", "month")}

SQL = f"""
CREATE TABLE entity_changes_monthly (
    kind text NOT NULL,
    month timestamptz NOT NULL,
    state text NOT NULL,
    delta bigint NOT NULL,
    PRIMARY KEY (kind, month, state)
);
{_functions(BOTH)}
SELECT pg_advisory_xact_lock({LOCK_KEY});
INSERT INTO entity_changes_monthly (kind, month, state, delta)
SELECT kind, at, state, sum(d) FROM ({" UNION ALL ".join(_deltas("entity_intervals", 1, "month"))})
    AS changes GROUP BY 1, 2, 3 HAVING sum(d) <> 0;
ANALYZE entity_changes_monthly;
"""

REVERSE = f"""
{_functions(HOURLY)}
DROP TABLE IF EXISTS entity_changes_monthly;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0026_failed_logins_monthly"),
    ]

    operations = [migrations.RunSQL(SQL, REVERSE)]
