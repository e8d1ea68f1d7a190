"""Leaner indexes on `events` (storage per million events as ingest leaves them).

- idx_events_ts_uuid goes: idx_events_timestamp, of the SPHERE request's DDL,
  gives the keyset pages their order; an incremental sort orders the rare
  equal timestamps by event_uuid. Its ~75 MiB per million events bought
  nothing but that tie-break.
- idx_events_type_ts leaves out the two frequent types (user_login,
  facility_status: half the rows), which a time-ordered scan finds every
  few rows anyway.
- idx_events_project_ts holds only the rows that name a project; every
  query on it compares payload->>'project', which implies IS NOT NULL. The
  planner takes no statistics from a partial index, so events_project_stats
  keeps those of payload->>'project' (without them a project's page scanned
  the whole time index instead of OR-ing its three indexes).
- idx_events_caller_ts drops event_uuid from its key (the incremental sort
  breaks ties, as above).
- idx_events_caller_ts, idx_events_type_ts, idx_events_project_ts and
  idx_events_failures_ts ascend in time; read backwards they answer newest
  first as before.

Each is built CONCURRENTLY under a temporary name, the old one dropped
CONCURRENTLY and the new one renamed (hence atomic = False), so migrating a
live table never blocks ingest and the queries always have one of the two.
Migrating back rebuilds the previous definitions the same way.
"""

from django.db import migrations, models
from django.db.models.fields.json import KeyTextTransform
from django.db.models.lookups import IsNull

PROJECT = "((payload ->> 'project'))"
# name: (the new definition, the previous one)
REBUILT = {
    "idx_events_type_ts": (
        "(event_type, timestamp) WHERE NOT (event_type IN ('user_login', 'facility_status'))",
        "(event_type, timestamp DESC)",
    ),
    "idx_events_caller_ts": (
        "(caller, timestamp) INCLUDE (event_type, success)",
        "(caller, timestamp DESC, event_uuid DESC) INCLUDE (event_type, success)",
    ),
    "idx_events_project_ts": (
        f"({PROJECT}, timestamp) WHERE (payload ->> 'project') IS NOT NULL",
        f"({PROJECT}, timestamp DESC)",
    ),
    "idx_events_failures_ts": (
        "(timestamp) WHERE NOT success",
        "(timestamp DESC) WHERE NOT success",
    ),
}


def swap(name: str, columns: str) -> list[str]:
    """Build `name` anew with `columns`, then put it in the old one's place."""
    return [
        f"DROP INDEX CONCURRENTLY IF EXISTS {name}_new",
        f"CREATE INDEX CONCURRENTLY {name}_new ON events {columns}",
        f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
        f"ALTER INDEX {name}_new RENAME TO {name}",
    ]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0016_failure_and_allocation_counts"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                *(
                    migrations.RunSQL(swap(name, new), swap(name, old))
                    for name, (new, old) in REBUILT.items()
                ),
                migrations.RunSQL(
                    [
                        "CREATE STATISTICS IF NOT EXISTS events_project_stats "
                        "ON ((payload ->> 'project')) FROM events",
                        # Not an empty table: statistics that say "no rows"
                        # outlive its growth in the triggers' kept plans
                        # (audit/triggers.py analyze).
                        "DO $$ BEGIN IF EXISTS (SELECT FROM events) THEN ANALYZE events;"
                        " END IF; END $$",
                    ],
                    "DROP STATISTICS IF EXISTS events_project_stats",
                ),
                migrations.RunSQL(
                    "DROP INDEX CONCURRENTLY IF EXISTS idx_events_ts_uuid",
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_ts_uuid "
                    "ON events (timestamp DESC, event_uuid DESC)",
                ),
            ],
            state_operations=[
                *(
                    migrations.RemoveIndex(model_name="event", name=name)
                    for name in ("idx_events_ts_uuid", *REBUILT)
                ),
                migrations.AddIndex(
                    model_name="event",
                    index=models.Index(
                        fields=["event_type", "timestamp"],
                        name="idx_events_type_ts",
                        condition=~models.Q(event_type__in=("user_login", "facility_status")),
                    ),
                ),
                migrations.AddIndex(
                    model_name="event",
                    index=models.Index(
                        fields=["caller", "timestamp"],
                        include=["event_type", "success"],
                        name="idx_events_caller_ts",
                    ),
                ),
                migrations.AddIndex(
                    model_name="event",
                    index=models.Index(
                        KeyTextTransform("project", "payload"),
                        "timestamp",
                        name="idx_events_project_ts",
                        condition=models.Q(IsNull(KeyTextTransform("project", "payload"), False)),
                    ),
                ),
                migrations.AddIndex(
                    model_name="event",
                    index=models.Index(
                        fields=["timestamp"],
                        name="idx_events_failures_ts",
                        condition=models.Q(success=False),
                    ),
                ),
            ],
        ),
    ]
