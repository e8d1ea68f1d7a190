"""idx_counts_hourly_type dropped: no query reads it. The stats read
event_counts_hourly by ranges of its key (bucket first), also when they
count one type (the logins chart, the explorer's exact count of a type): a
whole hour holds a few dozen rows of every type, and the planner took the key
for each of them. It cost 9.4 MiB per million events and an entry per new
hourly row. Dropped CONCURRENTLY, so that ingest goes on meanwhile.
"""

from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY

    dependencies = [
        ('audit', '0037_caller_day_checkpoints'),
    ]

    operations = [
        RemoveIndexConcurrently(
            model_name='hourlycount',
            name='idx_counts_hourly_type',
        ),
    ]
