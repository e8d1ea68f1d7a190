"""Status and resources derived from events in PostgreSQL (facilities.models)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from facilities.models import Facility
from tests import factories
from tests.factories import ABSENT, allocation, facility, report, row

NOW = datetime(2026, 4, 23, 21, 0, tzinfo=UTC)
STALE = timedelta(minutes=15)

pytestmark = pytest.mark.django_db


def statuses(now=NOW):
    return Facility.objects.current_statuses(now, STALE)


def test_the_latest_report_by_timestamp_wins():
    facility("isi")
    report("isi", NOW - timedelta(minutes=3), "down", "power failure")
    report("isi", NOW - timedelta(minutes=10), "up")
    current = statuses()["isi"]
    assert current.status == "down"
    assert current.last_report.message == "power failure"
    assert current.since == NOW - timedelta(minutes=3)


def test_reports_arriving_out_of_order_are_ordered_by_their_timestamps(post_events):
    facility("utah")

    def event(minutes_ago: int, status: str) -> dict:
        return factories.event(
            event_uuid=ABSENT,
            timestamp=NOW - timedelta(minutes=minutes_ago),
            event_type="facility_status",
            caller="utah-controller",
            subject="utah",
            subject_type="facility",
            payload={"status": status, "message": f"{status} report"},
        )

    with time_machine.travel(NOW, tick=False):
        # The newest report arrives first; an older, delayed one arrives later.
        assert post_events([event(2, "maintenance")]).status_code == 201
        assert post_events([event(8, "up"), event(30, "down")]).status_code == 201
    current = statuses()["utah"]
    assert current.status == "maintenance"
    assert current.last_report.message == "maintenance report"
    assert current.since == NOW - timedelta(minutes=2)


def test_since_is_the_first_report_of_the_current_run():
    facility("wisc")
    report("wisc", NOW - timedelta(hours=2, minutes=10), "up")
    # Every ten minutes since, so no silence breaks the run.
    for minutes in range(120, 0, -10):
        report("wisc", NOW - timedelta(minutes=minutes), "down", "power failure in machine room B")
    report("wisc", NOW - timedelta(minutes=1), "down", "still out")
    current = statuses()["wisc"]
    assert current.status == "down"
    assert current.since == NOW - timedelta(hours=2)
    assert current.last_report.message == "still out"


def test_a_silence_longer_than_stale_after_starts_a_new_run():
    from zoneinfo import ZoneInfo

    from facilities.summary import facility_detail, facility_rows

    isi = facility("isi")
    report("isi", NOW - timedelta(days=2), "up")
    report("isi", NOW - timedelta(minutes=1), "up")
    with time_machine.travel(NOW, tick=False):
        (row,) = facility_rows(datetime.now(UTC))
        detail = facility_detail(isi, datetime.now(UTC), ZoneInfo("UTC"))
    assert (row.status.status, row.status.since) == ("up", NOW - timedelta(minutes=1))
    assert [(c.status, c.timestamp) for c in detail.changes] == [
        ("up", NOW - timedelta(minutes=1)),
        ("unknown", NOW - timedelta(days=2) + STALE),
        ("up", NOW - timedelta(days=2)),
    ]


def test_reports_no_further_apart_than_stale_after_keep_the_run():
    facility("isi")
    for minutes in (45, 30, 15, 0):
        report("isi", NOW - timedelta(minutes=minutes), "up")
    assert statuses()["isi"].since == NOW - timedelta(minutes=45)


def test_maintenance_is_its_own_state():
    facility("clemson")
    report("clemson", NOW - timedelta(hours=6), "up")
    report("clemson", NOW - timedelta(minutes=5), "maintenance", "switch firmware upgrade")
    current = statuses()["clemson"]
    assert (current.status, current.label) == ("maintenance", "Maintenance")
    assert current.since == NOW - timedelta(minutes=5)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(minutes=15), "up"),
        (timedelta(minutes=15, seconds=1), "unknown"),
    ],
)
def test_the_staleness_boundary(settings, age, expected):
    from facilities.summary import facility_rows

    settings.FACILITY_STALE_AFTER = 15 * 60
    facility("tacc")
    report("tacc", NOW, "up")
    with time_machine.travel(NOW + age, tick=False):
        (row,) = facility_rows(datetime.now(UTC))
    assert row.status.status == expected
    assert row.status.last_report.timestamp == NOW


def test_a_facility_without_reports_is_unknown():
    facility("mass")
    current = statuses()["mass"]
    assert current.status == "unknown"
    assert current.last_report is None


def test_reports_of_other_facilities_do_not_leak():
    facility("isi")
    facility("utah")
    report("utah", NOW, "down")
    assert statuses()["isi"].status == "unknown"


def test_resources_in_use_are_allocated_minus_freed():
    facility("isi")
    facility("utah")
    t = NOW - timedelta(hours=5)
    allocation("realization", "allocated", "isi", t, experiment="a", resources=["n1", "n2"])
    allocation("materialization", "allocated", "isi", t, experiment="a", resources=["n1", "n2"])
    allocation("realization", "allocated", "isi", t, experiment="b", resources=["n3"])
    allocation(
        "realization", "freed", "isi", t + timedelta(hours=1), experiment="b", resources=["n3"]
    )
    # A failed allocation holds nothing; a failed free releases nothing.
    allocation(
        "realization", "allocated", "isi", t, experiment="c", resources=["n4"], success=False
    )
    allocation("realization", "allocated", "isi", t, experiment="d", resources=["n5"])
    allocation("realization", "freed", "isi", t + timedelta(hours=1), experiment="d", success=False)
    allocation("realization", "allocated", "utah", t, experiment="e", resources=["u1"])
    usage = Facility.objects.usage()
    assert usage["isi"].hosts == {"n1", "n2", "n5"}
    assert usage["isi"].in_use == 3
    assert [m.experiment for m in usage["isi"].materializations] == ["a"]
    assert usage["utah"].in_use == 1


def test_a_realization_allocated_again_after_a_free_is_in_use():
    facility("isi")
    t = NOW - timedelta(hours=5)
    allocation("realization", "allocated", "isi", t, resources=["n1"])
    allocation("realization", "freed", "isi", t + timedelta(minutes=10), resources=["n1"])
    allocation("realization", "allocated", "isi", t + timedelta(minutes=20), resources=["n7"])
    assert Facility.objects.usage()["isi"].hosts == {"n7"}


@pytest.mark.parametrize("kind", ["realization", "materialization"])
@pytest.mark.parametrize("written", [("allocated", "freed"), ("freed", "allocated")])
def test_a_free_with_the_same_timestamp_as_its_allocation_wins(kind, written):
    facility("isi")
    t = NOW - timedelta(hours=1)
    # Both orders of writing: without a tie-break one of them is read first.
    for verb in written:
        allocation(kind, verb, "isi", t, resources=["isi-n001"])
    assert Facility.objects.usage()["isi"].in_use == 0
    assert Facility.objects.usage_summary()["isi"].in_use == 0


def test_a_free_deleted_or_moved_in_sql_puts_the_allocation_back_in_use():
    # What is in use follows the rows, whoever changes them (the portal's SQL).
    facility("isi")
    t = NOW - timedelta(hours=5)
    allocation("realization", "allocated", "isi", t, experiment="a", resources=["n1"])
    freed = allocation("realization", "freed", "isi", t + timedelta(hours=1), experiment="a")
    allocation("realization", "allocated", "isi", t, experiment="b", resources=["n2"])
    late = allocation("realization", "freed", "isi", t + timedelta(hours=1), experiment="b")
    assert Facility.objects.usage()["isi"].hosts == set()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM events WHERE event_uuid = %s", [freed.event_uuid])
        # Moved before its allocation: the allocation is the newest again.
        cursor.execute(
            "UPDATE events SET timestamp = timestamp - interval '2 hours' WHERE event_uuid = %s",
            [late.event_uuid],
        )
    assert Facility.objects.usage()["isi"].hosts == {"n1", "n2"}
    assert Facility.objects.usage_summary()["isi"].in_use == 2


def test_recent_failures_are_the_failed_events_at_the_facility_newest_first():
    isi = facility("isi")
    t = NOW - timedelta(hours=1)
    allocation("realization", "allocated", "isi", t, success=False, error="insufficient resources")
    allocation(
        "materialization",
        "allocated",
        "isi",
        t + timedelta(minutes=1),
        success=False,
        error="image boot timeout",
    )
    allocation("realization", "allocated", "utah", t, success=False, error="elsewhere")
    allocation("realization", "allocated", "isi", t)
    # A failed membership whose target is a user who happens to be called isi.
    row(
        timestamp=t + timedelta(minutes=2),
        event_type="project_member_added",
        caller="carol",
        subject="botnet",
        subject_type="project",
        target="isi",
        success=False,
        error_message="no such user",
        payload={"kind": "usermember"},
    )
    assert [e.error_message for e in isi.recent_failures()] == [
        "image boot timeout",
        "insufficient resources",
    ]


def test_reports_include_the_one_in_force_at_the_window_start():
    isi = facility("isi")
    report("isi", NOW - timedelta(days=100), "maintenance")
    report("isi", NOW - timedelta(days=200), "up")
    report("isi", NOW - timedelta(days=1), "up")
    reports = isi.reports(NOW - timedelta(days=90))
    assert [r.status for r in reports] == ["maintenance", "up"]


def test_the_counted_summary_agrees_with_the_allocations():
    facility("isi")
    t = NOW - timedelta(hours=5)
    allocation("realization", "allocated", "isi", t, experiment="a", resources=["n1", "n2"])
    allocation("materialization", "allocated", "isi", t, experiment="a", resources=["n1", "n2"])
    allocation("realization", "allocated", "isi", t, experiment="b", resources=["n2", "n3"])
    allocation("realization", "allocated", "isi", t, experiment="c", resources=["n9"])
    allocation("realization", "freed", "isi", t + timedelta(hours=1), experiment="c")
    summary = Facility.objects.usage_summary()["isi"]
    assert summary == Facility.objects.usage()["isi"].summary()
    assert (summary.in_use, summary.realizations, summary.materializations) == (3, 2, 1)


HOURS_6 = 6 * 3600


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(hours=6), "up"),
        (timedelta(hours=6, seconds=1), "unknown"),
    ],
)
def test_a_report_with_an_interval_of_6_hours_keeps_the_facility_up_for_6_hours(age, expected):
    facility("isi")
    report("isi", NOW, "up", interval=HOURS_6)
    current = statuses(NOW + age)["isi"]
    assert current.status == expected
    assert current.stale == (expected == "unknown")


def test_without_an_interval_a_report_still_holds_stale_after():
    facility("isi")
    report("isi", NOW, "up")
    assert statuses(NOW + STALE)["isi"].status == "up"
    assert statuses(NOW + STALE + timedelta(seconds=1))["isi"].status == "unknown"


def test_heartbeats_within_their_interval_keep_the_run_and_a_late_one_starts_a_new_one():
    facility("utah")
    # 5 hours apart, each giving 6: one run since 20 hours ago.
    for hours in (20, 15, 10, 5, 0):
        report("utah", NOW - timedelta(hours=hours), "up", interval=HOURS_6)
    assert statuses(NOW + timedelta(hours=1))["utah"].since == NOW - timedelta(hours=20)
    # A heartbeat 7 hours after the last: that report's 6 hours ran out first.
    report("utah", NOW + timedelta(hours=7), "up", interval=HOURS_6)
    assert statuses(NOW + timedelta(hours=8))["utah"].since == NOW + timedelta(hours=7)


@pytest.mark.parametrize("stored", ["6h", "21600", 0, -5, 10**9, 21600.5, True, [1], {"h": 6}])
def test_a_stored_interval_the_catalog_refuses_holds_stale_after(stored):
    isi = facility("isi")
    # As stored before the catalog checked payload.interval.
    report("isi", NOW, "up", interval=stored)
    assert statuses(NOW + STALE)["isi"].status == "up"
    assert statuses(NOW + STALE + timedelta(seconds=1))["isi"].status == "unknown"
    (read,) = isi.reports(NOW - timedelta(hours=1))
    assert read.interval is None


def test_the_panels_reports_carry_their_interval():
    isi = facility("isi")
    report("isi", NOW - timedelta(hours=5), "up", interval=HOURS_6)
    report("isi", NOW, "down", "power")
    assert [(r.status, r.interval) for r in isi.reports(NOW - timedelta(days=1))] == [
        ("up", HOURS_6),
        ("down", None),
    ]


# --- The facility's web link: http and https only -----------------------------


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://files.example.org/",
        " javascript:alert(1)",
    ],
)
def test_a_url_other_than_http_or_https_is_refused_by_the_model_and_the_database(url):
    site = facility("isi")
    site.url = url
    with pytest.raises(ValidationError) as refused:
        site.full_clean()
    assert "url" in refused.value.message_dict
    # The ORM skips validators; the database refuses the row all the same.
    with pytest.raises(IntegrityError, match="facility_url_scheme"), transaction.atomic():
        Facility.objects.filter(pk=site.pk).update(url=url)
    assert Facility.objects.get(pk=site.pk).url == ""


@pytest.mark.parametrize("url", ["", "http://isi.example.org/", "HTTPS://testbed.example.org/x"])
def test_http_https_and_no_url_are_kept_and_linked(url):
    site = facility("isi", url=url)
    site.full_clean()
    site.refresh_from_db()
    assert site.url == url
    assert site.web_url == url


def test_the_panel_links_only_a_web_url(client, settings):
    # Public map: the panel shows without a login.
    settings.FACILITIES_PUBLIC = True
    facility("isi", url="https://isi.example.org/")
    html = client.get("/facilities/isi/", HTTP_HX_REQUEST="true").content.decode()
    assert '<a href="https://isi.example.org/" rel="noopener">website</a>' in html
    site = Facility(slug="odd", url="javascript:alert(1)")
    assert site.web_url == ""


@pytest.mark.django_db(transaction=True)
def test_the_migration_empties_a_stored_bad_url_and_keeps_the_good_ones():
    """A row saved before the constraint with a `javascript:` URL must not
    stop the migration: its URL is emptied, the others stay."""
    before = [("facilities", "0003_facility_indexes")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        with connection.cursor() as cursor:
            for slug, url in (("bad", "javascript:alert(1)"), ("good", "https://good.example/")):
                cursor.execute(
                    "INSERT INTO facilities_facility"
                    " (slug, name, latitude, longitude, kind, description, url, capacity_nodes)"
                    " VALUES (%(slug)s, %(slug)s, 0, 0, '', '', %(url)s, 0)",
                    {"slug": slug, "url": url},
                )
    finally:
        executor = MigrationExecutor(connection)
        # Forward to the latest, 0004_facility_url_scheme and whatever follows.
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert dict(Facility.objects.values_list("slug", "url")) == {
        "bad": "",
        "good": "https://good.example/",
    }
