"""Channels and real loopback receivers for the notify tests."""

import pytest

from notify.models import Channel
from tests.receivers import SmtpReceiver, WebhookReceiver


@pytest.fixture
def receiver():
    """A webhook receiver sharing its secret with `hook`."""
    server = WebhookReceiver(secret="shared-secret").start()
    yield server
    server.stop()


@pytest.fixture
def hook(receiver: WebhookReceiver) -> Channel:
    return Channel.objects.create(
        name="ops-hook", kind="webhook", url=receiver.url, secret=receiver.secret
    )


@pytest.fixture
def smtp():
    server = SmtpReceiver().start()
    yield server
    server.stop()
