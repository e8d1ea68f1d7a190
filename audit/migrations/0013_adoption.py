"""Triggers on `events` keep every pre-aggregate; entities that predate the log.

- aggregate_definitions: the digest of each pre-aggregate's declaration as
  last built. The triggers themselves and the rows of every pre-aggregate
  are (re)made after `migrate` by audit.aggregates.install (audit/apps.py),
  which rebuilds each pre-aggregate whose declaration is new or changed.
- entities.predates_log: the entity has no creation event (first seen in a
  login, a membership, an inventory).
- idx_events_lifecycle covers the new lifecycle types (organizations and
  projects activated, frozen, unfrozen, declined; *_catalogued). Built under
  a temporary name and swapped in CONCURRENTLY (hence atomic = False), so
  that migrating a live portal database never blocks its writers.
"""

from django.db import migrations, models

LIFECYCLE_TYPES = (
    'user_created', 'user_activated', 'user_frozen', 'user_unfrozen', 'user_declined',
    'user_deleted', 'user_catalogued', 'org_created', 'org_activated', 'org_frozen',
    'org_unfrozen', 'org_declined', 'org_deleted', 'org_catalogued', 'project_created',
    'project_activated', 'project_frozen', 'project_unfrozen', 'project_declined',
    'project_deleted', 'project_catalogued', 'experiment_created', 'experiment_deleted',
    'experiment_catalogued', 'realization_allocated', 'realization_freed',
    'materialization_allocated', 'materialization_freed',
)
TYPES = ", ".join(f"'{t}'" for t in LIFECYCLE_TYPES)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('audit', '0012_covering_user_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='AggregateDefinition',
            fields=[
                ('name', models.TextField(primary_key=True, serialize=False)),
                ('digest', models.TextField()),
                ('built_at', models.DateTimeField()),
            ],
            options={
                'db_table': 'aggregate_definitions',
            },
        ),
        migrations.AddField(
            model_name='entity',
            name='predates_log',
            field=models.BooleanField(default=False),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX CONCURRENTLY IF EXISTS idx_events_lifecycle_new",
                    migrations.RunSQL.noop,
                ),
                migrations.RunSQL(
                    "CREATE INDEX CONCURRENTLY idx_events_lifecycle_new "
                    "ON events (subject_type, subject, timestamp) "
                    f"WHERE event_type IN ({TYPES}) AND success",
                    migrations.RunSQL.noop,
                ),
                migrations.RunSQL(
                    "DROP INDEX CONCURRENTLY IF EXISTS idx_events_lifecycle",
                    migrations.RunSQL.noop,
                ),
                migrations.RunSQL(
                    "ALTER INDEX idx_events_lifecycle_new RENAME TO idx_events_lifecycle",
                    migrations.RunSQL.noop,
                ),
            ],
            state_operations=[
                migrations.RemoveIndex(
                    model_name='event',
                    name='idx_events_lifecycle',
                ),
                migrations.AddIndex(
                    model_name='event',
                    index=models.Index(
                        condition=models.Q(('event_type__in', LIFECYCLE_TYPES), ('success', True)),
                        fields=['subject_type', 'subject', 'timestamp'],
                        name='idx_events_lifecycle',
                    ),
                ),
            ],
        ),
    ]
