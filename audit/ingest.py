"""Ingest: parse a request body, validate every event, store the batch at once.

validate (the catalog) → store (`events`, one set-based INSERT … ON CONFLICT)
→ aggregate (the triggers on `events`, in the same statement; their
declarations are in audit/aggregates.py). A batch with any invalid event is
rejected whole; a stored batch is all-or-nothing.
"""

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import OperationalError, connection
from django.utils import timezone

from audit import catalog, ingest_copy
from audit.jsonb import loads, payload_text, text_problem
from audit.models import Event
from sphere_stats.db import RETRY_STATES, bulk_cursor, compact_sql, sqlstate

MAX_FUTURE = timedelta(minutes=5)
# Earlier UTC values can be BC dates (0001-01-01T00:00+01:00 is year 0 in UTC)
# that PostgreSQL stores but Python cannot read back, and no audit log is older.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MAX_NAME_LENGTH = 255
MAX_ERROR_MESSAGE_LENGTH = 8192
MAX_PAYLOAD_BYTES = 64 * 1024
FIELDS = Event.COLUMNS
FIELD_SET = frozenset(FIELDS)
SLUG = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# A required name must hold something besides whitespace (the schema's
# pattern, audit/schemas.py; validation asks str.isspace, the same test).
NOT_BLANK = re.compile(r"\S")
TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}(:?\d{2})?)$"
)
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/jsonlines")


class IngestError(Exception):
    """A request the client must fix; carries the status and the details list."""

    def __init__(self, status: int, error: str, details: list[dict] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details or []


@dataclass
class Row:
    index: int
    event_uuid: uuid.UUID
    timestamp: datetime
    event_type: str
    caller: str
    subject: str
    subject_type: str
    target: str | None
    success: bool
    error_message: str | None
    payload: dict
    payload_json: str = field(repr=False, default="")

    def values(self) -> tuple:
        """The row's values in the order of `events`' columns (Event.COLUMNS),
        the payload as its JSON text: what INSERT_SQL and COPY write."""
        return (
            self.event_uuid,
            self.timestamp,
            self.event_type,
            self.caller,
            self.subject,
            self.subject_type,
            self.target,
            self.success,
            self.error_message,
            self.payload_json or json.dumps(self.payload),
        )


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    conflicts: list[dict] = field(default_factory=list)
    event_uuids: list[str] = field(default_factory=list)
    # The `index` of each row counted in `duplicates` (for import_events'
    # report by line; not part of the API's answer).
    duplicate_indexes: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "event_uuids": self.event_uuids,
        }


# --- parsing -------------------------------------------------------------------


def parse_body(body: bytes, content_type: str) -> list[Any]:
    """The request body as a list of (unvalidated) event objects."""
    media_type = (content_type or "application/json").split(";")[0].strip().lower()
    if media_type not in ("application/json", *NDJSON_TYPES):
        raise IngestError(
            415,
            'Send application/json (an event, an array or {"events": [...]}) '
            "or application/x-ndjson.",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(400, f"The body is not valid UTF-8 (byte {exc.start}).") from None
    if not text.strip():
        raise IngestError(400, "The body is empty: send at least one event.")

    if media_type in NDJSON_TYPES:
        events, details = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                events.append(loads(line))
            except (ValueError, RecursionError) as exc:
                details.append(
                    {"index": len(events), "field": None, "message": f"line {number}: {exc}"}
                )
                events.append(None)
        if details:
            raise IngestError(400, "Some NDJSON lines are not valid JSON.", details)
    else:
        try:
            document = loads(text)
        except (ValueError, RecursionError) as exc:
            raise IngestError(400, f"The body is not valid JSON: {exc}") from None
        if isinstance(document, dict) and set(document) == {"events"}:
            document = document["events"]
            if not isinstance(document, list):
                raise IngestError(
                    400,
                    "'events' must be an array.",
                    [{"field": "events", "message": "not an array"}],
                )
        events = document if isinstance(document, list) else [document]

    if not events:
        raise IngestError(400, "The batch is empty: send at least one event.")
    if len(events) > settings.INGEST_MAX_EVENTS:
        raise IngestError(
            413, f"Too many events: {len(events)} > {settings.INGEST_MAX_EVENTS} per request."
        )
    return events


# --- validation ----------------------------------------------------------------


def parse_timestamp(value: Any) -> datetime:
    """RFC 3339 with an offset, or PostgreSQL's text form (`… 20:50:23.5+00`)."""
    if not isinstance(value, str):
        raise ValueError("must be a string (RFC 3339 with an offset)")
    value = value.strip()
    if not TIMESTAMP.match(value):
        if re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?$", value):
            raise ValueError("has no UTC offset: add Z or +00:00")
        raise ValueError("is not an RFC 3339 timestamp such as 2026-04-23T20:50:23Z")
    try:
        return datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError("is not a valid date and time") from None


class TextField(NamedTuple):
    """A text column of an event and what it must hold."""

    name: str
    required: bool
    allow_empty: bool
    limit: int
    slug_example: str = ""  # set for a column that must be a lowercase slug


# In the order their problems are listed.
TEXT_FIELDS = (
    TextField("event_type", True, False, 64, "user_created"),
    TextField("caller", True, True, MAX_NAME_LENGTH),
    TextField("subject", True, False, MAX_NAME_LENGTH),
    TextField("subject_type", True, False, 64, "organization"),
    TextField("target", False, True, MAX_NAME_LENGTH),
    TextField("error_message", False, True, MAX_ERROR_MESSAGE_LENGTH),
)


def _string(event: dict, spec: TextField, errors: list) -> str | None:
    name = spec.name
    if name not in event or event[name] is None:
        if spec.required:
            errors.append((name, "is required"))
        return None
    value = event[name]
    if not isinstance(value, str):
        errors.append((name, "must be a string"))
        return None
    # str.isspace is true of a non-empty string of whitespace only, the
    # characters regular expressions call \s.
    if not spec.allow_empty and (not value or value.isspace()):
        errors.append((name, "must not be empty"))
        return None
    if len(value) > spec.limit:
        errors.append((name, f"is longer than {spec.limit} characters"))
        return None
    problem = text_problem(value)
    if problem:
        errors.append((name, problem))
        return None
    if spec.slug_example and not SLUG.match(value):
        # The value is still returned: the catalog's checks read it.
        errors.append((name, f"must be a lowercase slug such as {spec.slug_example}"))
    return value


def _event_uuid(event: dict, errors: list) -> uuid.UUID | None:
    value = event.get("event_uuid")
    if value is None:
        return None
    try:
        parsed = uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        errors.append(("event_uuid", "must be a UUID string"))
    return parsed


def _timestamp(event: dict, now: datetime, errors: list) -> datetime:
    if event.get("timestamp") is None:
        return now
    try:
        timestamp = parse_timestamp(event["timestamp"])
    except ValueError as exc:
        errors.append(("timestamp", str(exc)))
        return now
    if timestamp > now + MAX_FUTURE:
        errors.append(("timestamp", "is more than 5 minutes in the future"))
    elif timestamp < EARLIEST:
        errors.append(("timestamp", "is before 1970-01-01T00:00:00Z"))
    return timestamp


def _success(event: dict, errors: list) -> Any:
    if "success" not in event:
        errors.append(("success", "is required"))
    elif not isinstance(event["success"], bool):
        errors.append(("success", "must be true or false"))
    return event.get("success")


def _payload(event: dict, errors: list) -> tuple[Any, str]:
    """The payload (an empty one if absent) and its JSON text."""
    payload = event.get("payload")
    if payload is None:
        return {}, "{}"
    if not isinstance(payload, dict):
        errors.append(("payload", "must be a JSON object"))
        return payload, "{}"
    problem, text = payload_text(payload)
    if problem:
        errors.append(problem)
    elif (len(text) if text.isascii() else len(text.encode())) > MAX_PAYLOAD_BYTES:
        errors.append(("payload", f"is larger than {MAX_PAYLOAD_BYTES // 1024} KB"))
    return payload, text


def _catalog_problems(texts: dict[str, str | None], payload: Any) -> list[tuple[str, str]]:
    """What the catalog entry of a known event type finds wrong."""
    event_type, subject_type = texts["event_type"], texts["subject_type"]
    known = catalog.get(event_type) if event_type else None
    if not known or not isinstance(payload, dict):
        return []
    problems = known.payload_problems(payload)
    if subject_type and subject_type != known.subject_type:
        problems.append(("subject_type", f"must be '{known.subject_type}' for {event_type}"))
    return problems


def validate_event(index: int, event: Any, now: datetime) -> tuple[Row | None, list[dict]]:
    """One event as a Row, or the list of its problems."""
    if not isinstance(event, dict):
        return None, [{"index": index, "field": None, "message": "must be a JSON object"}]
    errors: list[tuple[str | None, str]] = (
        []
        if event.keys() <= FIELD_SET
        else [(name, "is not a field of an event") for name in sorted(event.keys() - FIELD_SET)]
    )
    event_uuid = _event_uuid(event, errors)
    timestamp = _timestamp(event, now, errors)
    texts = {spec.name: _string(event, spec, errors) for spec in TEXT_FIELDS}
    success = _success(event, errors)
    payload, payload_json = _payload(event, errors)
    errors.extend(_catalog_problems(texts, payload))
    if errors:
        return None, [{"index": index, "field": f, "message": m} for f, m in errors]
    return Row(
        index=index,
        event_uuid=event_uuid or uuid.uuid4(),
        timestamp=timestamp,
        success=success,
        payload=payload,
        payload_json=payload_json,
        **texts,
    ), []


def validate(events: list[Any], now: datetime | None = None) -> list[Row]:
    """Every event as a Row; raises IngestError listing every bad event."""
    now = now or timezone.now()
    rows, details = [], []
    for index, event in enumerate(events):
        row, problems = validate_event(index, event, now)
        if row:
            rows.append(row)
        details.extend(problems)
    if details:
        bad = len({d["index"] for d in details})
        raise IngestError(
            400, f"{bad} of {len(events)} events are invalid; nothing was stored.", details
        )
    return rows


# --- storage -------------------------------------------------------------------

# %b: the arrays travel in PostgreSQL's binary format (bulk_cursor), with no
# per-value quoting or escaping on either side. The pre-aggregates are kept
# by the triggers on `events` (audit/aggregates.py), in this statement's
# transaction, as for every other writer.
INSERT_SQL = compact_sql("""
INSERT INTO events (event_uuid, timestamp, event_type, caller, subject,
                    subject_type, target, success, error_message, payload)
SELECT event_uuid, ts, event_type, caller, subject, subject_type, target,
       success, error_message, payload::jsonb
FROM unnest(
    %b::uuid[], %b::timestamptz[], %b::text[], %b::text[], %b::text[],
    %b::text[], %b::text[], %b::boolean[], %b::text[], %b::text[]
) AS t(event_uuid, ts, event_type, caller, subject, subject_type, target,
       success, error_message, payload)
ON CONFLICT (event_uuid) DO NOTHING
RETURNING event_uuid
""")


# The positions (1-based) of the rows that are the same as the event stored
# under their uuid. PostgreSQL compares, with the payload cast exactly as the
# insert casts it: jsonb equality ignores key order and a number's spelling,
# where Python would read 1e300 back as the int 10**300 and take True for 1.
SAME_AS_STORED_SQL = """
SELECT t.position FROM unnest(
    %b::uuid[], %b::timestamptz[], %b::text[], %b::text[], %b::text[],
    %b::text[], %b::text[], %b::boolean[], %b::text[], %b::text[]
) WITH ORDINALITY AS t(event_uuid, ts, event_type, caller, subject, subject_type, target,
                       success, error_message, payload, position)
JOIN events AS e USING (event_uuid)
WHERE (e.timestamp, e.event_type, e.caller, e.subject, e.subject_type, e.target,
       e.success, e.error_message, e.payload)
      IS NOT DISTINCT FROM
      (t.ts, t.event_type, t.caller, t.subject, t.subject_type, t.target,
       t.success, t.error_message, t.payload::jsonb)
"""


def row_columns(rows: list[Row]) -> list[list]:
    """The rows as the column arrays INSERT_SQL and SAME_AS_STORED_SQL take."""
    values = [r.values() for r in rows]
    return [[v[i] for v in values] for i in range(len(FIELDS))]


def _conflict(row: Row, why: str) -> dict:
    return {"index": row.index, "event_uuid": str(row.event_uuid), "message": why}


def _insert_once(columns: list[list]) -> set[uuid.UUID]:
    with bulk_cursor() as cursor:
        cursor.execute(INSERT_SQL, columns)
        return {r[0] for r in cursor.fetchall()}


def _insert(columns: list[list], attempts: int) -> set[uuid.UUID]:
    """INSERT_SQL, retried on a deadlock; the uuids it inserted."""
    # One statement, atomic by itself: outside a transaction block it saves
    # the BEGIN and COMMIT round trips, a third of a single POST's time.
    # Inside a caller's atomic() (imports, tests) it simply joins that one.
    for _ in range(attempts - 1):
        try:
            return _insert_once(columns)
        except OperationalError as exc:
            # Two batches touching the same pre-aggregate rows can deadlock in
            # rare orders; PostgreSQL aborts one, and a retry is safe because
            # the whole statement rolled back. Inside a caller's transaction
            # the retry cannot help: that transaction is aborted.
            if sqlstate(exc) not in RETRY_STATES or connection.in_atomic_block:
                raise
    return _insert_once(columns)


def store(rows: list[Row], *, attempts: int = 3) -> IngestResult:
    """Insert rows that are new; report the others as duplicates or conflicts.

    The first copy of each uuid is inserted unless the uuid is stored. Every
    other row is then compared with the event stored under its uuid (an
    earlier one, or this batch's first copy): the same content is a
    duplicate, other content a conflict. A uuid is listed once in conflicts,
    at its first conflicting copy, however many copies conflict.
    """
    return store_many([rows], attempts=attempts)[0]


def store_many(batches: list[list[Row]], *, attempts: int = 3) -> list[IngestResult]:
    """Several requests' batches in one INSERT (audit/coalesce.py), each
    answered as store() would have answered it had the batches before it been
    stored first: a uuid that an earlier batch holds is, for a later one,
    stored already (a duplicate, or a conflict if its content differs)."""
    results = [IngestResult(event_uuids=[str(r.event_uuid) for r in rows]) for rows in batches]
    # The first copy of each uuid, and the batch it is in.
    first: dict[uuid.UUID, tuple[Row, int]] = {}
    for number, rows in enumerate(batches):
        for row in rows:
            first.setdefault(row.event_uuid, (row, number))
    new = [row for row, _ in first.values()]
    inserted = ingest_copy.copy_rows(new)
    if inserted is None:
        inserted = _insert(row_columns(new), attempts)
    for row, number in first.values():
        if row.event_uuid in inserted:
            results[number].accepted += 1

    repeated = [
        (row, number)
        for number, rows in enumerate(batches)
        for row in rows
        if first[row.event_uuid][0] is not row or row.event_uuid not in inserted
    ]
    if not repeated:
        return results
    with bulk_cursor() as cursor:
        cursor.execute(SAME_AS_STORED_SQL, row_columns([row for row, _ in repeated]))
        same = {r[0] for r in cursor.fetchall()}
    conflicting: list[set[uuid.UUID]] = [set() for _ in batches]
    for position, (row, number) in enumerate(repeated, start=1):
        result = results[number]
        if position in same:
            result.duplicates += 1
            result.duplicate_indexes.append(row.index)
        elif row.event_uuid not in conflicting[number]:
            conflicting[number].add(row.event_uuid)
            result.conflicts.append(
                _conflict(row, "repeats an event_uuid of this batch with different content")
                if row.event_uuid in inserted and first[row.event_uuid][1] == number
                else _conflict(
                    row,
                    "an event with this uuid is stored with different content; "
                    "audit records are immutable",
                )
            )
    return results


def ingest(events: list[Any], now: datetime | None = None) -> IngestResult:
    """Validate and store a batch of event objects (the API, imports and seed_demo)."""
    return store(validate(events, now))
