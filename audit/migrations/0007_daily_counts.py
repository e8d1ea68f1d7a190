"""Pre-aggregates for the top users, projects and organizations.

event_counts_daily_caller, event_counts_daily_project and org_memberships
(audit.models DailyCallerCount, DailyProjectCount, OrgMembership) are
written by the ingest statement from now on; here they are filled from the
events stored before. The SELECTs are those of audit/aggregates.py as of
this migration, spelled out so that later changes there cannot change it.
Rows go in in day order, so that a window's days lie on adjacent pages.
"""

from django.db import migrations, models

BACKFILL = """
INSERT INTO event_counts_daily_caller (day, caller, events, logins, failures)
SELECT date_trunc('day', timestamp, 'UTC'), caller, count(*),
       count(*) FILTER (WHERE event_type = 'user_login'),
       count(*) FILTER (WHERE NOT success)
FROM events GROUP BY 1, 2 ORDER BY 1, 2;

INSERT INTO event_counts_daily_project
    (day, project, events, experiments, realizations, materializations)
SELECT date_trunc('day', timestamp, 'UTC'),
       coalesce(payload->>'project', CASE WHEN subject_type = 'project' THEN subject END),
       count(*),
       count(*) FILTER (WHERE event_type = 'experiment_created' AND success),
       count(*) FILTER (WHERE event_type = 'realization_allocated' AND success),
       count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success)
FROM events WHERE payload->>'project' IS NOT NULL OR subject_type = 'project'
GROUP BY 1, 2 ORDER BY 1, 2;

INSERT INTO org_memberships (org, kind, member, last_at, last_uuid, removed)
SELECT DISTINCT ON (subject, payload->>'kind', target) subject, payload->>'kind', target,
       timestamp, event_uuid, event_type = 'org_member_deleted'
FROM events
WHERE event_type IN ('org_member_added', 'org_member_updated', 'org_member_deleted') AND success
ORDER BY subject, payload->>'kind', target, timestamp DESC, event_uuid DESC;

ANALYZE event_counts_daily_caller;
ANALYZE event_counts_daily_project;
ANALYZE org_memberships;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0006_error_trigram_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="DailyCallerCount",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "day",
                        "caller",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("day", models.DateTimeField()),
                ("caller", models.TextField()),
                ("events", models.BigIntegerField()),
                ("logins", models.BigIntegerField()),
                ("failures", models.BigIntegerField()),
            ],
            options={
                "db_table": "event_counts_daily_caller",
            },
        ),
        migrations.CreateModel(
            name="DailyProjectCount",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "day",
                        "project",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("day", models.DateTimeField()),
                ("project", models.TextField()),
                ("events", models.BigIntegerField()),
                ("experiments", models.BigIntegerField()),
                ("realizations", models.BigIntegerField()),
                ("materializations", models.BigIntegerField()),
            ],
            options={
                "db_table": "event_counts_daily_project",
            },
        ),
        migrations.CreateModel(
            name="OrgMembership",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("org", models.TextField()),
                ("kind", models.TextField(null=True)),
                ("member", models.TextField(null=True)),
                ("last_at", models.DateTimeField()),
                ("last_uuid", models.UUIDField()),
                ("removed", models.BooleanField()),
            ],
            options={
                "db_table": "org_memberships",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("org", "kind", "member"),
                        name="org_memberships_key",
                        nulls_distinct=False,
                    )
                ],
            },
        ),
        # The tables go with the reverse of CreateModel, their rows with them.
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
