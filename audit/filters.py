"""The one event filter: read API, explorer, entity timelines and exports.

Parsed from a query string; every parameter has a default when absent and
raises FilterError (a 400) naming the parameter when wrong.

Parameters: event_type (repeatable), subject_type, subject, caller, target,
success (true/false; see SUCCESS_VALUES), entity (`user:alice`,
`organization:isi`, `project:p1`, `experiment:p1/exp1`: every event its
page's timeline shows, EventQuerySet.involving), payload (repeatable
`key=value`, JSONB containment), error_contains, and the time range:
either RFC 3339 or relative (`now-7d`) since/until (the read API) or the
stats pages' window (period, since, until, tz; see sphere_stats.windows)
when `period` is given or the caller asks for it.
"""

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.http import QueryDict
from django.utils import timezone

from audit.ingest import loads as json_loads
from audit.ingest import parse_timestamp
from audit.models import Event, EventQuerySet, HourlyCount
from sphere_stats.windows import (
    RELATIVE_HELP,
    Window,
    WindowError,
    checked_moment,
    parse_relative,
    parse_zone,
)

PAYLOAD_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MAX_PAYLOAD_PAIRS = 8
MAX_TEXT = 255
# A payload value may be longer than a column's text (a message, a list of
# nodes), but not without bound: a URL of megabytes is no filter.
MAX_PAYLOAD_VALUE = 1024
# A cursor this server writes is about 100 characters.
MAX_CURSOR = 200
# The one parser of `success` for the explorer, the read API and exports.
SUCCESS_VALUES = {
    **dict.fromkeys(("true", "1", "yes", "succeeded"), True),
    **dict.fromkeys(("false", "0", "no", "failed"), False),
    **dict.fromkeys(("", "any"), None),
}
ENTITY_KINDS = ("user", "organization", "project", "experiment")


def parse_entity(raw: str) -> tuple[str, str, str]:
    """`kind:name` (or `experiment:project/name`) as (kind, name, project)."""
    kind, sep, rest = raw.partition(":")
    kind = kind.strip()
    if not sep or kind not in ENTITY_KINDS:
        raise FilterError("entity", f"must be kind:name with kind one of {', '.join(ENTITY_KINDS)}")
    project = ""
    if kind == "experiment":
        project, slash, rest = rest.partition("/")
        if not slash or not project:
            raise FilterError("entity", "an experiment is experiment:<project>/<name>")
    if not rest:
        raise FilterError("entity", "names no entity after the kind")
    return kind, rest, project


def parse_payload_pair(raw: str) -> tuple[str, str]:
    """`kind=usermember` as (key, value); FilterError when not key=value."""
    key, sep, value = raw.partition("=")
    key = key.strip()
    if not sep or not PAYLOAD_KEY.match(key):
        raise FilterError("payload", f"{raw[:40]!r} is not key=value (a payload key, then =)")
    if len(value) > MAX_PAYLOAD_VALUE:
        raise FilterError("payload", f"a value is longer than {MAX_PAYLOAD_VALUE} characters")
    if "\x00" in value:
        raise FilterError("payload", "contains a NUL character")
    return key, value


def payload_documents(key: str, value: str) -> list[dict[str, Any]]:
    """The JSONB documents a `key=value` pair matches by containment (@>).

    The value matches as a string, as an element of a list (nodes=n1), and,
    when it reads as a JSON number or boolean, as that (revision=3).
    A dotted key reaches into nested objects (a.b=v is {"a": {"b": "v"}}).

    A number JSONB cannot hold as the ingest stores it (NaN, Infinity,
    1e999, 1e-999, which a float turns into 0) matches as text only: no
    stored payload holds it as a number (the ingest refuses those), and
    sent to PostgreSQL as one it was a 500.
    """
    candidates: list[Any] = [value, [value]]
    try:
        # The ingest's parser: NaN and Infinity raise, 1e999 and 1e-999 come
        # back as an UnfitNumber, which is none of the types below.
        typed = json_loads(value)
        if isinstance(typed, bool | int | float) and not isinstance(typed, str):
            candidates.append(typed)
    except ValueError:
        pass
    documents = []
    for candidate in candidates:
        doc: Any = candidate
        for part in reversed(key.split(".")):
            doc = {part: doc}
        documents.append(doc)
    return documents


class FilterError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class EventFilter:
    event_types: list[str] = field(default_factory=list)
    subject_type: str = ""
    subject: str = ""
    caller: str = ""
    target: str = ""
    success: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    payload: list[tuple[str, str]] = field(default_factory=list)
    error_contains: str = ""
    # (kind, name, project) of an entity page whose events these are.
    entity: tuple[str, str, str] | None = None
    # Display time zone (tz): the explorer's times and the CSV's local column.
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    # The stats pages' window, when the range came from period/since/until/tz.
    window: Window | None = None

    @classmethod
    def from_query(
        cls,
        query: QueryDict,
        *,
        windowed: bool = False,
        now: datetime | None = None,
        forgiving: bool = False,
    ) -> "EventFilter":
        """Parse a query string. `windowed` (the explorer and its exports) reads
        the time range as the stats pages' window, defaulting to its period;
        otherwise since/until are RFC 3339 unless `period` is given.
        `forgiving` (the explorer page, with `windowed`): a bad window field
        (period, since, until, tz) keeps its default and its error rides on
        `window.errors`, to be shown beside the field, instead of raising."""
        f = cls._from_fields(query)
        # The range is the stats pages' window, or since/until on their own.
        by_window = windowed or bool(query.get("period"))
        f._parse_zone(query, forgiving=windowed and forgiving, now=now)
        if by_window:
            f._parse_window(query, now)
        f._parse_success(query)
        if not by_window:
            for name in ("since", "until"):
                raw = query.get(name, "").strip()
                if raw:
                    setattr(f, name, _parse_moment(raw, name, now or timezone.now()))
        return f

    @classmethod
    def _from_fields(cls, query: QueryDict) -> "EventFilter":
        """The filter of the query's text fields, payload pairs and entity."""
        f = cls(
            event_types=[t.strip() for t in query.getlist("event_type") if t.strip()],
            subject_type=query.get("subject_type", "").strip(),
            subject=query.get("subject", "").strip(),
            caller=query.get("caller", "").strip(),
            target=query.get("target", "").strip(),
            error_contains=query.get("error_contains", "").strip(),
        )
        if any("\x00" in t or len(t) > MAX_TEXT for t in f.event_types):
            raise FilterError("event_type", "is not an event type name")
        for name in ("subject_type", "subject", "caller", "target", "error_contains"):
            if len(getattr(f, name)) > MAX_TEXT:
                raise FilterError(name, f"is longer than {MAX_TEXT} characters")
            if "\x00" in getattr(f, name):
                raise FilterError(name, "contains a NUL character")
        pairs = [p for p in query.getlist("payload") if p.strip()]
        if len(pairs) > MAX_PAYLOAD_PAIRS:
            raise FilterError("payload", f"at most {MAX_PAYLOAD_PAIRS} key=value pairs")
        f.payload = [parse_payload_pair(p) for p in pairs]
        raw_entity = query.get("entity", "").strip()
        if raw_entity:
            if len(raw_entity) > 2 * MAX_TEXT or "\x00" in raw_entity:
                raise FilterError("entity", "is not kind:name")
            f.entity = parse_entity(raw_entity)
        return f

    def _parse_zone(self, query: QueryDict, *, forgiving: bool, now: datetime | None) -> None:
        """The display zone: `forgiving` takes the forgiving window's,
        whose errors ride on it; otherwise tz, which must be a zone."""
        if forgiving:
            self.window = Window.forgiving(query, now=now)
            self.zone = self.window.zone
            return
        try:
            self.zone = parse_zone(query.get("tz") or "UTC")
        except WindowError as exc:
            raise FilterError(exc.field, exc.message) from None

    def _parse_window(self, query: QueryDict, now: datetime | None) -> None:
        if self.window is None:
            try:
                self.window = Window.from_query(query, now=now)
            except WindowError as exc:
                raise FilterError(exc.field, exc.message) from None
        if self.window.period != "all":
            self.since, self.until = self.window.start, self.window.end

    def _parse_success(self, query: QueryDict) -> "EventFilter":
        success = query.get("success", "").strip().lower()
        if success not in SUCCESS_VALUES:
            raise FilterError("success", "must be true or false (or succeeded, failed, any)")
        self.success = SUCCESS_VALUES[success]
        return self

    def apply(self, qs: EventQuerySet) -> EventQuerySet:
        if self.entity is not None:
            qs = qs.involving(*self.entity)
        if self.event_types:
            qs = qs.filter(event_type__in=self.event_types)
        for name in ("subject_type", "subject", "caller", "target"):
            value = getattr(self, name)
            if value:
                qs = qs.filter(**{name: value})
        if self.success is not None:
            qs = qs.filter(success=self.success)
        for key, value in self.payload:
            qs = qs.payload_matches(payload_documents(key, value))
        if self.error_contains:
            qs = qs.error_contains(self.error_contains)
        return qs.in_window(self.since, self.until)

    @property
    def only_counted_columns(self) -> bool:
        """True when the hourly pre-aggregate can count this filter exactly."""
        return not (
            self.entity
            or self.subject_type
            or self.subject
            or self.caller
            or self.target
            or self.payload
            or self.error_contains
        )

    def count(self) -> tuple[int, bool]:
        """(number of matching events, exact?) without a COUNT(*) over a range.

        Exact from the hourly pre-aggregate when only type, outcome and time
        filter (the partial hours at the edges are counted from the raw
        table, at most two hours of rows); otherwise the planner's estimate.
        """
        if self.only_counted_columns:
            return (
                HourlyCount.objects.exact_count(
                    self.event_types, self.success, self.since, self.until
                ),
                True,
            )
        return self.apply(Event.objects.all()).estimated_count(), False

    def describe(self) -> list[str]:
        """Short words for the active filters (file names, page titles)."""
        words = list(self.event_types)
        if self.entity is not None:
            kind, name, project = self.entity
            words.append(f"{kind}-{project}-{name}" if project else f"{kind}-{name}")
        for name in ("subject_type", "subject", "caller", "target"):
            if getattr(self, name):
                words.append(f"{name}-{getattr(self, name)}")
        if self.success is not None:
            words.append("succeeded" if self.success else "failed")
        words.extend(f"{k}-{v}" for k, v in self.payload)
        if self.error_contains:
            words.append(f"error-{self.error_contains}")
        return words

    def file_stem(self, now: datetime | None = None, extra: list[str] | None = None) -> str:
        """`events_<filters>_<since>_<until>`: a download's name says what it holds.

        `extra`: more words after the filters (the admin's search)."""

        def stamp(moment: datetime | None) -> str:
            if moment is None:
                return "start"
            return moment.astimezone(UTC).strftime("%Y%m%dT%H%MZ")

        until = self.until or now
        parts = [
            "events",
            *self.describe(),
            *(extra or []),
            stamp(self.since),
            stamp(until) if until else "now",
        ]
        stem = "_".join(re.sub(r"[^A-Za-z0-9._+-]+", "-", p).strip("-") or "x" for p in parts)
        return stem[:180]


def _parse_moment(raw: str, name: str, now: datetime) -> datetime:
    """RFC 3339 (or PostgreSQL's text form), or a relative time such as now-7d."""
    try:
        relative = parse_relative(raw, now, name)
    except WindowError as exc:
        raise FilterError(exc.field, exc.message) from None
    if relative is not None:
        return relative
    try:
        moment = parse_timestamp(raw)
    except ValueError as exc:
        raise FilterError(name, f"{exc}, or {RELATIVE_HELP}") from None
    try:
        return checked_moment(moment, name)
    except WindowError as exc:
        raise FilterError(exc.field, exc.message) from None


def encode_cursor(timestamp: datetime, event_uuid: uuid.UUID) -> str:
    raw = json.dumps([timestamp.isoformat(), str(event_uuid)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, name: str = "cursor") -> tuple[datetime, uuid.UUID]:
    """(timestamp, event_uuid) from an opaque cursor; FilterError when malformed.

    A cursor is the client's text: anything but the [RFC 3339 with an
    offset, uuid] pair this server wrote (a number for the uuid, a naive
    time) is refused here, never handed to a query."""
    refused = FilterError(name, "is not a cursor this server issued")
    if len(cursor) > MAX_CURSOR:
        raise refused
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        ts, uid = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(ts, str) or not isinstance(uid, str):
            raise refused
        moment = datetime.fromisoformat(ts)
        key = uuid.UUID(uid)
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise refused from None
    if moment.tzinfo is None:
        raise refused
    return moment, key
