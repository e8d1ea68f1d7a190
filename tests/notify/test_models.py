"""What a channel must have to be saved from the admin."""

import pytest
from django.core.exceptions import ValidationError

from notify.models import Channel

pytestmark = pytest.mark.django_db


def errors_of(channel: Channel) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as raised:
        channel.full_clean()
    return raised.value.message_dict


def test_every_channel_gets_its_own_random_secret():
    a = Channel.objects.create(name="a", url="http://127.0.0.1:9/hook")
    b = Channel.objects.create(name="b", url="http://127.0.0.1:9/hook")
    assert len(a.secret) >= 40 and a.secret != b.secret


def test_a_webhook_channel_needs_an_http_url():
    assert "url" in errors_of(Channel(name="w", kind="webhook"))
    assert "url" in errors_of(Channel(name="w", kind="webhook", url="ftp://127.0.0.1/x"))
    Channel(name="w", kind="webhook", url="https://127.0.0.1/hook").full_clean()


def test_an_email_channel_needs_valid_recipients():
    assert "recipients" in errors_of(Channel(name="m", kind="email"))
    errors = errors_of(Channel(name="m", kind="email", recipients="ops@localhost, not-an-address"))
    assert errors["recipients"] == ["Not an email address: not-an-address"]
    channel = Channel(name="m", kind="email", recipients=" ops@localhost,lead@localhost, ")
    channel.full_clean()
    assert channel.recipient_list() == ["ops@localhost", "lead@localhost"]


def test_an_unknown_kind_is_refused():
    assert "kind" in errors_of(Channel(name="x", kind="pager", url="http://127.0.0.1/"))
