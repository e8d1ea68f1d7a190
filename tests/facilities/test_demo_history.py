"""The demo history (demo.history) as the facility map sees it: a heartbeat
every day, each incident reported as one unbroken run, and hosts that are
held and freed within each facility's capacity."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command

from audit.ingest import ingest
from demo.history import generate
from demo.sites import FACILITIES, FACILITY_NODES, REPORT_EVERY_INCIDENT
from facilities.models import Facility
from facilities.summary import facility_detail, facility_rows

END = datetime(2026, 4, 23, 21, 0, tzinfo=UTC)
STALE = timedelta(minutes=15)
CURRENT = {
    "isi": "up",
    "utah": "up",
    "wisc": "down",
    "clemson": "maintenance",
    "mass": "up",
    "tacc": "degraded",
}


@pytest.fixture(scope="module")
def demo() -> list[dict]:
    """What `make run` seeds: 60,000 events over a year."""
    return list(generate(60_000, days=365, seed=1, end=END))


def held_hosts(history: list[dict]):
    """Each facility's hosts held after every event, in time order."""
    held: dict[str, dict[str, set]] = defaultdict(dict)  # facility -> realization -> hosts
    for e in sorted(history, key=lambda e: e["timestamp"]):
        if not e["success"] or not e["event_type"].startswith("realization_"):
            continue
        realizations = held[e["target"]]
        if e["event_type"] == "realization_allocated":
            realizations[e["subject"]] = set(e["payload"]["resources"])
        else:
            del realizations[e["subject"]]
        yield e["target"], realizations


def test_a_facility_never_holds_more_hosts_than_it_has_nor_one_host_twice(demo):
    for facility, realizations in held_hosts(demo):
        hosts = [h for r in realizations.values() for h in r]
        assert len(hosts) == len(set(hosts)), facility
        assert len(hosts) <= FACILITY_NODES[facility]


def test_at_the_end_each_facility_uses_a_plausible_share_of_its_nodes(demo):
    final = {}
    for facility, realizations in held_hosts(demo):
        final[facility] = sum(len(r) for r in realizations.values())
    for facility in FACILITIES:
        assert 0.2 <= final[facility] / FACILITY_NODES[facility] <= 0.7, (facility, final)


def reports_of(history: list[dict]) -> dict[str, list[tuple[datetime, str]]]:
    """Each facility's reports as (time, status), in time order."""
    reports = defaultdict(list)
    for e in history:
        if e["event_type"] == "facility_status":
            reports[e["subject"]].append((datetime.fromisoformat(e["timestamp"]), e["payload"]))
    return {slug: sorted((t, p["status"]) for t, p in r) for slug, r in reports.items()}


def test_each_facility_reports_every_day_up_to_the_end(demo):
    # The history's first day is its last 3 hours (END is 21:00 UTC).
    first_day = (END - timedelta(days=365)).date() + timedelta(days=1)
    for facility, reports in reports_of(demo).items():
        days = {t.date() for t, _ in reports}
        # A heartbeat a day at least, so no day of the uptime bar is grey.
        assert days >= {first_day + timedelta(days=i) for i in range(365)}, facility
        assert END - reports[-1][0] < timedelta(minutes=10)
    assert set(reports_of(demo)) == set(FACILITIES)


def test_each_incident_is_reported_without_a_silence_and_its_end_at_once(demo):
    incidents = 0
    for facility, reports in reports_of(demo).items():
        for (t, status), (after, next_status) in pairwise(reports):
            if status != "up":
                # Within the staleness limit: one run on the map, the uptime
                # bar and the charts' bands, not slivers of a heartbeat each.
                assert after - t <= REPORT_EVERY_INCIDENT < STALE, (facility, t, status)
                incidents += next_status == "up"
    # The past incidents end with an "up" report; three go on at the end.
    assert incidents >= 8


def test_each_report_says_its_next_comes_within_its_interval(demo):
    # So the map and the uptime bar know the status between heartbeats.
    for facility in FACILITIES:
        reports = sorted(
            (datetime.fromisoformat(e["timestamp"]), e["payload"])
            for e in demo
            if e["event_type"] == "facility_status" and e["subject"] == facility
        )
        for (t, payload), (after, _) in pairwise(reports):
            assert after - t <= timedelta(seconds=payload["interval"]), (facility, t)
        # Not much longer either: a missed heartbeat shows within hours.
        up = [p["interval"] for _, p in reports if p["status"] == "up"]
        assert max(up) <= 25 * 3600, facility
        assert all(p["interval"] == 900 for _, p in reports if p["status"] != "up"), facility


def test_heartbeats_are_hours_apart_while_all_is_well(demo):
    for facility, reports in reports_of(demo).items():
        gaps = [b - a for (a, s), (b, _) in pairwise(reports) if s == "up"]
        typical = sorted(gaps)[len(gaps) // 2]
        assert timedelta(hours=4) <= typical <= timedelta(hours=20), (facility, typical)


@pytest.mark.django_db
def test_the_seeded_map_shows_the_scripted_statuses_long_runs_and_some_nodes_in_use():
    call_command("seed_facilities", verbosity=0)
    ingest(list(generate(20_000, days=365, seed=3, end=END)), now=END)
    with time_machine.travel(END, tick=False):
        rows = {row.slug: row for row in facility_rows(datetime.now(UTC))}
        isi = facility_detail(Facility.objects.get(slug="isi"), END, ZoneInfo("UTC"))
    assert {slug: row.status.status for slug, row in rows.items()} == CURRENT
    for row in rows.values():
        assert 20 <= row.in_use_percent <= 70, (row.slug, row.in_use_percent)
    # A heartbeat every day: no grey day in the 90. Its OS upgrade two weeks
    # ago is one maintenance run of 12 hours, ended by an "up" report.
    assert "unknown" not in {d.status for d in isi.uptime.days}
    upgrade = [c for c in isi.changes if c.message == "scheduled OS upgrade"]
    assert len(upgrade) == 1
    back_up = isi.changes[isi.changes.index(upgrade[0]) - 1]
    assert back_up.status == "up"
    assert timedelta(hours=11) < back_up.timestamp - upgrade[0].timestamp < timedelta(hours=13)
    by_day = {d.date: d.status for d in isi.uptime.days}
    assert by_day[upgrade[0].timestamp.date()] == "maintenance"
    # Known all along between its heartbeats: 12 hours of maintenance in 90
    # days is 99.4% up, and no day of the bar is partly grey.
    assert isi.uptime.up_percent >= 99
    assert all("unknown" not in d.seconds for d in isi.uptime.days)
