"""`make bench` (bench/run.py): a bench's printed figures rewrite their rows of
docs/benchmarks.md and leave every other row, and the text around it, alone."""

from pathlib import Path

import pytest

from bench import run

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

FAULT_FREEZE_OUTPUT = """\
PostgreSQL /usr/lib/postgresql/15/bin on 127.0.0.1:40123; gunicorn at http://127.0.0.1:40124
froze 9 PostgreSQL processes for 20.0 s under load
requests: 3912; by status: 200: 2101, 201: 1300, 503: 511
started while frozen: 640; by status: 503: 511, 200: 129
  ingest   n= 1800  max   5.80 s  p99   3.10 s  | while frozen: n= 300  max   5.80 s
slowest answer: 5.80 s (bound 10 s)
events acknowledged: 1301 (of which re-sent after the run: 7); stored once: 1301
service back after SIGCONT: 1.20 s
OK: every request answered within the bound, nothing acknowledged lost or doubled
"""

INGEST_HTTP_OUTPUT = """\
gunicorn: 2 workers x 4 threads (deploy/gunicorn.conf.py); 2 CPUs shared by clients, server \
and PostgreSQL; load average 0.50 0.40 0.30
single-event POST (wrk, 16 connections): 1,050 events/s stored over 15.0 s (15,800 requests, \
15,750 rows, errors 0), p50 16.1 ms, p99 31.9 ms
batch POST (10000/request, 2 clients): 22,000 events/s (p50 870 ms per batch)
raw COPY into the same indexed table: 41,000 events/s
batch/COPY: 0.54 (goal >= 0.50)   single: 1,050 events/s (meets 1,000/s), p50 16.1 ms, \
p99 31.9 ms (meets 50 ms)
"""

FREEZE_FIGURE = "scratch PostgreSQL stopped (SIGSTOP) for 20 s under load"
DOC = f"""\
# Benchmarks

Words before the table.

{run.BEGIN}
| Area | Figure | Result | Limit | Command | Date | Machine |
| --- | --- | --- | --- | --- | --- | --- |
| ingest | single-event POSTs/s | **900/s** (wrk) | ≥ 1,000/s | `bench/ingest_http.py` | 2026-01-01 | old VM |
| faults | {FREEZE_FIGURE} | 10 requests | slowest answer ≤ 10 s | `bench/fault_freeze.py` | 2026-01-01 | old VM |
| faults | a restart under load | **8,552 events/s** | 0 lost | `bench/load.py` | 2026-01-02 | old VM |
| storage | `events` per million events | **762 MiB** | — | `bench/table_size.py` | 2026-01-03 | old VM |
{run.END}

Notes after the table.
"""


def bench(name: str) -> run.Bench:
    return next(b for b in run.BENCHES if b.name == name)


def rewritten(name: str, output: str) -> str:
    rows = run.measured_rows(bench(name), output, "2026-12-24", "2 CPUs, Some CPU")
    return run.rewrite(DOC, rows)


def test_a_bench_result_rewrites_its_row_and_leaves_the_others():
    text = rewritten("fault_freeze", FAULT_FREEZE_OUTPUT)

    before, after = DOC.splitlines(), text.splitlines()
    assert len(after) == len(before)
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert len(changed) == 1
    old, new = changed[0]
    assert FREEZE_FIGURE in old
    assert new == (
        f"| faults | {FREEZE_FIGURE} | 3912 requests, slowest answer **5.80 s**, 1301 of 1301"
        " acknowledged events stored exactly once, service back 1.20 s after SIGCONT"
        " | slowest answer ≤ 10 s | `bench/fault_freeze.py` | 2026-12-24 | 2 CPUs, Some CPU |"
    )


def test_new_figures_join_the_rows_of_their_area():
    text = rewritten("ingest_http", INGEST_HTTP_OUTPUT)

    rows = run.parse_rows(text.split(run.BEGIN)[1].split(run.END)[0].strip().splitlines()[2:])
    assert [(r.area, r.figure.split(" ")[0]) for r in rows] == [
        ("ingest", "single-event"),
        ("ingest", "single-event"),
        ("ingest", "10,000-event"),
        ("faults", "scratch"),
        ("faults", "a"),
        ("storage", "`events`"),
    ]
    assert rows[0].result == "**1,050/s** (wrk, gunicorn 2 × 4)"
    assert rows[1].result == "16.1 / 31.9 ms"
    assert rows[2].result == "**0.54** (22,000 vs 41,000 events/s)"
    assert {r.date for r in rows[3:]} == {"2026-01-01", "2026-01-02", "2026-01-03"}
    assert text.startswith("# Benchmarks\n\nWords before the table.\n")
    assert text.endswith(f"{run.END}\n\nNotes after the table.\n")


def test_a_failed_check_is_written_into_its_row():
    output = FAULT_FREEZE_OUTPUT.replace(
        "OK: every request", "FAILED: 3 requests took longer than 10 s\nnot OK: every request"
    )
    [row] = run.measured_rows(bench("fault_freeze"), output, "2026-12-24", "here")

    assert row.result.endswith("; FAILED: 3 requests took longer than 10 s")


def test_a_figure_the_bench_did_not_print_stops_the_run():
    cut = FAULT_FREEZE_OUTPUT.replace("slowest answer: 5.80 s (bound 10 s)\n", "")

    with pytest.raises(run.MissingFigure, match="slowest answer"):
        run.measured_rows(bench("fault_freeze"), cut, "2026-12-24", "here")


def test_the_table_in_the_docs_reads_back_as_it_is():
    text = DOCS.read_text()

    assert run.rewrite(text, []) == text
