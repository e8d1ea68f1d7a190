"""Entity pre-aggregates: the state of every user, org, project, experiment,
realization and materialization, and the intervals it spent in each state.

Mechanism: `refresh_for_rows` runs inside the ingest transaction, right after
the INSERT into `events`. It collects the entities the batch's lifecycle
events touch, locks them (advisory locks in a fixed order, so two concurrent
batches about one user serialise), re-reads each one's complete lifecycle
from `events` (idx_events_lifecycle) and replaces its rows in `entities` and
`entity_intervals`. Recomputing from the table, rather than applying a delta,
keeps the result exact for late and out-of-order events; a re-sent event is
not inserted, so it changes nothing. Pages are therefore as fresh as the
table: an event counts as soon as its ingest transaction commits.

The counting pre-aggregates (event_counts_hourly, the daily caller and
project counts, org_memberships) are written by the ingest statement itself
(audit/ingest.py INSERT_SQL); this module rebuilds them from `events`.

Events are only ever inserted. Whoever deletes events (a prune) calls
`rebuild_aggregates(start, end)` in the same transaction; the
`rebuild_aggregates` command rebuilds everything from scratch.
"""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

from django.db import connection, transaction

from audit.models import (
    LIFECYCLE_TYPES,
    ORG_MEMBER_TYPES,
    PROJECT_OF_EVENT,
    DailyCallerCount,
    DailyCount,
    DailyProjectCount,
    Entity,
    EntityInterval,
    HourlyCount,
    HourlyLoginUser,
    OrgMembership,
)
from sphere_stats.db import bulk_cursor

GONE = Entity.GONE
# event type -> (entity kind, what it does: "create" or the state it sets)
ACTIONS: dict[str, tuple[str, str]] = {
    "user_created": ("user", "create"),
    "user_activated": ("user", "active"),
    "user_frozen": ("user", "frozen"),
    "user_declined": ("user", GONE),
    "user_deleted": ("user", GONE),
    "org_created": ("organization", "create"),
    "org_deleted": ("organization", GONE),
    "project_created": ("project", "create"),
    "project_deleted": ("project", GONE),
    "experiment_created": ("experiment", "create"),
    "experiment_deleted": ("experiment", GONE),
    "realization_allocated": ("realization", "create"),
    "realization_freed": ("realization", GONE),
    "materialization_allocated": ("materialization", "create"),
    "materialization_freed": ("materialization", GONE),
}
assert set(ACTIONS) == set(LIFECYCLE_TYPES)
# The state a "create" gives an entity that does not exist. A create of an
# entity that exists changes nothing (a user stays active).
INITIAL = {
    "user": "pending",
    "organization": "exists",
    "project": "exists",
    "experiment": "exists",
    "realization": "active",
    "materialization": "active",
}
KINDS = tuple(INITIAL)
TYPES_OF_KIND = {kind: [t for t, (k, _) in ACTIONS.items() if k == kind] for kind in KINDS}

Key = tuple[str, str, str]  # (kind, scope, name)


def entity_key(
    event_type: str, subject: str, target: str | None, payload: dict | None
) -> Key | None:
    """The entity a lifecycle event is about, or None for other events.

    Experiments are named within their project; realizations and
    materializations within their facility (the event's target).
    """
    action = ACTIONS.get(event_type)
    if action is None:
        return None
    kind = action[0]
    if kind == "experiment":
        scope = str((payload or {}).get("project") or "")
    elif kind in ("realization", "materialization"):
        scope = target or ""
    else:
        scope = ""
    return kind, scope, subject


@dataclass
class Lifecycle:
    """One successful lifecycle event, as the fold needs it."""

    event_type: str
    timestamp: datetime
    caller: str
    category: str | None
    description: str | None


@dataclass
class Folded:
    intervals: list[list]  # [state, valid_from, valid_to | None]
    state: str
    since: datetime | None
    until: datetime | None
    created_by: str
    category: str
    description: str
    first_seen: datetime
    last_change: datetime
    # The newest lifecycle event folded in: a later event can resume from here.
    last_event: datetime | None = None


def fold(kind: str, events: Iterable[Lifecycle], start: Folded | None = None) -> Folded | None:
    """Replay one entity's lifecycle events (oldest first) into its state
    history. Created or activated makes it exist, deleted (or declined)
    ends that; a later create starts a new existence (re-creation).

    With `start` (the stored result of folding every earlier event), only
    the events after those are replayed: the same answer as a full replay.
    """
    state, intervals = GONE, []
    since = until = None
    created_by = category = description = ""
    first = last = last_event = None
    if start is not None:
        state, since, until = start.state, start.since, start.until
        created_by, category, description = start.created_by, start.category, start.description
        first, last, last_event = start.first_seen, start.last_change, start.last_event
        # The open interval of the current state began at its last change.
        intervals = [[state, last, None]] if state != GONE else []
    for event in events:
        last_event = event.timestamp
        first = first or event.timestamp
        action = ACTIONS[event.event_type][1]
        new = (INITIAL[kind] if state == GONE else state) if action == "create" else action
        if new != state:
            last = event.timestamp
            if state != GONE:
                intervals[-1][2] = event.timestamp
            if new != GONE:
                intervals.append([new, event.timestamp, None])
            if state == GONE:
                since, until = event.timestamp, None
                created_by, category, description = event.caller, "", ""
            if new == GONE:
                until = event.timestamp
            state = new
        if action == "create" and state != GONE:
            category = event.category if event.category is not None else category
            description = event.description if event.description is not None else description
    if first is None:
        return None
    return Folded(
        intervals=intervals,
        state=state,
        since=since,
        until=until,
        created_by=created_by,
        category=category,
        description=description,
        first_seen=first,
        last_change=last or first,
        last_event=last_event,
    )


# --- reading lifecycles ---------------------------------------------------------

LIFECYCLE_SQL = """
SELECT subject, event_type, coalesce(payload->>'project', ''), coalesce(target, ''),
       timestamp, caller, payload->>'category', payload->>'description'
FROM events
WHERE subject_type = %s AND subject = ANY(%b) AND success
  AND event_type IN ({types})
ORDER BY subject, timestamp, event_uuid
"""
# The IN list is spelled out (not a parameter) so the planner can prove the
# predicate of the partial index idx_events_lifecycle.
_ALL_TYPES_SQL = ", ".join(f"'{t}'" for t in LIFECYCLE_TYPES)


def _read_lifecycles(kind: str, names: list[str]) -> dict[Key, list[Lifecycle]]:
    """Every successful lifecycle event of the named entities of one kind."""
    found: dict[Key, list[Lifecycle]] = {}
    with bulk_cursor() as cursor:
        # subject_type equals the kind for every lifecycle event type.
        cursor.execute(LIFECYCLE_SQL.format(types=_ALL_TYPES_SQL), [kind, names])
        for subject, event_type, project, target, ts, caller, category, description in cursor:
            if ACTIONS[event_type][0] != kind:
                continue
            key = entity_key(event_type, subject, target, {"project": project})
            found.setdefault(key, []).append(
                Lifecycle(event_type, ts, caller, category, description)
            )
    return found


# --- writing ------------------------------------------------------------------------


def _lock(keys: list[Key]) -> None:
    # Sorted by hash inside the subquery, so every transaction takes its
    # locks in the same order and two batches cannot deadlock on entities.
    with bulk_cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(h)) FROM ("
            "  SELECT hashtextextended(k, 7) AS h FROM unnest(%b::text[]) AS k ORDER BY 1"
            ") AS s",
            [["\x1f".join(key) for key in keys]],
        )


def _replace(folded: dict[Key, Folded | None]) -> None:
    """Replace the rows of these entities with their recomputed state."""
    if not folded:
        return
    _delete(list(folded), open_intervals_only=False)
    _insert([(key, f) for key, f in folded.items() if f is not None])


def _delete(keys: list[Key], *, open_intervals_only: bool) -> None:
    """Delete these entities' rows: all their intervals, or only the open one."""
    if not keys:
        return
    kinds, scopes, names = (list(column) for column in zip(*keys, strict=True))
    which = "valid_to IS NULL AND" if open_intervals_only else ""
    with bulk_cursor() as cursor:
        for table, condition in (("entity_intervals", which), ("entities", "")):
            cursor.execute(
                f"DELETE FROM {table} WHERE {condition} (kind, scope, name) IN "
                "(SELECT * FROM unnest(%b::text[], %b::text[], %b::text[]))",
                [kinds, scopes, names],
            )


def _insert(items: list[tuple[Key, Folded]]) -> None:
    if not items:
        return
    intervals = [(*key, state, start, end) for key, f in items for state, start, end in f.intervals]
    with bulk_cursor() as cursor:
        if intervals:
            cursor.execute(
                "INSERT INTO entity_intervals (kind, scope, name, state, valid_from, valid_to) "
                "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], "
                "%b::timestamptz[], %b::timestamptz[])",
                [list(column) for column in zip(*intervals, strict=True)],
            )
        rows = [
            (
                *key,
                f.state,
                f.since,
                f.until,
                f.created_by,
                f.category,
                f.description,
                f.first_seen,
                f.last_change,
                f.last_event,
            )
            for key, f in items
        ]
        cursor.execute(
            "INSERT INTO entities (kind, scope, name, state, since, until, created_by, "
            "category, description, first_seen, last_change, last_event_at) "
            "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], "
            "%b::timestamptz[], %b::timestamptz[], %b::text[], %b::text[], %b::text[], "
            "%b::timestamptz[], %b::timestamptz[], %b::timestamptz[])",
            [list(column) for column in zip(*rows, strict=True)],
        )


def refresh_entities(keys: Iterable[Key], *, locked: bool = False) -> None:
    """Recompute these entities from all their events (inside a transaction)."""
    keys = sorted(set(keys))
    if not keys:
        return
    if not locked:
        _lock(keys)
    folded: dict[Key, Folded | None] = {}
    for kind, group in groupby(keys, key=lambda k: k[0]):
        group = list(group)
        lifecycles = _read_lifecycles(kind, sorted({name for _, _, name in group}))
        for key in group:
            folded[key] = fold(kind, lifecycles.get(key, []))
    _replace(folded)


def _payload_text(value: Any) -> str | None:
    # What `payload->>'key'` gives for the same value, as the full path reads it.
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _stored(keys: list[Key]) -> dict[Key, Folded]:
    """The stored state of these entities, for those that have one."""
    kinds, scopes, names = (list(column) for column in zip(*keys, strict=True))
    with bulk_cursor() as cursor:
        cursor.execute(
            "SELECT kind, scope, name, state, since, until, created_by, category, description, "
            "first_seen, last_change, last_event_at FROM entities "
            "WHERE (kind, scope, name) IN "
            "(SELECT * FROM unnest(%b::text[], %b::text[], %b::text[]))",
            [kinds, scopes, names],
        )
        return {
            (kind, scope, name): Folded([], *rest) for kind, scope, name, *rest in cursor.fetchall()
        }


def _keyed(rows: Iterable[Any]) -> Iterator[tuple[Key, Any]]:
    for row in rows:
        if row.success:
            key = entity_key(row.event_type, row.subject, row.target, row.payload)
            if key is not None:
                yield key, row


def entity_keys(rows: Iterable[Any]) -> set[Key]:
    """The entities that successful lifecycle events among `rows` are about."""
    return {key for key, _ in _keyed(rows)}


def refresh_for_rows(rows: Iterable[Any]) -> None:
    """Called by audit.ingest.store() with the rows it just inserted, in the
    same transaction: bring every entity a successful lifecycle event of the
    batch is about up to date.

    Events usually arrive in order, so most entities resume from their stored
    state with just the batch's events: no re-read of their history, whose
    length would otherwise make ingest slower as the table grows. An entity
    with no stored row has no earlier lifecycle event to read. An event that
    is not newer than the entity's newest folded event (late, or at the same
    instant) takes the full path: a re-read of its whole lifecycle.
    """
    batch: dict[Key, list[Any]] = {}
    for key, row in _keyed(rows):
        batch.setdefault(key, []).append(row)
    if not batch:
        return
    keys = sorted(batch)
    _lock(keys)
    stored = _stored(keys)
    resumed: dict[Key, Folded] = {}
    full: list[Key] = []
    for key in keys:
        events = sorted(batch[key], key=lambda r: (r.timestamp, str(r.event_uuid)))
        start = stored.get(key)
        if start is not None and (
            start.last_event is None or events[0].timestamp <= start.last_event
        ):
            full.append(key)
            continue
        lifecycle = [
            Lifecycle(
                r.event_type,
                r.timestamp,
                r.caller,
                _payload_text(r.payload.get("category")),
                _payload_text(r.payload.get("description")),
            )
            for r in events
        ]
        resumed[key] = fold(key[0], lifecycle, start)
    if resumed:
        _replace_resumed(resumed, [key for key in resumed if key in stored])
    if full:
        refresh_entities(full, locked=True)


def _replace_resumed(folded: dict[Key, Folded], existing: list[Key]) -> None:
    """Write resumed entities: their closed intervals stay, the open one and
    the entity row are replaced."""
    _delete(existing, open_intervals_only=True)
    _insert(list(folded.items()))


# --- rebuilding (after deleting events, or from scratch) --------------------------------


def _all_lifecycles() -> Iterator[tuple[Key, list[Lifecycle]]]:
    # A named (server-side) cursor: memory stays flat at any table size.
    with connection.chunked_cursor() as cursor:
        cursor.execute(
            "SELECT subject_type, subject, event_type, coalesce(payload->>'project', ''), "
            "coalesce(target, ''), timestamp, caller, payload->>'category', "
            "payload->>'description' FROM events "
            f"WHERE success AND event_type IN ({_ALL_TYPES_SQL}) "
            "ORDER BY subject_type, subject, timestamp, event_uuid"
        )
        current: tuple[str, str] | None = None
        pending: dict[Key, list[Lifecycle]] = {}
        for subject_type, subject, event_type, project, target, ts, caller, cat, desc in cursor:
            if (subject_type, subject) != current:
                yield from pending.items()
                pending, current = {}, (subject_type, subject)
            key = entity_key(event_type, subject, target, {"project": project})
            pending.setdefault(key, []).append(Lifecycle(event_type, ts, caller, cat, desc))
        yield from pending.items()


@dataclass(frozen=True)
class CountTable:
    """A counting pre-aggregate, as its rebuild from `events` sees it: the
    rows matching `only`, grouped by the UTC `unit` (hour or day) in column
    `time` and by `keys`, with `counts`. Each key and count is (its column,
    its SQL over `events`): the columns and groups the ingest statement
    (audit/ingest.py INSERT_SQL) writes for the rows it inserts."""

    model: type
    time: str
    unit: str
    keys: tuple[tuple[str, str], ...]
    counts: tuple[tuple[str, str], ...] = (("n", "count(*)"),)
    only: str = "TRUE"

    def rebuild(self, cursor, start: datetime | None, end: datetime | None) -> None:
        """Recompute the hours or days overlapping [start, end) (None: unbounded)."""
        # Whole units: from the one `start` falls in to the end of the one
        # `end` falls in (an `end` on a unit's boundary ends its predecessor).
        lo = f"coalesce(date_trunc('{self.unit}', %(start)s::timestamptz, 'UTC'), '-infinity')"
        hi = (
            f"coalesce(date_trunc('{self.unit}', %(end)s::timestamptz - interval '1 microsecond',"
            f" 'UTC') + interval '1 {self.unit}', 'infinity')"
        )
        params = {"start": start, "end": end}
        table = self.model._meta.db_table
        columns = ", ".join(name for name, _ in (*self.keys, *self.counts))
        select = ", ".join(sql for _, sql in (*self.keys, *self.counts))
        groups = ", ".join(str(i) for i in range(1, len(self.keys) + 2))
        cursor.execute(
            f"DELETE FROM {table} WHERE {self.time} >= {lo} AND {self.time} < {hi}", params
        )
        # In time order, as ingest writes them: a window's rows are then a
        # few adjacent pages, not rows scattered over the whole table.
        cursor.execute(
            f"INSERT INTO {table} ({self.time}, {columns}) "
            f"SELECT date_trunc('{self.unit}', timestamp, 'UTC'), {select} FROM events "
            f"WHERE ({self.only}) AND timestamp >= {lo} AND timestamp < {hi} "
            f"GROUP BY {groups} ORDER BY {groups}",
            params,
        )


_TYPE_AND_OUTCOME = (("event_type", "event_type"), ("success", "success"))
COUNT_TABLES = (
    CountTable(HourlyCount, "bucket", "hour", _TYPE_AND_OUTCOME),
    CountTable(DailyCount, "day", "day", _TYPE_AND_OUTCOME),
    CountTable(
        HourlyLoginUser,
        "hour",
        "hour",
        (("username", "subject"),),
        only="event_type = 'user_login' AND success",
    ),
    CountTable(
        DailyCallerCount,
        "day",
        "day",
        (("caller", "caller"),),
        counts=(
            ("events", "count(*)"),
            ("logins", "count(*) FILTER (WHERE event_type = 'user_login')"),
            ("failures", "count(*) FILTER (WHERE NOT success)"),
        ),
    ),
    CountTable(
        DailyProjectCount,
        "day",
        "day",
        (("project", PROJECT_OF_EVENT),),
        counts=(
            ("events", "count(*)"),
            (
                "experiments",
                "count(*) FILTER (WHERE event_type = 'experiment_created' AND success)",
            ),
            (
                "realizations",
                "count(*) FILTER (WHERE event_type = 'realization_allocated' AND success)",
            ),
            (
                "materializations",
                "count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success)",
            ),
        ),
        only="payload->>'project' IS NOT NULL OR subject_type = 'project'",
    ),
)


def rebuild_org_memberships() -> None:
    """Recompute org_memberships from every membership event: a few percent
    of the table, read through idx_events_type_ts, so always all of it."""
    table = OrgMembership._meta.db_table
    types = ", ".join(f"'{t}'" for t in ORG_MEMBER_TYPES)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")
        cursor.execute(
            f"INSERT INTO {table} (org, kind, member, last_at, last_uuid, removed) "
            "SELECT DISTINCT ON (subject, payload->>'kind', target) subject, payload->>'kind', "
            "target, timestamp, event_uuid, event_type = 'org_member_deleted' FROM events "
            f"WHERE event_type IN ({types}) AND success "
            "ORDER BY subject, payload->>'kind', target, timestamp DESC, event_uuid DESC"
        )


def rebuild_entities() -> int:
    """Recompute `entities` and `entity_intervals` from all events; returns
    the number of entities."""
    EntityInterval.objects.all().delete()
    Entity.objects.all().delete()
    count, chunk = 0, []
    for key, events in _all_lifecycles():
        folded = fold(key[0], events)
        if folded is not None:
            chunk.append((key, folded))
        if len(chunk) >= 5000:
            _insert(chunk)
            count, chunk = count + len(chunk), []
    _insert(chunk)
    return count + len(chunk)


def rebuild_counts(start: datetime | None = None, end: datetime | None = None) -> None:
    """Recompute the pre-aggregates the ingest statement writes (hourly and
    daily counts for the hours and days overlapping [start, end), all of
    org_memberships) from `events`; the entities stay as they are."""
    with transaction.atomic(), connection.cursor() as cursor:
        for table in COUNT_TABLES:
            table.rebuild(cursor, start, end)
        rebuild_org_memberships()


def rebuild_aggregates(start: datetime | None = None, end: datetime | None = None) -> None:
    """Make every pre-aggregate agree with `events` again after rows with
    timestamps in [start, end) were deleted (None: unbounded). Run it in the
    transaction that deletes them."""
    with transaction.atomic():
        rebuild_counts(start, end)
        if start is None and end is None:
            rebuild_entities()
            return
        # An entity whose first event is at or after `end` lost nothing.
        stale = Entity.objects.all()
        if end is not None:
            stale = stale.filter(first_seen__lt=end)
        keys = list(stale.values_list("kind", "scope", "name"))
        for offset in range(0, len(keys), 5000):
            refresh_entities(keys[offset : offset + 5000])
