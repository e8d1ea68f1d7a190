"""The deployment files: docker-compose.yml, .env.example, the Dockerfile and
nginx's configuration. There is no Docker engine here, so the compose file is
checked structurally and by `docker compose config` (which needs no engine),
and nginx's configuration is run for real in front of the test server (the
`nginx` fixtures are in conftest.py)."""

import re
import shutil
import subprocess
import sys
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


def test_the_worker_runs_the_background_jobs_from_the_web_image_after_its_migrations(compose):
    worker = compose["services"]["worker"]
    assert worker["build"] == "." and worker["env_file"] == ".env"
    assert worker["command"] == ["python", "manage.py", "run_worker"]
    # The web service's start applies the migrations the worker's jobs need.
    assert worker["depends_on"]["web"]["condition"] == "service_healthy"
    assert worker["healthcheck"] == {"disable": True}


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
    assert set(resolved["services"]) == {"db", "redis", "web", "worker", "nginx"}
    for service in ("web", "worker"):
        assert resolved["services"][service]["environment"]["DATABASE_URL"].startswith(
            "postgresql://sphere_stats:change-me-too@db:5432/"
        )


@pytest.mark.django_db(transaction=True)
def test_nginx_redirects_to_https_and_adds_the_security_headers(nginx, settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    plain = requests.get(nginx["http"] + "/healthz", allow_redirects=False, timeout=5)
    assert plain.status_code == 301
    assert plain.headers["Location"].startswith("https://")
    # Generous: the live server's first request imports every URL module.
    secure = requests.get(nginx["https"] + "/healthz", verify=False, timeout=30)  # noqa: S501 (self-signed)
    assert secure.status_code == 200
    assert secure.json() == {"db": "ok"}
    # What the README promises and Django's SECURE_HSTS_* would send without nginx.
    hsts = secure.headers["Strict-Transport-Security"]
    assert hsts == "max-age=31536000; includeSubDomains; preload"
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


SECURITY_HEADERS = {
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "Referrer-Policy",
    "Content-Security-Policy",
    "Permissions-Policy",
}


def add_headers(block: str) -> set[str]:
    return set(re.findall(r"^\s*add_header (.+?) always;$", block, re.MULTILINE))


def test_nginx_error_locations_repeat_every_security_header_of_the_server():
    # An add_header in a location drops every add_header of the server there.
    conf = (ROOT / "deploy" / "nginx" / "sphere_stats.conf").read_text()
    tls_server = conf[conf.index("listen 443 ssl;") :]
    first_location = re.search(r"^\s*location ", tls_server, re.MULTILINE).start()
    server_level = add_headers(tls_server[:first_location])
    assert {line.split()[0] for line in server_level} == SECURITY_HEADERS
    for name, block in re.findall(r"location (@\w+) \{(.*?)\n    \}", tls_server, re.DOTALL):
        own = add_headers(block)
        if own:
            assert server_level <= own, f"{name} lacks {server_level - own}"


@pytest.mark.parametrize("path", ["/api/v1/events", "/"])
def test_a_dead_web_service_answers_503_json_with_the_security_headers(
    nginx_without_upstream, path
):
    response = requests.get(nginx_without_upstream["https"] + path, verify=False, timeout=5)  # noqa: S501 (self-signed)
    assert response.status_code == 503
    assert response.json()["error"].startswith("The service is restarting")
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors" in response.headers["Content-Security-Policy"]


def _container_gunicorn(tmp_path, **env: str) -> list[str]:
    """The workers, threads and keep-alive gunicorn would run with in the
    container: deploy/web-entrypoint.sh run with the Dockerfile's
    GUNICORN_CMD_ARGS and a `gunicorn` that prints its parsed settings."""
    cmd_args = re.search(r'GUNICORN_CMD_ARGS="([^"]+)"', (ROOT / "Dockerfile").read_text())
    fake = tmp_path / "gunicorn"
    fake.write_text(
        f"#!{sys.executable}\n"
        "from gunicorn.app.wsgiapp import WSGIApplication\n"
        "cfg = WSGIApplication('%(prog)s [OPTIONS] [APP_MODULE]').cfg\n"
        "print(cfg.workers, cfg.threads, cfg.keepalive, cfg.worker_class_str)\n"
    )
    fake.chmod(0o755)
    result = subprocess.run(
        ["sh", str(ROOT / "deploy" / "web-entrypoint.sh")],
        cwd=ROOT,
        env={
            "PATH": f"{tmp_path}:/usr/bin:/bin",
            "MIGRATE_ON_START": "false",
            "GUNICORN_CMD_ARGS": cmd_args.group(1),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_the_container_runs_gunicorn_with_the_documented_settings(tmp_path):
    # docs/configuration.md: WEB_CONCURRENCY 2, WEB_THREADS 8, gthread, keep-alive 75 s.
    assert _container_gunicorn(tmp_path) == ["2", "8", "75", "gthread"]
    assert _container_gunicorn(tmp_path, WEB_CONCURRENCY="3", WEB_THREADS="4")[:2] == ["3", "4"]
