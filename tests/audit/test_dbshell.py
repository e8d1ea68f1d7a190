"""The seed's example SQL, run verbatim through `manage.py dbshell`."""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from audit.ingest import ingest

ROOT = Path(settings.BASE_DIR)
SEED_SQL = (
    "SELECT * FROM events WHERE event_type = 'org_member_added' AND success = true "
    "AND payload->>'kind' = 'usermember';"
)


def database_url() -> str:
    s = connection.settings_dict
    host = quote(s["HOST"], safe="") if s["HOST"].startswith("/") else s["HOST"]
    port = f":{s['PORT']}" if s["PORT"] else ""
    return f"postgresql://{s['USER']}@{host}{port}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_the_seeds_example_query_runs_verbatim_in_dbshell():
    rows = json.loads((ROOT / "tests" / "fixtures" / "seed_rows.json").read_text())
    ingest(rows)
    result = subprocess.run(
        [sys.executable, "manage.py", "dbshell"],
        input=SEED_SQL,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url()},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "2e2812be-3e7a-4a30-8c64-4ec09018f1ab" in result.stdout
    assert "(1 row)" in result.stdout
