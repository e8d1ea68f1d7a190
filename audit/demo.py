"""A realistic, internally consistent portal history for demos and benchmarks.

`generate(n, days, seed)` yields n event dicts in time order, shaped exactly
like what the portal POSTs, so seed_demo can send them through the same
validation as ingest. The simulation keeps state, so nothing is deleted before
it exists, members exist when added, and realizations are freed at most once.

Each facility allocates from its own hosts, never more than it has, and its
users release experiments to keep it at a plausible share of its capacity
(TARGET_USE, MIN_USE); nothing is allocated or freed there while it is down
or in maintenance. Facility controllers report as real ones do: a
status change at once, a heartbeat while nothing changes (hours apart: about
HEARTBEAT_SHARE of the events, at least one a day), and every
REPORT_EVERY_INCIDENT while a facility is not up, so each incident is one
unbroken run on the map, its uptime bar and the charts' bands. Each report
names when the next will come (payload.interval, its period with
INTERVAL_SLACK), so the map knows the status between heartbeats. A report every
few minutes all year would outnumber the portal's own events several times;
demo_reporter keeps the map fresh from the end of the history on. The
portal's activity follows a US testbed's week (quiet nights and weekends),
grows over the history, and has a few incidents: facility outages and
maintenance (INCIDENTS) and password-spraying bursts of failed logins.

Organizations and projects are created pending and reviewed later (REVIEW):
most are activated within a day, some wait days, a few are declined; now
and then one is frozen and later unfrozen. The log begins on a running
portal: a base of users, organizations and projects exists before it
(LEGACY_SHARE), first appears in a login, a membership or an experiment in
the log's first weeks (LEGACY_PICK), never created; the rest arrive as the
history goes on.
"""

import bisect
import heapq
import math
import random
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# Demo facility slugs; `seed_facilities` places them on the map.
FACILITIES = ("isi", "utah", "wisc", "clemson", "mass", "tacc")
FACILITY_NODES = {"isi": 64, "utah": 96, "wisc": 48, "clemson": 40, "mass": 80, "tacc": 120}
# The share of each facility's hosts its users hold at most: past it, someone
# releases an experiment there before a new one is realized.
TARGET_USE = {"isi": 0.6, "utah": 0.45, "wisc": 0.55, "clemson": 0.5, "mass": 0.5, "tacc": 0.4}
# And at least, once reached: below it nobody frees a realization there, so a
# small facility does not drain to nothing by chance.
MIN_USE = 0.2
# Facility controllers report a change of status at once, a heartbeat while
# nothing changes, and every REPORT_EVERY_INCIDENT while not up. Heartbeats
# take about HEARTBEAT_SHARE of the events, at most one per controller every
# REPORT_EVERY_INCIDENT and at least one every HEARTBEAT_LONGEST (so every day
# of the uptime bar has a report). A controller posting every few minutes for
# a whole year would outnumber the portal's own events several times over.
HEARTBEAT_SHARE = 0.1
HEARTBEAT_LONGEST = timedelta(hours=20)
# Under the default FACILITY_STALE_AFTER (15 minutes): an incident reads as one
# unbroken run on the map, its uptime bar and the time charts' bands.
REPORT_EVERY_INCIDENT = timedelta(minutes=10)
# Each report says when the next will come (payload.interval, the time it
# holds on the map): the controller's period, up or not, with this much
# slack. Heartbeats are at most a tenth late (their jitter), so a quarter
# more covers every gap; an incident's reports hold 15 minutes.
INTERVAL_SLACK = 1.25
INCIDENT_INTERVAL = REPORT_EVERY_INCIDENT * 3 // 2
# Each facility's scripted incidents: (facility, how long before the end of
# the history it began, how long it lasted, status, message). The last three
# go on at the end of the history: the demo's present (current_facility_state).
INCIDENTS = (
    ("isi", timedelta(days=330), timedelta(hours=6), "maintenance", "annual power shutdown"),
    ("tacc", timedelta(days=250), timedelta(hours=14), "down", "chilled-water loop failure"),
    ("utah", timedelta(days=190), timedelta(hours=5), "degraded", "storage servers overloaded"),
    ("mass", timedelta(days=160), timedelta(hours=20), "maintenance", "electrical work"),
    ("clemson", timedelta(days=110), timedelta(hours=3), "down", "campus network outage"),
    ("wisc", timedelta(days=75), timedelta(hours=8), "maintenance", "node OS upgrade"),
    ("tacc", timedelta(days=45), timedelta(hours=2), "degraded", "parallel file system slow"),
    ("utah", timedelta(days=20, hours=8), timedelta(hours=8), "down", "core router outage"),
    (
        "isi",
        timedelta(days=14, hours=12),
        timedelta(hours=12),
        "maintenance",
        "scheduled OS upgrade",
    ),
    (
        "mass",
        timedelta(days=9, hours=4),
        timedelta(hours=4),
        "degraded",
        "cooling problem; half the nodes powered down",
    ),
    ("wisc", timedelta(hours=3), timedelta(hours=3), "down", "power failure in machine room B"),
    ("clemson", timedelta(hours=6), timedelta(hours=6), "maintenance", "switch firmware upgrade"),
    (
        "tacc",
        timedelta(hours=1),
        timedelta(hours=1),
        "degraded",
        "storage array rebuilding; experiments boot slowly",
    ),
)
# Password-spraying bursts: (when, as a share of the history; failed logins
# per thousand events, at least LOGIN_BURST_LEAST).
LOGIN_BURSTS = ((0.45, 2), (0.85, 1.5))
LOGIN_BURST_LEAST = 20
# The rhythm of a US testbed's activity: local time is UTC-7 (Pacific
# daylight time, near enough for every season), weekends and nights are
# quiet, and activity grows over the history from ACTIVITY_AT_START of its
# final rate: the testbed gains users and projects as it goes.
LOCAL_OFFSET = timedelta(hours=-7)
WEEKEND = 0.3
HOURS = (
    (0.15,) * 7 + (0.5,) + (1.0,) * 10 + (0.7,) * 3 + (0.4,) * 3
)  # weight of each local hour, 0 to 23
ACTIVITY_AT_START = 0.6
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
LOGIN_ERRORS = ("invalid credentials", "account frozen", "too many attempts", "no such user")
REALIZE_ERRORS = (
    "insufficient resources at facility",
    "model compile error: undefined node",
    "link capacity exceeded",
    "facility unreachable",
)
# The share of realizations their owner materializes within 90 minutes.
MATERIALIZE_SOON = 0.5
MATERIALIZE_ERRORS = ("image boot timeout", "switch configuration failed", "DHCP lease failure")
# How long a new organization or project waits for review, and how it ends:
# (share, shortest wait, longest wait, verb). The rest are never reviewed
# and stay pending.
REVIEW = (
    (0.70, timedelta(minutes=20), timedelta(hours=20), "activated"),
    (0.15, timedelta(days=1), timedelta(days=6), "activated"),
    (0.06, timedelta(days=7), timedelta(days=30), "activated"),
    (0.05, timedelta(hours=2), timedelta(days=4), "declined"),
)
# The share of active organizations and projects that is frozen at a time
# (at least one of each kind, once there are some).
FROZEN_SHARE = 0.03
# The share of each population's cap that exists before the log begins, and
# the fewest there are (LEGACY_LEAST).
LEGACY_SHARE = {"user": 0.3, "organization": 0.35, "project": 0.25}
LEGACY_LEAST = {"user": 3, "organization": 2, "project": 2}
# The chance that a membership or a new experiment names one of those the
# log has not named yet: a running portal's users and groups show up in its
# first weeks (in memberships, not logins: they are not all active users).
LEGACY_PICK = 0.5
GROUP_PREFIX = {"organization": "org", "project": "project"}


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


class _Either:
    """Membership in either of two collections, without building their union."""

    def __init__(self, *collections) -> None:
        self.collections = collections

    def __contains__(self, item) -> bool:
        return any(item in c for c in self.collections)


def _event(
    ts: datetime,
    event_type: str,
    caller: str,
    subject: str,
    subject_type: str,
    *,
    target: str | None = None,
    success: bool = True,
    error: str | None = None,
    payload: dict | None = None,
    rng: random.Random,
) -> dict:
    return {
        "event_uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "timestamp": ts.isoformat(),
        "event_type": event_type,
        "caller": caller,
        "subject": subject,
        "subject_type": subject_type,
        "target": target,
        "success": success,
        "error_message": error,
        "payload": payload or {},
    }


def facility_state(slug: str, ts: datetime, end: datetime) -> tuple[str, str]:
    """The scripted status of a demo facility at ts (INCIDENTS): an outage at
    wisc now, a maintenance window at clemson now, tacc degraded, and a few
    past incidents over the year."""
    before_end = end - ts
    for facility, began, lasted, status, message in INCIDENTS:
        # One still going at the end includes the end itself.
        ongoing = lasted >= began
        if facility == slug and (began - lasted < before_end or ongoing) and before_end <= began:
            return status, message
    return "up", ""


def current_facility_state(slug: str) -> tuple[str, str]:
    """A demo facility's status at the end of the history, which the demo
    keeps as its present: wisc down, clemson in maintenance, tacc degraded,
    the others up."""
    end = datetime.now(UTC)
    return facility_state(slug, end, end)


class Generator:
    def __init__(self, n: int, days: int, seed: int, end: datetime) -> None:
        self.n, self.days, self.end = n, days, end
        self.start = end - timedelta(days=days)
        self.rng = random.Random(seed)
        self.world = World(self.rng)
        # A testbed's population grows much slower than its activity: cap it
        # so ten million events mean years of use, not a million accounts.
        self.max_users = 500 + n // 500
        self.max_projects = self.max_users // 3
        self.max_orgs = max(5, self.max_users // 20)
        self.progress = 0.0  # share of the history generated so far
        for slug in FACILITIES:
            hosts = self.world.free_hosts[slug] = Pool()
            for number in range(1, FACILITY_NODES[slug] + 1):
                hosts.add(number)
            self.world.realized_at[slug] = Pool()
        # Events due later (a review), as (time, order, method, arguments).
        self.due: list[tuple[datetime, int, str, tuple]] = []
        self.scheduled = 0
        self.heartbeat_every = HEARTBEAT_LONGEST  # report_schedule sets it
        self.forgotten: set[str] = set()  # kinds with a group left pending for good
        self.refused: set[str] = set()  # kinds with a group declined already
        self.freezes = 0  # group_lifecycle turns taken
        self.cumulative, self.total_weight = self.rhythm()
        self.legacy()

    def legacy(self) -> None:
        """The users, organizations and projects that exist when the log
        begins: active, with no event yet. Each legacy project has a legacy
        user as its creator, so that it has someone to work in it."""
        w = self.world

        def how_many(kind: str, cap: int) -> int:
            return max(LEGACY_LEAST[kind], int(LEGACY_SHARE[kind] * cap))

        users = []
        for _ in range(how_many("user", self.max_users)):
            users.append(self.new_name(FIRST_NAMES, w.users))
            w.set_user(users[-1], "active")
            w.unseen.add(("user", users[-1]))
        for _ in range(how_many("organization", self.max_orgs)):
            name = self.new_name(ORG_WORDS, w.orgs)
            w.orgs[name] = {}
            w.set_group("organization", name, "active")
            w.unseen.add(("organization", name))
        for _ in range(how_many("project", self.max_projects)):
            name = self.new_name(TOPICS, w.projects)
            creator = self.rng.choice(users)
            w.projects[name] = {creator: "creator"}
            w.memberships[creator] = w.memberships.get(creator, 0) + 1
            w.set_group("project", name, "active")
            w.unseen.add(("project", name))

    def schedule(self, ts: datetime, method: str, *args) -> None:
        self.scheduled += 1
        heapq.heappush(self.due, (ts, self.scheduled, method, args))

    def room(self, count: int, cap: int) -> bool:
        """Whether a population may grow: its cap rises over the history, so
        the growth charts keep climbing to the end."""
        return count < cap * (0.3 + 0.7 * self.progress)

    # -- helpers -----------------------------------------------------------------
    def ev(self, *args, **kwargs) -> dict:
        return _event(*args, rng=self.rng, **kwargs)

    def new_name(self, words: tuple[str, ...] | list[str], taken) -> str:
        rng = self.rng
        for _ in range(20):
            name = rng.choice(words)
            if name in taken:
                name = f"{name}{rng.randint(2, 999)}"
            if name not in taken:
                return name
        self.world.serial += 1
        return f"{rng.choice(words)}{self.world.serial}x"

    # -- actions; each returns a list of events (possibly empty) --------------------
    def user_signup(self, ts) -> list[dict]:
        if not self.room(len(self.world.users), self.max_users) and self.world.pool("active"):
            return self.login(ts)
        name = self.new_name(FIRST_NAMES, self.world.users)
        # A few never confirm their account: pending for good, out of the
        # pool the operators review.
        self.world.set_user(name, "pending" if self.rng.random() > 0.03 else "unconfirmed")
        payload = {"institution": self.rng.choice(ORG_WORDS).upper()}
        return [self.ev(ts, "user_created", name, name, "user", payload=payload)]

    def user_lifecycle(self, ts) -> list[dict]:
        w, rng = self.world, self.rng
        pending, active, frozen = w.pool("pending"), w.pool("active"), w.pool("frozen")
        if pending and rng.random() < 0.7:
            user = pending.choice(rng)
            verb = "activated" if rng.random() < 0.9 else "declined"
            w.set_user(user, "active" if verb == "activated" else "declined")
            return [self.ev(ts, f"user_{verb}", "ops", user, "user")]
        roll = rng.random()
        # The more are frozen, the likelier one is unfrozen: a few at a time.
        if frozen and roll < 0.04 * len(frozen):
            user = frozen.choice(rng)
            w.set_user(user, "active")
            return [self.ev(ts, "user_unfrozen", "ops", user, "user")]
        if len(active) > 5 and roll < 0.65:
            # Only a user who is no member of anything: members act in their
            # groups. Most active users are members, so look a little.
            user = next(
                (
                    u
                    for u in (active.choice(rng) for _ in range(3))
                    if not w.memberships.get(u) and ("user", u) not in w.unseen
                ),
                None,
            )
            if user is None:
                return []
            w.set_user(user, "frozen")
            return [self.ev(ts, "user_frozen", "ops", user, "user")]
        if len(active) > 5:
            user = active.choice(rng)
            if w.memberships.get(user) or ("user", user) in w.unseen:
                return []
            w.set_user(user, None)
            return [self.ev(ts, "user_deleted", "ops", user, "user")]
        return self.user_signup(ts)

    def login(self, ts) -> list[dict]:
        w, rng = self.world, self.rng
        active = w.pool("active")
        if not active:
            return self.user_signup(ts)
        if rng.random() < 0.08:
            frozen = w.pool("frozen")
            roll = rng.random()
            if frozen and roll < 0.2:
                user = frozen.choice(rng)
            elif roll < 0.85:
                user = active.choice(rng)
            else:
                user = rng.choice(FIRST_NAMES) + "_x"
            error = (
                "account frozen"
                if w.users.get(user) == "frozen"
                else rng.choice(
                    LOGIN_ERRORS[:1] + LOGIN_ERRORS[2:] if user in w.users else LOGIN_ERRORS[3:]
                )
            )
            return [
                self.ev(
                    ts,
                    "user_login",
                    user,
                    user,
                    "user",
                    success=False,
                    error=error,
                    payload={"method": "password"},
                )
            ]
        # Activity is skewed: a few users log in much more than the rest.
        rank = int(rng.paretovariate(1.2)) - 1
        user = active.items[rank] if rank < len(active) else active.choice(rng)
        w.unseen.discard(("user", user))
        return [
            self.ev(
                ts,
                "user_login",
                user,
                user,
                "user",
                payload={"method": rng.choice(("password", "password", "token"))},
            )
        ]

    def create_group(self, ts) -> list[dict]:
        w, rng = self.world, self.rng
        active = w.pool("active")
        if not active:
            return self.user_signup(ts)
        creator = active.choice(rng)
        is_org = rng.random() < 0.25
        if not self.room(
            len(w.orgs) if is_org else len(w.projects),
            self.max_orgs if is_org else self.max_projects,
        ):
            return self.experiment(ts) if w.projects else []
        if is_org:
            name = self.new_name(ORG_WORDS, w.orgs)
            kind = "organization"
        else:
            # Sometimes a deleted or declined project's name is taken again.
            if w.deleted_projects and rng.random() < 0.2:
                name = w.deleted_projects.pop(rng.randrange(len(w.deleted_projects)))
            else:
                name = self.new_name(TOPICS, _Either(w.projects, w.deleted_projects))
            kind = "project"
        prefix = GROUP_PREFIX[kind]
        groups = w.groups_of(kind)
        groups[name] = {}
        # Pending until reviewed: nobody joins it or works in it before.
        w.set_group(kind, name, "pending")
        w.join(creator, groups, name, "creator")
        self.schedule_review(ts, kind, name)
        payload = {"category": rng.choice(CATEGORIES), "description": f"{name} studies"}
        return [
            self.ev(ts, f"{prefix}_created", creator, name, kind, payload=payload),
            self.ev(
                ts + timedelta(milliseconds=5),
                f"{prefix}_member_added",
                creator,
                name,
                kind,
                target=creator,
                payload={"kind": "usermember", "role": "creator", "state": "active"},
            ),
        ]

    def schedule_review(self, ts, kind: str, name: str) -> None:
        """Pick how and when a new group is reviewed (REVIEW). Organizations
        are few, so chance alone could leave a history without a declined one:
        the first of each kind past a fifth of the history is declined, and
        one of each kind past the middle is never reviewed, so the demo always
        has a pending one to show."""
        rng = self.rng
        if kind not in self.forgotten and self.progress > 0.5:
            self.forgotten.add(kind)
            return
        if kind not in self.refused and self.progress > 0.2:
            choices = [row for row in REVIEW if row[3] == "declined"]
        else:
            roll = rng.random()
            choices = []
            for row in REVIEW:
                if roll < row[0]:
                    choices = [row]
                    break
                roll -= row[0]
        for _share, shortest, longest, verb in choices:
            if verb == "declined":
                self.refused.add(kind)
            wait = shortest + (longest - shortest) * rng.random()
            self.schedule(ts + wait, "review", kind, name, verb)

    def review(self, ts, kind: str, name: str, verb: str) -> list[dict]:
        """The portal's operators activate or decline a pending group."""
        w = self.world
        if w.group_states.get((kind, name)) != "pending":
            return []
        if verb == "activated":
            w.set_group(kind, name, "active")
        else:
            self.remove_group(kind, name)
        return [self.ev(ts, f"{GROUP_PREFIX[kind]}_{verb}", "ops", name, kind)]

    def remove_group(self, kind: str, name: str) -> None:
        w = self.world
        groups = w.groups_of(kind)
        for member in list(groups[name]):
            w.leave(member, groups, name)
        del groups[name]
        w.set_group(kind, name, None)
        if kind == "project":
            # Orgs drop a deleted project silently, as the portal does.
            for members in w.orgs.values():
                members.pop(f"project:{name}", None)
            w.deleted_projects.append(name)

    def group_lifecycle(self, ts) -> list[dict]:
        """An organization or project is frozen, or one frozen the longest is
        unfrozen as another is frozen, keeping FROZEN_SHARE of each kind frozen."""
        w, rng = self.world, self.rng
        # Organizations take 3 turns in 10, counted rather than drawn: they
        # are few, and chance alone could leave a history with one freeze.
        self.freezes += 1
        kind = "organization" if self.freezes % 10 in (1, 4, 7) else "project"
        pool, prefix = w.pool_of(kind), GROUP_PREFIX[kind]
        frozen = [key for key in w.frozen_groups.items if key[0] == kind]
        if len(pool) < 5:
            return []
        # One the log has named already (a legacy one is not known yet).
        name = next(
            (n for n in (pool.choice(rng) for _ in range(10)) if (kind, n) not in w.unseen),
            None,
        )
        if name is None:
            return []
        events = []
        if len(frozen) >= max(1, round(FROZEN_SHARE * len(pool))):
            thawed = min(frozen, key=lambda key: w.frozen_since[key])
            w.set_group(kind, thawed[1], "active")
            events.append(self.ev(ts, f"{prefix}_unfrozen", "ops", thawed[1], kind))
        w.set_group(kind, name, "frozen")
        w.frozen_since[kind, name] = ts
        events.append(
            self.ev(ts + timedelta(milliseconds=10), f"{prefix}_frozen", "ops", name, kind)
        )
        return events

    def membership(self, ts) -> list[dict]:
        w, rng = self.world, self.rng
        use_org = bool(w.org_pool) and rng.random() < 0.35
        groups, pool = (w.orgs, w.org_pool) if use_org else (w.projects, w.project_pool)
        if not pool:
            return self.create_group(ts)
        kind, prefix = ("organization", "org") if use_org else ("project", "project")
        legacy = w.unseen.pick(kind, rng) if rng.random() < LEGACY_PICK else None
        name = legacy or pool.choice(rng)
        members = groups[name]
        users = [m for m in members if not m.startswith("project:")]
        # An organization that predates the log may have no member on record:
        # the operators add the first.
        caller = next(
            (m for m, r in members.items() if r == "creator"),
            rng.choice(users) if users else "ops",
        )
        # Project members of an org are added once and left alone.
        others = [m for m in members if members[m] != "creator" and not m.startswith("project:")]
        roll = rng.random()
        if others and roll < 0.15:
            member = rng.choice(others)
            w.leave(member, groups, name)
            return [
                self.ev(
                    ts,
                    f"{prefix}_member_deleted",
                    caller,
                    name,
                    kind,
                    target=member,
                    payload={"kind": "usermember"},
                )
            ]
        if others and roll < 0.3:
            member = rng.choice(others)
            role = "maintainer" if members[member] == "member" else "member"
            members[member] = role
            return [
                self.ev(
                    ts,
                    f"{prefix}_member_updated",
                    caller,
                    name,
                    kind,
                    target=member,
                    payload={"kind": "usermember", "role": role, "state": "active"},
                )
            ]
        if use_org and w.project_pool and roll < 0.4:
            project = w.project_pool.choice(rng)
            key = f"project:{project}"
            if key in members:
                return []
            w.join(key, groups, name, "member")
            w.unseen.discard((kind, name))
            return [
                self.ev(
                    ts,
                    "org_member_added",
                    caller,
                    name,
                    kind,
                    target=project,
                    payload={"kind": "projectmember", "role": "member", "state": "active"},
                )
            ]
        if not w.pool("active"):
            return self.user_signup(ts)
        legacy = w.unseen.pick("user", rng) if rng.random() < LEGACY_PICK else None
        member = legacy or w.pool("active").choice(rng)
        if member in members:
            return []
        w.join(member, groups, name, "member")
        w.unseen.discard((kind, name))
        return [
            self.ev(
                ts,
                f"{prefix}_member_added",
                caller,
                name,
                kind,
                target=member,
                payload={"kind": "usermember", "role": "member", "state": "active"},
            )
        ]

    def is_frozen(self, project: str) -> bool:
        return self.world.group_states.get(("project", project)) == "frozen"

    def experiment(self, ts) -> list[dict]:
        w, rng = self.world, self.rng
        if not w.project_pool:
            return self.create_group(ts)
        if w.exp_pool and rng.random() < 0.6:
            exp = w.experiments[w.exp_pool.choice(rng)]
            if self.is_frozen(exp.project):
                return []
            if exp.realization is None and rng.random() < 0.1:
                key = (exp.project, exp.name)
                del w.experiments[key]
                w.exp_pool.discard(key)
                w.pushed_pool.discard(key)
                w.exps_per_project[exp.project] -= 1
                members = w.projects.get(exp.project) or {"": ""}
                caller = rng.choice(list(members))
                return [
                    self.ev(
                        ts,
                        "experiment_deleted",
                        caller,
                        exp.name,
                        "experiment",
                        payload={"project": exp.project},
                    )
                ]
            exp.revision += 1
            w.pushed_pool.add((exp.project, exp.name))
            caller = rng.choice(list(w.projects[exp.project]))
            revision = f"{rng.getrandbits(40):010x}"
            return [
                self.ev(
                    ts,
                    "experiment_pushed",
                    caller,
                    exp.name,
                    "experiment",
                    payload={
                        "project": exp.project,
                        "model_file": "model.py",
                        "revision": revision,
                    },
                )
            ]
        legacy = w.unseen.pick("project", rng) if rng.random() < LEGACY_PICK else None
        project = legacy or w.project_pool.choice(rng)
        name = f"{rng.choice(TOPICS)}-exp{rng.randint(1, 99)}"
        if (project, name) in w.experiments:
            return []
        w.experiments[(project, name)] = Experiment(project, name)
        w.exp_pool.add((project, name))
        w.exps_per_project[project] = w.exps_per_project.get(project, 0) + 1
        w.unseen.discard(("project", project))
        caller = rng.choice(list(w.projects[project]))
        return [
            self.ev(
                ts, "experiment_created", caller, name, "experiment", payload={"project": project}
            )
        ]

    def resources(self, ts) -> list[dict]:
        w, rng = self.world, self.rng
        if not w.pushed_pool:
            return self.experiment(ts)
        exp = w.experiments[w.pushed_pool.choice(rng)]
        members = w.projects.get(exp.project)
        if not members or self.is_frozen(exp.project):
            return []
        caller = rng.choice(list(members))
        rlz = f"rlz.{exp.name}.{exp.project}"
        if exp.realization is None:
            facility = rng.choice(FACILITIES)
            state, _ = facility_state(facility, ts, self.end)
            size = rng.randint(1, 8)
            base = {
                "project": exp.project,
                "experiment": exp.name,
                "facility": facility,
                "revision": str(exp.revision),
                "model_file": "model.py",
                "nodes": [f"n{i}" for i in range(size)],
                "lans": [f"lan{i}" for i in range(max(1, size // 3))],
            }
            free = w.free_hosts[facility]
            held = FACILITY_NODES[facility] - len(free)
            unreachable = state in ("down", "maintenance")
            busy = held + size > TARGET_USE[facility] * FACILITY_NODES[facility]
            if busy and not unreachable and w.realized_at[facility]:
                # An experiment there is released rather than a new one added.
                return self.release(ts, facility)
            if unreachable or size > len(free) or rng.random() < 0.07:
                if unreachable:
                    error = "facility unreachable"
                elif size > len(free):
                    error = "insufficient resources at facility"
                else:
                    error = rng.choice(REALIZE_ERRORS)
                return [
                    self.ev(
                        ts,
                        "realization_allocated",
                        caller,
                        rlz,
                        "realization",
                        target=facility,
                        success=False,
                        error=error,
                        payload={**base, "resources": []},
                    )
                ]
            hosts = []
            for _ in range(size):
                hosts.append(free.choice(rng))
                free.discard(hosts[-1])
            resources = [f"{facility}-n{h:03d}" for h in sorted(hosts)]
            exp.realization = {**base, "resources": resources}
            w.realized_at[facility].add((exp.project, exp.name))
            if rng.random() < MATERIALIZE_SOON:
                wait = timedelta(minutes=1 + 89 * rng.random())
                self.schedule(ts + wait, "materialize", exp.project, exp.name)
            return [
                self.ev(
                    ts,
                    "realization_allocated",
                    caller,
                    rlz,
                    "realization",
                    target=facility,
                    payload=exp.realization,
                )
            ]
        payload, facility = exp.realization, exp.realization["facility"]
        mtz = f"mtz.{exp.name}.{exp.project}"
        unreachable = facility_state(facility, ts, self.end)[0] in ("down", "maintenance")
        if not exp.materialized and rng.random() < 0.7:
            return self.materialize(ts, exp.project, exp.name)
        if unreachable:
            # Nothing is freed while the facility cannot be reached: what ran
            # there stays held (and counted) through the outage.
            kind = "materialization" if exp.materialized else "realization"
            return [
                self.ev(
                    ts,
                    f"{kind}_freed",
                    caller,
                    mtz if exp.materialized else rlz,
                    kind,
                    target=facility,
                    success=False,
                    error="facility unreachable",
                    payload=payload,
                )
            ]
        held = FACILITY_NODES[facility] - len(w.free_hosts[facility])
        low = held - len(payload["resources"]) < MIN_USE * FACILITY_NODES[facility]
        if low and not exp.materialized:
            return []
        return self.free(exp, ts, caller, keep_realization=low or rng.random() < 0.5)

    def materialize(self, ts, project: str, name: str) -> list[dict]:
        """A member boots a realized experiment (scheduled after its
        realization, or picked at random): nothing happens if it was freed,
        or its project frozen or emptied, in the meantime."""
        exp = self.world.experiments.get((project, name))
        members = self.world.projects.get(project)
        if exp is None or exp.realization is None or exp.materialized:
            return []
        if not members or self.is_frozen(project):
            return []
        caller = self.rng.choice(list(members))
        payload, facility = exp.realization, exp.realization["facility"]
        unreachable = facility_state(facility, ts, self.end)[0] in ("down", "maintenance")
        failed = unreachable or self.rng.random() < 0.06
        if not failed:
            exp.materialized = True
        error = None
        if failed:
            error = "facility unreachable" if unreachable else self.rng.choice(MATERIALIZE_ERRORS)
        return [
            self.ev(
                ts,
                "materialization_allocated",
                caller,
                f"mtz.{name}.{project}",
                "materialization",
                target=facility,
                success=not failed,
                error=error,
                payload=payload,
            )
        ]

    def release(self, ts, facility: str) -> list[dict]:
        """Someone frees a random experiment realized at `facility`."""
        w, rng = self.world, self.rng
        exp = w.experiments[w.realized_at[facility].choice(rng)]
        # A project keeps its members while it has experiments (delete_group).
        caller = rng.choice(list(w.projects[exp.project]))
        return self.free(exp, ts, caller, keep_realization=False)

    def free(self, exp: Experiment, ts, caller: str, *, keep_realization: bool) -> list[dict]:
        """Dematerialize `exp` if it is materialized, then free its realization
        and return its hosts, unless `keep_realization` and there was a
        materialization to stop."""
        payload, facility = exp.realization, exp.realization["facility"]
        events = []
        if exp.materialized:
            events.append(
                self.ev(
                    ts,
                    "materialization_freed",
                    caller,
                    f"mtz.{exp.name}.{exp.project}",
                    "materialization",
                    target=facility,
                    payload=payload,
                )
            )
            exp.materialized = False
            if keep_realization:
                return events
        events.append(
            self.ev(
                ts + timedelta(milliseconds=20),
                "realization_freed",
                caller,
                f"rlz.{exp.name}.{exp.project}",
                "realization",
                target=facility,
                payload=payload,
            )
        )
        free = self.world.free_hosts[facility]
        for host in payload["resources"]:
            free.add(int(host.rsplit("-n", 1)[1]))
        self.world.realized_at[facility].discard((exp.project, exp.name))
        exp.realization = None
        return events

    def delete_group(self, ts) -> list[dict]:
        w, rng = self.world, self.rng
        # Organizations last: a few are closed in a year.
        if len(w.org_pool) > 4 and rng.random() < 0.04:
            kind, name = "organization", w.org_pool.choice(rng)
        elif len(w.project_pool) >= 4:
            kind, name = "project", w.project_pool.choice(rng)
            if w.exps_per_project.get(name):
                return []
        else:
            return []
        if (kind, name) in w.unseen:
            return []
        members = w.groups_of(kind)[name]
        creator = next((m for m, r in members.items() if r == "creator"), "ops")
        self.remove_group(kind, name)
        return [self.ev(ts, f"{GROUP_PREFIX[kind]}_deleted", creator, name, kind)]

    def facility_report(self, ts, slug: str) -> list[dict]:
        state, message = facility_state(slug, ts, self.end)
        # The next report comes a heartbeat's period later while all is well,
        # REPORT_EVERY_INCIDENT later (or at the incident's end) if not.
        holds = self.heartbeat_every * INTERVAL_SLACK if state == "up" else INCIDENT_INTERVAL
        payload = {
            "status": state,
            **({"message": message} if message else {}),
            "interval": math.ceil(holds.total_seconds()),
        }
        return [
            self.ev(ts, "facility_status", f"{slug}-controller", slug, "facility", payload=payload)
        ]

    def report_schedule(self) -> list[tuple[datetime, str]]:
        """When each facility's controller reports, oldest first: heartbeats
        over the whole history, each incident's start, a report every
        REPORT_EVERY_INCIDENT while it lasts and the first report after it,
        and a last report a few minutes before the end. At most half the
        events; the newest are kept."""
        count = HEARTBEAT_SHARE * self.n / len(FACILITIES)
        every = (self.end - self.start) / max(count, 1)
        every = min(max(every, REPORT_EVERY_INCIDENT), HEARTBEAT_LONGEST)
        self.heartbeat_every = every  # the period each heartbeat's interval names
        rng = random.Random(self.rng.random())  # the activity's draws stay the same
        schedule = set()
        for i, slug in enumerate(FACILITIES):
            # Controllers started at different moments, with a little jitter.
            at = self.start + every * rng.random()
            while at < self.end:
                schedule.add((at, slug))
                at += every * (0.9 + 0.2 * rng.random())
            schedule.add((self.end - timedelta(minutes=2 + i), slug))
        for slug, began, lasted, _, _ in INCIDENTS:
            at, over = self.end - began, self.end - began + lasted
            while at < min(over, self.end):
                if at > self.start:
                    schedule.add((at, slug))
                at += REPORT_EVERY_INCIDENT
            if self.start < over < self.end:
                schedule.add((over, slug))
        return sorted(schedule)[-(self.n // 2) :] if self.n > 1 else []

    def login_burst(self, ts, size: int) -> list[dict]:
        """Password spraying: failed logins for names that mostly do not
        exist, a third of a second apart."""
        rng, events = self.rng, []
        for i in range(size):
            if rng.random() < 0.2 and self.world.pool("active"):
                user, error = self.world.pool("active").choice(rng), "too many attempts"
            else:
                user, error = f"{rng.choice(FIRST_NAMES)}{rng.randint(1, 99)}_x", "no such user"
            events.append(
                self.ev(
                    ts + timedelta(milliseconds=333 * i),
                    "user_login",
                    user,
                    user,
                    "user",
                    success=False,
                    error=error,
                    payload={"method": "password"},
                )
            )
        return events

    def rhythm(self) -> tuple[list[float], float]:
        """The cumulative weight of activity at the end of each hour of the
        history (weekly and daily rhythm, growth), and the total."""
        span = (self.end - self.start) / timedelta(hours=1)
        hours = math.ceil(span)
        cumulative, total = [], 0.0
        for h in range(hours):
            local = self.start + timedelta(hours=h) + LOCAL_OFFSET
            weight = HOURS[local.hour] * (WEEKEND if local.weekday() >= 5 else 1.0)
            weight *= ACTIVITY_AT_START + (1 - ACTIVITY_AT_START) * h / hours
            weight *= min(1.0, span - h)  # the last hour may be cut short
            total += weight
            cumulative.append(total)
        return cumulative, total

    def time_at(self, share: float) -> datetime:
        """The moment by which `share` of the activity has happened."""
        target = share * self.total_weight
        h = bisect.bisect_left(self.cumulative, target)
        if h >= len(self.cumulative):
            return self.end
        before = self.cumulative[h - 1] if h else 0.0
        within = (target - before) / (self.cumulative[h] - before)
        return min(self.end, self.start + timedelta(hours=h + within))

    ACTIONS = (
        ("login", 40),
        ("user_signup", 3),
        ("user_lifecycle", 3),
        ("create_group", 3),
        ("membership", 9),
        ("experiment", 14),
        ("resources", 18),
        ("delete_group", 1),
        ("group_lifecycle", 0.1),
    )

    def __iter__(self) -> Iterator[dict]:
        names, weights = zip(*self.ACTIONS, strict=True)
        rng = self.rng
        reports = deque(self.report_schedule())
        activity = self.n - len(reports)

        def due_until(ts: datetime) -> Iterator[tuple[dict, bool]]:
            """(event, whether it is activity) for each report and review due
            by ts, oldest first. Reports have their own share of the events."""
            while True:
                report_at = reports[0][0] if reports else None
                review_at = self.due[0][0] if self.due else None
                review_first = review_at is not None and review_at <= ts
                if review_first and (report_at is None or review_at < report_at):
                    _, _, method, args = heapq.heappop(self.due)
                    for event in getattr(self, method)(review_at, *args):
                        yield event, True
                    continue
                if report_at is None or report_at > ts:
                    return
                for event in self.facility_report(*reports.popleft()):
                    yield event, False

        for share, per_thousand in LOGIN_BURSTS:
            size = max(LOGIN_BURST_LEAST, int(per_thousand * self.n / 1000))
            if size < activity // 10:
                self.schedule(self.start + share * (self.end - self.start), "login_burst", size)
        # The first users come first, so the cards have something to show
        # even for small n.
        produced = 0
        for _ in range(min(10, activity)):
            ts = self.time_at((produced + 0.5) / activity)
            yield from (event for event, _ in due_until(ts))
            for event in self.user_signup(ts) + self.user_lifecycle(ts):
                if produced < activity:
                    produced += 1
                    yield event
        while produced < activity:
            self.progress = produced / activity
            ts = self.time_at((produced + rng.random()) / activity)
            for event, counted in due_until(ts):
                if counted and produced >= activity:
                    continue
                produced += counted
                yield event
            if produced >= activity:
                break
            action = rng.choices(names, weights)[0]
            for event in getattr(self, action)(ts):
                if produced >= activity:
                    break
                produced += 1
                yield event
        # Reviews still due after the last activity stay pending.
        yield from (event for event, counted in due_until(self.end) if not counted)


def generate(n: int, days: int = 365, seed: int = 1, end: datetime | None = None) -> Iterator[dict]:
    from django.utils import timezone

    return iter(Generator(n, days, seed, (end or timezone.now()).replace(microsecond=0)))
