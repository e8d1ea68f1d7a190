"""verify_aggregates: each pre-aggregate against the events table, the
differences printed by table and key, exit 1 on drift, --repair, and
--since/--until for the counting tables."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.ingest import ingest
from audit.models import EntityInterval, HourlyCount, OrgMembership
from demo.history import generate
from tests.dashboards.conftest import NOW

CLEAN = "Every pre-aggregate equals the events table."


@pytest.fixture
def history(db) -> None:
    ingest(list(generate(800, days=90, seed=31, end=NOW)), now=NOW)


def verify(*args: str) -> tuple[int, str, str]:
    """Run the command; (exit status, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_aggregates", *args, stdout=out, stderr=err)
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, out.getvalue(), err.getvalue()


def sql(statement: str, params: dict | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        assert cursor.rowcount == 1, statement


def _hourly_drift() -> str:
    row = HourlyCount.objects.order_by("bucket", "event_type").first()
    sql(
        "UPDATE event_counts_hourly SET n = n + 1 WHERE bucket = %(bucket)s "
        "AND event_type = %(type)s AND success = %(success)s",
        {"bucket": row.bucket, "type": row.event_type, "success": row.success},
    )
    return (
        f"event_counts_hourly {{'bucket': {row.bucket!r}, 'event_type': '{row.event_type}', "
        f"'success': {row.success}}}: stored {{'n': {row.n + 1}}}, events say {{'n': {row.n}}}"
    )


def _membership_drift() -> str:
    row = OrgMembership.objects.filter(removed=False).order_by("org", "member").first()
    sql("DELETE FROM org_memberships WHERE id = %(id)s", {"id": row.id})
    return (
        f"org_memberships ({row.org}, {row.kind}, {row.member}): stored event None "
        f"(removed=None), events say {row.last_uuid} (removed=False)"
    )


def _entity_state_drift() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE entities SET state = 'frozen' WHERE (kind, scope, name) = ("
            "SELECT kind, scope, name FROM entities WHERE kind = 'user' AND state = 'active' "
            "ORDER BY name LIMIT 1) RETURNING name"
        )
        (name,) = cursor.fetchone()
    return f"entities ('user', '', '{name}'): {{'state': ('frozen', 'active')}}"


def _interval_drift() -> str:
    row = EntityInterval.objects.filter(kind="project").order_by("name", "valid_from").first()
    sql("DELETE FROM entity_intervals WHERE id = %(id)s", {"id": row.id})
    return f"entity_intervals ('project', '', '{row.name}'): differ from the events"


DRIFTS = {
    "event_counts_hourly": _hourly_drift,
    "org_memberships": _membership_drift,
    "entities": _entity_state_drift,
    "entity_intervals": _interval_drift,
}


def test_a_clean_database_passes_and_says_so(history):
    assert verify() == (0, CLEAN + "\n", "")


@pytest.mark.parametrize("planted", DRIFTS)
def test_a_drift_planted_by_hand_is_named_with_its_key_and_exits_1(history, planted):
    line = DRIFTS[planted]()
    status, out, err = verify()
    assert status == 1
    assert out.splitlines() == [line]
    assert "1 pre-aggregates differ from the events table" in err


@pytest.mark.parametrize("planted", DRIFTS)
def test_repair_rebuilds_what_drifted(history, planted):
    DRIFTS[planted]()
    status, out, _ = verify("--repair")
    assert status == 0
    repaired = "entities" if planted == "entity_intervals" else planted
    assert out.splitlines()[-1] == f"Repaired: {repaired}."
    assert verify() == (0, CLEAN + "\n", "")


def test_several_drifts_are_all_reported_and_repaired_at_once(history):
    lines = [plant() for plant in DRIFTS.values()]
    status, out, err = verify()
    assert status == 1
    assert set(lines) <= set(out.splitlines())
    assert "3 pre-aggregates differ" in err  # the intervals are the entities' own
    assert verify("--repair")[0] == 0
    assert verify() == (0, CLEAN + "\n", "")


def test_since_and_until_limit_the_count_tables_checked(history):
    line = _hourly_drift()
    bucket = HourlyCount.objects.order_by("bucket", "event_type").first().bucket
    after, before = bucket + timedelta(hours=1), bucket
    # Outside the range: not checked. An `until` on the hour ends the one before.
    assert verify("--since", after.isoformat())[0] == 0
    assert verify("--until", before.isoformat())[0] == 0
    # Inside it, even partly: named.
    status, out, _ = verify(
        "--since", (bucket + timedelta(minutes=59)).isoformat(), "--until", after.isoformat()
    )
    assert (status, out.splitlines()) == (1, [line])
    # A repair of that range fixes it.
    assert verify("--since", bucket.isoformat(), "--until", after.isoformat(), "--repair")[0] == 0
    assert verify() == (0, CLEAN + "\n", "")


def test_a_bad_since_is_refused_with_a_message(history):
    with pytest.raises(CommandError, match="not-a-time"):
        verify("--since", "not-a-time")
