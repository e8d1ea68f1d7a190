"""The deployment files: docker-compose.yml, .env.example, the Dockerfile and
nginx's configuration. There is no Docker engine here, so the compose file is
checked structurally and by `docker compose config` (which needs no engine),
and nginx's configuration is run for real in front of the test server."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
# nginx serves a throwaway self-signed certificate in these tests.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_the_stack_has_a_database_with_a_volume_and_healthcheck(compose):
    db = compose["services"]["db"]
    assert db["image"].startswith("postgres:")
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "pgdata" in compose["volumes"]


def test_the_web_service_waits_for_the_database_and_runs_migrations(compose):
    web = compose["services"]["web"]
    assert web["build"] == "."
    assert web["env_file"] == ".env"
    assert web["depends_on"]["db"]["condition"] == "service_healthy"
    assert web["environment"]["HTTPS"] == "true"
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    entrypoint = (ROOT / "deploy" / "web-entrypoint.sh").read_text()
    assert "manage.py migrate --no-input" in entrypoint
    assert "exec gunicorn sphere_stats.wsgi" in entrypoint
    assert "collectstatic" in (ROOT / "Dockerfile").read_text()


def test_nginx_fronts_the_web_service_with_tls(compose):
    nginx = compose["services"]["nginx"]
    assert "443:443" in nginx["ports"]
    assert nginx["depends_on"]["web"]["condition"] == "service_healthy"
    conf = (ROOT / "deploy" / "nginx" / "sphere_stats.conf").read_text()
    for needed in (
        "ssl_certificate",
        "limit_req_zone",
        "client_max_body_size",
        "Strict-Transport-Security",
    ):
        assert needed in conf


def test_env_example_names_every_variable_the_compose_file_needs(compose):
    example = env_example()
    for name in (
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
        "POSTGRES_USER",
    ):
        assert name in example, name
    # Its placeholder key is one the server refuses.
    from sphere_stats.security import KNOWN_DEFAULT_KEYS

    assert example["SECRET_KEY"] in KNOWN_DEFAULT_KEYS


def compose_client() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_validates_the_file(tmp_path):
    client = compose_client()
    if client is None:
        pytest.skip("no docker compose client (apt-get install docker-compose)")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        [*client, "-f", "docker-compose.yml", "config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == {"db", "redis", "web", "nginx"}
    assert resolved["services"]["web"]["environment"]["DATABASE_URL"].startswith(
        "postgresql://sphere_stats:change-me-too@db:5432/"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nginx(live_server, tmp_path):
    """deploy/nginx/sphere_stats.conf in front of the live test server, on
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
    upstream = live_server.url.removeprefix("http://")
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
    yield {"http": f"http://127.0.0.1:{http}", "https": f"https://127.0.0.1:{https}"}
    proc.terminate()
    proc.wait(10)


@pytest.mark.django_db(transaction=True)
def test_nginx_redirects_to_https_and_adds_the_security_headers(nginx, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    plain = requests.get(nginx["http"] + "/healthz", allow_redirects=False, timeout=5)
    assert plain.status_code == 301
    assert plain.headers["Location"].startswith("https://")
    secure = requests.get(nginx["https"] + "/healthz", verify=False, timeout=5)  # noqa: S501 (self-signed)
    assert secure.status_code == 200
    assert secure.json() == {"db": "ok"}
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert secure.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors" in secure.headers["Content-Security-Policy"]


@pytest.mark.django_db(transaction=True)
def test_nginx_refuses_a_huge_body_with_the_api_error_shape(nginx, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    response = requests.post(
        nginx["https"] + "/api/v1/events",
        data=b"x" * (12 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
        verify=False,  # noqa: S501 (self-signed)
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json() == {"error": "The body is larger than 11 MB.", "details": []}
