import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.cache import cache

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _empty_cache():
    # Rate-limit and login-failure counters live in the cache, which outlives
    # a test; each test starts from none.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The default PBKDF2 costs ~0.5 s per user; these tests make three per test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- nginx in front of the test server -------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_nginx(tmp_path: Path, upstream: str):
    """deploy/nginx/sphere_stats.conf proxying to `upstream` (host:port), on
    loopback ports, with a self-signed certificate."""
    if not shutil.which("nginx") or not shutil.which("openssl"):
        pytest.skip("nginx or openssl is missing (apt-get install nginx-light)")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(tmp_path / "privkey.pem"),
         "-out", str(tmp_path / "fullchain.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    http, https = free_port(), free_port()
    site = (
        (ROOT / "deploy" / "nginx" / "sphere_stats.conf")
        .read_text()
        .replace("server web:8000;", f"server {upstream};")
        .replace("listen 80;", f"listen 127.0.0.1:{http};")
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;")
        .replace("listen [::]:80;", "")
        .replace("listen [::]:443 ssl;", "")
        .replace("/etc/nginx/tls", str(tmp_path))
        # Debian 12's nginx (1.22) predates the `http2` directive of the
        # compose file's nginx 1.27.
        .replace("http2 on;", "")
    )
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{ access_log off; client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};"
        f" include {tmp_path}/site.conf; }}\n"
    )
    check = subprocess.run(
        ["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(["nginx", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", https), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield {"http": f"http://127.0.0.1:{http}", "https": f"https://127.0.0.1:{https}"}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def nginx(live_server, tmp_path):
    """nginx in front of the live test server."""
    with running_nginx(tmp_path, live_server.url.removeprefix("http://")) as urls:
        yield urls


@pytest.fixture
def nginx_without_upstream(tmp_path):
    """nginx whose web service is down: nothing listens on its upstream port."""
    with running_nginx(tmp_path, f"127.0.0.1:{free_port()}") as urls:
        yield urls
