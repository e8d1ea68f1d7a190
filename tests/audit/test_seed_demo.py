"""seed_demo writes a consistent history through ingest validation."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection

from audit.aggregates import PREAGGREGATE_TABLES
from audit.ingest import validate
from audit.models import Event
from demo.history import generate
from demo.sites import FACILITIES

EVENTS = 30_000


@pytest.fixture(scope="module")
def history() -> list[dict]:
    return list(generate(EVENTS, days=200, seed=7))


def test_it_generates_exactly_the_requested_number_of_valid_events(history):
    assert len(history) == EVENTS
    assert len(validate(history)) == EVENTS  # raises on any invalid event
    assert len({e["event_uuid"] for e in history}) == EVENTS


def test_it_covers_every_kind_of_portal_activity(history):
    types = {e["event_type"] for e in history}
    for needed in (
        "user_created",
        "user_activated",
        "user_declined",
        "user_frozen",
        "user_unfrozen",
        "user_deleted",
        "user_login",
        "org_created",
        "org_activated",
        "org_declined",
        "org_frozen",
        "org_unfrozen",
        "org_deleted",
        "project_created",
        "project_activated",
        "project_declined",
        "project_frozen",
        "project_unfrozen",
        "project_deleted",
        "org_member_added",
        "project_member_updated",
        "project_member_deleted",
        "experiment_created",
        "experiment_pushed",
        "experiment_deleted",
        "realization_allocated",
        "realization_freed",
        "materialization_allocated",
        "materialization_freed",
        "facility_status",
    ):
        assert needed in types, needed
    assert any(
        not e["success"] and e["error_message"] for e in history if e["event_type"] == "user_login"
    )
    statuses = {e["payload"]["status"] for e in history if e["event_type"] == "facility_status"}
    assert {"up", "down", "maintenance"} <= statuses
    assert {e["subject"] for e in history if e["event_type"] == "facility_status"} == set(
        FACILITIES
    )


# What each lifecycle verb of a user, organization or project requires and
# leaves: (the states it applies to, the state after; None is gone).
MOVES = {
    "created": ((None,), "pending"),
    "activated": (("pending",), "active"),
    "declined": (("pending",), None),
    "frozen": (("active",), "frozen"),
    "unfrozen": (("frozen",), "active"),
    "deleted": (("active",), None),
}


class Portal:
    """The state of every user, organization and project as the events
    tell it, in the order they come. One the log has not mentioned before
    may appear in a login, a membership or as an experiment's project (it
    predates the log); one that is gone may not, until created again."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], str] = {}
        self.mentioned: set[tuple[str, str]] = set()
        self.predating: dict[tuple[str, str], str] = {}  # -> its first event's type
        self.members: dict[tuple[str, str], set[str]] = {}

    def mention(self, key: tuple[str, str], e: dict) -> str:
        if key not in self.states:
            assert key not in self.mentioned, ("used after it was gone", key, e)
            self.states[key] = "active"
            self.predating[key] = e["event_type"]
        self.mentioned.add(key)
        return self.states[key]

    def lifecycle(self, key: tuple[str, str], verb: str, e: dict) -> None:
        before, after = MOVES[verb]
        assert self.states.get(key) in before, (key, self.states.get(key), e)
        self.mentioned.add(key)
        if after is None:
            del self.states[key]
            self.members.pop(key, None)
            if key[0] == "project":
                # Organizations drop a deleted project without an event, as
                # the portal does; its name may be created and added again.
                for (kind, _), members in self.members.items():
                    if kind == "organization":
                        members.discard(key[1])
        else:
            self.states[key] = after
            if verb == "created":
                self.members[key] = set()


def test_nothing_is_deleted_or_used_before_it_exists(history):
    portal = Portal()
    experiments: set = set()
    for e in history:
        if not e["success"]:
            continue
        t, subject, kind = e["event_type"], e["subject"], e["subject_type"]
        verb = t.rsplit("_", 1)[1]
        if "_member_" in t:
            group = (kind, subject)
            assert portal.mention(group, e) in ("pending", "active"), e
            members = portal.members.setdefault(group, set())
            member_kind = "user" if e["payload"]["kind"] == "usermember" else "project"
            if t.endswith("_added"):
                assert e["target"] not in members, e
                assert portal.mention((member_kind, e["target"]), e) == "active", e
                members.add(e["target"])
            else:
                assert e["target"] in members, e
                if t.endswith("_deleted"):
                    members.discard(e["target"])
        elif kind in ("user", "organization", "project") and verb in MOVES:
            portal.lifecycle((kind, subject), verb, e)
        elif t == "user_login":
            assert portal.mention(("user", subject), e) == "active", e
        elif t == "experiment_created":
            assert portal.mention(("project", e["payload"]["project"]), e) == "active", e
            experiments.add((e["payload"]["project"], subject))
        elif t in ("experiment_pushed", "experiment_deleted"):
            assert portal.mention(("project", e["payload"]["project"]), e) == "active", e
            assert (e["payload"]["project"], subject) in experiments, e
            if t == "experiment_deleted":
                experiments.discard((e["payload"]["project"], subject))
    # A base of each predates the log, each first seen in a login, a
    # membership or an experiment, never created: how a log that begins on a
    # running portal reads. The rest arrive over the history.
    for kind in ("user", "organization", "project"):
        first = [t for (k, _), t in portal.predating.items() if k == kind]
        everyone = {key for key in portal.mentioned if key[0] == kind}
        assert 0.1 * len(everyone) <= len(first) <= 0.5 * len(everyone), (kind, len(first))
    assert set(portal.predating.values()) <= {
        "user_login",
        "org_member_added",
        "project_member_added",
        "experiment_created",
    }


def test_organizations_and_projects_are_mostly_activated_within_a_day(history):
    created: dict[tuple[str, str], datetime] = {}
    waits, declined, frozen, unfrozen = [], 0, 0, 0
    for e in history:
        key, verb = (e["subject_type"], e["subject"]), e["event_type"].rsplit("_", 1)[1]
        if e["subject_type"] not in ("organization", "project") or "_member_" in e["event_type"]:
            continue
        at = datetime.fromisoformat(e["timestamp"])
        if verb == "created":
            created[key] = at
        elif verb == "activated":
            waits.append(at - created.pop(key))
        elif verb == "declined":
            declined += 1
            del created[key]
        frozen += verb == "frozen"
        unfrozen += verb == "unfrozen"
    within_a_day = sum(wait < timedelta(days=1) for wait in waits)
    assert within_a_day > 0.6 * (len(waits) + declined), (within_a_day, len(waits), declined)
    assert max(waits) > timedelta(days=3)
    # A few declined, a few frozen and unfrozen, a few still waiting.
    # (5% of reviews decline; over a couple of hundred reviews chance alone
    # reaches 10% on some end dates.)
    assert 0 < declined < 0.15 * (len(waits) + declined)
    assert 0 < unfrozen <= frozen < 0.3 * len(waits)
    assert created


def test_realizations_are_freed_at_most_once_and_only_after_allocation(history):
    live: dict[str, int] = defaultdict(int)
    for e in history:
        if not e["success"]:
            continue
        if e["event_type"] in ("realization_allocated", "materialization_allocated"):
            assert live[e["subject"]] == 0, e
            live[e["subject"]] += 1
        elif e["event_type"] in ("realization_freed", "materialization_freed"):
            assert live[e["subject"]] == 1, e
            live[e["subject"]] -= 1


@pytest.mark.django_db
def test_the_command_stores_the_whole_history():
    out = StringIO()
    call_command("seed_demo", "--events", "2000", "--days", "30", stdout=out, verbosity=0)
    assert Event.objects.count() == 2000
    assert "Seeded 2000 events" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--days", "-3", "argument --days: -3 is not at least 1"),
        ("--days", "0", "argument --days: 0 is not at least 1"),
        ("--batch", "0", "argument --batch: 0 is not at least 1"),
        ("--events", "-5", "argument --events: -5 is not at least 1"),
        ("--events", "lots", "argument --events: 'lots' is not a whole number"),
    ],
)
def test_it_refuses_a_count_below_one_with_a_usage_error(option, value, message):
    with pytest.raises(CommandError, match=message):
        call_command("seed_demo", option, value, stdout=StringIO(), verbosity=0)
    assert Event.objects.count() == 0


def _everything() -> dict:
    """The events and every table derived from them, without surrogate ids
    (and without the zero rows a delete leaves in entity_changes_hourly)."""
    from audit.models import (
        DailyCallerCount,
        DailyCount,
        DailyProjectCount,
        Entity,
        EntityInterval,
        HourlyCount,
        OrgMembership,
    )

    def rows(model, *exclude):
        names = [f.attname for f in model._meta.concrete_fields if f.name not in exclude]
        return sorted(model.objects.values_list(*names), key=str)

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM entity_changes_hourly WHERE delta <> 0")
        changes = sorted(cursor.fetchall(), key=str)
    return {
        "events": rows(Event),
        "hourly": rows(HourlyCount, "id"),
        "daily": rows(DailyCount, "id"),
        "callers": rows(DailyCallerCount, "id"),
        "projects": rows(DailyProjectCount, "id"),
        "memberships": rows(OrgMembership, "id"),
        "entities": rows(Entity, "id"),
        "intervals": rows(EntityInterval, "id", "entity"),
        "changes": changes,
    }


@pytest.mark.django_db
def test_bulk_seeding_stores_what_ingest_stores_with_every_pre_aggregate():
    args = ("seed_demo", "--events", "3000", "--days", "40", "--batch", "700")
    # The history ends at "now": both runs at the same moment.
    frozen = time_machine.travel("2026-06-01T12:00:00Z", tick=False)
    with frozen:
        call_command(*args, stdout=StringIO(), verbosity=0)
    through_ingest = _everything()
    Event.objects.all().delete()
    from audit.triggers import rebuild_aggregates

    rebuild_aggregates()
    assert not any(_everything().values()), "every derived table emptied with the events"

    out = StringIO()
    with frozen:
        call_command(*args, "--bulk", stdout=out, verbosity=0)
    assert "Seeded 3000 events" in out.getvalue()
    bulk = _everything()
    assert all(bulk.values()), "the history filled every pre-aggregate"
    assert bulk == through_ingest


@pytest.mark.django_db
def test_bulk_seeding_refuses_a_table_that_has_events():
    call_command("seed_demo", "--events", "100", "--days", "5", stdout=StringIO(), verbosity=0)
    with pytest.raises(CommandError, match="empty events table only"):
        call_command("seed_demo", "--events", "100", "--bulk", stdout=StringIO(), verbosity=0)
    assert Event.objects.count() == 100


@pytest.mark.django_db
def test_bulk_seeding_leaves_the_indexes_as_compact_as_a_rebuild():
    call_command("seed_demo", "--events", "6000", "--days", "30", "--bulk", stdout=StringIO())

    def index_pages() -> dict[str, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes"
                " WHERE relname = 'events'"
            )
            return dict(cursor.fetchall())

    seeded = index_pages()
    with connection.cursor() as cursor:
        cursor.execute("REINDEX TABLE events")
    # Rows copied into live indexes would leave the uuid key and the
    # per-caller index a fifth to two fifths larger than this.
    assert seeded == index_pages()


@pytest.fixture
def no_autovacuum(transactional_db):
    """autovacuum off on the tables a load writes, for one test. An
    auto-analyze that runs while the load's compaction rewrites them holds a
    snapshot, and the rewrite must keep every row version it can see."""
    tables = ("events", *PREAGGREGATE_TABLES)
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    yield
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


def test_bulk_seeding_leaves_the_pre_aggregates_as_compact_as_a_rewrite(no_autovacuum):
    # The load's one transaction updates the same monthly and daily rows with
    # every COPY; none of their old versions may stay behind in the tables.
    call_command(
        "seed_demo", "--events", "6000", "--days", "30", "--bulk", stdout=StringIO(), verbosity=0
    )

    def pages() -> dict[str, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname, pg_relation_size(relid) FROM pg_stat_user_tables"
                " WHERE relname = ANY(%(tables)s)",
                {"tables": list(PREAGGREGATE_TABLES)},
            )
            return dict(cursor.fetchall())

    seeded = pages()
    assert seeded["event_counts_monthly_caller"] > 0
    with connection.cursor() as cursor:
        for table in PREAGGREGATE_TABLES:
            cursor.execute(f"VACUUM FULL {table}")
    assert seeded == pages()


# --- the year `make run` seeds, as the overview's charts show it ------------------

END = datetime(2026, 4, 23, 21, 0, tzinfo=UTC)
YEAR_START = END - timedelta(days=365)
# The kinds of portal activity a user tells apart on the overview.
KINDS = {
    "logins": lambda t: t == "user_login",
    "experiment activity": lambda t: t.startswith(
        ("experiment_", "realization_", "materialization_")
    ),
    "membership": lambda t: "_member_" in t,
}


@pytest.fixture(scope="module")
def year() -> list[dict]:
    """What `make run` seeds (demo_setup's default): 60,000 events over a year."""
    return list(generate(60_000, days=365, seed=1, end=END))


def at(e: dict) -> datetime:
    return datetime.fromisoformat(e["timestamp"])


def per_week(history: list[dict], kind) -> list[int]:
    """Events of `kind` in each whole week since the history began."""
    counts = [0] * 52
    for e in history:
        week = (at(e) - YEAR_START) // timedelta(days=7)
        if week < 52 and kind(e["event_type"]):
            counts[week] += 1
    return counts


def test_every_week_has_logins_experiment_activity_and_memberships(year):
    for name, kind in KINDS.items():
        weeks = per_week(year, kind)
        typical = sorted(weeks)[len(weeks) // 2]
        # No empty first weeks and no kind that starts midway: every week
        # holds at least half of a typical week (growth over the year and
        # the holidays included).
        assert min(weeks) >= 0.5 * typical, (name, weeks)


def test_no_kind_of_event_starts_after_the_first_weeks(year):
    first: dict[str, datetime] = {}
    counts: dict[str, int] = defaultdict(int)
    for e in year:
        first.setdefault(e["event_type"], at(e))
        counts[e["event_type"]] += 1
    weekly = [t for t, n in counts.items() if n >= 52]  # one a week on average
    assert "facility_status" in weekly
    for event_type in weekly:
        assert first[event_type] - YEAR_START < timedelta(days=21), event_type


def test_facility_reports_are_at_most_a_quarter_of_any_30_days(year):
    # A quarter at most: the portal's own events stay three quarters of
    # "events received" and of the events-by-type bars in any month the
    # overview shows, while every facility still reports every day (see
    # tests/facilities/test_demo_history.py).
    days = [[0, 0] for _ in range(366)]  # per day: events, facility reports
    for e in year:
        day = days[(at(e) - YEAR_START).days]
        day[0] += 1
        day[1] += e["event_type"] == "facility_status"
    for first in range(366 - 30):
        window = days[first : first + 30]
        events, reports = sum(d[0] for d in window), sum(d[1] for d in window)
        assert reports <= 0.25 * events, (first, reports, events)
    assert sum(d[1] for d in days) <= 0.15 * len(year)


def test_activity_has_a_weekly_rhythm_and_grows_from_an_existing_base(year):
    weekday, weekend = defaultdict(int), defaultdict(int)
    for e in year:
        if e["event_type"] == "user_login":
            local = at(e) - timedelta(hours=7)  # the testbed's US time
            (weekend if local.weekday() >= 5 else weekday)[local.date()] += 1
    per_weekday = sum(weekday.values()) / len(weekday)
    per_weekend_day = sum(weekend.values()) / len(weekend)
    assert per_weekday > 2 * per_weekend_day, (per_weekday, per_weekend_day)
    logins = per_week(year, KINDS["logins"])
    assert sum(logins[-8:]) > 1.3 * sum(logins[:8]), logins

    # Users named by the end of the second week, against the end: a base
    # that predates the log shows at once, then the population grows.
    def users_by(moment: datetime) -> int:
        named = set()
        for e in year:
            if at(e) > moment:
                break
            if e["subject_type"] == "user" and e["success"]:
                named.add(e["subject"])
            if e["payload"].get("kind") == "usermember":
                named.add(e["target"])
        return len(named)

    early, final = users_by(YEAR_START + timedelta(days=14)), users_by(END)
    assert 0.2 * final <= early <= 0.6 * final, (early, final)


def test_a_few_password_spraying_bursts_stand_out_in_failed_logins(year):
    failed: dict = defaultdict(int)
    for e in year:
        if e["event_type"] == "user_login" and not e["success"]:
            failed[at(e).date()] += 1
    typical = sorted(failed.values())[len(failed) // 2]
    spikes = [day for day, n in failed.items() if n > 5 * typical]
    assert 1 <= len(spikes) <= 4, (typical, spikes)


def test_every_lifecycle_state_is_present_at_the_end(year):
    """The overview's cards show pending, active and frozen users,
    organizations and projects; some of each were declined or deleted on
    the way; experiments, realizations and materializations are held."""
    states: dict[tuple[str, str], str] = {}
    gone: dict[str, set[str]] = defaultdict(set)
    held: dict[str, set[str]] = defaultdict(set)
    for e in year:
        if not e["success"]:
            continue
        t, kind, verb = e["event_type"], e["subject_type"], e["event_type"].rsplit("_", 1)[1]
        key = (kind, e["subject"])
        if kind in ("user", "organization", "project") and "_member_" not in t:
            if verb in ("declined", "deleted"):
                states.pop(key, None)
                gone[kind].add(verb)
            elif verb in MOVES:
                states[key] = MOVES[verb][1]
        elif kind in ("experiment", "realization", "materialization"):
            if verb in ("created", "allocated"):
                held[kind].add(e["subject"])
            elif verb in ("deleted", "freed"):
                held[kind].discard(e["subject"])
                gone[kind].add(verb)
    for kind in ("user", "organization", "project"):
        present = {state for (k, _), state in states.items() if k == kind}
        assert {"pending", "active", "frozen"} <= present, (kind, present)
        assert gone[kind] == {"declined", "deleted"}, (kind, gone[kind])
    for kind, verb in (
        ("experiment", "deleted"),
        ("realization", "freed"),
        ("materialization", "freed"),
    ):
        assert held[kind] and verb in gone[kind], kind
