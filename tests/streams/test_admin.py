"""Destinations in the admin: adding one, its lag and last error, a test line."""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from streams.models import StreamDestination
from tests.factories import event, store

CHANGELIST = "/admin/streams/streamdestination/"


@pytest.fixture
def staff_client(transactional_db) -> Client:
    user = User.objects.create_superuser("root", password="pw-root")
    client = Client()
    client.force_login(user)
    return client


def test_adding_a_destination_generates_its_token_and_secret(staff_client):
    response = staff_client.post(
        CHANGELIST + "add/",
        {
            "name": "siem",
            "url": "https://siem.example.test/in",
            "event_types": "user_login,portal_note",
            "active": "on",
        },
        follow=True,
    )
    assert response.status_code == 200
    destination = StreamDestination.objects.get(name="siem")
    assert len(destination.token) >= 40 and len(destination.secret) >= 40
    assert destination.token != destination.secret
    assert destination.event_types == ["user_login", "portal_note"]
    # Allowed, but named: a typo would otherwise silently match nothing.
    assert "Not in the event catalog" in response.content.decode()
    assert "portal_note" in response.content.decode()


def test_a_malformed_event_type_or_url_is_refused(staff_client):
    response = staff_client.post(
        CHANGELIST + "add/",
        {"name": "bad", "url": "ftp://127.0.0.1/x", "event_types": "User Login"},
    )
    assert response.status_code == 200  # the form again, with its errors
    assert not StreamDestination.objects.exists()
    text = response.content.decode()
    assert "Not an event type name" in text


def test_the_list_shows_what_waits_and_the_last_error(staff_client):
    StreamDestination.objects.create(name="lake", url="http://127.0.0.1:9/")
    StreamDestination.objects.filter(name="lake").update(last_error="HTTP 503")
    store(event(), event())
    text = staff_client.get(CHANGELIST).content.decode()
    assert "lake" in text and "HTTP 503" in text
    assert '<td class="field-waiting_events">2</td>' in text


def test_the_change_page_shows_the_token_to_give_the_receiver(staff_client):
    destination = StreamDestination.objects.create(name="lake", url="http://127.0.0.1:9/")
    text = staff_client.get(f"{CHANGELIST}{destination.pk}/change/").content.decode()
    assert destination.token in text and destination.secret in text


def test_a_test_line_reaches_the_receiver(staff_client, receiver):
    destination = StreamDestination.objects.create(
        name="siem", url=receiver.url, secret=receiver.secret
    )
    response = staff_client.post(
        CHANGELIST,
        {"action": "send_test_line", "_selected_action": [destination.pk]},
        follow=True,
    )
    assert [m.message for m in response.context["messages"]] == ["siem: HTTP 200"]
    (request,) = receiver.received
    assert request.signed and request.headers["X-Sphere-Stream-Token"] == destination.token
    assert json.loads(request.body)["event_type"] == "stream_test"
