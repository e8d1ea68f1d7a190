"""Every writer counts: rows written to `events` by any client, on a
connection of its own and committed (a plain INSERT, COPY, INSERT … SELECT,
the ingest API, DELETE, UPDATE, TRUNCATE), are counted by every pre-aggregate
at once, and every stat the pages show from the pre-aggregates equals the
same stat computed from `events` alone."""

import json
import random
import threading
from datetime import timedelta

import pytest
import requests

from audit.ingest import validate
from audit.ingest_copy import COPY_MIN_ROWS
from audit.models import Entity, Event, FacilityAllocation, HourlyCount
from demo.history import generate
from sphere_stats.models import ApiToken
from tests.audit.adopt_helpers import (
    copy_in,
    drift,
    insert_each,
    insert_select,
    own_connection,
    random_queries,
    stats_differing,
)
from tests.dashboards.conftest import NOW, event, member

pytestmark = pytest.mark.django_db(transaction=True)

DERIVED = (
    "event_counts_hourly",
    "event_counts_daily",
    "login_users_hourly",
    "login_users_daily",
    "login_users_weekly",
    "login_users_monthly",
    "event_counts_daily_caller",
    "event_counts_daily_caller_type",
    "event_counts_daily_project",
    "org_memberships",
    "org_membership_events",
    "facility_allocations",
    "entities",
    "entity_intervals",
    "entity_changes_hourly",
    "entity_changes_daily",
    "entity_changes_monthly",
)


@pytest.fixture
def history() -> list[dict]:
    return list(generate(1500, days=200, seed=23, end=NOW))


@pytest.fixture
def conn():
    with own_connection() as connection:
        yield connection


def assert_exact(seed: int, windows: int = 3) -> None:
    """Every pre-aggregate equals `events`, and so does every pre-aggregated
    stat over `period=all` and a few random windows and zones."""
    assert drift() == {}
    # Not vacuously: the hourly counts hold every row.
    assert sum(HourlyCount.objects.values_list("n", flat=True)) == Event.objects.count()
    rng = random.Random(seed)
    assert stats_differing(NOW, random_queries(rng, NOW, windows), rng) == []


def test_rows_inserted_one_by_one_on_another_connection_are_counted(history, conn):
    insert_each(conn, history[:400])
    assert Event.objects.count() == 400
    assert_exact(1)


def test_rows_copied_in_are_counted(history, conn):
    copy_in(conn, history)
    assert Event.objects.count() == len(history)
    assert Entity.objects.filter(kind="user").count() > 20
    assert_exact(2)


def test_rows_of_one_insert_select_are_counted(history, conn):
    insert_select(conn, history)
    assert Event.objects.count() == len(history)
    assert_exact(3)


def test_rows_sent_through_the_ingest_api_are_counted(history, post_events):
    # The first batch goes in by COPY, the others by INSERT (audit.ingest).
    for start, end in ((0, COPY_MIN_ROWS), (COPY_MIN_ROWS, 1250), (1250, len(history))):
        answer = post_events(history[start:end])
        assert answer.json()["accepted"] == end - start, answer.content
    assert Event.objects.count() == len(history)
    assert_exact(4)


def test_deleted_rows_stop_counting(history, conn):
    copy_in(conn, history)
    busiest = Event.objects.filter(event_type="user_login").values_list("subject", flat=True)[0]
    org = Entity.objects.filter(kind="organization").values_list("name", flat=True)[0]
    # A prune, one user's and one organization's every event, a random few.
    conn.execute("DELETE FROM events WHERE timestamp < %s", [NOW - timedelta(days=150)])
    conn.execute("DELETE FROM events WHERE subject = %s OR caller = %s", [busiest, busiest])
    conn.execute("DELETE FROM events WHERE subject = %s OR target = %s", [org, org])
    doomed = random.Random(5).sample([e["event_uuid"] for e in history], 100)
    conn.execute("DELETE FROM events WHERE event_uuid = ANY(%s::uuid[])", [doomed])
    assert 0 < Event.objects.count() < len(history) - 100
    assert not Entity.objects.filter(kind="organization", name=org).exists()
    assert_exact(5)


def test_updated_rows_count_as_their_new_values(history, conn):
    copy_in(conn, history)
    flipped, changed = Event.objects.filter(event_type="user_activated").values_list(
        "subject", flat=True
    )[:2]
    moved = (
        Event.objects.filter(event_type="user_login")
        .exclude(caller__in=[flipped, changed])
        .values_list("caller", flat=True)
        .first()
    )
    org = Entity.objects.filter(kind="organization").values_list("name", flat=True)[0]
    project = Event.objects.exclude(payload__project=None).values_list(
        "payload__project", flat=True
    )[0]
    for sql, params in [
        # Outcomes flipped, times moved across hours, days and months.
        ("UPDATE events SET success = NOT success WHERE subject = %s", [flipped]),
        (
            "UPDATE events SET timestamp = timestamp - interval '37 days 5 hours' "
            "WHERE event_type IN ('user_login', 'project_created') AND caller = %s",
            [moved],
        ),
        # A lifecycle event turned into another; an organization renamed.
        (
            "UPDATE events SET event_type = 'user_frozen' WHERE event_type = 'user_activated' "
            "AND subject = %s",
            [changed],
        ),
        (
            "UPDATE events SET subject = subject || '_renamed' WHERE subject_type = "
            "'organization' AND subject = %s",
            [org],
        ),
        # Experiments moved to another project (their scope and the project counts).
        (
            "UPDATE events SET payload = jsonb_set(payload, '{project}', '\"moved\"') "
            "WHERE payload->>'project' = %s",
            [project],
        ),
    ]:
        assert conn.execute(sql, params).rowcount > 0, sql
    assert Entity.objects.filter(kind="organization", name=f"{org}_renamed").exists()
    assert not Entity.objects.filter(kind="organization", name=org).exists()
    assert_exact(6)


def test_truncate_empties_every_pre_aggregate_and_counting_resumes(history, conn):
    copy_in(conn, history)
    conn.execute("TRUNCATE events")
    for table in DERIVED:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
    assert drift() == {}
    insert_select(conn, history[:300])
    assert_exact(7)


# --- random mixes of writers ----------------------------------------------------------

WRITERS = ("insert", "copy", "insert_select", "api", "delete", "update")
UPDATES = (
    "UPDATE events SET success = NOT success WHERE event_uuid = ANY(%s::uuid[])",
    "UPDATE events SET timestamp = timestamp + interval '3 days 7 hours' "
    "WHERE event_uuid = ANY(%s::uuid[])",
    "UPDATE events SET timestamp = timestamp - interval '50 minutes' "
    "WHERE event_uuid = ANY(%s::uuid[])",
    "UPDATE events SET subject = subject || '2' WHERE event_uuid = ANY(%s::uuid[])",
)


@pytest.mark.parametrize("seed", [101, 202, 303])
def test_random_mixes_of_writers_keep_every_pre_aggregate_exact(seed, conn, post_events):
    rng = random.Random(seed)
    pending = list(generate(2000, days=200, seed=seed, end=NOW))
    # Arrival order is not time order: some events come late.
    for _ in range(len(pending) // 10):
        i, j = rng.randrange(len(pending)), rng.randrange(len(pending))
        pending[i], pending[j] = pending[j], pending[i]
    stored: list[str] = []
    used = set()
    for round_ in range(14):
        writer = rng.choice(
            [w for w in WRITERS if (stored if w in ("delete", "update") else pending)]
        )
        used.add(writer)
        if writer in ("delete", "update"):
            chosen = rng.sample(stored, min(len(stored), rng.randint(1, 120)))
            if writer == "delete":
                conn.execute("DELETE FROM events WHERE event_uuid = ANY(%s::uuid[])", [chosen])
                stored = [u for u in stored if u not in set(chosen)]
            else:
                conn.execute(rng.choice(UPDATES), [chosen])
        else:
            size = rng.randint(1, 300) if rng.random() < 0.8 else rng.randint(300, 700)
            batch, pending = pending[:size], pending[size:]
            if writer == "insert":
                insert_each(conn, batch)
            elif writer == "copy":
                copy_in(conn, batch)
            elif writer == "insert_select":
                insert_select(conn, batch)
            else:
                assert post_events(batch).json()["accepted"] == len(batch)
            stored += [e["event_uuid"] for e in batch]
        assert drift() == {}, (seed, round_, writer)
        if round_ % 5 == 4:
            assert stats_differing(NOW, random_queries(rng, NOW, 2), rng) == [], round_
    assert len(used) >= 4, used
    assert Event.objects.count() == len(stored)
    # Not vacuously: allocations in use and freed ones were kept too.
    assert {a.freed for a in FacilityAllocation.objects.all()} == {False, True}
    assert_exact(seed, windows=6)


# --- two writers at once on one entity --------------------------------------------------


def _shared_events() -> tuple[list[dict], list[dict]]:
    """Events about one user and one organization, in two interleaved
    streams: (through the API, through INSERT)."""
    start = NOW - timedelta(days=3)
    api, raw = [], []
    for i in range(40):
        at = (start + timedelta(minutes=7 * i)).isoformat()
        later = (start + timedelta(minutes=7 * i + 3)).isoformat()
        api.append(event(at, "user_login", "shared", "user", caller="shared", success=i % 5 != 0))
        api.append(
            member(
                at,
                "org_member_added" if i % 3 else "org_member_deleted",
                "sharedorg",
                "organization",
                "shared",
            )
        )
        raw.append(event(later, "user_frozen" if i % 2 else "user_unfrozen", "shared", "user"))
        raw.append(
            member(
                later,
                "org_member_updated",
                "sharedorg",
                "organization",
                "shared",
                role="maintainer",
            )
        )
    # Realistic rows on both sides: what the API would accept.
    validate(api + raw, now=NOW)
    return api, raw


def test_two_writers_at_once_on_one_entity_equal_the_raw_fold(live_server, conn):
    api, raw = _shared_events()
    setup = [
        event((NOW - timedelta(days=4)).isoformat(), "user_created", "shared", "user"),
        event((NOW - timedelta(days=4)).isoformat(), "org_created", "sharedorg", "organization"),
    ]
    copy_in(conn, setup)
    token = ApiToken.issue("writers", ["ingest"])[1]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def through_api() -> None:
        try:
            with requests.Session() as session:
                barrier.wait()
                for e in api:
                    answer = session.post(
                        f"{live_server.url}/api/v1/events",
                        data=json.dumps(e),
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Content-Type": "application/json",
                        },
                        timeout=60,
                    )
                    assert answer.json()["accepted"] == 1, answer.text
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    def through_insert() -> None:
        try:
            with own_connection() as other:
                barrier.wait()
                insert_each(other, raw)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=through_api), threading.Thread(target=through_insert)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert Event.objects.count() == len(setup) + len(api) + len(raw)
    assert drift() == {}
    shared = Entity.objects.get(kind="user", name="shared")
    # The last of them, in time order, is a raw user_frozen (i = 39 is odd).
    assert shared.state == "frozen"
    assert_exact(8)
