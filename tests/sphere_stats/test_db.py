"""sphere_stats.db.bulk_cursor: one reused cursor per connection, safely."""

import pytest
from django.db import DataError, connection

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
