"""Audit-stream throughput: N events streamed to a receiver on loopback,
against the NDJSON export of the same rows.

    .venv/bin/python bench/streams.py --events 200000
    .venv/bin/python bench/streams.py --database-url postgresql://postgres@127.0.0.1:5432/streamsb \
        --events 200000 --batch-size 1000

1. Empties `events` in the bench database (its own: never point it at one
   whose rows matter), creates one active destination (so the feed trigger
   writes), and inserts N events by SQL, 50,000 a statement, as the portal
   would; the pre-aggregate triggers run as usual.
2. Streams them: the worker's send function (streams/sender.py) in a loop
   until the destination's cursor has passed them all, posting batches of
   --batch-size NDJSON lines to tests/receivers.py's WebhookReceiver
   (signature checked, bodies kept in memory). Prints events/s, MB/s and
   batches; the feed is pruned as it goes.
3. Exports the same rows as NDJSON through audit.export (what
   `manage.py export_events --format ndjson` writes), read in this process,
   and prints events/s and the ratio.
"""

import argparse
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `bench` and `tests` importable when run as a script

CHUNK = 50_000
LOAD_SQL = """
INSERT INTO events (event_uuid, timestamp, event_type, caller, subject, subject_type,
                    target, success, error_message, payload)
SELECT gen_random_uuid(), now() - (i * interval '1 second'),
       (ARRAY['user_login', 'org_member_added', 'experiment_created', 'facility_status'])[1 + i %% 4],
       'user' || (i %% 500), 'user' || (i %% 500), 'user', NULL, i %% 17 <> 0,
       CASE WHEN i %% 17 = 0 THEN 'denied' END,
       jsonb_build_object('project', 'p' || (i %% 50), 'kind', 'usermember')
FROM generate_series(%(lo)s, %(hi)s - 1) AS i
"""


def ensure_database(url: str) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def load(url: str, events: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE events, stream_feed")
        for lo in range(0, events, CHUNK):
            started = time.perf_counter()
            conn.execute(LOAD_SQL, {"lo": lo, "hi": min(events, lo + CHUNK)})
            took = time.perf_counter() - started
            print(f"  loaded {min(events, lo + CHUNK):,} events ({took:.1f}s)", flush=True)
        conn.execute("VACUUM ANALYZE events")
        conn.execute("VACUUM ANALYZE stream_feed")


def stream(destination, receiver) -> tuple[float, int]:
    from django.utils import timezone

    from streams.sender import send_all

    started = time.perf_counter()
    while True:
        send_all(timezone.now(), seconds=3600)
        destination.refresh_from_db()
        if destination.last_error:
            raise SystemExit(f"the stream failed: {destination.last_error}")
        if destination.waiting() == 0:
            break
    seconds = time.perf_counter() - started
    return seconds, sum(len(r.body) for r in receiver.received)


def export() -> tuple[float, int, int]:
    from audit.export import Export
    from audit.models import Event

    started = time.perf_counter()
    size = lines = 0
    for chunk in Export(Event.objects.all(), format="ndjson").body():
        size += len(chunk)
        lines += chunk.count(b"\n")
    return time.perf_counter() - started, size, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/streamsb"
        ),
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000, help="STREAM_BATCH_SIZE")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = args.database_url
    os.environ["STREAM_BATCH_SIZE"] = str(args.batch_size)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sphere_stats.settings")
    ensure_database(args.database_url)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)

    from streams.models import StreamDestination
    from tests.receivers import WebhookReceiver

    receiver = WebhookReceiver(secret="bench-secret").start()
    try:
        StreamDestination.objects.all().delete()
        destination = StreamDestination.objects.create(
            name="bench", url=receiver.url, secret=receiver.secret
        )
        print(f"Loading {args.events:,} events into {urlparse(args.database_url).path[1:]} …")
        load(args.database_url, args.events)

        seconds, size = stream(destination, receiver)
        destination.refresh_from_db()
        sent = destination.events_sent
        print(
            f"stream: {sent:,} events in {seconds:.2f}s = {sent / seconds:,.0f} events/s, "
            f"{size / seconds / 1e6:.1f} MB/s, {len(receiver.received)} batches of "
            f"{args.batch_size} (signed POSTs to 127.0.0.1)"
        )
        export_seconds, export_size, lines = export()
        print(
            f"export (ndjson, as export_events): {lines:,} events in {export_seconds:.2f}s = "
            f"{lines / export_seconds:,.0f} events/s, {export_size / export_seconds / 1e6:.1f} MB/s"
        )
        print(f"stream / export speed: {(sent / seconds) / (lines / export_seconds):.2f}")
        print(f"same bytes: {size == export_size}")
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()
