"""Batch ingest through HTTP against a raw COPY into the same indexed table.

    .venv/bin/python bench/ingest.py [--events 200000] [--batch 10000] [--clients 2]

Posts `batch`-event requests to gunicorn with `clients` concurrent senders and
prints events/s beside the rate of `COPY events_copy FROM STDIN` (a table
created LIKE events INCLUDING ALL, so it has the same eight indexes), for the
same rows, in the same run, on the same server. Goal: HTTP >= 0.5 x COPY.
"""

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

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


def copy_rate(url: str, events: list[dict]) -> float:
    with psycopg.connect(_server.psycopg_url(url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS events_copy")
        conn.execute("CREATE TABLE events_copy (LIKE events INCLUDING ALL)")
        start = time.perf_counter()
        with conn.cursor().copy(
            "COPY events_copy (event_uuid, timestamp, event_type, caller, subject, subject_type,"
            " target, success, error_message, payload) FROM STDIN"
        ) as copy:
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
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE events_copy")
    return len(events) / elapsed


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    url = _server.scratch_database("bench_ingest")
    batches, events = make_batches(args.events, args.batch)
    token = _server.token(url)
    with _server.gunicorn(url, workers=args.workers) as (base, _):
        rate, latencies = http_rate(base, token, batches, args.clients)
    copy = copy_rate(url, events)
    print(
        f"events: {args.events}, batch {args.batch}, {args.clients} clients, "
        f"{args.workers} gunicorn workers"
    )
    print(
        f"HTTP batch ingest: {rate:,.0f} events/s "
        f"(p50 {_server.percentile(latencies, 50) * 1000:.0f} ms, "
        f"p99 {_server.percentile(latencies, 99) * 1000:.0f} ms per batch)"
    )
    print(f"raw COPY:          {copy:,.0f} events/s")
    print(f"ratio HTTP/COPY:   {rate / copy:.2f}  (goal >= 0.50)")


if __name__ == "__main__":
    main()
