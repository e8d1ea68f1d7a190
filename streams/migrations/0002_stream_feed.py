"""The stream feed: every row inserted into `events` while a stream is
active, in commit-safe order (streams/sender.py reads it).

- stream_feed(seq, xid, event_uuid): one row per inserted event, with the
  inserting transaction's id. Its primary key (xid, seq) is the order the
  senders read in and the range the prune deletes.
- streams_feed_events_insert: a statement-level AFTER INSERT trigger on
  `events` (any writer: ingest, the portal's own SQL, psql, COPY) that adds
  the new rows in timestamp order, only when some destination is active, so
  ingest pays nothing while no stream is configured. SECURITY DEFINER like
  audit's triggers: the portal's role needs no rights on these tables.
"""

from django.db import migrations

FEED_SQL = """
CREATE TABLE stream_feed (
    seq bigserial NOT NULL,
    xid xid8 NOT NULL,
    event_uuid uuid NOT NULL,
    CONSTRAINT stream_feed_pkey PRIMARY KEY (xid, seq)
);
CREATE FUNCTION streams_feed_events_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM stream_destinations WHERE active) THEN
        INSERT INTO stream_feed (xid, event_uuid)
        SELECT pg_current_xact_id(), event_uuid FROM new_rows
        ORDER BY timestamp, event_uuid;
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER streams_feed_events_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION streams_feed_events_insert();
"""

DROP_SQL = """
DROP TRIGGER IF EXISTS streams_feed_events_insert ON events;
DROP FUNCTION IF EXISTS streams_feed_events_insert();
DROP TABLE IF EXISTS stream_feed;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0001_initial"),
        ("audit", "0018_hourly_quarter_counts"),
    ]

    operations = [migrations.RunSQL(FEED_SQL, DROP_SQL)]
