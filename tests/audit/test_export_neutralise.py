"""Spreadsheet safety of every CSV the app writes (audit/export.py's
neutralisation, in SQL for the exports and in Python for the stats' CSV):
a formula character after leading spaces, tabs or newlines is caught too,
since some spreadsheets trim those before they read the cell (issue 17)."""

import csv
import io
from datetime import timedelta

import pytest
import time_machine

from audit.export import neutralise, unneutralise
from dashboards.stats import Column, Result, to_csv
from sphere_stats.windows import Window
from tests.audit.exp_helpers import BASE, event, store

pytestmark = pytest.mark.django_db

NOW = BASE + timedelta(days=1)

# Cells a spreadsheet may run as a formula, each with white space before it.
HIDDEN_FORMULAS = [" =1+1", "\n=cmd", "\t@x", "  +SUM(A1)", "\r\n-2+3", " \n @evil", "'' =x"]
# Cells that stay as they are: no formula character after the white space.
PLAIN = [" plain", "\nline", "a =1", "-5", "'-2.5e3", "", "x\n=y"]


def test_a_formula_after_leading_white_space_or_a_newline_gets_the_quote():
    for value in HIDDEN_FORMULAS:
        assert neutralise(value) == "'" + value
        assert unneutralise(neutralise(value)) == value
    for value in PLAIN:
        assert neutralise(value) == value
        assert unneutralise(value) == value


@time_machine.travel(NOW, tick=False)
def test_the_export_quotes_hidden_formulas_as_the_python_twin_does(analyst_client):
    values = HIDDEN_FORMULAS + [value for value in PLAIN if value]
    store(
        *[
            event(
                error_message=value,
                success=False,
                payload={"kind": "usermember", "role": "member", "note": value},
            )
            for value in values
        ]
    )
    response = analyst_client.get("/events/export?format=csv&period=all&fields=payload.note")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    written = sorted(row["error_message"] for row in rows)
    assert written == sorted(neutralise(value) for value in values)
    assert sorted(row["payload.note"] for row in rows) == written
    assert "' =1+1" in written and "'\n=cmd" in written and "'\t@x" in written


def test_the_stats_csv_quotes_names_that_would_run_as_formulas():
    result = Result(
        columns=[Column("user"), Column("logins", "integer")],
        rows=[[' =HYPERLINK("http://evil")', 3], ["alice", -2], ["\n@cmd", 1]],
    )
    window = Window.from_query({"period": "7d"}, now=NOW)
    rows = list(csv.reader(io.StringIO(to_csv(result, window))))
    assert rows == [
        ["user", "logins"],
        ['\' =HYPERLINK("http://evil")', "3"],
        ["alice", "-2"],
        ["'\n@cmd", "1"],
    ]
