"""Each kind of rule fires on the trouble it watches for, and recovers."""

from datetime import timedelta

import pytest
from django.db import connection

from alerts.engine import evaluate
from alerts.models import Incident
from facilities.summary import facility_rows
from tests.alerts.conftest import NOW, messages
from tests.factories import event, facility, report, row, store

pytestmark = pytest.mark.django_db

MIN = timedelta(minutes=1)


def failed_login(user: str, at) -> dict:
    return event(caller=user, subject=user, success=False, timestamp=at, error_message="bad")


def insert_raw_failed_login(user: str, at) -> None:
    """A row the portal writes with its own SQL, past the ingest API."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO events (event_uuid, timestamp, event_type, caller, subject,"
            " subject_type, success, payload)"
            " VALUES (gen_random_uuid(), %(at)s, 'user_login', %(user)s, %(user)s, 'user',"
            " false, '{}'::jsonb)",
            {"at": at, "user": user},
        )


# --- facility status -------------------------------------------------------------


def test_a_facility_going_down_fires_and_coming_back_up_recovers(make_rule):
    facility("utah")
    make_rule("facility_status", statuses=["down", "silent"])
    report("utah", NOW - 5 * MIN, "up")
    assert evaluate(NOW) == 0
    report("utah", NOW - MIN, "down", "power failure")
    assert evaluate(NOW) == 1
    report("utah", NOW + MIN, "up")
    assert evaluate(NOW + 2 * MIN) == 1
    assert messages() == ["Facility utah is down", "Facility utah is up again"]
    incident = Incident.objects.get()
    assert incident.details["message"] == "power failure"
    assert incident.last_state["status"] == "up"


def test_only_the_chosen_statuses_and_facility_fire(make_rule):
    facility("utah")
    facility("isi")
    make_rule("facility_status", facility="utah", statuses=["down"])
    report("utah", NOW - MIN, "maintenance")
    report("isi", NOW - MIN, "down")
    evaluate(NOW)
    assert messages() == []
    report("utah", NOW, "down")
    evaluate(NOW)
    assert messages() == ["Facility utah is down"]


def test_a_facility_that_stops_reporting_is_silent_as_the_map_shows(make_rule, settings):
    settings.FACILITY_STALE_AFTER = 15 * 60
    facility("utah")
    facility("isi")
    make_rule("facility_status", statuses=["silent"])
    report("utah", NOW - 20 * MIN, "up")
    # A controller that says it reports hourly holds its status for the hour.
    report("isi", NOW - 20 * MIN, "up", interval=3600)
    evaluate(NOW)
    shown = {r.slug: r.status.status for r in facility_rows(NOW)}
    assert shown == {"utah": "unknown", "isi": "up"}
    assert messages() == ["Facility utah has stopped reporting"]
    report("utah", NOW + MIN, "up")
    evaluate(NOW + 2 * MIN)
    assert messages("alert.resolved") == ["Facility utah is up again"]


def test_a_facility_down_then_degraded_is_one_incident(make_rule):
    facility("utah")
    make_rule("facility_status", statuses=["down", "degraded"])
    report("utah", NOW - MIN, "down")
    evaluate(NOW)
    report("utah", NOW + MIN, "degraded")
    evaluate(NOW + 2 * MIN)
    assert messages() == ["Facility utah is down"]
    assert Incident.objects.get().last_state["status"] == "degraded"
    report("utah", NOW + 3 * MIN, "maintenance")
    evaluate(NOW + 4 * MIN)
    assert messages("alert.resolved") == ["Facility utah recovered: now maintenance"]


# --- failed logins ---------------------------------------------------------------


def test_failed_logins_of_one_user_fire_above_the_threshold_and_recover(make_rule):
    make_rule("failed_logins", threshold=3, window=10)
    store(*[failed_login("alice", NOW - i * MIN) for i in range(1, 5)], now=NOW)
    store(*[failed_login("bob", NOW - i * MIN) for i in range(1, 4)], now=NOW)
    store(event(timestamp=NOW - MIN), now=NOW)  # a success does not count
    assert evaluate(NOW) == 1
    assert messages() == ["Failed logins: 4 for alice in 10 min"]
    # Ten minutes on, the failures have left the window.
    evaluate(NOW + 10 * MIN)
    assert messages("alert.resolved") == ["Failed logins for alice back to at most 3 in 10 min"]


def test_failed_logins_written_with_raw_sql_count_for_all_users_together(make_rule):
    make_rule("failed_logins", threshold=4, window=10, username="*")
    for i, user in enumerate(["alice", "bob", "carol", "dave", "erin"]):
        insert_raw_failed_login(user, NOW - i * MIN)
    evaluate(NOW)
    assert messages() == ["Failed logins: 5 for all users in 10 min"]
    assert Incident.objects.get().key == "*"


def test_a_rule_for_one_user_ignores_the_others(make_rule):
    make_rule("failed_logins", threshold=1, window=10, username="bob")
    store(*[failed_login("alice", NOW - i * MIN) for i in range(1, 5)], now=NOW)
    evaluate(NOW)
    assert messages() == []
    store(*[failed_login("bob", NOW - i * MIN) for i in range(1, 3)], now=NOW)
    evaluate(NOW)
    assert messages() == ["Failed logins: 2 for bob in 10 min"]


# --- failure rate ----------------------------------------------------------------


def experiment(at, success: bool) -> None:
    row(
        event_type="experiment_created",
        subject="exp1",
        subject_type="experiment",
        success=success,
        timestamp=at,
        payload={"project": "p1"},
    )


def test_a_failure_rate_above_the_percentage_fires_and_recovers(make_rule):
    make_rule("failure_rate", percent=20, window=15, min_events=10, event_type="")
    for i in range(10):
        experiment(NOW - (i + 1) * MIN, success=i >= 3)
    evaluate(NOW)
    assert messages() == ["Failure rate of experiment_created: 30.0% (3 of 10) in 15 min"]
    evaluate(NOW + 15 * MIN)
    assert messages("alert.resolved") == [
        "Failure rate of experiment_created back to at most 20% in 15 min"
    ]


def test_too_few_events_or_a_low_rate_do_not_fire(make_rule):
    make_rule("failure_rate", percent=20, window=15, min_events=11, event_type="")
    make_rule(
        "failure_rate", name="logins", percent=50, window=15, min_events=2, event_type="user_login"
    )
    for i in range(10):
        experiment(NOW - (i + 1) * MIN, success=i >= 3)
    store(failed_login("alice", NOW - MIN), event(timestamp=NOW - MIN), now=NOW)
    evaluate(NOW)
    assert messages() == []


# --- new event types -------------------------------------------------------------


def test_an_uncatalogued_event_type_is_told_once_ever(make_rule):
    make_rule("new_event_type")
    store(event(timestamp=NOW - MIN), now=NOW)
    row(event_type="quota_exceeded", subject="p1", subject_type="project", timestamp=NOW - MIN)
    assert evaluate(NOW) == 1
    row(event_type="quota_exceeded", subject="p2", subject_type="project", timestamp=NOW)
    assert evaluate(NOW + MIN) == 0
    row(event_type="gpu_reserved", subject="p1", subject_type="project", timestamp=NOW)
    evaluate(NOW + 2 * MIN)
    assert messages() == [
        "New event type: quota_exceeded (not in the catalog)",
        "New event type: gpu_reserved (not in the catalog)",
    ]
    # Nothing to recover from, even when its events are gone.
    connection.cursor().execute("DELETE FROM events WHERE event_type = 'quota_exceeded'")
    evaluate(NOW + 3 * MIN)
    assert messages("alert.resolved") == []
    assert Incident.objects.get(key="quota_exceeded").details["first_seen"] == (
        (NOW - MIN).isoformat()
    )
