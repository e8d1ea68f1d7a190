"""Ingest speed through HTTP with gunicorn on this machine, in one run:

1. single-event POSTs: events/s and p50/p99 latency (goal: >= 1,500/s, p99 < 30 ms);
2. batch POSTs against a raw COPY into the same indexed table (goal: >= 0.75 x COPY),
   and against COPY into `events` with its pre-aggregate triggers, in alternating
   rounds (bench/ingest.py's compare and report).

    .venv/bin/python bench/ingest_http.py [--seconds 15] [--connections 8]
                                          [--events 100000] [--batch 5000] [--single-only]
                                          [--rounds 3] [--workers N] [--threads N]

gunicorn runs with deploy/gunicorn.conf.py, the configuration `make run` and
the container use, so this measures what is deployed; --workers/--threads
try others. Loopback only, a scratch database. The single-event client is
wrk when installed (apt-get install wrk), else Python processes with
keep-alive connections (http.client).
"""

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import _server
import ingest as batch_bench
import psycopg

GUNICORN_CONF = _server.ROOT / "deploy" / "gunicorn.conf.py"


def deployed_gunicorn() -> dict:
    """workers and threads as deploy/gunicorn.conf.py sets them (with this environment)."""
    values: dict = {}
    exec(compile(GUNICORN_CONF.read_text(), str(GUNICORN_CONF), "exec"), values)
    return {"workers": values["workers"], "threads": values["threads"]}


def _sender(port: int, token: str, seconds: float, connections: int, queue) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors: list[int] = []
    stop_at = time.perf_counter() + seconds
    base = datetime.now(UTC) - timedelta(days=1)

    def loop(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = 0
        while time.perf_counter() < stop_at:
            i += 1
            body = json.dumps(
                {
                    "event_uuid": str(uuid.uuid4()),
                    "timestamp": (base + timedelta(microseconds=i)).isoformat(),
                    "event_type": "user_login",
                    "caller": f"user{(n * 7919 + i) % USERS}",
                    "subject": f"user{(n * 7919 + i) % USERS}",
                    "subject_type": "user",
                    "success": i % 13 != 0,
                }
            )
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/events", body, headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                errors.append(0)
                continue
            latencies.append(time.perf_counter() - t0)
            if response.status != 201:
                errors.append(response.status)
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((latencies, errors))


USERS = 2000  # the logins' users: user0 … user1999, in both load generators


def known_users(base: str, token: str) -> None:
    """One successful login of each user, days earlier, before the load.

    A user's first successful event makes the user exist (an entity first
    seen, audit/entity_fold.py), which folds the user in that statement
    (about 1 ms, one entity statement at a time). A portal's users are known
    after its first days (or import_inventory): the load measures the
    steady state, every login by a user the table knows.
    """
    host, port = base.removeprefix("http://").split(":")
    earlier = datetime.now(UTC) - timedelta(days=3)  # before every measured login
    body = json.dumps(
        [
            {
                "event_uuid": str(uuid.uuid4()),
                "timestamp": earlier.isoformat(),
                "event_type": "user_login",
                "caller": f"user{n}",
                "subject": f"user{n}",
                "subject_type": "user",
                "success": True,
            }
            for n in range(USERS)
        ]
    )
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request(
        "POST",
        "/api/v1/events",
        body,
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    response.read()
    if response.status != 201:
        raise RuntimeError(f"priming the users answered {response.status}")


def single_events(base: str, token: str, seconds: float, clients: int, connections: int):
    port = int(base.rsplit(":", 1)[1])
    queue = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_sender, args=(port, token, seconds, connections, queue))
        for _ in range(clients)
    ]
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    latencies, errors = [], []
    for _ in procs:
        lat, err = queue.get()
        latencies += lat
        errors += err
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - start
    return latencies, errors, elapsed


def single_events_wrk(base: str, token: str, seconds: float, connections: int, database_url: str):
    """The same single-event load from wrk (C, with a Lua body generator).

    On a 2-core machine the Python clients above cost about as much CPU as
    the server they measure; wrk costs a fraction of that, so the server's
    own rate shows. Every request is a new event, and the rows stored are
    counted afterwards: a rate is only reported for events really written.
    """
    before = _stored(database_url)
    stamp = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:")
    script = os.path.join(os.path.dirname(__file__), "single_event.lua")
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds:.0f}s",
            "--latency",
            "-s",
            script,
            base,
            "--",
            token,
            stamp,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    fields = dict(item.split("=") for item in line.split()[1:])
    stored = _stored(database_url) - before
    return {
        "requests": int(fields["requests"]),
        "stored": stored,
        "seconds": float(fields["seconds"]),
        "p50": int(fields["p50_us"]) / 1e6,
        "p99": int(fields["p99_us"]) / 1e6,
        "errors": int(fields["errors"]),
    }


def _stored(database_url: str) -> int:
    with psycopg.connect(_server.psycopg_url(database_url)) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def main() -> None:
    deployed = deployed_gunicorn()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--connections", type=int, default=8, help="connections per client")
    parser.add_argument(
        "--workers", type=int, default=deployed["workers"], help="default: deploy/gunicorn.conf.py"
    )
    parser.add_argument(
        "--threads", type=int, default=deployed["threads"], help="default: deploy/gunicorn.conf.py"
    )
    parser.add_argument("--worker-class", help="gunicorn -k (default: the config's)")
    parser.add_argument(
        "--single-only", action="store_true", help="skip the batch and COPY measurements"
    )
    parser.add_argument("--events", type=int, default=100_000, help="events for batch vs COPY")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--batch-clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="batch vs COPY rounds")
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="single-event load generator: wrk when installed (auto), else Python",
    )
    args = parser.parse_args()
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))

    os.environ.setdefault("LOG_LEVEL", "ERROR")
    url = _server.scratch_database("bench_ingest_http")
    token = _server.token(url)
    if not args.single_only:
        _, events = batch_bench.make_batches(args.events, args.batch)
    config = ("--config", str(GUNICORN_CONF))
    if args.worker_class:
        config += ("--worker-class", args.worker_class)
    with _server.gunicorn(url, workers=args.workers, threads=args.threads, extra_args=config) as (
        base,
        _,
    ):
        known_users(base, token)
        if use_wrk:
            wrk = single_events_wrk(base, token, args.seconds, args.clients * args.connections, url)
        else:
            latencies, errors, elapsed = single_events(
                base, token, args.seconds, args.clients, args.connections
            )
        if not args.single_only:
            rounds = [
                batch_bench.compare(url, base, token, events, args.batch, args.batch_clients)
                for _ in range(args.rounds)
            ]

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    as_deployed = (args.workers, args.threads) == (
        deployed["workers"],
        deployed["threads"],
    ) and not args.worker_class
    print(
        f"gunicorn: {args.workers} workers x {args.threads} threads "
        f"({'deploy/gunicorn.conf.py' if as_deployed else 'not as deployed'}); "
        f"{os.cpu_count()} CPUs shared by clients, server and PostgreSQL; load average {load}"
    )
    if use_wrk:
        rate, p50, p99 = wrk["stored"] / wrk["seconds"], wrk["p50"], wrk["p99"]
        print(
            f"single-event POST (wrk, {args.clients * args.connections} connections): "
            f"{rate:,.0f} events/s stored over {wrk['seconds']:.1f} s "
            f"({wrk['requests']:,} requests, {wrk['stored']:,} rows, errors {wrk['errors']}), "
            f"p50 {wrk['p50'] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
        )
    else:
        ok = len(latencies) - len(errors)
        rate, p99 = ok / elapsed, _server.percentile(latencies, 99)
        p50 = _server.percentile(latencies, 50)
        print(
            f"single-event POST (Python clients): {rate:,.0f} events/s over {elapsed:.1f} s "
            f"({args.clients} processes x {args.connections} keep-alive connections), "
            f"p50 {_server.percentile(latencies, 50) * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, errors {len(errors)}"
        )
    single = (
        f"single: {rate:,.0f} events/s ({'meets' if rate >= 1500 else 'misses'} 1,500/s), "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
        f"({'meets' if p99 < 0.03 else 'misses'} 30 ms)"
    )
    if args.single_only:
        print(single)
        return
    summary = batch_bench.report(rounds)
    batch_latencies = [x for r in rounds for x in r.latencies]
    print(
        f"batch POST ({args.batch}/request, {args.batch_clients} clients): "
        f"{summary.http:,.0f} events/s (p50 {_server.percentile(batch_latencies, 50) * 1000:.0f} ms"
        f" per batch; median of {args.rounds} rounds)"
    )
    print(f"raw COPY into the same indexed table: {summary.copy:,.0f} events/s")
    print(
        f"COPY into events with its pre-aggregate triggers: {summary.copy_triggers:,.0f} events/s"
    )
    print(f"batch/COPY: {summary.ratio:.2f} (goal >= 0.75)   {single}")
    print(f"batch/COPY with triggers: {summary.ratio_triggers:.2f}")


if __name__ == "__main__":
    main()
