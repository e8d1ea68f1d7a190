"""Table size per million events, for docs/scaling.md.

    .venv/bin/python bench/table_size.py [--events 1000000]
    .venv/bin/python bench/table_size.py --reuse bench_dash   # an already loaded database
    .venv/bin/python bench/table_size.py --reindex            # also after REINDEX TABLE events

Loads `seed_demo --events N` into a scratch database and prints the size of
`events` (heap, TOAST and every index) and of the pre-aggregates, per
million events, and the load rate through the ingest path. With --reindex it
then rebuilds the indexes of `events` (REINDEX TABLE, as after a large
import) and prints the sizes again, with the time the rebuild took.
"""

import argparse
import time

import _server
import psycopg

TABLES = (
    "events",
    "event_counts_hourly",
    "event_counts_daily",
    "event_counts_daily_caller",
    "event_counts_daily_project",
    "login_users_hourly",
    "org_memberships",
    "entities",
    "entity_intervals",
    "entity_changes_hourly",
)


def report(conn: psycopg.Connection, per_million: float) -> None:
    for table in TABLES:
        total, heap, indexes = conn.execute(
            "SELECT pg_total_relation_size(%s), pg_table_size(%s), pg_indexes_size(%s)",
            [table, table, table],
        ).fetchone()
        print(
            f"{table:22} total {total / 2**20:8.1f} MiB  (table+TOAST "
            f"{heap / 2**20:7.1f}, indexes {indexes / 2**20:7.1f})  "
            f"= {total * per_million / 2**20:7.1f} MiB per million events"
        )
    for name, size in conn.execute(
        "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
        "WHERE relname = 'events' ORDER BY 2 DESC"
    ):
        print(f"  index {name:32} {size * per_million / 2**20:7.1f} MiB per million")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--reuse", metavar="DATABASE", help="measure this loaded database")
    parser.add_argument(
        "--reindex", action="store_true", help="then REINDEX TABLE events and measure again"
    )
    args = parser.parse_args()
    url = _server.scratch_database(args.reuse or "bench_table_size", fresh=not args.reuse)
    start = time.perf_counter()
    if not args.reuse:
        _server.manage(
            "seed_demo", "--events", str(args.events), "--days", str(args.days), database_url=url
        )
    elapsed = time.perf_counter() - start
    with psycopg.connect(_server.psycopg_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        rows = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        per_million = 1_000_000 / rows
        if not args.reuse:
            print(
                f"{rows:,} events loaded by seed_demo in {elapsed:.0f} s "
                f"({rows / elapsed:,.0f} events/s through validation + ingest)"
            )
        report(conn, per_million)
        if args.reindex:
            start = time.perf_counter()
            conn.execute("REINDEX TABLE events")
            print(f"\nREINDEX TABLE events: {time.perf_counter() - start:.0f} s; afterwards:")
            report(conn, per_million)


if __name__ == "__main__":
    main()
