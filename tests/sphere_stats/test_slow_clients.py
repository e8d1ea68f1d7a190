"""Slow clients, in each way the app is served.

gunicorn alone (`make run`) has no timeout for reading a request: each client
that trickles its headers or its body holds one of its threads until it ends,
so `make run` listens on 127.0.0.1 only. In the compose deployment nginx
(deploy/nginx/sphere_stats.conf, run for real here on loopback ports) reads
each request whole before gunicorn sees it and drops clients that stall.

gunicorn runs with deploy/gunicorn.conf.py, one worker of 4 threads, against
this test's database; the slow clients (bench/slow_clients.py's Trickle) send
one byte a second. bench/slow_clients.py measures how many it takes.
"""

import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from audit.models import Event
from bench import servers, slow_clients
from bench.slow_clients import Trickle, slow_body, slow_headers
from sphere_stats.models import ApiToken

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "sphere_stats.conf"
THREADS = 4
# Another loopback address than the slow clients': nginx limits connections
# per address, and these requests stand for other users.
ELSEWHERE = "127.0.0.2"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gunicorn(tmp_path):
    """gunicorn with the project's configuration, one worker of THREADS
    threads, on a free loopback port; its base URL."""
    env = servers.bare_env(
        servers.database_url(connection.settings_dict),
        tmp_path,
        WEB_THREADS=str(THREADS),
        LOG_LEVEL="ERROR",
    )
    with slow_clients.gunicorn_serving(env, workers=1, log=tmp_path / "gunicorn.log") as url:
        yield url


@pytest.fixture
def token() -> str:
    return ApiToken.issue("slow-clients", ["ingest"])[1]


def nginx(gunicorn: str, directory: Path, conf: str | None = None):
    directory.mkdir()
    return slow_clients.nginx_in_front(gunicorn.removeprefix("http://"), directory, conf)


def post_one_event(url: str, token: str, **kwargs) -> tuple[int, str]:
    event_uuid = str(uuid.uuid4())
    status, _ = slow_clients.request(
        url,
        "POST",
        "/api/v1/events",
        body=(
            f'{{"event_uuid": "{event_uuid}", "timestamp": "2026-05-01T12:00:00Z",'
            ' "event_type": "user_login", "caller": "alice", "subject": "alice",'
            ' "subject_type": "user", "success": true}'
        ).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        **kwargs,
    )
    return status, event_uuid


def wait_until(condition, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_gunicorn_alone_is_held_by_as_many_slow_clients_as_it_has_threads(gunicorn):
    # Why `make run` stays on loopback, and why these slow clients are enough
    # to show what nginx does below.
    with Trickle(gunicorn) as trickle:
        trickle.open(slow_headers, THREADS)
        time.sleep(1)
        with pytest.raises(TimeoutError):
            slow_clients.get(gunicorn, "/healthz", timeout=3)
    # Gone, they free their threads.
    assert slow_clients.get(gunicorn, "/healthz", timeout=10)[0] == 200


def test_behind_nginx_forty_slow_clients_leave_the_app_answering(gunicorn, token, tmp_path):
    with nginx(gunicorn, tmp_path / "nginx") as url, Trickle(url) as trickle:
        trickle.open(slow_headers, 20)
        trickle.open(lambda: slow_body(token), 20)
        time.sleep(2)  # time enough for them to reach gunicorn, could they

        health = slow_clients.get(url, "/healthz", timeout=5, source=ELSEWHERE)
        ingest, event_uuid = post_one_event(url, token, timeout=5, source=ELSEWHERE)

        assert health[0] == 200
        assert ingest == 201
        assert Event.objects.filter(event_uuid=event_uuid).exists()
        # nginx still holds every one of them: it answered beside them.
        assert trickle.open_count == 40


def test_nginx_closes_clients_that_stall_after_its_timeouts(gunicorn, token, tmp_path):
    # The deployed timeouts (10 s) shortened for the test; a test below reads
    # the real values.
    conf = NGINX_CONF.read_text()
    conf = slow_clients.with_directive(conf, "client_header_timeout", "2s")
    conf = slow_clients.with_directive(conf, "client_body_timeout", "2s")

    def stalled_body():
        # Headers and a few bytes of the body, then nothing.
        chunks = slow_body(token)
        yield next(chunks)
        yield b'{"event_uuid"'

    with nginx(gunicorn, tmp_path / "nginx", conf) as url, Trickle(url) as trickle:
        # One still trickling its headers: the header timeout is for the whole.
        headers = trickle.open(slow_headers)[0]
        body = trickle.open(stalled_body)[0]

        assert wait_until(lambda: headers.closed is not None and body.closed is not None)
        assert headers.closed - headers.opened < 8
        assert body.closed - body.opened < 8
        # Nothing of the stalled body reached the app.
        assert Event.objects.count() == 0


def test_nginx_refuses_an_address_more_connections_than_its_limit(gunicorn, token, tmp_path):
    limit = int(re.search(r"limit_conn perip (\d+);", NGINX_CONF.read_text())[1])
    with nginx(gunicorn, tmp_path / "nginx") as url, Trickle(url) as trickle:
        trickle.open(lambda: slow_body(token), limit)
        time.sleep(1)

        status, _ = post_one_event(url, token, timeout=5)
        elsewhere, _ = post_one_event(url, token, timeout=5, source=ELSEWHERE)

    assert status == 429  # with the rate limits' JSON and Retry-After
    assert elsewhere == 201


def directives(conf: str, name: str) -> list[str]:
    return re.findall(rf"(?m)^\s*{name}\s+([^;]*);", conf)


def seconds(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(s|m)?", value).groups()
    return int(number) * (60 if unit == "m" else 1)


def test_the_deployed_nginx_bounds_every_wait_on_a_client():
    conf = NGINX_CONF.read_text()
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        [value] = directives(conf, name)
        assert 1 <= seconds(value) <= 60, name
    [keepalive] = directives(conf, "keepalive_timeout")
    assert seconds(keepalive) <= 75
    # Requests read whole before gunicorn sees them, answers read whole
    # before the client takes them.
    assert directives(conf, "proxy_request_buffering") == ["on"]
    assert directives(conf, "proxy_buffering") == ["on"]
    # A body the app would take gets through; a much larger one is stopped.
    [body] = directives(conf, "client_max_body_size")
    limit = int(body.removesuffix("m")) * 1024 * 1024
    assert 0 < limit - django_settings.INGEST_MAX_BODY_BYTES <= 2 * 1024 * 1024
    [per_address] = directives(conf, "limit_conn perip")
    assert int(per_address) >= 10


def test_make_run_serves_on_loopback_only():
    # What `make run` would run, not run: -n prints its commands.
    commands = subprocess.run(
        ["make", "-n", "run", "PORT=8123"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    lines = commands.replace("\\\n", " ").splitlines()
    [gunicorn] = [line for line in lines if "gunicorn sphere_stats.wsgi" in line]
    assert re.findall(r"(?:-b|--bind)[ =](\S+)", gunicorn) == ["127.0.0.1:8123"]


def test_gunicorn_with_the_project_configuration_binds_loopback_by_default(tmp_path):
    # gunicorn's own default turns to 0.0.0.0 when PORT is set.
    port = servers.free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", f"""
import sys
from gunicorn.app.wsgiapp import WSGIApplication
sys.argv = ["gunicorn", "--config", {str(ROOT / "deploy" / "gunicorn.conf.py")!r}, "x:y"]
print(WSGIApplication().cfg.address)
"""],
        env={"PATH": "/usr/bin:/bin", "PORT": str(port)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    out, _ = process.communicate(timeout=30)

    assert out.strip() == str([("127.0.0.1", port)])
