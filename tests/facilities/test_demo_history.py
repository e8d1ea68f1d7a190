"""The demo history (audit.demo) as the facility map sees it: reports close
enough together that the map stays coloured, and hosts that are held and
freed within each facility's capacity."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command

from audit.demo import FACILITIES, FACILITY_NODES, REPORT_EVERY_OLDER, generate
from audit.ingest import ingest
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


def test_each_facility_reports_within_the_staleness_limit_up_to_the_end(demo):
    times = defaultdict(list)
    for e in demo:
        if e["event_type"] == "facility_status":
            times[e["subject"]].append(datetime.fromisoformat(e["timestamp"]))
    for facility in FACILITIES:
        reports = sorted(times[facility])
        gaps = [b - a for a, b in pairwise(reports)]
        assert max(gaps) <= REPORT_EVERY_OLDER < STALE
        assert END - reports[-1] < timedelta(minutes=10)
        # Three weeks of reports at least, in the event budget of `make run`.
        assert END - reports[0] > timedelta(days=21)


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
    # No silence in its reports (a week of them in this smaller demo), so
    # neither an unknown change nor a grey day.
    assert "unknown" not in {c.status for c in isi.changes}
    assert [c.timestamp for c in isi.changes][-1] < END - timedelta(days=5)
    assert "unknown" not in {d.status for d in isi.uptime.days[-5:]}
