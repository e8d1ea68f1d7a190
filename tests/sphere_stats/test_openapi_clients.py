"""A Python client generated from the served schema by openapi-python-client
(the command docs/api.md gives) has every operation, and works against a
running server: it ingests a batch, reads it back and pages through it."""

import importlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client

from sphere_stats.models import ApiToken
from tests.factories import event

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "sphere_stats_client"
# Each generated endpoint module builds its request with these two lines.
REQUEST = re.compile(r'"method": "(\w+)",\s*"url": "([^"]+)"')


# The generator renames a path parameter that a query parameter's name
# shadows (stats/{name} with ?name= becomes {name_path}): compare the
# paths without their parameters' names.
PARAMETER = re.compile(r"\{[^}]*\}")


def operations(pairs) -> set[tuple[str, str]]:
    return {(method, PARAMETER.sub("{}", path)) for method, path in pairs}


def served_operations(schema: dict) -> set[tuple[str, str]]:
    return operations((method, path) for path, item in schema["paths"].items() for method in item)


@pytest.fixture
def generated(db, tmp_path: Path) -> Iterator[tuple[dict, Path, ModuleType]]:
    """(the served schema, the generated package's folder, the package imported)."""
    schema_file = tmp_path / "openapi.json"
    response = Client().get("/api/v1/openapi.json")
    schema_file.write_bytes(response.content)
    folder = tmp_path / PACKAGE
    command = [
        str(GENERATOR),
        "generate",
        "--path",
        str(schema_file),
        "--output-path",
        str(folder),
        "--meta",
        "none",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield response.json(), folder, importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_the_generated_client_has_a_function_for_every_operation_ingest_included(generated):
    schema, folder, _ = generated
    made = operations(
        (method, url)
        for module in (folder / "api").glob("*/*.py")
        for method, url in REQUEST.findall(module.read_text())
    )
    assert made == served_operations(schema)
    assert ("post", "/api/v1/events") in made
    assert (folder / "api" / "events" / "ingest_events.py").exists()


def login(i: int) -> dict:
    """The i-th login of a series: a UUID, a day and a user of its own."""
    return event(
        event_uuid=uuid.UUID(int=1000 + i),
        timestamp=f"2026-04-2{i}T10:00:00Z",
        caller=f"user{i}",
        subject=f"user{i}",
        payload={"method": "password"},
    )


@pytest.mark.django_db(transaction=True)
def test_a_generated_client_ingests_a_batch_reads_it_back_and_pages_through_it(
    generated, live_server
):
    _, _, package = generated
    events = importlib.import_module(f"{PACKAGE}.api.events")
    models = importlib.import_module(f"{PACKAGE}.models")
    for name in ("ingest_events", "list_events", "get_event"):
        importlib.import_module(f"{PACKAGE}.api.events.{name}")
    token = ApiToken.issue("generated-client", ["ingest", "read"])[1]
    client = package.AuthenticatedClient(base_url=live_server.url, token=token)

    batch = [models.EventIn.from_dict(login(i)) for i in range(5)]
    stored = events.ingest_events.sync(client=client, body=batch)
    assert isinstance(stored, models.IngestOut), stored
    assert (stored.accepted, stored.duplicates) == (5, 0)

    # The same batch wrapped as {"events": [...]} is five duplicates.
    wrapped = models.WrappedEvents(events=batch)
    assert events.ingest_events.sync(client=client, body=wrapped).duplicates == 5
    single = events.ingest_events.sync(client=client, body=models.EventIn.from_dict(login(5)))
    assert single.accepted == 1

    one = events.get_event.sync(client=client, event_uuid=str(uuid.UUID(int=1003)))
    assert (one.caller, one.payload.additional_properties) == ("user3", {"method": "password"})

    seen, cursor = [], None
    for _ in range(10):
        # None is left out of the query string, as on the first page.
        page = events.list_events.sync(
            client=client, event_type=["user_login"], limit=2, cursor=cursor
        )
        assert isinstance(page, models.EventPage), page
        seen.extend(e.caller for e in page.events)
        if not page.next_:
            break
        cursor = parse_qs(urlparse(page.next_).query)["cursor"][0]
    assert seen == [f"user{i}" for i in range(5, -1, -1)]
