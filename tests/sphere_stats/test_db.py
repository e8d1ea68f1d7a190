"""sphere_stats.db: bulk_cursor reuses one cursor per connection, safely; a web
request's waits on PostgreSQL are bounded."""

import pytest
from django.db import DataError, OperationalError, connection

from sphere_stats import db
from sphere_stats.db import bulk_cursor

# Autocommit, as in a request: a failed statement aborts no enclosing
# transaction, and a connection can be closed and reopened.
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_block_inside_another_leaves_the_outer_results_readable():
    with bulk_cursor() as outer:
        outer.execute("SELECT generate_series(1, 3)")
        with bulk_cursor() as inner:
            inner.execute("SELECT 42")
            assert inner.fetchall() == [(42,)]
        assert outer.fetchall() == [(1,), (2,), (3,)]


def test_a_failed_statement_does_not_spoil_the_next_block():
    with pytest.raises(DataError, match="division by zero"), bulk_cursor() as cursor:
        cursor.execute("SELECT 1 / 0")
    with bulk_cursor() as cursor:
        cursor.execute("SELECT %s::int + 1", [1])
        assert cursor.fetchall() == [(2,)]


def test_a_new_connection_gets_a_cursor_of_its_own():
    with bulk_cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        first = cursor.fetchone()[0]
    connection.close()
    with bulk_cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != first


def test_a_web_wait_past_its_bound_ends_with_a_timeout_and_a_fresh_connection_follows(settings):
    # pg_sleep stands in for a server that does not answer at all (stopped,
    # or behind a dead network), where no statement timeout can fire.
    settings.DB_WAIT_TIMEOUT_MS = 300
    try:
        with db.web_request():
            db.open_connection()
            with (
                pytest.raises(OperationalError, match=r"did not answer within 0\.3 s"),
                connection.cursor() as cursor,
            ):
                cursor.execute("SELECT pg_sleep(5)")
            # The worker answers 503 at once for a while instead of waiting again.
            assert db.presumed_unreachable()
            db.reset_unreachable()
            db.open_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                assert cursor.fetchone() == (1,)
    finally:
        db.reset_unreachable()
        connection.close()


def test_outside_a_web_request_waits_are_not_bounded(settings):
    settings.DB_WAIT_TIMEOUT_MS = 100
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.3), 1")
        assert cursor.fetchone() == ("", 1)


def _setting(name: str) -> tuple[str, str]:
    """The session's value of the setting `name`, and the server's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting(%(name)s), reset_val FROM pg_settings WHERE name = %(name)s",
            {"name": name},
        )
        return cursor.fetchone()


def test_the_applications_sessions_do_not_compile_statements_unless_asked(settings):
    # A stat's statement whose cost the planner overestimates would spend
    # far longer compiling (JIT) than running.
    connection.close()
    session, server = _setting("jit")
    assert session == "off"
    settings.DB_JIT = True
    connection.close()
    assert _setting("jit") == (server, server)
    connection.close()


def _parallel_workers() -> tuple[int, int]:
    session, server = _setting("max_parallel_workers_per_gather")
    return int(session), int(server)


def test_a_web_requests_session_plans_no_parallel_workers_unless_asked(settings):
    # A page's stats already run side by side; a parallel plan's workers
    # took longer to start than a stat's whole work.
    connection.close()
    try:
        with db.web_request():
            session, server = _parallel_workers()
            assert server > 0, "the server plans parallel workers by default"
            assert session == 0
            connection.close()
            settings.DB_PARALLEL_QUERY = True
            assert _parallel_workers() == (server, server)
    finally:
        connection.close()


def test_a_command_keeps_the_servers_parallel_workers():
    # Rebuilds and imports scan millions of rows, where workers pay off.
    connection.close()
    session, server = _parallel_workers()
    assert session == server > 0
    connection.close()
