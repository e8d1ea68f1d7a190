"""What the people of the demo history do: sign up, log in, are reviewed,
frozen and deleted; create organizations and projects, which the operators
review (REVIEW), and join and leave them.

People is one half of demo.history.Generator (demo.testbed is the other):
its methods use the generator's world, random source, clock and scheduler.
Each action returns a list of events, possibly empty.
"""

from datetime import timedelta

from demo.world import (
    CATEGORIES,
    FIRST_NAMES,
    LEGACY_PICK,
    ORG_WORDS,
    TOPICS,
    Either,
)

LOGIN_ERRORS = ("invalid credentials", "account frozen", "too many attempts", "no such user")
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
GROUP_PREFIX = {"organization": "org", "project": "project"}


class People:
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
                name = self.new_name(TOPICS, Either(w.projects, w.deleted_projects))
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
        """A member of an organization or project adds, changes or removes
        another, or adds a project to an organization."""
        w, rng = self.world, self.rng
        use_org = bool(w.org_pool) and rng.random() < 0.35
        groups, pool = (w.orgs, w.org_pool) if use_org else (w.projects, w.project_pool)
        if not pool:
            return self.create_group(ts)
        kind = "organization" if use_org else "project"
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
        if others and roll < 0.3:
            return self.change_member(ts, kind, name, caller, others, removed=roll < 0.15)
        if use_org and w.project_pool and roll < 0.4:
            return self.add_project_to_org(ts, name, caller)
        if not w.pool("active"):
            return self.user_signup(ts)
        return self.add_member(ts, kind, name, caller)

    def change_member(
        self, ts, kind: str, name: str, caller: str, others: list[str], *, removed: bool
    ) -> list[dict]:
        """One of a group's members (not its creator) is removed, or swaps
        between member and maintainer."""
        w, rng = self.world, self.rng
        groups, prefix = w.groups_of(kind), GROUP_PREFIX[kind]
        member = rng.choice(others)
        if removed:
            w.leave(member, groups, name)
            verb, payload = "deleted", {"kind": "usermember"}
        else:
            role = "maintainer" if groups[name][member] == "member" else "member"
            groups[name][member] = role
            verb, payload = "updated", {"kind": "usermember", "role": role, "state": "active"}
        return [
            self.ev(
                ts,
                f"{prefix}_member_{verb}",
                caller,
                name,
                kind,
                target=member,
                payload=payload,
            )
        ]

    def add_project_to_org(self, ts, org: str, caller: str) -> list[dict]:
        w = self.world
        project = w.project_pool.choice(self.rng)
        key = f"project:{project}"
        if key in w.orgs[org]:
            return []
        w.join(key, w.orgs, org, "member")
        w.unseen.discard(("organization", org))
        return [
            self.ev(
                ts,
                "org_member_added",
                caller,
                org,
                "organization",
                target=project,
                payload={"kind": "projectmember", "role": "member", "state": "active"},
            )
        ]

    def add_member(self, ts, kind: str, name: str, caller: str) -> list[dict]:
        """An active user (often one the log has not named yet) joins."""
        w, rng = self.world, self.rng
        groups = w.groups_of(kind)
        legacy = w.unseen.pick("user", rng) if rng.random() < LEGACY_PICK else None
        member = legacy or w.pool("active").choice(rng)
        if member in groups[name]:
            return []
        w.join(member, groups, name, "member")
        w.unseen.discard((kind, name))
        return [
            self.ev(
                ts,
                f"{GROUP_PREFIX[kind]}_member_added",
                caller,
                name,
                kind,
                target=member,
                payload={"kind": "usermember", "role": "member", "state": "active"},
            )
        ]

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
