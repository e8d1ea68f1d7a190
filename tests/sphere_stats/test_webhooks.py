"""sphere_stats/webhooks.py: the signed POST alerts and streams send, against a
real receiver on loopback."""

import pytest

from sphere_stats.webhooks import post, signature, valid_signature
from tests.receivers import WebhookReceiver


@pytest.fixture
def receiver():
    receiver = WebhookReceiver(secret="shared-secret").start()
    yield receiver
    receiver.stop()


def test_a_receiver_with_the_secret_accepts_the_body_and_sees_the_delivery_id(receiver):
    outcome = post(receiver.url, b'{"a":1}', secret="shared-secret", delivery="d-1")
    assert (outcome.ok, outcome.status) == (True, 200)
    (got,) = receiver.received
    assert got.body == b'{"a":1}' and got.signed
    assert receiver.deliveries() == ["d-1"]


def test_a_wrong_secret_or_an_altered_body_fails_the_signature(receiver):
    outcome = post(receiver.url, b"{}", secret="guessed", delivery="d-2")
    assert (outcome.ok, outcome.status) == (False, 401)
    assert receiver.received == []
    assert not valid_signature("shared-secret", b"{} ", signature("shared-secret", b"{}"))
    assert not valid_signature("shared-secret", b"{}", None)


def test_a_receiver_that_is_down_or_failing_is_a_failure_to_retry(receiver):
    receiver.status = 503
    assert post(receiver.url, b"{}", secret="shared-secret", delivery="d-3").status == 503
    receiver.stop()
    down = post(receiver.url, b"{}", secret="shared-secret", delivery="d-3")
    assert (down.ok, down.status) == (False, None)
    assert "refused" in down.error.lower()


def test_only_http_and_https_urls_are_opened(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("local file")
    outcome = post(f"file://{secret_file}", b"{}", secret="s", delivery="d-4")
    assert not outcome.ok
    assert "not an http(s) URL" in outcome.error
