"""seed_demo writes a consistent history through ingest validation."""

from collections import defaultdict
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection

from audit.demo import FACILITIES, generate
from audit.ingest import validate
from audit.models import Event

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
        "user_frozen",
        "user_deleted",
        "user_login",
        "org_created",
        "org_deleted",
        "project_created",
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


def test_nothing_is_deleted_or_used_before_it_exists(history):
    users: dict[str, str] = {}
    groups: dict[tuple[str, str], set] = {}
    experiments: set = set()
    for e in history:
        t, subject = e["event_type"], e["subject"]
        if t == "user_created":
            assert subject not in users
            users[subject] = "pending"
        elif t in ("user_activated", "user_frozen", "user_declined"):
            assert subject in users, e
            users[subject] = t
        elif t == "user_deleted":
            assert users.pop(subject, None) is not None, e
        elif t in ("org_created", "project_created"):
            key = (e["subject_type"], subject)
            assert key not in groups, e
            groups[key] = set()
        elif t in ("org_deleted", "project_deleted"):
            assert groups.pop((e["subject_type"], subject), None) is not None, e
        elif t.endswith("_member_added"):
            key = (e["subject_type"], subject)
            assert key in groups, e
            if e["payload"]["kind"] == "usermember":
                assert users.get(e["target"]) == "user_activated" or e["target"] in users, e
            groups[key].add(e["target"])
        elif t.endswith("_member_deleted") or t.endswith("_member_updated"):
            assert e["target"] in groups[(e["subject_type"], subject)], e
            if t.endswith("_deleted"):
                groups[(e["subject_type"], subject)].discard(e["target"])
        elif t == "experiment_created":
            assert ("project", e["payload"]["project"]) in groups, e
            experiments.add((e["payload"]["project"], subject))
        elif t in ("experiment_pushed", "experiment_deleted"):
            assert (e["payload"]["project"], subject) in experiments, e
            if t == "experiment_deleted":
                experiments.discard((e["payload"]["project"], subject))


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
    from audit.aggregates import rebuild_aggregates

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
