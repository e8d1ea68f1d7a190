"""The counters of the rate limits and the login throttle (sphere_stats/ratelimit.py).

In PostgreSQL rather than the cache, so that every gunicorn worker and every
web replica counts against one limit whether or not Redis is configured: one
atomic upsert per request and window. UNLOGGED: a counter is worth no WAL
write, nor a wait for its flush at each commit, and one lost in a crash only
resets a window. No model: only ratelimit.py's SQL reads and writes it.
"""

from django.db import migrations

CREATE = """
CREATE UNLOGGED TABLE sphere_stats_rate_counter (
    -- What is counted and in which window: rl:ingest:<token>:<window>,
    -- login:u:<username>:<address>:<window>, login:ip:<address>:<window>.
    key text PRIMARY KEY,
    hits integer NOT NULL,
    expires_at timestamptz NOT NULL
);
-- The prune of counters whose window has ended (ratelimit._prune).
CREATE INDEX sphere_stats_rate_counter_expires ON sphere_stats_rate_counter (expires_at);
"""


class Migration(migrations.Migration):
    dependencies = [("sphere_stats", "0002_role_groups")]

    operations = [
        migrations.RunSQL(CREATE, reverse_sql="DROP TABLE sphere_stats_rate_counter;"),
    ]
