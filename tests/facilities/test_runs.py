"""facility_runs: the runs the triggers fold from the status reports give
the same uptime bars, status changes, "since" and chart bands as the
reports themselves, whoever writes or deletes the reports and in whatever
order they arrive."""

import random
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from audit import triggers
from audit.aggregates import FACILITY_RUNS
from audit.facility_runs import FacilityRuns, runs_current
from audit.models import Event
from dashboards.bands import facility_bands
from facilities.models import (
    CURRENT_STATUS_RAW_SQL,
    CURRENT_STATUS_SQL,
    Facility,
    FacilityRun,
)
from facilities.summary import status_history
from tests.factories import facility, report

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SLUGS = ("isi", "utah", "wisc")
STATUSES = ("up", "up", "up", "down", "maintenance", "degraded", "bogus", None)
# None, valid intervals below, at and above the 15-minute staleness limit,
# and values the catalog refuses (they hold FACILITY_STALE_AFTER).
INTERVALS = (None, None, 60, 900, 1200, 3600, 0, "600", 1.5)
# Gaps on a 5-minute grid: repeated timestamps, gaps exactly a hold long,
# and silences longer than any hold.
GAPS = (0, 5, 5, 10, 10, 15, 20, 60, 120, 300)


def _payload(rng: random.Random) -> dict:
    payload = {}
    status = rng.choice(STATUSES)
    if status is not None:
        payload["status"] = status
    if rng.random() < 0.3:
        payload["message"] = rng.choice(("fire alarm", "upgrade", ""))
    interval = rng.choice(INTERVALS)
    if interval is not None:
        payload["interval"] = interval
    return payload


def _reports(rng: random.Random, n: int, start: datetime) -> list[dict]:
    """n reports of random facilities at random times after `start`."""
    rows, at = [], start
    for _ in range(n):
        at += timedelta(minutes=rng.choice(GAPS))
        rows.append(
            {
                "event_uuid": uuid.UUID(int=rng.getrandbits(128)),
                "timestamp": at,
                "event_type": "facility_status",
                "caller": rng.choice(("ctl-a", "ctl-b")),
                "subject": rng.choice(SLUGS),
                "subject_type": "facility",
                "target": None,
                "success": True,
                "error_message": None,
                "payload": _payload(rng),
            }
        )
    return rows


def _insert_sql(rows: list[dict]) -> None:
    """One multi-row INSERT, as the portal writes."""
    params, values = {}, []
    for i, row in enumerate(rows):
        names = []
        for column, value in row.items():
            params[f"{column}{i}"] = value if column != "payload" else _json(value)
            names.append(f"%({column}{i})s" + ("::jsonb" if column == "payload" else ""))
        values.append(f"({', '.join(names)})")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO events ({', '.join(rows[0])}) VALUES {', '.join(values)}", params
        )


def _json(value) -> str:
    import json

    return json.dumps(value)


def _write(rng: random.Random, rows: list[dict]) -> None:
    way = rng.choice(("sql", "bulk", "one by one"))
    if way == "sql":
        _insert_sql(rows)
    elif way == "bulk":
        Event.objects.bulk_create([Event(**row) for row in rows])
    else:
        for row in rows:
            Event.objects.create(**row)


def _delete(rng: random.Random) -> None:
    reports = Event.objects.filter(event_type="facility_status")
    ids = list(reports.order_by("timestamp", "event_uuid").values_list("pk", flat=True))
    if not ids:
        return
    way = rng.choice(("some", "prefix", "newest"))
    if way == "some":
        Event.objects.filter(pk__in=rng.sample(ids, k=max(1, len(ids) // 10))).delete()
    elif way == "prefix":
        # A prune: every report of a facility before some moment.
        slug = rng.choice(SLUGS)
        mine = reports.filter(subject=slug).order_by("timestamp")
        cut = mine.values_list("timestamp", flat=True)[: rng.randint(1, 5)]
        if cut:
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM events WHERE event_type = 'facility_status' "
                    "AND subject = %(slug)s AND timestamp <= %(cut)s",
                    {"slug": slug, "cut": list(cut)[-1]},
                )
    else:
        Event.objects.filter(pk=ids[-1]).delete()


def _stored() -> list[tuple]:
    return list(FacilityRun.objects.order_by("facility", "started", "first_uuid").values_list())


def _assert_runs_equal_reports(rng: random.Random, span: tuple[datetime, datetime]) -> None:
    with connection.cursor() as cursor:
        assert FACILITY_RUNS.differences(cursor) == []
        assert runs_current(cursor, 900)
    lo, hi = span
    for _ in range(4):
        a = lo + (hi - lo) * rng.random() - timedelta(hours=1)
        b = a + timedelta(minutes=rng.choice((30, 240, 1440, 10000)))
        assert facility_bands(a, b, from_runs=True) == facility_bands(a, b, from_runs=False)
        for slug in SLUGS:
            one = Facility.objects.get(slug=slug)
            assert status_history(one, a, b, from_runs=True) == status_history(
                one, a, b, from_runs=False
            )
    with connection.cursor() as cursor:
        found = []
        for sql in (CURRENT_STATUS_SQL, CURRENT_STATUS_RAW_SQL):
            cursor.execute(sql, {"slugs": list(SLUGS), "stale": timedelta(minutes=15)})
            found.append(sorted(cursor.fetchall()))
        assert found[0] == found[1]


@pytest.mark.parametrize("seed", range(6))
def test_runs_give_what_the_reports_give_after_every_insert_and_delete(seed):
    rng = random.Random(seed)
    for slug in SLUGS:
        facility(slug)
    start = T0
    end = T0
    for _ in range(8):
        if rng.random() < 0.3:
            _delete(rng)
        else:
            # Mostly after the reports so far; sometimes back in their midst.
            begin = end if rng.random() < 0.6 else start + (end - start) * rng.random()
            rows = _reports(rng, rng.randint(1, 40), begin)
            _write(rng, rows)
            end = max(end, rows[-1]["timestamp"])
        _assert_runs_equal_reports(rng, (start, end + timedelta(hours=2)))


def test_a_rebuild_gives_the_rows_the_triggers_kept_and_verify_finds_no_difference():
    rng = random.Random(42)
    for slug in SLUGS:
        facility(slug)
    rows = _reports(rng, 200, T0)
    rng.shuffle(rows)
    for i in range(0, len(rows), 25):
        _write(rng, rows[i : i + 25])
    kept = _stored()
    assert kept
    triggers.rebuild_one(FACILITY_RUNS)
    assert _stored() == kept
    out = StringIO()
    call_command("verify_aggregates", stdout=out)
    assert "Every pre-aggregate equals the events table." in out.getvalue()


def test_verify_reports_a_run_the_reports_do_not_give_and_repair_fixes_it():
    facility("isi")
    report("isi", T0, "up")
    report("isi", T0 + timedelta(minutes=10), "up")
    FacilityRun.objects.update(status="down")
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("verify_aggregates", stdout=out, stderr=StringIO())
    assert "facility_runs (isi, 2026-03-01 00:00:00.000000)" in out.getvalue()
    call_command("verify_aggregates", "--repair", stdout=StringIO(), stderr=StringIO())
    assert list(FacilityRun.objects.values_list("status", flat=True)) == ["up"]


def test_a_new_report_continues_the_run_or_starts_one():
    facility("isi")
    report("isi", T0, "up", "all good")
    report("isi", T0 + timedelta(minutes=10), "up")
    report("isi", T0 + timedelta(minutes=20), "down", "fire alarm")
    # Silent longer than the 15-minute hold: the same status starts anew.
    report("isi", T0 + timedelta(minutes=50), "down")
    runs = list(FacilityRun.objects.order_by("started").values_list("status", "started", "ended"))
    assert runs == [
        ("up", T0, T0 + timedelta(minutes=20)),
        ("down", T0 + timedelta(minutes=20), T0 + timedelta(minutes=35)),
        ("down", T0 + timedelta(minutes=50), T0 + timedelta(minutes=65)),
    ]


def test_a_late_report_splits_the_run_it_lands_in():
    facility("isi")
    for minutes in (0, 10, 20, 30):
        report("isi", T0 + timedelta(minutes=minutes), "up")
    report("isi", T0 + timedelta(minutes=15), "down", "power")
    runs = list(FacilityRun.objects.order_by("started").values_list("status", "started", "ended"))
    assert runs == [
        ("up", T0, T0 + timedelta(minutes=15)),
        ("down", T0 + timedelta(minutes=15), T0 + timedelta(minutes=20)),
        ("up", T0 + timedelta(minutes=20), T0 + timedelta(minutes=45)),
    ]


def test_an_update_and_a_truncate_of_events_are_followed():
    facility("isi")
    first = report("isi", T0, "up")
    report("isi", T0 + timedelta(minutes=10), "up")
    with connection.cursor() as cursor:
        cursor.execute(
            'UPDATE events SET payload = \'{"status": "down"}\' WHERE event_uuid = %(id)s',
            {"id": first.pk},
        )
        assert FACILITY_RUNS.differences(cursor) == []
        assert FacilityRun.objects.count() == 2
        cursor.execute("TRUNCATE events")
    assert not FacilityRun.objects.exists()


def test_another_staleness_limit_reads_the_reports_until_the_runs_are_rebuilt(settings):
    facility("isi")
    report("isi", T0, "up")
    report("isi", T0 + timedelta(minutes=20), "up")
    one = Facility.objects.get(slug="isi")
    end = T0 + timedelta(hours=1)
    settings.FACILITY_STALE_AFTER = 30 * 60
    with connection.cursor() as cursor:
        assert not runs_current(cursor, 30 * 60)
    # Under the new limit the 20-minute silence is no gap: one segment.
    segs, _ = status_history(one, T0, end)
    assert [(s.start, s.end, s.status) for s in segs] == [
        (T0, T0 + timedelta(minutes=50), "up"),
        (T0 + timedelta(minutes=50), end, "unknown"),
    ]
    # The declaration with that value is another one: migrate rebuilds it.
    assert FacilityRuns("facility_runs", 30 * 60).definition != FACILITY_RUNS.definition


def _runs() -> list[tuple]:
    return list(FacilityRun.objects.order_by("started").values_list("status", "started", "ended"))


def test_a_late_report_inside_a_run_whose_hold_reaches_the_next_one_changes_nothing():
    facility("isi")
    for minutes in (0, 20, 40):
        report("isi", T0 + timedelta(minutes=minutes), "up", interval=1800)
    before = _runs()
    # Its 15-minute hold ends exactly when the next report comes: still one run.
    report("isi", T0 + timedelta(minutes=5), "up")
    report("isi", T0 + timedelta(minutes=25), "up", interval=600)
    assert _runs() == before == [("up", T0, T0 + timedelta(minutes=70))]


def test_a_late_report_with_a_shorter_hold_splits_the_run_it_lands_in():
    facility("isi")
    for minutes in (0, 20, 40):
        report("isi", T0 + timedelta(minutes=minutes), "up", interval=1800)
    # Its hold (15 minutes, the staleness limit) ends before the next report
    # at 20: the facility was silent from 18 to 20.
    report("isi", T0 + timedelta(minutes=3), "up")
    assert _runs() == [
        ("up", T0, T0 + timedelta(minutes=18)),
        ("up", T0 + timedelta(minutes=20), T0 + timedelta(minutes=70)),
    ]


# Reports of one facility on a 5-minute grid. The history is mostly "up"
# with long holds, so runs span gaps of up to 45 minutes; late reports land
# in them with holds that do and do not reach the next report (15 minutes
# without an interval), sometimes with another status.
LATE_GAPS = (5, 10, 15, 15, 20, 25, 30, 45)


def _late_report(rng: random.Random, at: datetime, *, history: bool = False) -> dict:
    if history:
        status = rng.choice(("up",) * 10 + ("down",))
        interval = rng.choice((None, 1200, 1800, 2700, 2700))
    else:
        status = rng.choice(("up",) * 6 + ("down", "maintenance"))
        interval = rng.choice((None, None, 600, 900, 1200, 1800, 2700))
    payload = {"status": status}
    if interval is not None:
        payload["interval"] = interval
    return {
        "event_uuid": uuid.UUID(int=rng.getrandbits(128)),
        "timestamp": at,
        "event_type": "facility_status",
        "caller": "ctl",
        "subject": "isi",
        "subject_type": "facility",
        "target": None,
        "success": True,
        "error_message": None,
        "payload": payload,
    }


def _change_one(rng: random.Random) -> None:
    """One UPDATE of one report: its payload, or its time moved."""
    ids = list(Event.objects.filter(event_type="facility_status").values_list("pk", flat=True))
    with connection.cursor() as cursor:
        if rng.random() < 0.5:
            cursor.execute(
                "UPDATE events SET payload = %(payload)s::jsonb WHERE event_uuid = %(id)s",
                {"payload": _json(_late_report(rng, T0)["payload"]), "id": rng.choice(ids)},
            )
        else:
            shift = timedelta(minutes=5 * rng.randint(-12, 12))
            cursor.execute(
                "UPDATE events SET timestamp = timestamp + %(shift)s WHERE event_uuid = %(id)s",
                {"shift": shift, "id": rng.choice(ids)},
            )


@pytest.mark.parametrize("seed", range(6))
def test_single_late_reports_appends_and_updates_keep_the_runs_exact(seed):
    rng = random.Random(1000 + seed)
    for slug in SLUGS:
        facility(slug)
    rows, at = [], T0
    for _ in range(60):
        rows.append(_late_report(rng, at, history=True))
        at += timedelta(minutes=rng.choice(LATE_GAPS))
    _insert_sql(rows)
    end = at
    for _ in range(50):
        way = rng.random()
        if way < 0.6:
            # One report, one statement, on the grid among the others.
            minutes = rng.randrange(int((end - T0).total_seconds() // 300)) * 5
            _write(
                rng,
                [_late_report(rng, T0 + timedelta(minutes=minutes, seconds=rng.choice((0, 0, 1))))],
            )
        elif way < 0.85:
            end += timedelta(minutes=rng.choice(LATE_GAPS))
            _write(rng, [_late_report(rng, end)])
        else:
            _change_one(rng)
        with connection.cursor() as cursor:
            assert FACILITY_RUNS.differences(cursor) == []
    _assert_runs_equal_reports(rng, (T0, end + timedelta(hours=1)))
