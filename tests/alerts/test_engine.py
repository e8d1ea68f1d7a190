"""The engine: one incident, one message; cooldowns; recoveries; two
evaluations at once; a broken rule."""

import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, connections, transaction

from alerts.engine import EvaluationError, evaluate
from alerts.models import AlertRule, Incident
from notify.models import Delivery
from sphere_stats.models import WorkerJob
from sphere_stats.worker import JOBS, run_job
from tests.alerts.conftest import NOW, messages
from tests.factories import event, facility, report, store

MIN = timedelta(minutes=1)


def failed_logins(user: str, n: int, at) -> None:
    store(
        *[
            event(caller=user, subject=user, success=False, timestamp=at - i * timedelta(seconds=1))
            for i in range(n)
        ],
        now=at,
    )


@pytest.mark.django_db
def test_a_key_in_trouble_is_one_incident_and_one_message_however_often_evaluated(make_rule):
    make_rule("failed_logins", threshold=2, window=10)
    failed_logins("alice", 3, NOW)
    for i in range(5):
        failed_logins("alice", 1, NOW + i * MIN)
        evaluate(NOW + i * MIN)
    assert messages() == ["Failed logins: 4 for alice in 10 min"]
    incident = Incident.objects.get()
    assert incident.is_open and incident.notified
    # What is seen now is kept, without another message.
    assert incident.last_state["failed"] == 8


@pytest.mark.django_db
def test_a_key_firing_again_within_the_cooldown_tells_nobody_then_or_at_its_end(make_rule):
    facility("utah")
    make_rule("facility_status", statuses=["down"], cooldown=30)
    report("utah", NOW, "down")
    evaluate(NOW)
    report("utah", NOW + 5 * MIN, "up")
    evaluate(NOW + 5 * MIN)
    report("utah", NOW + 10 * MIN, "down")
    evaluate(NOW + 10 * MIN)
    report("utah", NOW + 12 * MIN, "up")
    evaluate(NOW + 12 * MIN)
    assert messages() == ["Facility utah is down", "Facility utah is up again"]
    held = Incident.objects.get(opened_at=NOW + 10 * MIN)
    assert not held.notified and not held.is_open
    # 30 minutes after the last firing message, a new one is told again.
    report("utah", NOW + 31 * MIN, "down")
    evaluate(NOW + 31 * MIN)
    assert messages("alert.firing") == ["Facility utah is down"] * 2


@pytest.mark.django_db
def test_a_held_back_incident_still_open_when_the_cooldown_ends_is_told_then(make_rule):
    facility("utah")
    make_rule("facility_status", statuses=["down"], cooldown=30)
    report("utah", NOW, "down")
    evaluate(NOW)
    report("utah", NOW + 5 * MIN, "up")
    evaluate(NOW + 5 * MIN)
    for minutes in range(10, 40, 5):
        report("utah", NOW + minutes * MIN, "down")
        evaluate(NOW + minutes * MIN)
    assert messages("alert.firing") == ["Facility utah is down"] * 2
    late = Incident.objects.get(opened_at=NOW + 10 * MIN)
    assert late.notified and late.notified_at == NOW + 30 * MIN
    report("utah", NOW + 40 * MIN, "up")
    evaluate(NOW + 40 * MIN)
    assert messages("alert.resolved") == ["Facility utah is up again"] * 2


@pytest.mark.django_db
def test_no_cooldown_tells_every_incident(make_rule):
    facility("utah")
    make_rule("facility_status", statuses=["down"], cooldown=0)
    for minutes, status in [(0, "down"), (1, "up"), (2, "down")]:
        report("utah", NOW + minutes * MIN, status)
        evaluate(NOW + minutes * MIN)
    down, up = "Facility utah is down", "Facility utah is up again"
    assert messages() == [down, up, down]


@pytest.mark.django_db
def test_a_second_open_incident_of_the_same_key_is_refused_by_the_database(make_rule):
    rule = make_rule("failed_logins", threshold=1, window=10)
    Incident.objects.create(rule=rule, key="alice", opened_at=NOW)
    Incident.objects.create(rule=rule, key="alice", opened_at=NOW, resolved_at=NOW)
    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(rule=rule, key="alice", opened_at=NOW)


def _waiting_on_a_lock(deadline: float) -> bool:
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.05)
    return False


@pytest.mark.django_db(transaction=True)
def test_two_evaluations_at_once_open_one_incident_and_send_one_message(make_rule):
    facility("utah")
    make_rule("facility_status", statuses=["down"])
    report("utah", NOW, "down")
    first_done, seen = threading.Event(), {}

    def first() -> None:
        # Opens the incident and holds its transaction until the second
        # evaluation waits on it: only the unique index can stop that one.
        try:
            with transaction.atomic():
                seen["first"] = evaluate(NOW)
                first_done.set()
                seen["second waited"] = _waiting_on_a_lock(time.monotonic() + 30)
        finally:
            first_done.set()
            connections.close_all()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_done.wait(30)
    second = evaluate(NOW)
    thread.join(30)
    assert seen == {"first": 1, "second waited": True}
    assert second == 0
    assert Incident.objects.count() == 1
    assert messages() == ["Facility utah is down"]


@pytest.mark.django_db
def test_a_broken_rule_does_not_stop_the_others_and_is_reported(make_rule):
    facility("utah")
    make_rule("facility_status", statuses=["down"])
    # Saved past clean(): no window.
    AlertRule.objects.create(name="broken", kind="failed_logins", threshold=1)
    report("utah", NOW, "down")
    with pytest.raises(EvaluationError, match="broken"):
        evaluate(NOW)
    assert messages() == ["Facility utah is down"]


@pytest.mark.django_db
def test_inactive_rules_are_not_evaluated_and_rules_without_channels_tell_nobody(make_rule):
    facility("utah")
    make_rule("facility_status", statuses=["down"]).channels.clear()
    make_rule("facility_status", name="off", statuses=["down"], active=False)
    report("utah", NOW, "down")
    evaluate(NOW)
    assert Incident.objects.get().rule.name == "facility_status rule"
    assert Delivery.objects.count() == 0


@pytest.mark.django_db
def test_pausing_a_rule_ends_its_open_incidents_without_a_message(make_rule):
    facility("utah")
    rule = make_rule("facility_status", statuses=["down"], cooldown=0)
    report("utah", NOW, "down")
    evaluate(NOW)
    AlertRule.objects.filter(pk=rule.pk).update(active=False)
    evaluate(NOW + MIN)
    assert not Incident.objects.open().exists()
    AlertRule.objects.filter(pk=rule.pk).update(active=True)
    evaluate(NOW + 2 * MIN)
    assert messages() == ["Facility utah is down"] * 2


@pytest.mark.django_db
def test_the_worker_runs_the_evaluation_and_records_it(make_rule):
    facility("utah")
    make_rule("facility_status", statuses=["down"])
    report("utah", NOW, "down")
    assert run_job(JOBS["alerts.evaluate"], NOW) == 1
    job = WorkerJob.objects.get(name="alerts.evaluate")
    assert (job.last_ok, job.handled, job.last_error) == (NOW, 1, "")


@pytest.mark.django_db
def test_a_rule_must_have_the_parameters_of_its_kind_and_no_others(channel):
    with pytest.raises(ValidationError) as caught:
        AlertRule(name="r", kind="failed_logins", threshold=3, percent=10).full_clean()
    assert set(caught.value.message_dict) == {"window", "percent"}
    with pytest.raises(ValidationError) as caught:
        AlertRule(name="r", kind="facility_status", statuses=["down"], facility="nope").full_clean()
    assert set(caught.value.message_dict) == {"facility"}
    with pytest.raises(ValidationError) as caught:
        AlertRule(name="r", kind="nonsense").full_clean()
    assert set(caught.value.message_dict) == {"kind"}
