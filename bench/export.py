"""Export and explorer speed, against a scratch database.

    .venv/bin/python bench/export.py --events 5000000
    .venv/bin/python bench/export.py --database-url postgresql://postgres@127.0.0.1:5432/bench_export \
        --events 1000000 --requests 20

1. Loads N events: `seed_demo` writes a realistic base history (--base events
   through the ingest path), then SQL copies it with fresh uuids and jittered
   timestamps up to N (seed_demo alone writes ~3k events/s), and the hourly
   pre-aggregate is rebuilt from the table.
2. Starts gunicorn (one sync worker) on 127.0.0.1 and streams
   GET /api/v1/events/export?format=csv (the explorer's writer), then runs
   psql's `COPY (SELECT … ORDER BY …) TO STDOUT WITH CSV` of the same rows;
   both are read by this process and timed (the export through curl, as
   psql a C client writing to a pipe; --client requests reads it in Python).
   Prints rows/s, MB/s, the ratio, the time to the first byte, the CPU
   seconds of each side (the two PostgreSQL backends, the server worker, the
   clients) with the ratios they imply, and the worker's peak RSS (VmHWM).

   --repeat runs the pair that many times, alternating, and prints each
   ratio and their spread (the machine's other load moves both).
3. Times the explorer page (/events/) for each single filter: p50/p95 over
   --requests requests after one warm-up, plus its second (older) page
   (--skip-explorer leaves it out).

Goals (issue 18): HTTP CSV at least 0.8 of psql's speed, peak RSS < 200 MB;
(issue 5) explorer p95 <= 50 ms per single filter at 10M events.
"""

import argparse
import contextlib
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
sys.path.insert(0, str(ROOT))  # `bench` importable when run as a script

from bench.servers import gunicorn  # noqa: E402


def manage(env: dict, *args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def ensure_database(url: str) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def load(url: str, env: dict, events: int, base: int, days: int) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    if have < min(base, events):
        manage(env, "seed_demo", "--events", str(min(base, events) - have), "--days", str(days))
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        grew = False
        while have < events:
            add = min(have, events - have)
            started = time.perf_counter()
            conn.execute(
                """
                INSERT INTO events (event_uuid, timestamp, event_type, caller, subject,
                                    subject_type, target, success, error_message, payload)
                SELECT gen_random_uuid(), timestamp - random() * interval '12 hours',
                       event_type, caller, subject, subject_type, target, success,
                       error_message, payload
                FROM events LIMIT %s
                """,
                [add],
            )
            have += add
            grew = True
            print(f"  loaded {have:,} events ({time.perf_counter() - started:.0f}s)", flush=True)
        if grew:
            # The copies bypassed ingest: every counting pre-aggregate (hourly,
            # daily, memberships) is rebuilt from the table.
            manage(env, "rebuild_aggregates", "--counts-only")
        for table in (
            "events",
            "event_counts_hourly",
            "event_counts_daily",
            "event_counts_daily_caller",
            "event_counts_daily_project",
            "org_memberships",
        ):
            conn.execute(f"VACUUM ANALYZE {table}")
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def worker_pid(master: int) -> int:
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


class BackendCpu:
    """CPU seconds of the PostgreSQL backend running a COPY that starts with
    `prefix`, from the first chunk received to the last: wall times move with
    the machine's other load, the CPU each side needs much less."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.pid: int | None = None
        self.first = self.last = 0.0

    def sample(self) -> None:
        if self.pid is None:
            with psycopg.connect(self.url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND query LIKE %s AND pid <> pg_backend_pid()",
                    [self.prefix + "%"],
                ).fetchone()
            if row is None:
                return
            self.pid = row[0]
            self.first = cpu_seconds(self.pid)
        with contextlib.suppress(FileNotFoundError):  # it ended with its connection
            self.last = cpu_seconds(self.pid)

    @property
    def seconds(self) -> float:
        return self.last - self.first


def stream(response_chunks, backend: BackendCpu) -> tuple[int, float, float]:
    """(bytes, seconds, seconds to the first byte)."""
    started = time.perf_counter()
    first = None
    total = 0
    for chunk in response_chunks:
        if first is None:
            first = time.perf_counter() - started
        total += len(chunk)
        backend.sample()
    return total, time.perf_counter() - started, first or 0.0


def read_pipe(proc: subprocess.Popen, backend: BackendCpu) -> tuple[int, float, float, float]:
    """stream() of a child's stdout, and the child's own CPU seconds."""
    result = stream(iter(lambda: proc.stdout.read(1024 * 1024), b""), backend)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
    return *result, usage.ru_utime + usage.ru_stime


def http_export(base_url: str, token: str, client: str, backend: BackendCpu):
    if client == "curl":
        # A C client writing to a pipe that this process reads, as psql does
        # below: the two sides then cost the reader the same.
        proc = subprocess.Popen(
            [
                "curl", "-sS", "--fail", "-H", f"Authorization: Bearer {token}",
                "-H", "Accept-Encoding: identity", f"{base_url}/api/v1/events/export?format=csv",
            ],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        return read_pipe(proc, backend)
    with requests.get(
        f"{base_url}/api/v1/events/export?format=csv",
        headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"},
        stream=True,
        timeout=3600,
    ) as response:
        response.raise_for_status()
        return *stream(response.raw.stream(1024 * 1024, decode_content=False), backend), 0.0


PSQL_COPY = (
    "COPY (SELECT * FROM events ORDER BY timestamp DESC, event_uuid DESC) TO STDOUT WITH CSV HEADER"
)


def psql_copy(url: str, backend: BackendCpu):
    proc = subprocess.Popen(["psql", url, "-X", "-q", "-c", PSQL_COPY], stdout=subprocess.PIPE)
    return read_pipe(proc, backend)


def login(base_url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base_url}/accounts/login/", timeout=30)
    session.post(
        f"{base_url}/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{base_url}/accounts/login/"},
        timeout=30,
    ).raise_for_status()
    return session


def samples(url: str) -> dict[str, str]:
    """Filter values that exist in the data, of middling frequency."""
    with psycopg.connect(url) as conn:

        def one(sql: str) -> str:
            row = conn.execute(sql).fetchone()
            return row[0] if row else ""

        return {
            # The busiest caller below a tenth of all events: a person, not a
            # service account, with too many rows to sort on every page.
            "caller": one(
                "SELECT caller FROM (SELECT caller, count(*) AS n, sum(count(*)) OVER () AS total"
                " FROM events WHERE caller <> '' GROUP BY 1) AS c WHERE n < total / 10"
                " ORDER BY n DESC LIMIT 1"
            ),
            "project": one(
                "SELECT subject FROM events TABLESAMPLE SYSTEM (1) "
                "WHERE subject_type = 'project' LIMIT 1"
            ),
            "target": one("SELECT target FROM events WHERE subject_type = 'realization' LIMIT 1"),
            "error": one(
                "SELECT split_part(error_message, ' ', 1) FROM events "
                "WHERE error_message <> '' LIMIT 1"
            ),
        }


def time_page(session: requests.Session, url: str, n: int) -> tuple[float, float, str | None]:
    session.get(url, timeout=60).raise_for_status()
    timings = []
    body = ""
    for _ in range(n):
        started = time.perf_counter()
        response = session.get(url, timeout=60)
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        body = response.text
    match = re.search(r'rel="next" href="([^"]+)"', body)
    older = match.group(1).replace("&amp;", "&") if match else None
    timings.sort()
    p95 = timings[min(len(timings) - 1, round(0.95 * len(timings)) - 1)]
    return statistics.median(timings), p95, older


def export_vs_copy(
    base_url: str, token: str, url: str, total: int, worker: int, repeat: int, client: str
):
    """The HTTP CSV export against psql's COPY of the same rows, `repeat` times."""
    ratios, idle, loaded = [], [], []
    print("\nCSV export of every event, newest first:")
    for run in range(1, repeat + 1):
        worker_cpu = cpu_seconds(worker)
        ours = BackendCpu(url, "COPY (SELECT")
        size, seconds, first, client_cpu = http_export(base_url, token, client, ours)
        worker_cpu = cpu_seconds(worker) - worker_cpu
        theirs = BackendCpu(url, PSQL_COPY)
        psize, pseconds, pfirst, psql_cpu = psql_copy(url, theirs)
        ratios.append(pseconds / seconds)
        # What the ratio would be with a CPU for each process (the stages run
        # side by side), and with all of them sharing one CPU.
        idle.append(theirs.seconds / max(ours.seconds, worker_cpu))
        loaded.append((theirs.seconds + psql_cpu) / (ours.seconds + worker_cpu + client_cpu))
        print(
            f"  run {run} HTTP  /api/v1/events/export: {size / 1e6:8.1f} MB in {seconds:6.1f}s = "
            f"{total / seconds:9,.0f} rows/s, {size / 1e6 / seconds:6.1f} MB/s, "
            f"first byte after {first * 1000:.0f} ms"
        )
        print(
            f"  run {run} psql  COPY … TO STDOUT CSV : {psize / 1e6:8.1f} MB in {pseconds:6.1f}s = "
            f"{total / pseconds:9,.0f} rows/s, {psize / 1e6 / pseconds:6.1f} MB/s, "
            f"first byte after {pfirst * 1000:.0f} ms"
        )
        print(
            f"  run {run} CPU s: export backend {ours.seconds:.2f}, server worker {worker_cpu:.2f}, "
            f"{client} {client_cpu:.2f}; psql's backend {theirs.seconds:.2f}, psql {psql_cpu:.2f}"
        )
        print(
            f"  run {run} HTTP / psql speed (rows/s): {ratios[-1]:.2f}  (goal >= 0.8); from the "
            f"CPU times: {idle[-1]:.2f} a CPU each, {loaded[-1]:.2f} sharing one",
            flush=True,
        )
    for label, values in (("", ratios), ("CPU, a CPU each: ", idle), ("CPU, one CPU: ", loaded)):
        print(
            f"  HTTP / psql {label}over {repeat} runs: {min(values):.2f}–{max(values):.2f}, "
            f"median {statistics.median(values):.2f}  (goal >= 0.8)"
        )
    print(f"  server worker peak RSS: {peak_rss_mb(worker):.0f} MB  (goal < 200 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench_export"
        ),
    )
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--base", type=int, default=200_000, help="events seeded by seed_demo")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per filter")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--skip-explorer", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="export / psql pairs")
    parser.add_argument(
        "--client",
        choices=("curl", "requests"),
        default="curl",
        help="what reads the HTTP export (psql reads the COPY)",
    )
    args = parser.parse_args()

    url = args.database_url
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_DEBUG": "false",
        "LOG_LEVEL": "WARNING",
    }
    ensure_database(url)
    manage(env, "migrate", "-v0")
    print(f"Loading {args.events:,} events into {urlparse(url).path.lstrip('/')} …", flush=True)
    total = load(url, env, args.events, args.base, args.days)
    print(f"events: {total:,}")

    token = (
        manage(
            env,
            "create_api_token",
            f"bench-{secrets.token_hex(4)}",
            "--scope",
            "read",
            capture=True,
        )
        .strip()
        .splitlines()[-1]
    )
    password = secrets.token_urlsafe(16)
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "User.objects.filter(username='bench').delete(); "
        f"User.objects.create_superuser('bench', password='{password}')",
    )

    # One sync worker, gunicorn's defaults but the timeout: an export of 10M
    # rows takes minutes.
    with gunicorn(
        env, workers=1, config=None, args=("--timeout", "3600"), preload=False, port=args.port
    ) as (base_url, server):
        worker = worker_pid(server.pid)
        print(f"server worker pid {worker}, RSS at start {rss_mb(worker):.0f} MB")

        if not args.skip_export:
            export_vs_copy(base_url, token, url, total, worker, args.repeat, args.client)
        if args.skip_explorer:
            return

        found = samples(url)
        print(f"filter values: {found}")
        session = login(base_url, "bench", password)
        filters = {
            "(default: last 30 days)": "",
            "period=all": "period=all",
            "period=24h": "period=24h",
            "event_type=user_login": "period=all&event_type=user_login",
            "event_type=facility_status": "period=all&event_type=facility_status",
            "subject (project)": f"period=all&subject_type=project&subject={found['project']}",
            "caller": f"period=all&caller={found['caller']}",
            "target": f"period=all&target={found['target']}",
            "success=false": "period=all&success=false",
            "payload kind=usermember": "period=all&payload=kind%3Dusermember",
            "payload facility=<slug>": f"period=all&payload=facility%3D{found['target']}",
            "error_contains": f"period=all&error_contains={found['error']}",
        }
        print(f"\nExplorer /events/ at {total:,} events ({args.requests} requests each):")
        print(f"  {'filter':32} {'p50 ms':>8} {'p95 ms':>8} {'page 2 p95':>11}")
        for label, query in filters.items():
            p50, p95, older = time_page(session, f"{base_url}/events/?{query}", args.requests)
            second = "—"
            if older:
                _, p95_2, _ = time_page(session, f"{base_url}/events/{older}", args.requests)
                second = f"{p95_2:.1f}"
            print(f"  {label:32} {p50:8.1f} {p95:8.1f} {second:>11}", flush=True)
        print(f"\nserver worker peak RSS after all: {peak_rss_mb(worker):.0f} MB")


if __name__ == "__main__":
    main()
