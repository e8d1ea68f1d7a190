"""login_users_daily's first and last quarter hour of each user's logins in a
UTC day (0 is 00:00-00:15 UTC, 95 is 23:45-24:00) follow every insert,
update and delete in SQL, as the active users of a zone whose days begin
inside a UTC day read them."""

from datetime import UTC, datetime

from django.db import connection

from audit.aggregates import COUNT_TABLES
from tests import factories
from tests.audit.adopt_helpers import exact_after

DAY = datetime(2026, 3, 5, tzinfo=UTC)
DAILY = next(t for t in COUNT_TABLES if t.table == "login_users_daily")


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute, second=second)


def quarters() -> dict[str, tuple[int, int, int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT username, n, first_quarter, last_quarter FROM login_users_daily"
            " WHERE day = %(day)s",
            {"day": DAY},
        )
        return {name: (n, first, last) for name, n, first, last in cursor.fetchall()}


def execute(statement: str, params: dict) -> int:
    return exact_after(DAILY, statement, params)


def test_the_first_and_last_quarter_follow_inserts_updates_and_deletes(db):
    for when in (at(3, 14, 59), at(18, 29, 59), at(18, 30), at(23, 59, 59)):
        factories.row(subject="alice", timestamp=when)
    factories.row(subject="bob", timestamp=at(0, 0))
    factories.row(subject="bob", timestamp=at(12, 0), success=False)  # no login
    assert quarters() == {"alice": (4, 12, 95), "bob": (1, 0, 0)}

    # Deleting the last login narrows the day to the next one.
    gone = "DELETE FROM events WHERE subject = 'alice' AND timestamp = %(t)s"
    assert execute(gone, {"t": at(23, 59, 59)}) == 1
    assert quarters()["alice"] == (3, 12, 74)
    # And the first.
    assert execute(gone, {"t": at(3, 14, 59)}) == 1
    assert quarters()["alice"] == (2, 73, 74)

    # An update is a delete and an insert: moved earlier, then to another day.
    moved = "UPDATE events SET timestamp = %(to)s WHERE subject = 'alice' AND timestamp = %(t)s"
    assert execute(moved, {"t": at(18, 30), "to": at(6, 45)}) == 1
    assert quarters()["alice"] == (2, 27, 73)
    assert execute(moved, {"t": at(18, 29, 59), "to": datetime(2026, 3, 6, tzinfo=UTC)}) == 1
    assert quarters()["alice"] == (1, 27, 27)
    # A failed login turned into a successful one widens bob's day.
    assert execute("UPDATE events SET success = true WHERE subject = 'bob'", {}) == 2
    assert quarters()["bob"] == (2, 0, 48)
    assert execute("DELETE FROM events WHERE subject = 'bob'", {}) == 2
    assert "bob" not in quarters()
