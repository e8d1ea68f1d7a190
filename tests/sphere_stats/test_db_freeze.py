"""A frozen PostgreSQL (SIGSTOP) under load: nobody hangs, nothing acknowledged
is lost, and service comes back by itself.

The short version of bench/fault_freeze.py, with the same plumbing: a scratch
PostgreSQL of its own on a loopback port, gunicorn with deploy/gunicorn.conf.py
(2 workers), clients posting events and getting pages while every PostgreSQL
process is stopped. Shorter timeouts than the defaults keep it brief; the bench
runs the defaults for 20 s and prints the latencies.
"""

from pathlib import Path

from bench import fault_freeze
from bench.servers import scratch_postgres, serving_static_from

FREEZE = 12.0


def frozen_run(static_root: Path, directory: Path) -> fault_freeze.Result:
    with scratch_postgres() as server:
        env = fault_freeze.app_env(
            server.url, DB_STATEMENT_TIMEOUT_MS="2000", DB_WAIT_TIMEOUT_MS="3000"
        )
        env = serving_static_from(env, static_root, directory)
        with fault_freeze.running_app(env) as app:
            return fault_freeze.run(
                server,
                app,
                freeze=FREEZE,
                before=1.5,
                after=3.0,
                ingest_clients=3,
                page_clients=3,
                client_timeout=FREEZE + 20,
            )


# One test, not one per check: under pytest-xdist each test could run on
# another worker and start a PostgreSQL and a gunicorn of its own.
def test_a_frozen_database_gets_503s_not_hangs_loses_nothing_and_recovers(
    _collected_static_files, tmp_path
):
    run = frozen_run(_collected_static_files, tmp_path)
    answers = run.load.requests

    # Every request got an answer, and none was a 500.
    assert answers
    assert [r for r in answers if r.status is None] == []
    assert [r for r in answers if r.status >= 500 and r.status != 503] == []

    # Requests sent in the first part of the freeze are answered while the
    # database is still stopped: bounded waits, not a hang until SIGCONT;
    # 503 with Retry-After, JSON for the API and the 503 page for HTML.
    early = [r for r in answers if run.frozen_at <= r.started < run.frozen_at + 5]
    assert {r.kind for r in early} >= {"ingest", "healthz", "api", "html"}
    assert [r for r in early if r.ended >= run.thawed_at] == []
    refused = [r for r in early if r.status == 503]
    assert {r.kind for r in refused} >= {"ingest", "healthz", "api", "html"}
    assert all(r.retry_after for r in refused)
    assert all(r.json for r in refused if r.kind in ("ingest", "api", "healthz"))
    assert not any(r.json for r in refused if r.kind == "html")

    # Every acknowledged event is stored exactly once (the unacknowledged
    # ones were sent again, as a client would).
    assert run.load.acknowledged
    assert set(run.stored) == run.load.acknowledged
    assert set(run.stored.values()) == {1}

    # Service comes back by itself after SIGCONT.
    assert run.recovered_after is not None
    after = [r for r in answers if r.started > run.thawed_at + 1]
    assert any(r.kind == "ingest" and r.status == 201 for r in after)
    assert any(r.kind == "html" and r.status == 200 for r in after)
