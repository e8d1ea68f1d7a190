"""Rules are set up in the admin; incidents are only read there."""

import pytest
from django.urls import reverse

from alerts.models import AlertRule, Incident
from tests.alerts.conftest import NOW

pytestmark = pytest.mark.django_db


def test_an_admin_adds_a_failed_logins_rule_with_its_channel(admin_client, channel):
    response = admin_client.post(
        reverse("admin:alerts_alertrule_add"),
        {
            "name": "Password guessing",
            "kind": "failed_logins",
            "active": "on",
            "channels": [channel.pk],
            "cooldown": "30",
            "threshold": "20",
            "window": "10",
            "username": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = AlertRule.objects.get()
    assert rule.describe() == "more than 20 failed logins of any one user in 10 min"
    assert list(rule.channels.all()) == [channel]


def test_the_form_says_which_parameters_a_kind_needs(admin_client):
    response = admin_client.post(
        reverse("admin:alerts_alertrule_add"),
        {"name": "Sites", "kind": "facility_status", "cooldown": "30", "percent": "5"},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"statuses", "percent"}
    assert not AlertRule.objects.exists()


def test_incidents_are_listed_by_state_and_cannot_be_edited(admin_client, make_rule):
    rule = make_rule("failed_logins", threshold=1, window=10)
    Incident.objects.create(rule=rule, key="alice", opened_at=NOW)
    Incident.objects.create(rule=rule, key="bob", opened_at=NOW, resolved_at=NOW)
    listing = admin_client.get(reverse("admin:alerts_incident_changelist"), {"state": "open"})
    assert listing.status_code == 200
    assert [i.key for i in listing.context["cl"].result_list] == ["alice"]
    assert admin_client.get(reverse("admin:alerts_incident_add")).status_code == 403
