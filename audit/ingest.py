"""Ingest: parse a request body, validate every event, store the batch at once.

validate (the catalog) → store (`events`, one set-based INSERT … ON CONFLICT)
→ aggregate (the triggers on `events`, in the same statement). A batch with
any invalid event is rejected whole; a stored batch is all-or-nothing.
"""

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection
from django.utils import timezone

from audit import catalog
from audit.models import Event
from sphere_stats.db import bulk_cursor, compact_sql

MAX_FUTURE = timedelta(minutes=5)
# Earlier UTC values can be BC dates (0001-01-01T00:00+01:00 is year 0 in UTC)
# that PostgreSQL stores but Python cannot read back, and no audit log is older.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MAX_NAME_LENGTH = 255
MAX_ERROR_MESSAGE_LENGTH = 8192
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PAYLOAD_DEPTH = 16
FIELDS = Event.COLUMNS
FIELD_SET = frozenset(FIELDS)
SLUG = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# A required name must hold something besides whitespace.
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


class UnfitNumber:
    """A JSON number that a float cannot hold, left in place by `loads` so
    that validation can name the field it is in."""

    __slots__ = ("problem", "text")

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem

    def __repr__(self) -> str:
        return f"UnfitNumber({self.text!r})"


NONZERO_MANTISSA = re.compile(r"-?[0.]*[1-9]")


def _checked_float(text: str) -> float | UnfitNumber:
    value = float(text)
    if not math.isfinite(value):
        return UnfitNumber(text, f"number {text} is out of range")
    # 1e-400 parses as 0.0: storing it would silently change the number.
    if value == 0.0 and NONZERO_MANTISSA.match(text):
        return UnfitNumber(text, f"number {text} is too small: it would be stored as 0")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str) -> Any:
    """json.loads that refuses NaN/Infinity. A number a float cannot hold
    (1e400, 1e-400) becomes an UnfitNumber, which validation refuses by name."""
    return json.loads(text, parse_float=_checked_float, parse_constant=_reject_constant)


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


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains invalid Unicode (a lone surrogate)"
    return None


def _walk_payload(value: Any, depth: int = 0) -> str | None:
    """Why a payload cannot be stored as JSONB, or None."""
    if depth > MAX_PAYLOAD_DEPTH:
        return f"is nested deeper than {MAX_PAYLOAD_DEPTH} levels"
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _text_problem(key) or _walk_payload(item, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = _walk_payload(item, depth + 1)
            if problem:
                return problem
    return None


def _depth_problem(value: Any, depth: int = 0) -> str | None:
    if depth > MAX_PAYLOAD_DEPTH:
        return f"is nested deeper than {MAX_PAYLOAD_DEPTH} levels"
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        if isinstance(item, dict | list):
            problem = _depth_problem(item, depth + 1)
            if problem:
                return problem
    return None


def _unfit_number(value: Any, path: str, depth: int = 0) -> tuple[str, str] | None:
    """(field, problem) of the first UnfitNumber in a payload, or None."""
    if isinstance(value, UnfitNumber):
        return path, value.problem
    if depth > MAX_PAYLOAD_DEPTH:
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, UnfitNumber | dict | list):
            found = _unfit_number(item, f"{path}.{key}", depth + 1)
            if found:
                return found
    return None


def payload_text(payload: dict) -> tuple[tuple[str, str] | None, str]:
    """((field, why) the payload cannot be stored as JSONB, or None; its JSON text).

    The fast path serialises once and looks at the text: JSON spells a NUL
    as \\u0000 and a lone surrogate fails to encode. Only a payload that
    might have such a problem takes the exact (slower) walk, which names it.
    """
    try:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        text.encode("utf-8")
    except TypeError:
        # An UnfitNumber from loads(), or an object a Python caller put there.
        problem = _depth_problem(payload) or "contains a value that JSON cannot hold"
        return _unfit_number(payload, "payload") or ("payload", problem), ""
    except (UnicodeEncodeError, RecursionError, ValueError):
        problem = _walk_payload(payload) or "contains NaN or Infinity, which JSON cannot hold"
        return ("payload", problem), ""
    problem = _walk_payload(payload) if "\\u0000" in text else _depth_problem(payload)
    return (("payload", problem) if problem else None), text


def parse_timestamp(value: Any) -> datetime:
    """RFC 3339 with an offset, or PostgreSQL's text form (`… 20:50:23.5+00`)."""
    if not isinstance(value, str):
        raise ValueError("must be a string (RFC 3339 with an offset)")
    if not TIMESTAMP.match(value.strip()):
        if re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?$", value.strip()):
            raise ValueError("has no UTC offset: add Z or +00:00")
        raise ValueError("is not an RFC 3339 timestamp such as 2026-04-23T20:50:23Z")
    try:
        return datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError("is not a valid date and time") from None


def _string(
    event: dict, name: str, errors: list, *, required: bool, allow_empty: bool, limit: int
) -> str | None:
    if name not in event or event[name] is None:
        if required:
            errors.append((name, "is required"))
        return None
    value = event[name]
    if not isinstance(value, str):
        errors.append((name, "must be a string"))
        return None
    if not allow_empty and not NOT_BLANK.search(value):
        errors.append((name, "must not be empty"))
        return None
    if len(value) > limit:
        errors.append((name, f"is longer than {limit} characters"))
        return None
    problem = _text_problem(value)
    if problem:
        errors.append((name, problem))
        return None
    return value


def validate_event(index: int, event: Any, now: datetime) -> tuple[Row | None, list[dict]]:
    """One event as a Row, or the list of its problems."""
    if not isinstance(event, dict):
        return None, [{"index": index, "field": None, "message": "must be a JSON object"}]
    errors: list[tuple[str | None, str]] = []
    unknown = event.keys() - FIELD_SET
    for name in sorted(unknown):
        errors.append((name, "is not a field of an event"))

    event_uuid = None
    if event.get("event_uuid") is not None:
        try:
            event_uuid = (
                uuid.UUID(str(event["event_uuid"]))
                if isinstance(event["event_uuid"], str)
                else None
            )
        except ValueError:
            event_uuid = None
        if event_uuid is None:
            errors.append(("event_uuid", "must be a UUID string"))

    timestamp = now
    if event.get("timestamp") is not None:
        try:
            timestamp = parse_timestamp(event["timestamp"])
            if timestamp > now + MAX_FUTURE:
                errors.append(("timestamp", "is more than 5 minutes in the future"))
            elif timestamp < EARLIEST:
                errors.append(("timestamp", "is before 1970-01-01T00:00:00Z"))
        except ValueError as exc:
            errors.append(("timestamp", str(exc)))

    event_type = _string(event, "event_type", errors, required=True, allow_empty=False, limit=64)
    if event_type is not None and not SLUG.match(event_type):
        errors.append(("event_type", "must be a lowercase slug such as user_created"))
    caller = _string(
        event, "caller", errors, required=True, allow_empty=True, limit=MAX_NAME_LENGTH
    )
    subject = _string(
        event, "subject", errors, required=True, allow_empty=False, limit=MAX_NAME_LENGTH
    )
    subject_type = _string(
        event, "subject_type", errors, required=True, allow_empty=False, limit=64
    )
    if subject_type is not None and not SLUG.match(subject_type):
        errors.append(("subject_type", "must be a lowercase slug such as organization"))
    target = _string(
        event, "target", errors, required=False, allow_empty=True, limit=MAX_NAME_LENGTH
    )
    error_message = _string(
        event,
        "error_message",
        errors,
        required=False,
        allow_empty=True,
        limit=MAX_ERROR_MESSAGE_LENGTH,
    )
    success = event.get("success")
    if "success" not in event:
        errors.append(("success", "is required"))
    elif not isinstance(success, bool):
        errors.append(("success", "must be true or false"))

    payload = event.get("payload")
    payload_json = "{}"
    if payload is None:
        payload = {}
    elif not isinstance(payload, dict):
        errors.append(("payload", "must be a JSON object"))
    else:
        problem, payload_json = payload_text(payload)
        if problem:
            errors.append(problem)
        else:
            if len(payload_json.encode()) > MAX_PAYLOAD_BYTES:
                errors.append(("payload", f"is larger than {MAX_PAYLOAD_BYTES // 1024} KB"))

    known = catalog.get(event_type) if event_type else None
    if known and isinstance(payload, dict):
        errors.extend(known.payload_problems(payload))
        if subject_type and subject_type != known.subject_type:
            errors.append(("subject_type", f"must be '{known.subject_type}' for {event_type}"))

    if errors:
        return None, [{"index": index, "field": f, "message": m} for f, m in errors]
    return Row(
        index=index,
        event_uuid=event_uuid or uuid.uuid4(),
        timestamp=timestamp,
        event_type=event_type,
        caller=caller,
        subject=subject,
        subject_type=subject_type,
        target=target,
        success=success,
        error_message=error_message,
        payload=payload,
        payload_json=payload_json,
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
    return [
        [r.event_uuid for r in rows],
        [r.timestamp for r in rows],
        [r.event_type for r in rows],
        [r.caller for r in rows],
        [r.subject for r in rows],
        [r.subject_type for r in rows],
        [r.target for r in rows],
        [r.success for r in rows],
        [r.error_message for r in rows],
        [r.payload_json or json.dumps(r.payload) for r in rows],
    ]


def _conflict(row: Row, why: str) -> dict:
    return {"index": row.index, "event_uuid": str(row.event_uuid), "message": why}


def store(rows: list[Row], *, attempts: int = 3) -> IngestResult:
    """Insert rows that are new; report the others as duplicates or conflicts.

    The first copy of each uuid is inserted unless the uuid is stored. Every
    other row is then compared with the event stored under its uuid (an
    earlier one, or this batch's first copy): the same content is a
    duplicate, other content a conflict. A uuid is listed once in conflicts,
    at its first conflicting copy, however many copies conflict.
    """
    result = IngestResult(event_uuids=[str(r.event_uuid) for r in rows])
    first: dict[uuid.UUID, Row] = {}
    for row in rows:
        first.setdefault(row.event_uuid, row)
    batch = list(first.values())

    columns = row_columns(batch)
    # One statement, atomic by itself: outside a transaction block it saves
    # the BEGIN and COMMIT round trips, a third of a single POST's time.
    # Inside a caller's atomic() (imports, tests) it simply joins that one.
    for attempt in range(attempts):
        try:
            with bulk_cursor() as cursor:
                cursor.execute(INSERT_SQL, columns)
                inserted = {r[0] for r in cursor.fetchall()}
            break
        except OperationalError as exc:
            # Two batches touching the same pre-aggregate rows can deadlock in
            # rare orders; PostgreSQL aborts one, and a retry is safe because
            # the whole statement rolled back. Inside a caller's transaction
            # the retry cannot help: that transaction is aborted.
            cause = getattr(exc, "__cause__", None)
            sqlstate = getattr(cause, "sqlstate", None)
            if (
                sqlstate not in ("40P01", "40001")
                or attempt == attempts - 1
                or connection.in_atomic_block
            ):
                raise
    result.accepted = len(inserted)

    repeated = [r for r in rows if r is not first[r.event_uuid] or r.event_uuid not in inserted]
    if not repeated:
        return result
    with bulk_cursor() as cursor:
        cursor.execute(SAME_AS_STORED_SQL, row_columns(repeated))
        same = {r[0] for r in cursor.fetchall()}
    conflicting: set[uuid.UUID] = set()
    for position, row in enumerate(repeated, start=1):
        if position in same:
            result.duplicates += 1
            result.duplicate_indexes.append(row.index)
        elif row.event_uuid not in conflicting:
            conflicting.add(row.event_uuid)
            result.conflicts.append(
                _conflict(row, "repeats an event_uuid of this batch with different content")
                if row.event_uuid in inserted
                else _conflict(
                    row,
                    "an event with this uuid is stored with different content; "
                    "audit records are immutable",
                )
            )
    return result


def ingest(events: list[Any], now: datetime | None = None) -> IngestResult:
    """Validate and store a batch of event objects (the API, imports and seed_demo)."""
    return store(validate(events, now))
