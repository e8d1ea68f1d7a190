"""The simulated population of the demo history: users, organizations,
projects and their experiments, the hosts each facility has free, and the
words their names are made of.

World holds the state the history's events change, so that nothing is
deleted before it exists, members exist when added, and realizations are
freed at most once. Pool makes the random picks cheap at millions of events.
"""

import random
from dataclasses import dataclass, field
from datetime import datetime

FIRST_NAMES = (
    "alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy "
    "rupert sybil trent victor walter xena yusuf zoe amir bea chen dara eli fatima "
    "gopal hana igor jin kofi lena mateo noor omar priya quinn rosa sami tara uma "
    "vik wen xiu yara zane"
).split()
TOPICS = (
    "botnet ddos iot dns bgp malware tor mesh satellite vanet smartgrid scada "
    "phishing ransomware quic wifi lte 5g sdn p4 blockchain spam honeypot fuzzing"
).split()
ORG_WORDS = "isi usc utah uw mit cmu ucla gatech purdue umass clemson tamu nps jhu".split()
CATEGORIES = ("Research", "Education", "Industry", "Government")
# The chance that a membership or a new experiment names one of the users,
# organizations and projects that predate the log and the log has not named
# yet: a running portal's users and groups show up in its first weeks (in
# memberships, not logins: they are not all active users).
LEGACY_PICK = 0.5


@dataclass
class Experiment:
    project: str
    name: str
    revision: int = 0
    realization: dict | None = None
    materialized: bool = False


class Pool:
    """A set with O(1) add, remove and random choice: the simulation picks
    from pools of tens of thousands of names millions of times."""

    def __init__(self) -> None:
        self.items: list = []
        self.index: dict = {}

    def add(self, item) -> None:
        if item not in self.index:
            self.index[item] = len(self.items)
            self.items.append(item)

    def discard(self, item) -> None:
        i = self.index.pop(item, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.index[last] = i

    def choice(self, rng: random.Random):
        return self.items[rng.randrange(len(self.items))]

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item) -> bool:
        return item in self.index


@dataclass
class World:
    rng: random.Random
    users: dict[str, str] = field(default_factory=dict)  # name -> state
    by_state: dict[str, Pool] = field(default_factory=dict)
    memberships: dict[str, int] = field(default_factory=dict)  # user -> groups joined
    orgs: dict[str, dict[str, str]] = field(default_factory=dict)  # org -> member -> role
    projects: dict[str, dict[str, str]] = field(default_factory=dict)
    org_pool: Pool = field(default_factory=Pool)
    project_pool: Pool = field(default_factory=Pool)
    experiments: dict[tuple[str, str], Experiment] = field(default_factory=dict)
    exp_pool: Pool = field(default_factory=Pool)
    pushed_pool: Pool = field(default_factory=Pool)  # experiments with a model
    exps_per_project: dict[str, int] = field(default_factory=dict)
    deleted_projects: list[str] = field(default_factory=list)
    # (kind, name) of each organization and project -> pending, active or
    # frozen; the pools above hold the active ones only.
    group_states: dict[tuple[str, str], str] = field(default_factory=dict)
    frozen_groups: Pool = field(default_factory=Pool)
    frozen_since: dict[tuple[str, str], datetime] = field(default_factory=dict)
    # Users, organizations and projects that predate the log and no event
    # has named yet, as (kind, name): nothing changes their state before a
    # login or a membership shows they exist.
    unseen: "Unseen" = field(default_factory=lambda: Unseen())
    free_hosts: dict[str, Pool] = field(default_factory=dict)  # facility -> host numbers
    realized_at: dict[str, Pool] = field(default_factory=dict)  # facility -> experiment keys
    serial: int = 0

    def pool(self, state: str) -> Pool:
        return self.by_state.setdefault(state, Pool())

    def set_user(self, name: str, state: str | None) -> None:
        old = self.users.get(name)
        if old:
            self.pool(old).discard(name)
        if state is None:
            self.users.pop(name, None)
        else:
            self.users[name] = state
            self.pool(state).add(name)

    def join(self, user: str, groups: dict, group: str, role: str) -> None:
        groups[group][user] = role
        if user.startswith("project:"):
            self.unseen.discard(("project", user.removeprefix("project:")))
        else:
            self.memberships[user] = self.memberships.get(user, 0) + 1
            self.unseen.discard(("user", user))

    def pool_of(self, kind: str) -> Pool:
        return self.org_pool if kind == "organization" else self.project_pool

    def groups_of(self, kind: str) -> dict[str, dict[str, str]]:
        return self.orgs if kind == "organization" else self.projects

    def set_group(self, kind: str, name: str, state: str | None) -> None:
        """A group's new state (None: gone); only active ones are in its pool."""
        key = (kind, name)
        if state is None:
            self.group_states.pop(key, None)
        else:
            self.group_states[key] = state
        if state == "active":
            self.pool_of(kind).add(name)
        else:
            self.pool_of(kind).discard(name)
        if state == "frozen":
            self.frozen_groups.add(key)
        else:
            self.frozen_groups.discard(key)

    def leave(self, user: str, groups: dict, group: str) -> None:
        del groups[group][user]
        if not user.startswith("project:"):
            self.memberships[user] -= 1


class Unseen:
    """The (kind, name) of each user, organization and project that predates
    the log and no event has named yet, with a random pick of each kind."""

    def __init__(self) -> None:
        self.pools: dict[str, Pool] = {}

    def add(self, key: tuple[str, str]) -> None:
        self.pools.setdefault(key[0], Pool()).add(key[1])

    def discard(self, key: tuple[str, str]) -> None:
        if key[0] in self.pools:
            self.pools[key[0]].discard(key[1])

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key[0] in self.pools and key[1] in self.pools[key[0]]

    def pick(self, kind: str, rng: random.Random) -> str | None:
        """One not yet named, or None once all have been."""
        pool = self.pools.get(kind)
        return pool.choice(rng) if pool else None


class Either:
    """Membership in either of two collections, without building their union."""

    def __init__(self, *collections) -> None:
        self.collections = collections

    def __contains__(self, item) -> bool:
        return any(item in c for c in self.collections)
