"""Pages, the read API and healthz against a real PostgreSQL streaming replica.

A scratch primary and a hot standby made from it with pg_basebackup, both on
loopback (tests/scratch_pg.py), and gunicorn in front of them with
DATABASE_URL (the primary) and DATABASE_REPLICA_URL (the replica). Replay on
the replica is paused to make it visibly behind: what a request then sees
tells which server answered it.
"""

import time

import requests

from tests.scratch_pg import (
    app_env,
    log_of,
    logged_in_session,
    make_event,
    run_sql,
    running_app,
    scratch_postgres,
    serving_static_from,
    stop,
    streaming_replica,
)

CALLER = "replica-test"


def post_event(app, token: str) -> str:
    event = {**make_event(), "caller": CALLER}
    response = requests.post(
        f"{app.url}/api/v1/events",
        json=event,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return event["event_uuid"]


def listed(app) -> set[str]:
    """The uuids of CALLER's events, as the read API lists them."""
    response = requests.get(
        f"{app.url}/api/v1/events",
        params={"caller": CALLER, "limit": 100},
        headers={"Authorization": f"Bearer {app.token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {event["event_uuid"] for event in response.json()["events"]}


def eventually(check, seconds: float = 30):
    """check()'s first truthy answer within `seconds` (replay is asynchronous)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def new_log(server, offset: int) -> str:
    return log_of(server).read_bytes()[offset:].decode(errors="replace")


# One test, not one per check: each would start two PostgreSQL servers and a
# gunicorn of its own.
def test_reads_go_to_the_replica_writes_to_the_primary_and_pages_survive_its_loss(
    _collected_static_files, tmp_path
):
    with scratch_postgres() as primary, streaming_replica(primary) as replica:
        env = app_env(
            primary.url,
            DATABASE_REPLICA_URL=replica.url,
            REPLICA_CHECK_SECONDS="1",
            REPLICA_MAX_LAG_SECONDS="3600",
        )
        env = serving_static_from(env, _collected_static_files, tmp_path)
        with running_app(env) as app:
            health = requests.get(f"{app.url}/healthz", timeout=10).json()
            assert health["db"] == "ok"
            assert health["replica"]["status"] == "ok"

            # Ingest writes to the primary and never reaches the replica:
            # no connection and no statement in the replica's log meanwhile.
            offset = log_of(replica).stat().st_size
            first = post_event(app, app.token)
            assert run_sql(primary, f"SELECT 1 FROM events WHERE event_uuid = '{first}'")
            quiet = new_log(replica, offset)
            assert "connection received" not in quiet
            assert "statement:" not in quiet

            # The event replays to the replica and the read API lists it.
            assert eventually(lambda: first in listed(app))

            # Replay paused: the primary has the next event, the read API
            # does not, so the API reads from the replica, and its query is
            # in the replica's log.
            run_sql(replica, "SELECT pg_wal_replay_pause()")
            offset = log_of(replica).stat().st_size
            second = post_event(app, app.token)
            assert run_sql(primary, f"SELECT 1 FROM events WHERE event_uuid = '{second}'")
            assert listed(app) == {first}
            assert 'FROM "events"' in new_log(replica, offset)

            # The replica falls behind while paused: healthz says how far,
            # without failing, and a page says its data is that old.
            def lagging() -> dict | None:
                health = requests.get(f"{app.url}/healthz", timeout=10).json()
                return health if (health["replica"]["lag_seconds"] or 0) >= 6 else None

            health = eventually(lagging)
            assert health, "the replica's lag never reached 6 s with replay paused"
            assert health["db"] == "ok"
            assert health["replica"]["status"] == "ok"  # under REPLICA_MAX_LAG_SECONDS
            session = logged_in_session(app.url)
            page = session.get(f"{app.url}/", timeout=30)
            assert page.status_code == 200
            assert "s behind the primary" in page.text

            # Replay resumed: the replica catches up, and the note goes away
            # once each worker has checked it again (REPLICA_CHECK_SECONDS).
            run_sql(replica, "SELECT pg_wal_replay_resume()")
            assert eventually(lambda: listed(app) == {first, second})

            def current_page() -> bool:
                page = session.get(f"{app.url}/", timeout=30)
                return page.status_code == 200 and "behind the primary" not in page.text

            assert eventually(current_page)

            # The replica goes away: pages and the API answer from the
            # primary, from the very next request on, and show what ingest
            # stored since.
            stop(replica)
            third = post_event(app, app.token)
            for _ in range(8):  # both workers, several threads each
                assert listed(app) == {first, second, third}
                page = session.get(f"{app.url}/", timeout=30)
                assert page.status_code == 200
                assert "behind the primary" not in page.text
            # Each worker checks again within REPLICA_CHECK_SECONDS.
            down = {"db": "ok", "replica": {"status": "down", "lag_seconds": None}}
            assert eventually(lambda: requests.get(f"{app.url}/healthz", timeout=10).json() == down)
