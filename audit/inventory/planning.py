"""Comparing an inventory with what the events say at its time, and the
events that make them agree (the rules are in audit.inventory's docstring)."""

import json
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.db import connection

from audit import catalog
from audit.entity_fold import ENTITY_CHUNK, ENTITY_FOLD, KEYS_FROM_PARAMS, key_arrays
from audit.ingest import Row, validate_event
from audit.inventory.records import (
    GROUP_KINDS,
    MEMBER_KEYS,
    SECTIONS,
    Inventory,
    Key,
    MemberKey,
    Membership,
    Problem,
    Record,
)
from audit.models import Entity, EntityInterval

# Fixed forever: changing it would give a re-imported inventory new uuids.
INVENTORY_NAMESPACE = uuid.UUID("0b6f3c1e-7a52-4d8e-9c41-2f5e8a9d7b36")
SOURCE = {"source": "inventory"}
CHUNK = ENTITY_CHUNK  # entities per fold query, as audit/entity_fold.py rebuilds them


# --- what the events say at taken_at --------------------------------------------------


@dataclass(frozen=True)
class Known:
    """An entity as the events say it is at a moment."""

    state: str
    since: datetime | None = None  # the start of its existence then
    category: str = ""
    description: str = ""


# The entity fold (audit/entity_fold.py) of the events up to %(at)s: the CTE
# named `events` hides the table from the fold (a WITH query's own name is not
# visible in its definition, so the CTE reads the table). NOT MATERIALIZED
# keeps the fold's index probes per entity instead of copying the table.
FOLD_AT_SQL = (
    "WITH events AS NOT MATERIALIZED (SELECT * FROM events WHERE timestamp <= %(at)s), "
    f"{KEYS_FROM_PARAMS}, "
    f"{ENTITY_FOLD} SELECT kind, scope, name, state, since, category, description FROM folded"
)

# The latest successful membership event at or before %(at)s of each member
# of each group since that group's existence began (as the dashboards' member
# lists read them), through idx_events_subject_ts.
MEMBERS_AT_SQL = """
SELECT DISTINCT ON (e.subject_type, e.subject, e.payload->>'kind', e.target)
       e.subject_type, e.subject, e.payload->>'kind', e.target,
       e.event_type = ANY(%(removals)s), e.payload->>'role', e.payload->>'state'
FROM unnest(%(kinds)s::text[], %(names)s::text[], %(since)s::timestamptz[])
     AS g(kind, name, since)
JOIN events AS e ON e.subject_type = g.kind AND e.subject = g.name
 AND e.timestamp >= g.since AND e.timestamp <= %(at)s
WHERE e.success AND e.event_type = ANY(%(types)s) AND e.target IS NOT NULL
ORDER BY e.subject_type, e.subject, e.payload->>'kind', e.target,
         e.timestamp DESC, e.event_uuid DESC
"""


def entities_at(moment: datetime, kinds: set[str]) -> dict[Key, Known]:
    """Every entity of these kinds that exists at `moment`, with its state
    then (the interval alive at that moment), and for organizations and
    projects the start of that existence, category and description then."""
    known = {
        (kind, scope, name): Known(state)
        for kind, scope, name, state in EntityInterval.objects.alive_at(moment)
        .filter(kind__in=sorted(kinds))
        .values_list("kind", "scope", "name", "state")
    }
    # A group with no lifecycle event after `moment` is in `entities` as it
    # was then (a later mention changes nothing of an entity that existed);
    # only the others are folded again from the events up to `moment`.
    refold = []
    for kind, scope, name, since, category, description, last_event_at in (
        Entity.objects.filter(kind__in=sorted(kinds & set(GROUP_KINDS)))
        .values_list("kind", "scope", "name", "since", "category", "description", "last_event_at")
        .iterator(chunk_size=CHUNK)
    ):
        key = (kind, scope, name)
        if key not in known:
            continue
        if last_event_at is None or last_event_at <= moment:
            known[key] = Known(known[key].state, since, category, description)
        else:
            refold.append(key)
    with connection.cursor() as cursor:
        for offset in range(0, len(refold), CHUNK):
            chunk = refold[offset : offset + CHUNK]
            cursor.execute(FOLD_AT_SQL, {"at": moment, **key_arrays(chunk)})
            for kind, scope, name, _, since, category, description in cursor.fetchall():
                key = (kind, scope, name)
                known[key] = Known(known[key].state, since, category, description)
    return known


def members_at(
    moment: datetime, groups: dict[tuple[str, str], datetime]
) -> dict[MemberKey, tuple[str | None, str | None]]:
    """The members at `moment` of these groups ((kind, name): since): for each
    (group kind, group, member kind, member), its (role, state) then."""
    if not groups:
        return {}
    kinds = [kind for kind, _ in groups]
    with connection.cursor() as cursor:
        cursor.execute(
            MEMBERS_AT_SQL,
            {
                "at": moment,
                "kinds": kinds,
                "names": [name for _, name in groups],
                "since": list(groups.values()),
                "types": list(catalog.MEMBERSHIP_TYPES),
                "removals": list(catalog.MEMBER_REMOVALS),
            },
        )
        rows = cursor.fetchall()
    return {
        (kind, group, member_kind, member): (role, state)
        for kind, group, member_kind, member, removed, role, state in rows
        if not removed and member_kind in MEMBER_KEYS[kind].values()
    }


# --- the events ----------------------------------------------------------------------


def event_uuid(taken_at: datetime, event_type: str, scope: str, name: str, member: str) -> str:
    """The same inventory fact at the same moment has the same uuid."""
    key = [taken_at.astimezone(UTC).isoformat(), event_type, scope, name, member]
    return str(uuid.uuid5(INVENTORY_NAMESPACE, json.dumps(key, ensure_ascii=False)))


class Source(NamedTuple):
    """Where an event comes from: its record's place ("absent" for a
    deletion) and what the format calls the event's fields."""

    where: str
    field_names: dict[str, str]


@dataclass
class Plan:
    """The events an inventory records, each with its Source, and how many
    records agree with the events already."""

    taken_at: datetime
    caller: str
    events: list[dict[str, Any]] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    unchanged: int = 0

    def counts(self, leaving_out: Collection[int] = ()) -> Counter:
        """Events per type, leaving out those at the indexes `leaving_out`."""
        return Counter(e["event_type"] for i, e in enumerate(self.events) if i not in leaving_out)

    def add(
        self,
        source: Source,
        event_type: str,
        subject_type: str,
        subject: str,
        payload: dict[str, Any],
        *,
        scope: str = "",
        target: str | None = None,
    ) -> None:
        self.sources.append(source)
        self.events.append(
            {
                "event_uuid": event_uuid(self.taken_at, event_type, scope, subject, target or ""),
                "timestamp": self.taken_at.isoformat(),
                "event_type": event_type,
                "caller": self.caller,
                "subject": subject,
                "subject_type": subject_type,
                "target": target,
                "success": True,
                "payload": payload,
            }
        )


def plan(inventory: Inventory, taken_at: datetime, caller: str, keep_absent: bool = False) -> Plan:
    """The events that make the events say what the inventory says at
    taken_at (see audit.inventory's docstring)."""
    result = Plan(taken_at, caller)
    known = entities_at(taken_at, inventory.sections)
    _plan_entities(result, inventory.records, known, keep_absent)
    # Members continue only within an existence that continues: a group
    # unknown or gone at taken_at begins a new one there, with no members.
    groups = {
        (r.kind, r.name): known[r.key].since
        for r in inventory.records
        if r.kind in GROUP_KINDS and r.key in known and known[r.key].since is not None
    }
    members = members_at(taken_at, groups)
    _plan_members(result, inventory.memberships, members, keep_absent)
    return result


def _plan_entities(
    result: Plan, records: list[Record], known: dict[Key, Known], keep_absent: bool
) -> None:
    """A catalogued event for each record the events say otherwise about,
    then a deletion for each known entity the records leave out."""
    for record in records:
        was = known.get(record.key)
        if (
            was is not None
            and was.state == record.state
            and record.category in (None, was.category)
            and record.description in (None, was.description)
        ):
            result.unchanged += 1
            continue
        source = Source(record.where, {"subject": "name", "payload.project": record.scope_field})
        result.add(
            source,
            SECTIONS[record.kind].catalogued,
            record.kind,
            record.name,
            _catalogued_payload(record),
            scope=record.scope,
        )
    if keep_absent:
        return
    for kind, scope, name in sorted(set(known) - {r.key for r in records}):
        payload = {"project": scope, **SOURCE} if kind == "experiment" else dict(SOURCE)
        source = Source(f"absent {kind} {name!r}", {})
        result.add(source, SECTIONS[kind].deleted, kind, name, payload, scope=scope)


def _catalogued_payload(record: Record) -> dict[str, Any]:
    if record.kind == "experiment":
        payload: dict[str, Any] = {"project": record.scope}
    else:
        payload = {"state": record.state}
    for name in ("category", "description"):
        if getattr(record, name) is not None:
            payload[name] = getattr(record, name)
    return payload


def _plan_members(
    result: Plan,
    memberships: list[Membership],
    members: dict[MemberKey, tuple[str | None, str | None]],
    keep_absent: bool,
) -> None:
    """A catalogued membership for each listed member the events say
    otherwise about, then a deletion for each member the groups leave out."""
    for membership in memberships:
        was = members.get(membership.key)
        if was is not None and was[0] == membership.role and membership.state in (None, was[1]):
            result.unchanged += 1
            continue
        payload = {"kind": membership.member_kind, "role": membership.role}
        if membership.state is not None:
            payload["state"] = membership.state
        source = Source(membership.where, {"target": membership.member_field})
        result.add(
            source,
            SECTIONS[membership.group_kind].member_catalogued,
            membership.group_kind,
            membership.group,
            payload,
            target=membership.member,
        )
    if keep_absent:
        return
    wanted = {m.key for m in memberships}
    for group_kind, group, member_kind, member in sorted(set(members) - wanted):
        source = Source(f"absent {member_kind} {member!r} of {group_kind} {group!r}", {})
        result.add(
            source,
            SECTIONS[group_kind].member_deleted,
            group_kind,
            group,
            {"kind": member_kind, **SOURCE},
            target=member,
        )


def validated(the_plan: Plan, now: datetime) -> tuple[list[Row], list[Problem]]:
    """The plan's events through the catalog (audit.ingest.validate_event),
    each problem reported at its record, in the inventory's words."""
    rows, problems = [], []
    for index, (event, source) in enumerate(zip(the_plan.events, the_plan.sources, strict=True)):
        row, found = validate_event(index, event, now)
        if row is not None:
            rows.append(row)
        names = {"caller": "--caller", "timestamp": "taken_at", **source.field_names}
        for problem in found:
            name = problem["field"] or ""
            name = names.get(name, name.removeprefix("payload."))
            problems.append(Problem(source.where, name or None, problem["message"]))
    return rows, problems
