"""Big batches into `events` by binary COPY (audit.ingest.store_many)."""

import json
import uuid
from typing import TYPE_CHECKING

from django.db import IntegrityError, OperationalError, transaction

from sphere_stats.db import bulk_cursor, compact_sql

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
COPY_SQL = compact_sql("""
COPY events (event_uuid, timestamp, event_type, caller, subject,
             subject_type, target, success, error_message, payload)
FROM STDIN (FORMAT BINARY)
""")
# The payload travels as jsonb's binary form, a version byte (1) then the
# text, which the server parses as the ::jsonb cast does; psycopg's jsonb
# dumper would send the str as a JSON string.
COPY_TYPES = ("uuid", "timestamptz", *["text"] * 5, "bool", "text", "bytea")
_JSONB_VERSION = b"\x01"


def sqlstate(exc: Exception) -> str | None:
    return getattr(getattr(exc, "__cause__", None), "sqlstate", None)


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
                payload = r.payload_json or json.dumps(r.payload)
                copy.write_row(
                    (
                        r.event_uuid,
                        r.timestamp,
                        r.event_type,
                        r.caller,
                        r.subject,
                        r.subject_type,
                        r.target,
                        r.success,
                        r.error_message,
                        _JSONB_VERSION + payload.encode(),
                    )
                )
    except (IntegrityError, OperationalError) as exc:
        if sqlstate(exc) not in ("23505", "40P01", "40001"):
            raise
        return None
    return {r.event_uuid for r in rows}
