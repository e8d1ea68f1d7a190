"""The stats of one page computed side by side.

A page's stats are independent reads, most of whose time is PostgreSQL's:
on a 2-CPU machine two of them run at once, each on its own connection. A
small pool of threads per process does it (STATS_THREADS). Each thread keeps
its connection between pages, checked as a request's would be
(close_old_connections); it inherits the request's context (the replica
routing of sphere_stats.db) and serves it as a web request (the statement
timeout and bounded waits of sphere_stats.db). An error of a stat reaches
the page as if it had been computed in the request (a lost database: the
503 of sphere_stats).

Inside a transaction (ATOMIC_REQUESTS, the tests' fixtures) the stats run
one after another in the request's thread: other connections cannot see
what the transaction has not committed.
"""

import contextvars
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import TypeVar

from django.conf import settings
from django.db import close_old_connections, connection, connections

from sphere_stats import db

T = TypeVar("T")
_pool: ThreadPoolExecutor | None = None
_workers = 0  # the pool's threads, fixed when it is made


def _executor() -> ThreadPoolExecutor:
    global _pool, _workers
    if _pool is None:
        _workers = settings.STATS_THREADS
        _pool = ThreadPoolExecutor(_workers, thread_name_prefix="stats")
    return _pool


def _run(call: Callable[[], T], web: bool) -> T:
    close_old_connections()
    try:
        # Serving a web request, as the request's thread does: bounded waits,
        # the web's statement timeout on a new connection, the breaker.
        with db.web_request() if web else nullcontext():
            return call()
    finally:
        # A connection an error left unusable, or past DB_CONN_MAX_AGE, is
        # closed now, not carried to the next page.
        close_old_connections()


def in_parallel(calls: list[Callable[[], T]], width: int | None = None) -> list[T]:
    """Each call's result, in order; computed side by side on the pool's
    threads unless STATS_THREADS is below 2 or a transaction is open.

    With `width`, at most that many at once: each of `width` threads takes
    the next call as it finishes one, so calls listed longest first end
    together. For stats whose time is all PostgreSQL's, more at once than
    its CPUs only share them, and the longest finishes last of all."""
    if settings.STATS_THREADS < 2 or len(calls) < 2 or connection.in_atomic_block:
        return [call() for call in calls]
    pool, web = _executor(), db.in_web_request()
    if width is not None and width < len(calls):
        return _in_lanes(calls, max(width, 1), pool, web)
    futures = [pool.submit(contextvars.copy_context().run, _run, call, web) for call in calls]
    return [future.result() for future in futures]


def by_name(calls: dict[str, Callable[[], T]], width: int | None = None) -> dict[str, T]:
    """in_parallel of named calls, in the dict's order: {name: result}."""
    return dict(zip(calls, in_parallel(list(calls.values()), width), strict=True))


def _in_lanes(calls: list[Callable[[], T]], width: int, pool, web: bool) -> list[T]:
    waiting = deque(enumerate(calls))
    results: list = [None] * len(calls)

    def lane() -> None:
        # popleft is atomic: each call is taken by exactly one lane.
        while True:
            try:
                i, call = waiting.popleft()
            except IndexError:
                return
            results[i] = call()

    lanes = [pool.submit(contextvars.copy_context().run, _run, lane, web) for _ in range(width)]
    for each in lanes:
        each.result()
    return results


def close_connections() -> None:
    """Close the database connections of every thread of the pool (the test
    run, before its database is dropped). Each thread takes one task: the
    tasks wait for each other."""
    if _pool is None:
        return
    together = threading.Barrier(_workers)

    def close() -> None:
        together.wait(timeout=10)
        connections.close_all()

    for future in [_pool.submit(close) for _ in range(_workers)]:
        future.result()
