"""Batch ingest through HTTP against a raw COPY into the same indexed table.

    .venv/bin/python bench/ingest.py [--events 200000] [--batch 10000] [--clients 2]

Posts `batch`-event requests to gunicorn with `clients` concurrent senders and
prints events/s beside the rate of `COPY events_copy FROM STDIN` (a table
created LIKE events INCLUDING ALL: the same indexes, no triggers), for the
same rows, in the same run, on the same server. Goal: HTTP >= 0.75 x COPY.

Ingest also keeps the pre-aggregates (the triggers on `events`), which the raw
COPY does not: each round also times COPY into `events` itself, `batch` rows a
statement, so that the triggers fire, and prints both ratios. The rounds
alternate the three, so that a load from elsewhere on the machine falls on
each alike; the summary is each figure's median.

--insert-trigger shows what the pre-aggregates cost (on the scratch database
only): `counts` keeps the count tables and leaves out the entity fold (and the
facility runs), `queue` only copies each new uuid into a table of its own (the
least a deferred design would write), `none` drops the insert trigger.
"""

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import _server  # sets sys.path so the project imports below resolve
import django
import psycopg
import requests


def make_batches(n: int, size: int) -> tuple[list[bytes], list[dict]]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sphere_stats.settings")
    django.setup()
    from demo.history import generate

    events = list(generate(n, days=365, seed=11))
    return [json.dumps(events[i : i + size]).encode() for i in range(0, n, size)], events


COPY_SQL = (
    "COPY {table} (event_uuid, timestamp, event_type, caller, subject, subject_type, target,"
    " success, error_message, payload) FROM STDIN"
)


def _copy(conn: psycopg.Connection, table: str, events: list[dict]) -> None:
    with conn.cursor().copy(COPY_SQL.format(table=table)) as copy:
        for e in events:
            copy.write_row(
                (
                    e["event_uuid"],
                    e["timestamp"],
                    e["event_type"],
                    e["caller"],
                    e["subject"],
                    e["subject_type"],
                    e["target"],
                    e["success"],
                    e["error_message"],
                    json.dumps(e["payload"]),
                )
            )


def copy_rate(url: str, events: list[dict]) -> float:
    """One COPY of every event into a new table LIKE events: its indexes, no triggers."""
    with psycopg.connect(_server.psycopg_url(url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS events_copy")
        conn.execute("CREATE TABLE events_copy (LIKE events INCLUDING ALL)")
        start = time.perf_counter()
        _copy(conn, "events_copy", events)
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE events_copy")
    return len(events) / elapsed


def copy_rate_with_triggers(url: str, events: list[dict], batch: int) -> float:
    """COPY into `events` itself, `batch` rows a statement as the POSTs send
    them, so that its pre-aggregate triggers fire as they do for ingest.
    `events` is emptied before and after (a scratch database)."""
    empty_events(url)
    with psycopg.connect(_server.psycopg_url(url), autocommit=True) as conn:
        start = time.perf_counter()
        for i in range(0, len(events), batch):
            _copy(conn, "events", events[i : i + batch])
        elapsed = time.perf_counter() - start
    empty_events(url)
    return len(events) / elapsed


def lighter_insert_trigger(url: str, variant: str) -> None:
    """Replace the insert trigger on the scratch database (--insert-trigger)."""
    from audit import triggers
    from audit.aggregates import AGGREGATES, ENTITIES, FACILITY_RUNS

    if variant == "counts":
        upserts = [
            sql
            for a in AGGREGATES
            if a not in (ENTITIES, FACILITY_RUNS)
            for sql in a.apply_sql("new_rows", 1)
        ]
        ctes = ", ".join(f"upsert{i} AS ({sql})" for i, sql in enumerate(upserts))
        body = [f"WITH {ctes} SELECT NULL::text[] INTO kinds"]
    else:
        body = ["INSERT INTO queued_uuids SELECT event_uuid FROM new_rows"]
    with psycopg.connect(_server.psycopg_url(url), autocommit=True) as conn:
        if variant == "none":
            conn.execute("DROP TRIGGER sphere_stats_events_insert ON events")
            return
        conn.execute("CREATE TABLE IF NOT EXISTS queued_uuids (event_uuid uuid NOT NULL)")
        conn.execute(triggers.trigger_sql("INSERT", "REFERENCING NEW TABLE AS new_rows", body))


def empty_events(url: str) -> None:
    """No events and no pre-aggregates (TRUNCATE's trigger empties them)."""
    with psycopg.connect(_server.psycopg_url(url), autocommit=True) as conn:
        conn.execute("TRUNCATE events")


def http_rate(base: str, token: str, batches: list[bytes], clients: int) -> tuple[float, list]:
    session_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []

    def send(body: bytes) -> int:
        with requests.Session() as s:
            t0 = time.perf_counter()
            r = s.post(f"{base}/api/v1/events", data=body, headers=session_headers, timeout=120)
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            return r.json()["accepted"]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        accepted = sum(pool.map(send, batches))
    elapsed = time.perf_counter() - start
    return accepted / elapsed, latencies


class Round(NamedTuple):
    http: float
    copy: float
    copy_triggers: float
    latencies: list[float]


def compare(url: str, base: str, token: str, events: list[dict], batch: int, clients: int):
    """One round: the POSTs, the raw COPY and the COPY with triggers, each
    into an empty `events` (or table), in that order."""
    batches = [json.dumps(events[i : i + batch]).encode() for i in range(0, len(events), batch)]
    empty_events(url)
    http, latencies = http_rate(base, token, batches, clients)
    return Round(
        http, copy_rate(url, events), copy_rate_with_triggers(url, events, batch), latencies
    )


class Summary(NamedTuple):
    """Each figure's median over the rounds; the ratios are the medians of
    each round's own, its three figures measured minutes apart at most."""

    http: float
    copy: float
    copy_triggers: float
    ratio: float
    ratio_triggers: float


def report(rounds: list[Round], goal: float = 0.75) -> Summary:
    """Print each round and what the triggers cost COPY; the medians."""
    for n, r in enumerate(rounds, start=1):
        print(
            f"round {n}: HTTP {r.http:,.0f}, raw COPY {r.copy:,.0f}, COPY with triggers "
            f"{r.copy_triggers:,.0f} events/s: HTTP/COPY {r.http / r.copy:.2f}, "
            f"HTTP/COPY with triggers {r.http / r.copy_triggers:.2f}"
        )
    summary = Summary(
        statistics.median(r.http for r in rounds),
        statistics.median(r.copy for r in rounds),
        statistics.median(r.copy_triggers for r in rounds),
        statistics.median(r.http / r.copy for r in rounds),
        statistics.median(r.http / r.copy_triggers for r in rounds),
    )
    cost = statistics.median(1 - r.copy_triggers / r.copy for r in rounds)
    print(
        f"the triggers cost COPY {cost:.0%} of its rate; HTTP/COPY per round "
        f"{' / '.join(f'{r.http / r.copy:.2f}' for r in rounds)} (goal {goal:.2f})"
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--insert-trigger", choices=("all", "counts", "queue", "none"), default="all"
    )
    args = parser.parse_args()

    url = _server.scratch_database("bench_ingest")
    _, events = make_batches(args.events, args.batch)
    if args.insert_trigger != "all":
        lighter_insert_trigger(url, args.insert_trigger)
    token = _server.token(url)
    with _server.gunicorn(url, workers=args.workers) as (base, _):
        rounds = [
            compare(url, base, token, events, args.batch, args.clients) for _ in range(args.rounds)
        ]
    print(
        f"events: {args.events}, batch {args.batch}, {args.clients} clients, "
        f"{args.workers} gunicorn workers, insert trigger: {args.insert_trigger}"
    )
    summary = report(rounds)
    latencies = [x for r in rounds for x in r.latencies]
    print(
        f"HTTP batch ingest: {summary.http:,.0f} events/s "
        f"(p50 {_server.percentile(latencies, 50) * 1000:.0f} ms, "
        f"p99 {_server.percentile(latencies, 99) * 1000:.0f} ms per batch)"
    )
    print(f"raw COPY:          {summary.copy:,.0f} events/s")
    print(f"COPY, triggers:    {summary.copy_triggers:,.0f} events/s")
    print(f"ratio HTTP/COPY:   {summary.ratio:.2f}  (goal >= 0.75)")
    print(f"ratio HTTP/COPY with triggers: {summary.ratio_triggers:.2f}")


if __name__ == "__main__":
    main()
