"""Slow clients: how many trickling connections it takes before a normal
request waits more than 2 s, for each way the app is served.

    .venv/bin/python bench/slow_clients.py [--max 200] [--threads 4 16]

- "gunicorn alone" is `make run`: gunicorn with deploy/gunicorn.conf.py and
  2 workers, on loopback, clients talking to it directly.
- "nginx + gunicorn" is the compose deployment: deploy/nginx/sphere_stats.conf
  as it is (TLS, its real timeouts and limits; only its ports and upstream
  changed for loopback) in front of the same gunicorn.

Two kinds of slow client, each trickling one byte a second: one that never
finishes its request headers, and one that sends the headers of an ingest
POST (with a valid token and a 1 MB Content-Length) and then its body. They
are opened in steps; after each step a probe (GET /healthz, from another
loopback address so that nginx's per-address limits do not count it with the
slow clients) is timed, and the first step where it waits more than 2 s is
the table's number ("-" when none up to --max).

Everything runs on loopback: a scratch database next to DATABASE_URL's (or
the embedded PostgreSQL), gunicorn on a free port, nginx (Debian's
nginx-light, or any nginx on PATH) on free ports with a throwaway certificate.

The test suite (tests/sphere_stats/test_slow_clients.py) uses the helpers
below: gunicorn_serving, nginx_in_front and Trickle.
"""

import argparse
import contextlib
import http.client
import os
import re
import select
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `bench` importable when run as a script

from bench.servers import gunicorn, nginx  # noqa: E402

PROBE_WAIT = 2.0  # seconds: a probe that waits longer counts as blocked
# The probe's own address: nginx's limit_conn counts per client address, and
# a client that opens 50 connections may well be refused its 51st.
PROBE_SOURCE = "127.0.0.2"


# --- the servers ------------------------------------------------------------------------


@contextlib.contextmanager
def gunicorn_serving(env: dict, *, workers: int = 2, log: Path | None = None) -> Iterator[str]:
    """gunicorn as `make run` starts it (deploy/gunicorn.conf.py, `workers`
    workers, threads from WEB_THREADS in `env`) on a free loopback port; its
    base URL once /healthz answers."""
    with gunicorn(env, workers=workers, log=log or Path(os.devnull)) as (url, _):
        yield url


def with_directive(conf: str, name: str, value: str) -> str:
    """`conf` with every `name ...;` directive set to `value` (a test's
    shortened timeout); an error if the configuration has none."""
    changed, count = re.subn(rf"(?m)^(\s*){name}\s+[^;]*;", rf"\g<1>{name} {value};", conf)
    if not count:
        raise ValueError(f"{name} is not in the nginx configuration")
    return changed


@contextlib.contextmanager
def nginx_in_front(upstream: str, directory: Path, conf: str | None = None) -> Iterator[str]:
    """bench/servers.py's nginx in front of `upstream` (host:port); its https URL."""
    with nginx(upstream, directory, conf) as urls:
        yield urls["https"]


# --- clients ----------------------------------------------------------------------------


def _connect(url: str, timeout: float, source: str | None = None) -> socket.socket:
    scheme, _, hostport = url.partition("://")
    host, _, port = hostport.rstrip("/").partition(":")
    sock = socket.create_connection(
        (host, int(port)), timeout=timeout, source_address=(source, 0) if source else None
    )
    if scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # nginx's throwaway certificate
        sock = context.wrap_socket(sock, server_hostname=host)
    return sock


def request(
    url: str,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: dict | None = None,
    timeout: float = 10,
    source: str | None = None,
) -> tuple[int, bytes]:
    """One request on a connection of its own (from `source`, a loopback
    address, when given): its status and body. A socket timeout when it has
    waited `timeout` seconds for the server."""
    sock = _connect(url, timeout, source)
    connection = http.client.HTTPConnection("127.0.0.1", timeout=timeout)
    connection.sock = sock
    try:
        connection.request(
            method, path, body=body, headers={"Host": "127.0.0.1", **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def get(url: str, path: str, *, timeout: float = 10, source: str | None = None):
    return request(url, "GET", path, timeout=timeout, source=source)


def slow_headers() -> Iterator[bytes]:
    """A request whose headers never end, one byte at a time."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    while True:
        for byte in head:
            yield bytes([byte])
        head = b"X-Slow: 1\r\n"


def slow_body(token: str, length: int = 1_000_000) -> Iterator[bytes]:
    """An ingest POST whose headers come at once and whose body then trickles."""
    yield (
        "POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    while True:
        yield b" "


@dataclass
class SlowConnection:
    sock: socket.socket
    chunks: Iterator[bytes]
    opened: float = field(default_factory=time.monotonic)
    closed: float | None = None  # when the server closed it
    answer: bytes = b""  # what the server sent before closing, if anything


class Trickle:
    """Connections that each send one byte per `interval` seconds, from one
    background thread, until the server closes them or the Trickle stops."""

    def __init__(self, url: str, interval: float = 1.0):
        self.url = url
        self.interval = interval
        self.connections: list[SlowConnection] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Trickle":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for connection in self.connections:
            connection.sock.close()

    def open(self, chunks: Callable[[], Iterator[bytes]], count: int = 1) -> list[SlowConnection]:
        """`count` more slow connections, each sending what `chunks()` yields,
        its first chunk at once (a byte of headers, or a body's headers)."""
        opened = []
        for _ in range(count):
            sock = _connect(self.url, timeout=10)
            sock.setblocking(False)
            connection = SlowConnection(sock, chunks())
            self._send(connection)
            opened.append(connection)
        with self._lock:
            self.connections.extend(opened)
        return opened

    @property
    def open_count(self) -> int:
        return sum(1 for c in self.connections if c.closed is None)

    def _send(self, connection: SlowConnection) -> None:
        if self._closed_by_server(connection):
            return
        chunk = next(connection.chunks, b"")
        try:
            while chunk:
                try:
                    sent = connection.sock.send(chunk)
                    chunk = chunk[sent:]
                except (ssl.SSLWantWriteError, BlockingIOError):
                    select.select([], [connection.sock], [], 1)
        except OSError:
            connection.closed = time.monotonic()

    def _closed_by_server(self, connection: SlowConnection) -> bool:
        if connection.closed is not None:
            return True
        while select.select([connection.sock], [], [], 0)[0]:
            try:
                data = connection.sock.recv(4096)
            except (ssl.SSLWantReadError, BlockingIOError):
                return False
            except OSError:
                data = b""
            if not data:
                connection.closed = time.monotonic()
                return True
            connection.answer += data
        return False

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                connections = list(self.connections)
            for connection in connections:
                self._send(connection)


# --- the benchmark ----------------------------------------------------------------------

STEPS = (1, 2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 100, 128, 160, 200)


def probe_wait(url: str) -> float:
    """Seconds a GET /healthz waited (PROBE_WAIT + 1 when it had no answer
    by then)."""
    start = time.monotonic()
    try:
        status, _ = get(url, "/healthz", timeout=PROBE_WAIT + 1, source=PROBE_SOURCE)
    except OSError:
        return PROBE_WAIT + 1
    waited = time.monotonic() - start
    return waited if status == 200 else PROBE_WAIT + 1


@dataclass
class Outcome:
    blocks_at: int | None  # slow connections open when a probe first waited too long
    opened: int
    closed: int  # of the slow ones, closed by the server by then
    refused: int  # of the slow ones, answered 429 (nginx's limit_conn) by then


def blocking_count(url: str, chunks, maximum: int) -> Outcome:
    """Opens slow connections in STEPS up to `maximum`, probing after each
    step, until a probe waits more than PROBE_WAIT."""
    with Trickle(url) as trickle:
        opened = 0
        blocks_at = None
        for step in (s for s in STEPS if s <= maximum):
            trickle.open(chunks, step - opened)
            opened = step
            time.sleep(1.0)  # the new ones get their first bytes in
            if probe_wait(url) > PROBE_WAIT:
                blocks_at = step
                break
        # Whatever the server sent them is in by now.
        time.sleep(trickle.interval)
        return Outcome(
            blocks_at,
            opened,
            closed=opened - trickle.open_count,
            refused=sum(c.answer.startswith(b"HTTP/1.1 429") for c in trickle.connections),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max", type=int, default=200, help="slow connections at most")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[4], help="gunicorn threads per worker to try"
    )
    args = parser.parse_args()

    from bench import _server

    database = _server.scratch_database("bench_slow_clients")
    token = _server.token(database, "slow-clients")
    rows = []
    for threads in args.threads:
        env = {**_server.env_for(database), "WEB_THREADS": str(threads), "LOG_LEVEL": "ERROR"}
        with tempfile.TemporaryDirectory() as tmp, gunicorn_serving(env) as app:
            for kind, chunks in (
                ("headers", slow_headers),
                ("body", lambda: slow_body(token)),
            ):
                for served, url in (("gunicorn alone (make run)", app), ("nginx + gunicorn", None)):
                    if url is None:
                        directory = Path(tmp) / kind
                        directory.mkdir()
                        with nginx_in_front(app.removeprefix("http://"), directory) as front:
                            outcome = blocking_count(front, chunks, args.max)
                    else:
                        outcome = blocking_count(url, chunks, args.max)
                    rows.append((served, f"2 x {threads}", kind, outcome))
                    print(f"  {rows[-1]}", file=sys.stderr)

    print(f"\nSlow connections (1 byte/s each) before GET /healthz waits > {PROBE_WAIT:g} s")
    print(
        f"{'served by':27} {'workers x threads':>17} {'trickling':>9} {'blocks at':>9}"
        f" {'opened':>6} {'closed by server':>16} {'refused (429)':>13}"
    )
    for served, shape, kind, o in rows:
        blocks = "-" if o.blocks_at is None else str(o.blocks_at)
        print(
            f"{served:27} {shape:>17} {kind:>9} {blocks:>9} {o.opened:>6} {o.closed:>16}"
            f" {o.refused:>13}"
        )
    print(f"('-': still answering with {args.max} slow connections open)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
