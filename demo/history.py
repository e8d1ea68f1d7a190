"""A realistic, internally consistent portal history for demos and benchmarks.

`generate(n, days, seed)` yields n event dicts in time order, shaped exactly
like what the portal POSTs, so seed_demo can send them through the same
validation as ingest. The same arguments (and end) give the same history.

The simulation keeps state (demo.world), so nothing is deleted before it
exists, members exist when added, and realizations are freed at most once.
What people do is in demo.people, what happens on the facilities in
demo.testbed, and the facilities' script (capacity, incidents) in
demo.sites. Facility controllers report as real ones do: a status change at
once, a heartbeat while nothing changes (hours apart: about HEARTBEAT_SHARE
of the events, at least one a day), and every REPORT_EVERY_INCIDENT while a
facility is not up, so each incident is one unbroken run on the map, its
uptime bar and the charts' bands. Each report names when the next will come
(payload.interval), so the map knows the status between heartbeats;
demo_reporter keeps the map fresh from the end of the history on.

The portal's activity follows a US testbed's week (quiet nights and
weekends), grows over the history, and has a few incidents: facility
outages and maintenance and password-spraying bursts of failed logins
(LOGIN_BURSTS). The log begins on a running portal: a base of users,
organizations and projects exists before it (LEGACY_SHARE), first appears in
a login, a membership or an experiment in the log's first weeks
(demo.world.LEGACY_PICK), never created; the rest arrive as the history goes
on.
"""

import bisect
import heapq
import math
import random
import uuid
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timedelta

from demo.people import People
from demo.sites import FACILITIES, FACILITY_NODES, HEARTBEAT_LONGEST
from demo.testbed import Testbed
from demo.world import FIRST_NAMES, ORG_WORDS, TOPICS, Pool, World

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
# The share of each population's cap that exists before the log begins, and
# the fewest there are (LEGACY_LEAST).
LEGACY_SHARE = {"user": 0.3, "organization": 0.35, "project": 0.25}
LEGACY_LEAST = {"user": 3, "organization": 2, "project": 2}


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


class Generator(People, Testbed):
    """The history as an iterator of events; its actions are People's and
    Testbed's methods, picked by weight (ACTIONS)."""

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
    """n events over the `days` before `end` (now, to the second, by default)."""
    from django.utils import timezone

    return iter(Generator(n, days, seed, (end or timezone.now()).replace(microsecond=0)))
