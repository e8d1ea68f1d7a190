"""Pre-aggregates for the top users, projects and organizations.

event_counts_daily_caller, event_counts_daily_project and org_memberships
(audit.models DailyCallerCount, DailyProjectCount, OrgMembership) are
kept by the triggers on `events` (audit/aggregates.py).
"""

from django.db import migrations, models

# Rows for the events stored before are built after `migrate` by
# audit.aggregates.install, with every other pre-aggregate.


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
    ]
