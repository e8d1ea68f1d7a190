"""Reading an inventory from its file (JSON or CSV, docs/inventory.md) and
checking it: every problem of every record is collected, each at its place
in the file, before anything is compared with the events."""

import csv
import io
from dataclasses import replace
from datetime import datetime
from typing import Any

from audit.catalog import ENTITY_KINDS, MEMBER_ROLES, MEMBER_STATES
from audit.ingest import EARLIEST, MAX_NAME_LENGTH, NOT_BLANK, loads, parse_timestamp
from audit.inventory.records import (
    GROUP_KINDS,
    MEMBER_ENTITY,
    MEMBER_KEYS,
    SECTIONS,
    Inventory,
    Key,
    MemberKey,
    Membership,
    Record,
    Section,
)

MAX_TEXT_LENGTH = 8192
SECTION_BY_KEY = {s.key: s for s in SECTIONS.values()}
# CSV rows: the entity kinds, and the membership kinds as (group kind, member kind).
CSV_COLUMNS = ("kind", "name", "parent", "state", "role", "category", "description")
CSV_MEMBERS = {
    "org_user": ("organization", "usermember"),
    "org_project": ("organization", "projectmember"),
    "project_user": ("project", "usermember"),
}
FORMATS = ("csv", "json")


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
