"""/alerts/: for the admin role; rules, open and ended incidents, the worker."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from alerts.engine import evaluate
from sphere_stats.models import WorkerJob
from tests.alerts.conftest import NOW
from tests.factories import facility, report

# Only while sphere_stats/urls.py does not include alerts.urls itself.
pytestmark = pytest.mark.django_db


@pytest.fixture
def down_utah(make_rule):
    facility("utah")
    rule = make_rule("facility_status", name="Sites down", statuses=["down", "silent"])
    report("utah", NOW - timedelta(minutes=1), "down")
    evaluate(NOW)
    return rule


def test_anonymous_visitors_are_sent_to_log_in():
    response = Client().get(reverse("alerts"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_viewers_and_analysts_are_refused(viewer_client, analyst_client):
    assert viewer_client.get(reverse("alerts")).status_code == 403
    assert analyst_client.get(reverse("alerts")).status_code == 403


def test_staff_see_the_rule_its_open_incident_and_that_the_worker_has_not_run(
    admin_client, down_utah
):
    response = admin_client.get(reverse("alerts"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Sites down" in page
    assert "any facility down or silent" in page
    assert "ops hook" in page  # its channel
    assert f'href="{reverse("facilities:detail", args=["utah"])}">Facility utah is down</a>' in page
    assert "The worker has not run" in page


def test_staff_see_ended_incidents_and_the_workers_last_run(admin_client, down_utah):
    report("utah", NOW + timedelta(minutes=1), "up")
    evaluate(NOW + timedelta(minutes=2))
    WorkerJob.record("alerts.evaluate", NOW, 0.01, 1, "")
    page = admin_client.get(reverse("alerts")).content.decode()
    assert "None: no rule finds anything in trouble." in page
    assert "Recently ended" in page and "Facility utah is down" in page
    assert "Rules last evaluated" in page
    assert "The worker has not run" not in page
    # Its last run was long ago (NOW is in the past): the page says so.
    assert "That is late" in page


def test_the_page_keeps_tables_in_scrolling_cards(admin_client, down_utah):
    page = admin_client.get(reverse("alerts")).content.decode()
    assert page.count('class="table-scroll"') == 2  # open incidents, rules
