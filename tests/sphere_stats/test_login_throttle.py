"""Login attempts are throttled per username and address."""

import time_machine
from django.test import Client


def attempt(client: Client, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post(
        "/accounts/login/",
        {"username": username, "password": password},
        REMOTE_ADDR=ip,
    )


def test_it_refuses_a_sixth_attempt_after_five_failures_with_a_clear_message(viewer):
    client = Client()
    for _ in range(5):
        assert attempt(client, "viewer1", "wrong").status_code == 200
    response = attempt(client, "viewer1", "pw-viewer1")
    assert response.status_code == 429
    assert "Too many failed attempts to log in" in response.content.decode()
    assert int(response["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session


def test_the_right_password_is_accepted_again_after_the_window(viewer):
    with time_machine.travel("2026-05-01 12:00Z", tick=False) as traveller:
        client = Client()
        for _ in range(5):
            attempt(client, "viewer1", "wrong")
        assert attempt(client, "viewer1", "pw-viewer1").status_code == 429
        traveller.shift(15 * 60 + 1)
        response = attempt(client, "viewer1", "pw-viewer1")
        assert response.status_code == 302
        assert client.session["_auth_user_id"] == str(viewer.pk)


def test_failures_from_one_address_do_not_lock_the_user_out_elsewhere(viewer):
    for _ in range(6):
        attempt(Client(), "viewer1", "wrong", ip="10.0.0.66")
    client = Client()
    assert attempt(client, "viewer1", "pw-viewer1", ip="10.0.0.2").status_code == 302


def test_a_successful_login_clears_the_count(viewer):
    client = Client()
    for _ in range(4):
        attempt(client, "viewer1", "wrong")
    assert attempt(client, "viewer1", "pw-viewer1").status_code == 302
    client.logout()
    for _ in range(4):
        attempt(client, "viewer1", "wrong")
    assert attempt(client, "viewer1", "pw-viewer1").status_code == 302


def test_one_address_guessing_many_usernames_is_stopped(db, settings):
    settings.LOGIN_FAILURE_LIMIT_PER_IP = 10
    client = Client()
    for n in range(10):
        attempt(client, f"user{n}", "wrong", ip="10.9.9.9")
    assert attempt(client, "someone-else", "wrong", ip="10.9.9.9").status_code == 429


def test_behind_the_proxy_the_real_client_address_is_counted(viewer, settings):
    settings.CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    client = Client()
    for _ in range(5):
        client.post(
            "/accounts/login/",
            {"username": "viewer1", "password": "wrong"},
            HTTP_X_REAL_IP="203.0.113.9",
        )
    # Another client behind the same proxy (same REMOTE_ADDR) is not blocked.
    other = client.post(
        "/accounts/login/",
        {"username": "viewer1", "password": "pw-viewer1"},
        HTTP_X_REAL_IP="203.0.113.10",
    )
    assert other.status_code == 302
