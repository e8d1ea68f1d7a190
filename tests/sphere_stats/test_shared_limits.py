"""The login throttle and the per-token rate limits hold across gunicorn
workers: counted once, in PostgreSQL, and before the password is checked.

gunicorn runs as production runs it (deploy/gunicorn.conf.py, 2 workers of 4
threads) against this test's database. Each worker counts the password checks
it makes (Django's user_login_failed signal, sent once per wrong password it
hashed) in a file, through a test-only post_fork hook.
"""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User
from django.db import connection

from bench import servers
from sphere_stats.models import ApiToken

LIMIT = 5
INGEST_LIMIT = 10

COUNT_CHECKS = """

def post_fork(server, worker):
    # Test only: one line per password checked and found wrong.
    from django.contrib.auth.signals import user_login_failed

    def count(sender, credentials, **kwargs):
        with open({path!r}, "a") as checks:
            checks.write("checked\\n")

    user_login_failed.connect(count, weak=False)
"""

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def counters():
    """The counter table, emptied before and after: gunicorn's writes are
    committed, and the next test's logins come from the same address."""

    def empty():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM sphere_stats_rate_counter")

    empty()
    yield
    empty()


@pytest.fixture
def gunicorn(tmp_path, counters, _collected_static_files):
    checks = tmp_path / "checks"
    checks.touch()
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(servers.GUNICORN_CONF.read_text() + COUNT_CHECKS.format(path=str(checks)))
    env = servers.bare_env(
        servers.database_url(connection.settings_dict),
        tmp_path,
        LOGIN_FAILURE_LIMIT=str(LIMIT),
        LOGIN_FAILURE_LIMIT_PER_IP="100",
        # Long windows (fixed ones, aligned to the epoch): the test does not
        # straddle two, where the counts would start again.
        LOGIN_FAILURE_WINDOW="86400",
        RATE_LIMIT_INGEST=f"{INGEST_LIMIT}/86400",
        LOG_LEVEL="ERROR",
    )
    env = servers.serving_static_from(env, _collected_static_files, tmp_path)
    with servers.gunicorn(env, workers=2, config=config, log=tmp_path / "gunicorn.log") as served:
        url, _ = served
        yield url, checks


def test_forty_concurrent_wrong_passwords_get_at_most_the_limit_checked(gunicorn):
    url, checks = gunicorn
    # Hashed as production hashes (this suite's settings use MD5 for speed).
    hasher = PBKDF2PasswordHasher()
    User.objects.create(username="target", password=hasher.encode("the-right-one", hasher.salt()))
    session = requests.Session()
    session.get(f"{url}/accounts/login/", timeout=30)
    csrf = session.cookies["csrftoken"]

    def guess(n: int) -> int:
        response = requests.post(
            f"{url}/accounts/login/",
            {"username": "target", "password": f"guess-{n}", "csrfmiddlewaretoken": csrf},
            cookies={"csrftoken": csrf},
            headers={"Referer": f"{url}/accounts/login/"},
            timeout=60,
            allow_redirects=False,
        )
        return response.status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(guess, range(40)))

    checked = len(checks.read_text().splitlines())
    assert 1 <= checked <= LIMIT
    # Each checked guess got the form back; every other one was refused unchecked.
    assert statuses.count(200) == checked
    assert statuses.count(429) == 40 - checked
    # The right password is refused too, for now.
    assert guess_right(url, csrf) == 429


def guess_right(url: str, csrf: str) -> int:
    return requests.post(
        f"{url}/accounts/login/",
        {"username": "target", "password": "the-right-one", "csrfmiddlewaretoken": csrf},
        cookies={"csrftoken": csrf},
        headers={"Referer": f"{url}/accounts/login/"},
        timeout=60,
        allow_redirects=False,
    ).status_code


def test_the_per_token_ingest_limit_holds_across_the_workers(gunicorn):
    url, _ = gunicorn
    token = ApiToken.issue("shared-limits", ["ingest"])[1]
    sent = [str(uuid.uuid4()) for _ in range(3 * INGEST_LIMIT)]

    def post(event_uuid: str) -> int:
        return requests.post(
            f"{url}/api/v1/events",
            json={
                "event_uuid": event_uuid,
                "timestamp": "2026-05-01T12:00:00Z",
                "event_type": "user_login",
                "caller": "alice",
                "subject": "alice",
                "subject_type": "user",
                "success": True,
            },
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ).status_code

    with ThreadPoolExecutor(3 * INGEST_LIMIT) as pool:
        statuses = list(pool.map(post, sent))

    assert statuses.count(201) == INGEST_LIMIT
    assert statuses.count(429) == 2 * INGEST_LIMIT
    from audit.models import Event

    assert Event.objects.filter(event_uuid__in=sent).count() == INGEST_LIMIT
