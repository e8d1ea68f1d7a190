"""Storage per million events, indexes and pre-aggregates included (issue 18, goal 5).

    .venv/bin/python bench/table_size.py [--events 1000000]
    .venv/bin/python bench/table_size.py --reuse bench_dash   # an already loaded database
    .venv/bin/python bench/table_size.py --reindex            # also after REINDEX TABLE events

Loads `seed_demo --events N` into a scratch database (`--database`, fresh),
through the ingest path as the API stores a batch (audit.ingest.store, the
triggers filling the pre-aggregates), and prints, per million events, the
size of every relation of the store as ingest left it: `events` (heap,
TOAST, each index), each pre-aggregate table (heap, TOAST, each index),
and their sum beside the 450 MB limit. With --reindex it then rebuilds the
indexes of `events` (REINDEX TABLE, as after a large import) and prints
the sizes again, with the time the rebuild took.
"""

import argparse
import time

import _server
import psycopg

LIMIT_MB = 450
# Read from the database, so that a pre-aggregate declared later is counted
# too: every declared one (aggregate_definitions) and the one derived table
# the declarations keep without a definition row of its own.
STORE_TABLES_SQL = """
SELECT t FROM (
    SELECT 'events' AS t UNION SELECT 'entity_intervals' UNION SELECT name FROM aggregate_definitions
) AS s WHERE to_regclass(t) IS NOT NULL
ORDER BY pg_total_relation_size(t::regclass) DESC
"""
RELATION_SQL = """
SELECT pg_relation_size(c.oid),
       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
       pg_total_relation_size(c.oid)
FROM pg_class AS c WHERE c.oid = %(table)s::regclass
"""
INDEXES_SQL = """
SELECT i.relname, pg_relation_size(i.oid)
FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid
WHERE x.indrelid = %(table)s::regclass ORDER BY 2 DESC, 1
"""


def mib(size: float) -> str:
    return f"{size / 2**20:7.1f}"


def report(conn: psycopg.Connection, per_million: float) -> float:
    """Print every relation of the store, per million events; the store's
    total per million events, in bytes."""
    store = 0.0
    for (table,) in conn.execute(STORE_TABLES_SQL).fetchall():
        heap, toast, total = conn.execute(RELATION_SQL, {"table": table}).fetchone()
        indexes = conn.execute(INDEXES_SQL, {"table": table}).fetchall()
        store += total * per_million
        print(
            f"{table:28} {mib(total * per_million)} MiB per million events: heap "
            f"{mib(heap * per_million).strip()}, TOAST {mib(toast * per_million).strip()}, "
            f"{len(indexes)} indexes {mib(sum(s for _, s in indexes) * per_million).strip()}"
        )
        for name, size in indexes:
            print(f"    index {name:34} {mib(size * per_million)} MiB")
    print(
        f"store (events + pre-aggregates): {store / 2**20:.1f} MiB = {store / 1e6:.0f} MB "
        f"per million events; limit {LIMIT_MB} MB, ratio {store / 1e6 / LIMIT_MB:.2f}"
    )
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument(
        "--database", default="bench_table_size", help="the scratch database (made afresh)"
    )
    parser.add_argument("--reuse", metavar="DATABASE", help="measure this loaded database")
    parser.add_argument(
        "--reindex", action="store_true", help="then REINDEX TABLE events and measure again"
    )
    args = parser.parse_args()
    url = _server.scratch_database(args.reuse or args.database, fresh=not args.reuse)
    start = time.perf_counter()
    if not args.reuse:
        _server.manage(
            "seed_demo", "--events", str(args.events), "--days", str(args.days), database_url=url
        )
    elapsed = time.perf_counter() - start
    with psycopg.connect(_server.psycopg_url(url), autocommit=True) as conn:
        # What autovacuum would do soon after a load; it shrinks no index.
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
