"""The one event filter: read API, explorer, entity timelines and exports.

Parsed from a query string; every parameter has a default when absent and
raises FilterError (a 400) naming the parameter when wrong.
"""

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.http import QueryDict

from audit.ingest import parse_timestamp
from audit.models import EventQuerySet


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

    @classmethod
    def from_query(cls, query: QueryDict) -> "EventFilter":
        f = cls(
            event_types=[t for t in query.getlist("event_type") if t],
            subject_type=query.get("subject_type", "").strip(),
            subject=query.get("subject", "").strip(),
            caller=query.get("caller", "").strip(),
            target=query.get("target", "").strip(),
        )
        success = query.get("success", "").strip().lower()
        if success in ("true", "1", "yes", "succeeded"):
            f.success = True
        elif success in ("false", "0", "no", "failed"):
            f.success = False
        elif success not in ("", "any"):
            raise FilterError("success", "must be true or false")
        for name in ("since", "until"):
            raw = query.get(name, "").strip()
            if raw:
                try:
                    setattr(f, name, parse_timestamp(raw))
                except ValueError as exc:
                    raise FilterError(name, str(exc)) from None
        return f

    def apply(self, qs: EventQuerySet) -> EventQuerySet:
        if self.event_types:
            qs = qs.filter(event_type__in=self.event_types)
        for name in ("subject_type", "subject", "caller", "target"):
            value = getattr(self, name)
            if value:
                qs = qs.filter(**{name: value})
        if self.success is not None:
            qs = qs.filter(success=self.success)
        return qs.in_window(self.since, self.until)


def encode_cursor(timestamp: datetime, event_uuid: uuid.UUID) -> str:
    raw = json.dumps([timestamp.isoformat(), str(event_uuid)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, name: str = "cursor") -> tuple[datetime, uuid.UUID]:
    """(timestamp, event_uuid) from an opaque cursor; FilterError when malformed."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        ts, uid = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(ts), uuid.UUID(uid)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise FilterError(name, "is not a cursor this server issued") from None
