"""Two partial indexes for the facility pages' hot queries (facilities/models.py).

- idx_events_facility_reports: each facility's status reports newest first,
  in exactly the order CURRENT_STATUS_SQL walks them (timestamp DESC,
  event_uuid DESC). The walk back to the start of the current run ("since")
  then streams from the index and stops at the run's first report; with only
  idx_events_subject_ts the planner underestimated a facility's reports and
  read and sorted all of them on every poll.
- idx_events_facility_latest replaces idx_events_facility_alloc: ACTIVE_SQL
  breaks a timestamp tie between an allocation and a free in favour of the
  free (ORDER BY ... timestamp DESC, event_type DESC). With event_type a key
  column after the timestamp, the DISTINCT ON stays an index-only scan in
  index order, with no sort.

Built and dropped CONCURRENTLY (hence atomic = False) so a migration on a live
table does not block ingest; the new allocation index exists before the old
one goes.
"""

from django.db import migrations

REPORTS_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_facility_reports
    ON events (subject, timestamp DESC, event_uuid DESC)
    WHERE subject_type = 'facility' AND event_type = 'facility_status'
"""

LATEST_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_facility_latest
    ON events (target, subject_type, subject, timestamp DESC, event_type DESC)
    INCLUDE (event_uuid)
    WHERE success AND event_type IN ('realization_allocated', 'realization_freed',
                                     'materialization_allocated', 'materialization_freed')
"""

OLD_ALLOCATION_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_facility_alloc
    ON events (target, subject_type, subject, timestamp DESC) INCLUDE (event_type, event_uuid)
    WHERE success AND event_type IN ('realization_allocated', 'realization_freed',
                                     'materialization_allocated', 'materialization_freed')
"""


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("facilities", "0002_event_indexes"),
    ]

    operations = [
        # FacilityQuerySet.current_statuses (CURRENT_STATUS_SQL), Facility.reports.
        migrations.RunSQL(
            REPORTS_INDEX, "DROP INDEX CONCURRENTLY IF EXISTS idx_events_facility_reports"
        ),
        # FacilityQuerySet.usage and usage_summary (ACTIVE_SQL).
        migrations.RunSQL(
            LATEST_INDEX, "DROP INDEX CONCURRENTLY IF EXISTS idx_events_facility_latest"
        ),
        migrations.RunSQL(
            "DROP INDEX CONCURRENTLY IF EXISTS idx_events_facility_alloc", OLD_ALLOCATION_INDEX
        ),
    ]
