"""The configuration table (docs/configuration.md, linked from the README)
names every variable the settings read, and every one an operator sets for
the compose deployment, so nobody has to read settings.py or
docker-compose.yml to find a knob."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def documented() -> set[str]:
    """The variables the configuration table names in its first column (a row
    may name several: `WEB_CONCURRENCY`, `WEB_THREADS`)."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    table = page.split("## The table", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", table, flags=re.MULTILINE)
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cell)}


def test_every_environment_variable_of_the_settings_is_in_the_table():
    settings = (ROOT / "sphere_stats" / "settings.py").read_text()
    read = set(re.findall(r"\benv(?:str|int|bool|list|rate|networks)\(\s*\"([A-Z_]+)\"", settings))
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= read
    assert read - documented() == set()


def test_every_variable_of_env_example_and_the_compose_file_is_in_the_table():
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    compose = (ROOT / "docker-compose.yml").read_text()
    # ${VAR}, ${VAR:-default}, ${VAR:?message}; not $${VAR}, which compose
    # passes on for the container's shell to expand.
    named |= set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", compose))
    assert {"SECRET_KEY", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= named
    assert named - documented() == set()


def test_the_makefiles_worker_count_is_in_the_table():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^WORKERS \?= ", makefile, flags=re.MULTILINE)
    assert "WORKERS" in documented()


def test_the_readme_links_to_the_table():
    readme = (ROOT / "README.md").read_text()
    configuration = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert "(docs/configuration.md)" in configuration
