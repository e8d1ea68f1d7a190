"""facilities.summary: the rows the page, its minute refresh and the API share."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from facilities.summary import POLL_SECONDS, USAGE_CACHE_SECONDS, facility_rows
from tests.factories import allocation, facility

NOW = datetime(2026, 4, 23, 21, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


def in_use_at(moment: datetime) -> int:
    with time_machine.travel(moment, tick=False):
        (row,) = facility_rows(datetime.now(UTC))
    return row.usage.in_use


def test_the_next_minute_poll_reuses_the_usage_counts_and_a_later_one_recounts():
    facility("isi")
    assert in_use_at(NOW) == 0
    allocation("realization", "allocated", "isi", NOW, resources=["isi-n001", "isi-n002"])
    # The poll a minute later is served from the cache (no recount)...
    assert in_use_at(NOW + timedelta(seconds=POLL_SECONDS)) == 0
    # ...and once the cached copy has expired the count is current again.
    assert in_use_at(NOW + timedelta(seconds=USAGE_CACHE_SECONDS + 1)) == 2
