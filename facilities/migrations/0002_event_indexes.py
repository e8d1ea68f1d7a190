# Indexes on the audit `events` table that only the facility pages need. They
# live here rather than in audit.Event.Meta because audit knows nothing about
# facilities; both are partial, so they cover a small slice of the table.
#
# Non-atomic: both are built CONCURRENTLY (one statement per RunSQL) so that
# migrating a live portal database never blocks its writers.
from django.db import migrations

ALLOCATION_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_facility_alloc
    ON events (target, subject_type, subject, timestamp DESC) INCLUDE (event_type, event_uuid)
    WHERE success AND event_type IN ('realization_allocated', 'realization_freed',
                                     'materialization_allocated', 'materialization_freed')
"""

FAILURES_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_failed_target
    ON events (target, timestamp DESC) WHERE NOT success
"""


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY: see the top

    dependencies = [
        ("audit", "0001_initial"),
        ("facilities", "0001_initial"),
    ]

    operations = [
        # Resources in use per facility (FacilityQuerySet.usage and usage_summary,
        # ACTIVE_SQL): per target, DISTINCT ON (subject_type, subject) ORDER BY
        # subject_type, subject, timestamp DESC, as an index-only scan.
        migrations.RunSQL(
            ALLOCATION_INDEX, "DROP INDEX CONCURRENTLY IF EXISTS idx_events_facility_alloc"
        ),
        # Recent failures at a facility (Facility.recent_failures):
        # WHERE target = slug AND NOT success ORDER BY timestamp DESC LIMIT 10.
        migrations.RunSQL(
            FAILURES_INDEX, "DROP INDEX CONCURRENTLY IF EXISTS idx_events_failed_target"
        ),
    ]
