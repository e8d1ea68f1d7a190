"""Big batches into `events` by binary COPY (audit.ingest.store_many)."""

import uuid
from typing import TYPE_CHECKING

from django.db import IntegrityError, OperationalError, transaction

from audit.models import Event
from sphere_stats.db import RETRY_STATES, bulk_cursor, sqlstate

if TYPE_CHECKING:
    from audit.ingest import Row

# A batch of COPY_MIN_ROWS new rows or more goes in by binary COPY, each
# column in PostgreSQL's binary format. INSERT_SQL's ON CONFLICT (audit.ingest)
# inserts each row speculatively: 100,000 events stored in 10,000-event
# batches took 8.2 s that way against 6.6 by COPY with the triggers, 3.7
# against 2.8 without them (bench/ingest_paths.py). A stored uuid makes the
# COPY fail, which writes nothing; INSERT_SQL then sorts the stored rows from
# the new. Smaller batches keep INSERT_SQL: one round trip against COPY's
# three and its transaction, which cost about what COPY saves up to some
# hundreds of rows (300: 2 % faster; 1,000: 6 %), and a portal's single
# events stay one.
COPY_MIN_ROWS = 1000
COPY_SQL = f"COPY events ({', '.join(Event.COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# The payload travels as jsonb's binary form, a version byte (1) then the
# text, which the server parses as the ::jsonb cast does; psycopg's jsonb
# dumper would send the str as a JSON string.
COPY_TYPES = ("uuid", "timestamptz", *["text"] * 5, "bool", "text", "bytea")
_JSONB_VERSION = b"\x01"


def copy_rows(rows: list["Row"]) -> set[uuid.UUID] | None:
    """COPY the rows into `events` in one statement: their uuids. None, with
    nothing written, for fewer than COPY_MIN_ROWS rows, or when one of them is
    stored already or a deadlock ended the COPY (in a savepoint inside a
    caller's transaction, which survives that)."""
    if len(rows) < COPY_MIN_ROWS:
        return None
    try:
        with transaction.atomic(), bulk_cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            copy.set_types(COPY_TYPES)
            for r in rows:
                *columns, payload = r.values()
                copy.write_row((*columns, _JSONB_VERSION + payload.encode()))
    except (IntegrityError, OperationalError) as exc:
        if sqlstate(exc) not in ("23505", *RETRY_STATES):
            raise
        return None
    return {r.event_uuid for r in rows}
