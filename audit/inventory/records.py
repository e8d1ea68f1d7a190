"""What an inventory holds: the kinds of entity it lists (its sections), and
the records, memberships and problems read from its file."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from audit import catalog
from audit.catalog import CATALOGUED, ENTITY_KINDS, GONE, REMOVE_MEMBER, SET_MEMBER

Key = tuple[str, str, str]  # (kind, scope, name), as in `entities`
MemberKey = tuple[str, str, str, str]  # (group kind, group, member kind, member)


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
GROUP_KINDS = ("organization", "project")
# The membership kinds a group has, by the JSON key naming the member.
MEMBER_KEYS = {
    "organization": {"user": "usermember", "project": "projectmember"},
    "project": {"user": "usermember"},
}
# The entity kind a member of each membership kind is.
MEMBER_ENTITY = {"usermember": "user", "projectmember": "project"}

# What each event type recorded does is the catalog's to say; these names
# must mean what the plan (audit.inventory.planning) expects of them.
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
