"""Login attempts are throttled per username and address."""

import re

import pytest
import requests
import time_machine
from django.test import Client


def attempt(
    client: Client,
    username: str,
    password: str,
    ip: str = "10.0.0.1",
    url: str = "/accounts/login/",
):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)


@pytest.fixture(autouse=True)
def one_window(request):
    """Each test's attempts fall in one counting window. The windows are
    fixed, aligned to the clock (LOGIN_FAILURE_WINDOW): on the real clock,
    attempts either side of a window's edge would start a new count, and the
    sixth would be let through. The nginx tests count in nginx, not here."""
    if "nginx" in request.fixturenames:
        yield
        return
    with time_machine.travel("2026-05-01 12:00:01Z", tick=True):
        yield


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


def test_the_admin_login_is_throttled_too(admin_user):
    client = Client()
    for _ in range(5):
        assert attempt(client, "admin1", "wrong", url="/admin/login/").status_code == 200
    response = attempt(client, "admin1", "pw-admin1", url="/admin/login/")
    assert response.status_code == 429
    assert "Too many failed attempts to log in" in response.content.decode()
    assert int(response["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session
    # Still the admin's own page, ready for the next try.
    assert 'id="login-form"' in response.content.decode()


def test_the_admin_login_still_lets_staff_in(admin_user):
    client = Client()
    page = client.get("/admin/login/").content.decode()
    assert 'name="next" value="/admin/"' in page
    response = client.post(
        "/admin/login/", {"username": "admin1", "password": "pw-admin1", "next": "/admin/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_both_login_pages_count_against_one_limit(viewer):
    client = Client()
    for _ in range(3):
        attempt(client, "viewer1", "wrong")
    for _ in range(2):
        attempt(client, "viewer1", "wrong", url="/admin/login/")
    assert attempt(client, "viewer1", "pw-viewer1").status_code == 429
    assert attempt(client, "viewer1", "pw-viewer1", url="/admin/login/").status_code == 429


@pytest.mark.parametrize(
    "spelling",
    [
        " viewer1",
        "viewer1 ",
        "\tviewer1\n",
        "VIEWER1",
        "\uff56\uff49\uff45\uff57\uff45\uff52\uff11",
    ],
    ids=["leading-space", "trailing-space", "tab-newline", "upper-case", "full-width"],
)
def test_spellings_the_form_reads_as_the_same_username_share_its_count(viewer, spelling):
    client = Client()
    # Each spelling logs in as viewer1 (the form strips and NFKC-normalises),
    # so each is a guess at viewer1's password.
    for _ in range(5):
        attempt(client, spelling, "wrong")
    assert attempt(client, "viewer1", "pw-viewer1").status_code == 429


def test_the_throttled_page_does_not_tell_a_right_password_from_a_wrong_one(viewer):
    client = Client()
    for _ in range(5):
        attempt(client, "viewer1", "wrong")

    def page(password: str) -> str:
        response = attempt(client, "viewer1", password)
        assert response.status_code == 429
        # The CSRF token (in the form and in hx-headers) changes on every page.
        return re.sub(
            r'(csrfmiddlewaretoken" value="|"X-CSRFToken": ")[^"]+', "", response.content.decode()
        )

    assert page("pw-viewer1") == page("still-wrong")
    assert "didn't match" not in page("still-wrong")


@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_nginx_limits_each_login_page_per_address_with_a_fitting_retry_after(nginx, settings, path):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    # The login zone: 10 requests a minute, a burst of 10.
    answers = [
        requests.get(nginx["https"] + path, verify=False, timeout=30)  # noqa: S501 (self-signed)
        for _ in range(12)
    ]
    assert [a.status_code for a in answers[:11]] == [200] * 11
    refused = answers[11]
    assert refused.status_code == 429
    assert refused.json()["error"].startswith("Too many requests")
    # One request frees every 6 s at 10 a minute; sooner would be refused again.
    assert refused.headers["Retry-After"] == "6"
    assert refused.headers["X-Content-Type-Options"] == "nosniff"
