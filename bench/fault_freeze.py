"""Fault test: PostgreSQL freezes (SIGSTOP) under load; nobody may hang.

    .venv/bin/python bench/fault_freeze.py [--freeze 20] [--ingest-clients 6]
                                           [--page-clients 3] [--before 3] [--after 8]

Everything runs on this machine, on loopback only, bounded in time: a scratch
PostgreSQL of its own (initdb + pg_ctl of Debian's PostgreSQL binaries under
/usr/lib/postgresql/*/bin, or the embedded pgserver's, on a free loopback
port), gunicorn in front of it as production runs it (deploy/gunicorn.conf.py,
2 workers), and client threads posting single events and getting pages: the
health check, the JSON read API and an HTML page of a logged-in user.

After `--before` seconds the postmaster and every backend are stopped with
SIGSTOP for `--freeze` seconds, then continued with SIGCONT. The clients go
on for `--after` seconds. Then:

- every request must have had an answer within 10 s (a 503 with Retry-After
  while the database is frozen, never a 500 and never a hang);
- every event acknowledged (201) is in the table exactly once, after the
  unacknowledged ones are sent again (harmless: ingest is idempotent by uuid);
- service must come back by itself after SIGCONT.

It prints the numbers and exits 1 when a check fails.
"""

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `bench` importable when run as a script

from bench.servers import ScratchPostgres, gunicorn, scratch_postgres  # noqa: E402

ANSWER_WITHIN = 10.0  # seconds: the bound every request is held to
PASSWORD = "fault-freeze-password"


# --- the app in front of it ---------------------------------------------------------


def app_env(database_url: str, **overrides: str) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "RATE_LIMIT_", "REDIS_URL", "WEB_"))
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "RATE_LIMIT_INGEST": "0",
            "RATE_LIMIT_EXPORT": "0",
            "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
            "LOG_LEVEL": "ERROR",
            **overrides,
        }
    )
    return env


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


@dataclass
class App:
    url: str
    token: str
    process: subprocess.Popen


@contextlib.contextmanager
def running_app(env: dict, workers: int = 2) -> Iterator[App]:
    """The schema, a token and a superuser in the database of `env`, and
    gunicorn with deploy/gunicorn.conf.py serving it on a free loopback port."""
    manage(env, "migrate", "--no-input", "-v", "0")
    token = manage(
        env, "create_api_token", f"freeze-{time.time_ns()}", "--scope", "ingest", "--scope", "read"
    )
    manage(env, "createsuperuser", "--no-input", "--username", "freeze", "--email", "f@x.test")
    # gunicorn's and Django's log (a line per 503) goes to a file, not the report.
    with (
        tempfile.TemporaryDirectory() as directory,
        gunicorn(
            env,
            workers=workers,
            args=("--log-level", "warning"),
            log=Path(directory) / "gunicorn.log",
        ) as (url, process),
    ):
        yield App(url, token.strip().splitlines()[-1], process)


def logged_in_session(url: str) -> requests.Session:
    """A session of the superuser; tries a few times (a busy machine may
    answer 503 for a moment)."""
    for _ in range(10):
        session = requests.Session()
        with contextlib.suppress(requests.RequestException, KeyError):
            session.get(f"{url}/accounts/login/", timeout=10)
            response = session.post(
                f"{url}/accounts/login/",
                {
                    "username": "freeze",
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": session.cookies["csrftoken"],
                },
                headers={"Referer": f"{url}/accounts/login/"},
                timeout=10,
                allow_redirects=False,
            )
            if response.status_code == 302:
                return session
        time.sleep(0.5)
    raise RuntimeError("could not log in")


# --- the load ---------------------------------------------------------------------------


@dataclass
class Request:
    kind: str
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no answer (a client-side timeout or connection error)
    retry_after: bool = False
    json: bool = False
    error: str = ""


@dataclass
class Load:
    requests: list[Request] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    unacknowledged: dict[str, dict] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)


def make_event() -> dict:
    return {
        "event_uuid": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(),
        "event_type": "user_login",
        "caller": "freeze",
        "subject": "freeze",
        "subject_type": "user",
        "success": True,
    }


def timed(load: Load, kind: str, call, client_timeout: float) -> requests.Response | None:
    started = time.monotonic()
    try:
        response = call(timeout=client_timeout)
    except requests.RequestException as exc:
        load.record(Request(kind, started, time.monotonic(), None, error=type(exc).__name__))
        return None
    load.record(
        Request(
            kind,
            started,
            time.monotonic(),
            response.status_code,
            retry_after="Retry-After" in response.headers,
            json=response.headers.get("Content-Type", "").startswith("application/json"),
        )
    )
    return response


def ingest_client(app: App, load: Load, stop: threading.Event, client_timeout: float) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {app.token}"
    while not stop.is_set():
        event = make_event()
        response = timed(
            load,
            "ingest",
            lambda **kw: session.post(f"{app.url}/api/v1/events", json=event, **kw),  # noqa: B023
            client_timeout,
        )
        with load.lock:
            if response is not None and response.status_code == 201:
                load.acknowledged.add(event["event_uuid"])
            else:
                load.unacknowledged[event["event_uuid"]] = event
        if response is None or response.status_code != 201:
            session = requests.Session()  # a connection gunicorn may have dropped
            session.headers["Authorization"] = f"Bearer {app.token}"
        time.sleep(0.02)


def page_client(
    app: App, load: Load, stop: threading.Event, client_timeout: float, n: int, cookies
) -> None:
    pages = [
        ("healthz", requests.Session(), "/healthz"),
        ("api", requests.Session(), "/api/v1/events?limit=5"),
        ("html", requests.Session(), "/"),
    ]
    pages[1][1].headers["Authorization"] = f"Bearer {app.token}"
    pages[2][1].cookies.update(cookies)
    turn = n
    while not stop.is_set():
        kind, session, path = pages[turn % len(pages)]
        turn += 1
        timed(load, kind, lambda **kw: session.get(f"{app.url}{path}", **kw), client_timeout)  # noqa: B023
        time.sleep(0.05)


def resend(app: App, events: list[dict], deadline: float) -> set[str]:
    """Send `events` until each is acknowledged or `deadline` passes; the
    uuids acknowledged."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {app.token}"
    done: set[str] = set()
    pending = list(events)
    while pending and time.monotonic() < deadline:
        batch, pending = pending[:500], pending[500:]
        with contextlib.suppress(requests.RequestException):
            if session.post(f"{app.url}/api/v1/events", json=batch, timeout=15).status_code == 201:
                done.update(e["event_uuid"] for e in batch)
                continue
        pending = batch + pending
        time.sleep(0.5)
    return done


@dataclass
class Result:
    load: Load
    frozen_at: float
    thawed_at: float
    processes_stopped: int
    recovered_after: float | None  # seconds from SIGCONT to the first healthy answer
    stored: Counter  # event_uuid -> rows, for the acknowledged ones
    resent: int


def run(
    server: ScratchPostgres,
    app: App,
    *,
    freeze: float,
    before: float,
    after: float,
    ingest_clients: int,
    page_clients: int,
    client_timeout: float = 30.0,
) -> Result:
    load = Load()
    stop = threading.Event()
    cookies = logged_in_session(app.url).cookies
    threads = [
        threading.Thread(target=ingest_client, args=(app, load, stop, client_timeout))
        for _ in range(ingest_clients)
    ] + [
        threading.Thread(target=page_client, args=(app, load, stop, client_timeout, n, cookies))
        for n in range(page_clients)
    ]
    for thread in threads:
        thread.start()
    try:
        # Load on every kind of request before the freeze, however slow the
        # machine is to serve the first ones.
        started = time.monotonic()
        while time.monotonic() < started + 60:
            with load.lock:
                kinds = {r.kind for r in load.requests}
            if len(kinds) == 4 and time.monotonic() >= started + before:
                break
            time.sleep(0.1)
        frozen_at = time.monotonic()
        stopped = server.signal_all(signal.SIGSTOP)
        time.sleep(freeze)
    finally:
        server.signal_all(signal.SIGCONT)
        thawed_at = time.monotonic()
    recovered_after = None
    deadline = thawed_at + max(after, 30)
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{app.url}/healthz", timeout=5).status_code == 200:
                recovered_after = time.monotonic() - thawed_at
                break
        time.sleep(0.2)
    time.sleep(max(0.0, thawed_at + after - time.monotonic()))
    stop.set()
    for thread in threads:
        thread.join(client_timeout + 5)

    # Whatever was not acknowledged is sent again: a client retries until it
    # is, and a repeat of a stored event is reported as a duplicate.
    with load.lock:
        retry = [e for u, e in load.unacknowledged.items() if u not in load.acknowledged]
    resent = resend(app, retry, time.monotonic() + 60)
    with load.lock:
        load.acknowledged |= resent
    with psycopg.connect(server.url) as conn:
        rows = conn.execute(
            "SELECT event_uuid::text, count(*) FROM events"
            " WHERE event_uuid = ANY(%(uuids)s::uuid[]) GROUP BY 1",
            {"uuids": sorted(load.acknowledged)},
        ).fetchall()
    return Result(
        load, frozen_at, thawed_at, stopped, recovered_after, Counter(dict(rows)), len(retry)
    )


# --- checks and report --------------------------------------------------------------


def problems(result: Result) -> list[str]:
    """What went wrong, in words; empty when every check holds."""
    found = []
    answers = result.load.requests
    unanswered = [r for r in answers if r.status is None]
    if unanswered:
        found.append(
            f"{len(unanswered)} requests got no answer ({Counter(r.error for r in unanswered)})"
        )
    slow = [r for r in answers if r.ended - r.started > ANSWER_WITHIN]
    if slow:
        found.append(f"{len(slow)} requests took longer than {ANSWER_WITHIN:g} s")
    errors = [r for r in answers if r.status is not None and r.status >= 500 and r.status != 503]
    if errors:
        found.append(
            f"{len(errors)} answers were 5xx other than 503: {Counter(r.status for r in errors)}"
        )
    bare = [r for r in answers if r.status == 503 and not r.retry_after]
    if bare:
        found.append(f"{len(bare)} answers of 503 had no Retry-After")
    api_html = [
        r
        for r in answers
        if r.status == 503 and r.kind in ("api", "ingest", "healthz") and not r.json
    ]
    if api_html:
        found.append(f"{len(api_html)} API answers of 503 were not JSON")
    missing = result.load.acknowledged - set(result.stored)
    if missing:
        found.append(f"{len(missing)} acknowledged events are not stored")
    doubled = [u for u, n in result.stored.items() if n != 1]
    if doubled:
        found.append(f"{len(doubled)} acknowledged events are stored more than once")
    if result.recovered_after is None:
        found.append("the service did not come back after SIGCONT")
    return found


def report(result: Result) -> str:
    answers = result.load.requests
    during = [r for r in answers if r.started >= result.frozen_at and r.started < result.thawed_at]
    latencies = sorted(r.ended - r.started for r in answers)
    lines = [
        f"froze {result.processes_stopped} PostgreSQL processes for "
        f"{result.thawed_at - result.frozen_at:.1f} s under load",
        f"requests: {len(answers)}; by status: "
        + ", ".join(
            f"{k}: {v}" for k, v in sorted(Counter(str(r.status) for r in answers).items())
        ),
        f"started while frozen: {len(during)}; by status: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(Counter(str(r.status) for r in during).items())),
    ]
    for kind in ("ingest", "healthz", "api", "html"):
        mine = sorted(r.ended - r.started for r in answers if r.kind == kind)
        frozen = sorted(r.ended - r.started for r in during if r.kind == kind)
        if mine:
            lines.append(
                f"  {kind:8} n={len(mine):5}  max {mine[-1]:6.2f} s  p99 {percentile(mine, 99):6.2f} s"
                f"  | while frozen: n={len(frozen):4}  max {frozen[-1] if frozen else 0:6.2f} s"
            )
    if latencies:
        lines.append(f"slowest answer: {latencies[-1]:.2f} s (bound {ANSWER_WITHIN:g} s)")
    lines.append(
        f"events acknowledged: {len(result.load.acknowledged)} (of which re-sent after the run: "
        f"{result.resent}); stored once: {sum(1 for n in result.stored.values() if n == 1)}"
    )
    lines.append(
        "service back after SIGCONT: "
        + (f"{result.recovered_after:.2f} s" if result.recovered_after is not None else "never")
    )
    return "\n".join(lines)


def percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--freeze", type=float, default=20.0, help="seconds PostgreSQL is stopped")
    parser.add_argument("--before", type=float, default=3.0, help="seconds of load before")
    parser.add_argument("--after", type=float, default=8.0, help="seconds of load after")
    parser.add_argument("--ingest-clients", type=int, default=6)
    parser.add_argument("--page-clients", type=int, default=3)
    args = parser.parse_args()
    with scratch_postgres("faults") as server:
        env = app_env(server.url)
        # Pages name their static files by the hashes collectstatic records,
        # into STATIC_ROOT, as `make run` does.
        manage(env, "collectstatic", "--no-input", "-v", "0")
        with running_app(env) as app:
            print(f"PostgreSQL {server.bin} on 127.0.0.1:{server.port}; gunicorn at {app.url}")
            result = run(
                server,
                app,
                freeze=args.freeze,
                before=args.before,
                after=args.after,
                ingest_clients=args.ingest_clients,
                page_clients=args.page_clients,
            )
    print(report(result))
    found = problems(result)
    for problem in found:
        print(f"FAILED: {problem}")
    if not found:
        print("OK: every request answered within the bound, nothing acknowledged lost or doubled")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
