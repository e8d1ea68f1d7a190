"""The portal's inventory as catalogued snapshot events (manage.py import_inventory).

The portal's users, organizations, projects, memberships and experiments are
older than the audit log. An inventory is the portal's own list of them at
one moment, `taken_at`, read from JSON or CSV (docs/inventory.md). It becomes
events at that moment, only where it differs from what the events already
say at that moment:

- a listed entity unknown or gone then, or in another state, category or
  description: its *_catalogued event (the catalog's `lifecycle` entry sets
  the state the payload names);
- a listed membership absent then, or with another role or state: its
  *_member_catalogued event;
- in a section the inventory has, an entity (or a membership of a listed
  organization or project) that exists then but is not listed: its
  *_deleted event, with payload.source "inventory" (unless keep_absent).

The events then take the path of every other event: the catalog validates
them (audit.ingest.validate_event), `events` stores them, the triggers fold
them into the pre-aggregates, and later events continue from there. Each
event's uuid is derived from (taken_at, event type, scope, name, member), so
importing one inventory twice, even at the same time, stores it once.
"""

import csv
import io
import json
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.db import connection

from audit import catalog
from audit.aggregates import ENTITY_CHUNK, ENTITY_FOLD, KEYS_FROM_PARAMS, key_arrays
from audit.catalog import (
    CATALOGUED,
    ENTITY_KINDS,
    GONE,
    MEMBER_ROLES,
    MEMBER_STATES,
    REMOVE_MEMBER,
    SET_MEMBER,
)
from audit.ingest import (
    EARLIEST,
    MAX_NAME_LENGTH,
    NOT_BLANK,
    Row,
    loads,
    parse_timestamp,
    validate_event,
)
from audit.models import MEMBERSHIP_TYPES, Entity, EntityInterval

Key = tuple[str, str, str]  # (kind, scope, name), as in `entities`
MemberKey = tuple[str, str, str, str]  # (group kind, group, member kind, member)

# Fixed forever: changing it would give a re-imported inventory new uuids.
INVENTORY_NAMESPACE = uuid.UUID("0b6f3c1e-7a52-4d8e-9c41-2f5e8a9d7b36")
SOURCE = {"source": "inventory"}
MAX_TEXT_LENGTH = 8192
CHUNK = ENTITY_CHUNK  # entities per fold query, as audit/aggregates.py rebuilds them


@dataclass(frozen=True)
class Section:
    """One kind of entity an inventory lists: its JSON key and CSV kind, the
    prefix of its event types, and the fields its records may carry."""

    key: str
    kind: str
    prefix: str
    article: str  # "a user", for the problems
    has_category: bool = False

    @property
    def catalogued(self) -> str:
        return f"{self.prefix}_catalogued"

    @property
    def deleted(self) -> str:
        return f"{self.prefix}_deleted"

    @property
    def member_catalogued(self) -> str:
        return f"{self.prefix}_member_catalogued"

    @property
    def member_deleted(self) -> str:
        return f"{self.prefix}_member_deleted"

    @property
    def states(self) -> tuple[str, ...]:
        return ENTITY_KINDS[self.kind].states


SECTIONS = {
    s.kind: s
    for s in (
        Section("users", "user", "user", "a user"),
        Section("organizations", "organization", "org", "an organization", has_category=True),
        Section("projects", "project", "project", "a project", has_category=True),
        Section("experiments", "experiment", "experiment", "an experiment"),
    )
}
SECTION_BY_KEY = {s.key: s for s in SECTIONS.values()}
GROUP_KINDS = ("organization", "project")
# The membership kinds a group has, by the JSON key naming the member.
MEMBER_KEYS = {
    "organization": {"user": "usermember", "project": "projectmember"},
    "project": {"user": "usermember"},
}
# The entity kind a member of each membership kind is.
MEMBER_ENTITY = {"usermember": "user", "projectmember": "project"}
# CSV rows: the entity kinds, and the membership kinds as (group kind, member kind).
CSV_COLUMNS = ("kind", "name", "parent", "state", "role", "category", "description")
CSV_MEMBERS = {
    "org_user": ("organization", "usermember"),
    "org_project": ("organization", "projectmember"),
    "project_user": ("project", "usermember"),
}
FORMATS = ("csv", "json")

# What each event type recorded does is the catalog's to say; these names
# must mean what the plan below expects of them.
for _section in SECTIONS.values():
    assert catalog.CATALOG[_section.catalogued].lifecycle == (_section.kind, CATALOGUED)
    assert catalog.CATALOG[_section.deleted].lifecycle == (_section.kind, GONE)
for _kind in GROUP_KINDS:
    assert catalog.CATALOG[SECTIONS[_kind].member_catalogued].membership == SET_MEMBER
    assert catalog.CATALOG[SECTIONS[_kind].member_deleted].membership == REMOVE_MEMBER


class Problem(NamedTuple):
    where: str  # "line 4", "organizations[2].members[0]", "taken_at"
    field: str | None
    message: str

    def __str__(self) -> str:
        if self.field:
            return f"{self.where}: {self.field}: {self.message}"
        return f"{self.where}: {self.message}"


@dataclass
class Record:
    """An entity the inventory lists. category and description are None
    when not given: the events' own are then kept."""

    where: str
    kind: str
    name: str
    scope: str = ""  # an experiment's project
    state: str = "active"
    category: str | None = None
    description: str | None = None
    scope_field: str = ""  # what the format calls the scope: project, parent

    @property
    def key(self) -> Key:
        return (self.kind, self.scope, self.name)


@dataclass
class Membership:
    """A member of a listed organization or project. state is None when not
    given: the events' own is then kept."""

    where: str
    group_kind: str
    group: str
    member_kind: str  # usermember, projectmember
    member: str
    role: str
    state: str | None = None
    member_field: str = "name"  # what the format calls the member: user, project, name

    @property
    def key(self) -> MemberKey:
        return (self.group_kind, self.group, self.member_kind, self.member)


@dataclass
class Inventory:
    taken_at: datetime | None = None
    # The entity kinds whose section the file has: only those are compared.
    sections: set[str] = field(default_factory=set)
    records: list[Record] = field(default_factory=list)
    memberships: list[Membership] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Entities listed by records with problems: not reported again as
    # missing where other records name them.
    unreadable: set[Key] = field(default_factory=set)
    # The place of each record read, in file order.
    places: dict[str, int] = field(default_factory=dict)

    def problem(self, where: str, name: str | None, message: str) -> None:
        self.places.setdefault(where, len(self.places))
        self.problems.append(Problem(where, name, message))

    def sorted_problems(self) -> list[Problem]:
        """The problems in the order of their records in the file."""
        return sorted(self.problems, key=lambda p: self.places[p.where])


# --- reading ----------------------------------------------------------------------


class _Fields:
    """One record's values, each checked as it is taken; every problem is
    added to the inventory under the record's place and the field's name.
    In CSV every row has every column: a column a record does not use must
    be empty. In JSON a key a record does not use must be absent."""

    def __init__(
        self, inventory: Inventory, where: str, values: dict[str, Any], *, cells: bool
    ) -> None:
        self.inventory = inventory
        self.where = where
        inventory.places.setdefault(where, len(inventory.places))
        self.values = values
        self.cells = cells
        self.ok = True

    def fail(self, name: str | None, message: str) -> None:
        self.ok = False
        self.inventory.problem(self.where, name, message)

    def given(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def name(self, name: str) -> str:
        value = self.values.get(name)
        if not self.given(name):
            self.fail(name, "is required")
        elif not isinstance(value, str):
            self.fail(name, "must be a string")
        elif not NOT_BLANK.search(value):
            self.fail(name, "must not be blank")
        elif value != value.strip():
            self.fail(name, "has leading or trailing spaces")
        elif len(value) > MAX_NAME_LENGTH:
            self.fail(name, f"is longer than {MAX_NAME_LENGTH} characters")
        elif "\x00" in value:
            self.fail(name, "contains a NUL character")
        else:
            return value
        return ""

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        if not self.given(name):
            return default
        if self.values[name] not in choices:
            self.fail(name, f"must be one of {', '.join(choices)}")
            return default
        return self.values[name]

    def text(self, name: str) -> str | None:
        """Free text; None when not given (an empty CSV cell, a JSON null)."""
        value = self.values.get(name)
        if value is None or (self.cells and value == ""):
            return None
        if not isinstance(value, str):
            self.fail(name, "must be a string")
        elif len(value) > MAX_TEXT_LENGTH:
            self.fail(name, f"is longer than {MAX_TEXT_LENGTH} characters")
        elif "\x00" in value:
            self.fail(name, "contains a NUL character")
        else:
            return value
        return None

    def only(self, used: tuple[str, ...], what: str) -> None:
        for name in self.values:
            if name not in used and (self.given(name) or not self.cells):
                self.fail(name, f"is not a field of {what}")


def _entity(fields: _Fields, section: Section, scope_field: str = "") -> Record | None:
    """The record of an entity, or None (its problems reported)."""
    used = ("name", "state", *(("category", "description") if section.has_category else ()))
    record = Record(
        where=fields.where,
        kind=section.kind,
        name=fields.name("name"),
        # Not given: the state of an entity known only to exist (active).
        state=fields.choice("state", section.states, ENTITY_KINDS[section.kind].seen) or "",
        scope_field=scope_field,
    )
    if scope_field:
        record.scope = fields.name(scope_field)
        used += (scope_field,)
    if section.has_category:
        record.category = fields.text("category")
        record.description = fields.text("description")
    fields.only(used, section.article)
    if not fields.ok and record.name and (record.scope or not scope_field):
        fields.inventory.unreadable.add(record.key)
    return record if fields.ok else None


def _member(
    fields: _Fields, group_kind: str, group: str, member_kind: str, member_field: str, what: str
) -> Membership | None:
    """The record of a membership, or None (its problems reported)."""
    if not fields.given("role"):
        fields.fail("role", "is required")
    membership = Membership(
        where=fields.where,
        group_kind=group_kind,
        group=group,
        member_kind=member_kind,
        member=fields.name(member_field),
        role=fields.choice("role", MEMBER_ROLES) or "",
        state=fields.choice("state", MEMBER_STATES),
        member_field=member_field,
    )
    fields.only((member_field, "role", "state", *(("parent",) if fields.cells else ())), what)
    return membership if fields.ok else None


def read_json(text: str) -> Inventory:
    """An inventory from its JSON form (docs/inventory.md), with every
    problem of every record in `problems`, each at its path
    (organizations[2].members[0])."""
    inventory = Inventory()
    try:
        document = loads(text)
    except (ValueError, RecursionError) as exc:
        inventory.problem("file", None, f"is not JSON: {exc}")
        return inventory
    if not isinstance(document, dict):
        inventory.problem("file", None, "must be a JSON object with taken_at and the sections")
        return inventory
    for key in sorted(set(document) - {"taken_at", *SECTION_BY_KEY}):
        inventory.problem(key, None, f"is not a section ({', '.join(SECTION_BY_KEY)})")
    if document.get("taken_at") is not None:
        try:
            inventory.taken_at = parse_timestamp(document["taken_at"])
        except ValueError as exc:
            inventory.problem("taken_at", None, str(exc))
    for section in SECTIONS.values():
        if section.key not in document:
            continue
        items = document[section.key]
        if not isinstance(items, list):
            inventory.problem(section.key, None, "must be an array")
            continue
        inventory.sections.add(section.kind)
        for position, item in enumerate(items):
            where = f"{section.key}[{position}]"
            if not isinstance(item, dict):
                inventory.problem(where, None, "must be an object")
                continue
            values = dict(item)
            members = values.pop("members", None) if section.kind in GROUP_KINDS else None
            scope_field = "project" if section.kind == "experiment" else ""
            record = _entity(_Fields(inventory, where, values, cells=False), section, scope_field)
            if record:
                inventory.records.append(record)
            if section.kind in GROUP_KINDS:
                # Read (and reported) even when the group's record is bad.
                found = _json_members(inventory, section.kind, where, members)
                if record:
                    inventory.memberships.extend(replace(m, group=record.name) for m in found)
    return inventory


def _json_members(
    inventory: Inventory, group_kind: str, where: str, members: Any
) -> list[Membership]:
    if members is None:
        return []
    if not isinstance(members, list):
        inventory.problem(where, "members", "must be an array")
        return []
    keys = MEMBER_KEYS[group_kind]
    found = []
    for position, item in enumerate(members):
        place = f"{where}.members[{position}]"
        if not isinstance(item, dict):
            inventory.problem(place, None, "must be an object")
            continue
        named = [k for k in keys if k in item]
        if len(named) != 1:
            inventory.problem(place, None, f"must name one member: {' or '.join(keys)}")
            continue
        fields = _Fields(inventory, place, item, cells=False)
        membership = _member(fields, group_kind, "", keys[named[0]], named[0], "a member")
        if membership:
            found.append(membership)
    return found


def read_csv(text: str) -> Inventory:
    """An inventory from its CSV form (docs/inventory.md): one record per
    row, each reported by the line it starts on."""
    inventory = Inventory()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        inventory.problem("line 1", None, "the file is empty: a header is required")
        return inventory
    except csv.Error as exc:
        inventory.problem("line 1", None, f"is not CSV: {exc}")
        return inventory
    unknown = [h for h in header if h not in CSV_COLUMNS]
    missing = [c for c in ("kind", "name") if c not in header]
    if unknown or missing or len(set(header)) != len(header):
        inventory.problem(
            "line 1",
            None,
            f"the header must be {','.join(CSV_COLUMNS)} (kind and name at least, no "
            f"column twice); unknown: {', '.join(unknown) or 'none'}, "
            f"missing: {', '.join(missing) or 'none'}",
        )
        return inventory
    line = reader.line_num
    while True:
        # A quoted cell may hold newlines: a record starts after the last one.
        start = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            inventory.problem(f"line {start}", None, f"is not CSV: {exc}")
            break
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        where = f"line {start}"
        if len(cells) != len(header):
            inventory.problem(where, None, f"has {len(cells)} cells, the header {len(header)}")
            continue
        _csv_row(inventory, where, dict(zip(header, cells, strict=True)))
    return inventory


def _csv_row(inventory: Inventory, where: str, values: dict[str, str]) -> None:
    kind = values.pop("kind").strip()
    fields = _Fields(inventory, where, values, cells=True)
    if kind in SECTIONS:
        section = SECTIONS[kind]
        inventory.sections.add(section.kind)
        record = _entity(fields, section, "parent" if kind == "experiment" else "")
        if record:
            inventory.records.append(record)
    elif kind in CSV_MEMBERS:
        group_kind, member_kind = CSV_MEMBERS[kind]
        group = fields.name("parent")
        membership = _member(fields, group_kind, group, member_kind, "name", f"a {kind} row")
        if membership:
            inventory.memberships.append(membership)
    else:
        choices = ", ".join([*SECTIONS, *CSV_MEMBERS])
        inventory.problem(where, "kind", f"must be one of {choices}")


def read(text: str, fmt: str) -> Inventory:
    return read_json(text) if fmt == "json" else read_csv(text)


def check(inventory: Inventory, keep_absent: bool) -> None:
    """Add the problems no single record shows: a record listed twice, a
    membership of a group the inventory does not list, and, for a whole
    inventory (not keep_absent), a member or an experiment's project that a
    section of the file leaves out: the import would delete it."""
    listed: dict[Key, str] = {}
    for record in inventory.records:
        if record.key in listed:
            inventory.problem(
                record.where, "name", f"repeats the {record.kind} of {listed[record.key]}"
            )
        listed.setdefault(record.key, record.where)

    def left_out(kind: str, name: str) -> bool:
        key = (kind, "", name)
        return (
            not keep_absent
            and kind in inventory.sections
            and key not in listed
            and key not in inventory.unreadable
        )

    for record in inventory.records:
        if record.scope and left_out("project", record.scope):
            inventory.problem(
                record.where,
                record.scope_field,
                f"project {record.scope!r} is not in the inventory's projects",
            )
    members: dict[MemberKey, str] = {}
    for membership in inventory.memberships:
        if membership.key in members:
            inventory.problem(
                membership.where, None, f"repeats the membership of {members[membership.key]}"
            )
        members.setdefault(membership.key, membership.where)
        group = (membership.group_kind, "", membership.group)
        if group not in listed and group not in inventory.unreadable:
            inventory.problem(
                membership.where,
                "parent",
                f"{membership.group_kind} {membership.group!r} is not listed: add its row",
            )
        member_kind = MEMBER_ENTITY[membership.member_kind]
        if left_out(member_kind, membership.member):
            inventory.problem(
                membership.where,
                membership.member_field,
                f"{member_kind} {membership.member!r} is not in the inventory's "
                f"{SECTIONS[member_kind].key}",
            )


def taken_at_problem(taken_at: datetime | None, now: datetime) -> str | None:
    """Why an inventory cannot be recorded at taken_at, or None."""
    if taken_at is None:
        return "is required: the file has none and --taken-at is not given"
    if taken_at > now:
        return f"{taken_at.isoformat()} is in the future"
    if taken_at < EARLIEST:
        return "is before 1970-01-01T00:00:00Z"
    return None


# --- what the events say at taken_at --------------------------------------------------


@dataclass(frozen=True)
class Known:
    """An entity as the events say it is at a moment."""

    state: str
    since: datetime | None = None  # the start of its existence then
    category: str = ""
    description: str = ""


# The entity fold (audit/aggregates.py) of the events up to %(at)s: the CTE
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
                "types": list(MEMBERSHIP_TYPES),
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
    taken_at (see the module's docstring)."""
    result = Plan(taken_at, caller)
    known = entities_at(taken_at, inventory.sections)
    for record in inventory.records:
        was = known.get(record.key)
        if (
            was is not None
            and was.state == record.state
            and record.category in (None, was.category)
            and record.description in (None, was.description)
        ):
            result.unchanged += 1
            continue
        if record.kind == "experiment":
            payload: dict[str, Any] = {"project": record.scope}
        else:
            payload = {"state": record.state}
        for name in ("category", "description"):
            if getattr(record, name) is not None:
                payload[name] = getattr(record, name)
        source = Source(record.where, {"subject": "name", "payload.project": record.scope_field})
        result.add(
            source,
            SECTIONS[record.kind].catalogued,
            record.kind,
            record.name,
            payload,
            scope=record.scope,
        )
    if not keep_absent:
        for kind, scope, name in sorted(set(known) - {r.key for r in inventory.records}):
            payload = {"project": scope, **SOURCE} if kind == "experiment" else dict(SOURCE)
            source = Source(f"absent {kind} {name!r}", {})
            result.add(source, SECTIONS[kind].deleted, kind, name, payload, scope=scope)

    # Members continue only within an existence that continues: a group
    # unknown or gone at taken_at begins a new one there, with no members.
    groups = {
        (r.kind, r.name): known[r.key].since
        for r in inventory.records
        if r.kind in GROUP_KINDS and r.key in known and known[r.key].since is not None
    }
    members = members_at(taken_at, groups)
    for membership in inventory.memberships:
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
    if not keep_absent:
        wanted = {m.key for m in inventory.memberships}
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
    return result


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
