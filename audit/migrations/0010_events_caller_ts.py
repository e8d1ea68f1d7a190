"""idx_events_caller_ts: one caller's events newest first (the explorer).

Built CONCURRENTLY, so upgrading a live server does not block ingest while
the index is built (a minute or two at 10 million events).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0009_event_counts_daily"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="event",
            index=models.Index(
                fields=["caller", "-timestamp", "-event_uuid"], name="idx_events_caller_ts"
            ),
        ),
    ]
