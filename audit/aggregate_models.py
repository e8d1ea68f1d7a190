"""The monthly, daily and hourly count pre-aggregates besides event_counts_hourly
(audit.models.HourlyCount), org_memberships, org_membership_events and
facility_allocations: each is declared in audit/aggregates.py and kept by the
triggers on `events`; audit.models re-exports them."""

from django.db import models


class DailyCount(models.Model):
    """Pre-aggregate: events per UTC day, type and outcome, for exact counts
    over months and years (24 times fewer rows than the hourly counts)."""

    pk = models.CompositePrimaryKey("day", "event_type", "success")
    day = models.DateTimeField()  # UTC midnight
    event_type = models.TextField()
    success = models.BooleanField()
    n = models.BigIntegerField()

    class Meta:
        db_table = "event_counts_daily"

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.event_type} {self.success}: {self.n}"


class HourlyLoginUser(models.Model):
    """Pre-aggregate: successful logins per UTC hour and user, for the active
    users: some 20 times fewer rows than the logins, and they regroup into
    the local days of any zone. The logins before the hour's 15th, 30th and
    45th minute tell which side of a local midnight that cuts the hour
    (Asia/Kolkata, Asia/Kathmandu) each user logged in on."""

    pk = models.CompositePrimaryKey("hour", "username")
    hour = models.DateTimeField()  # UTC, on the hour
    username = models.TextField()
    n = models.BigIntegerField()
    n15 = models.BigIntegerField(db_default=0)
    n30 = models.BigIntegerField(db_default=0)
    n45 = models.BigIntegerField(db_default=0)

    class Meta:
        db_table = "login_users_hourly"

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.username}: {self.n}"


class DailyLoginUser(models.Model):
    """Pre-aggregate: successful logins per UTC day and user (the users who
    logged in over the whole days of a window), and the first and last
    quarter hour of the day in which the user logged in (the users of a
    local day that begins or ends inside the UTC day)."""

    pk = models.CompositePrimaryKey("day", "username")
    day = models.DateTimeField()  # UTC midnight
    username = models.TextField()
    n = models.BigIntegerField()
    first_quarter = models.SmallIntegerField()  # 0 (00:00-00:15 UTC) to 95
    last_quarter = models.SmallIntegerField()

    class Meta:
        db_table = "login_users_daily"
        indexes = [
            # A UTC day's users with their first and last quarter, from the
            # index alone: the active users of a local day cut inside two
            # UTC days (dashboards/stats/active_users.py BY_QUARTERS) read
            # some 175 rows of each of a year's 364 days, where the primary
            # key would fetch each row's quarters from the heap (at 10M
            # events, a year in Asia/Kolkata: 87-88 ms, 78-79 with it).
            models.Index(
                fields=["day", "username"],
                include=["first_quarter", "last_quarter"],
                name="idx_login_users_day_quarters",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.username}: {self.n}"


class WeeklyLoginUser(models.Model):
    """Pre-aggregate: successful logins per UTC week (from Monday) and user,
    with the first and last of them: the weekly active users of a window's
    whole weeks, without deduplicating a week's daily rows. A local week
    that spans two UTC weeks (Asia/Kolkata's begins on Sunday at 18:30 UTC)
    takes from the first the users whose last login came at or after its
    start, from the second those whose first came before its end."""

    pk = models.CompositePrimaryKey("week", "username")
    week = models.DateTimeField()  # UTC midnight of the week's Monday
    username = models.TextField()
    n = models.BigIntegerField()
    first_login = models.DateTimeField()
    last_login = models.DateTimeField()

    class Meta:
        db_table = "login_users_weekly"

    def __str__(self) -> str:
        return f"{self.week:%Y-%m-%d} {self.username}: {self.n}"


class MonthlyLoginUser(models.Model):
    """Pre-aggregate: successful logins per UTC month and user, with the
    first and last of them (the users who logged in over the whole months
    of a window, read as WeeklyLoginUser's weeks are)."""

    pk = models.CompositePrimaryKey("month", "username")
    month = models.DateTimeField()  # UTC midnight of the month's first day
    username = models.TextField()
    n = models.BigIntegerField()
    first_login = models.DateTimeField()
    last_login = models.DateTimeField()

    class Meta:
        db_table = "login_users_monthly"

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.username}: {self.n}"


class DailyCallerCount(models.Model):
    """Pre-aggregate: events per UTC day and caller, with the logins and the
    failures among them (the most active users). A window reads its whole
    UTC days here and its partial days from `events`: exact in any zone."""

    pk = models.CompositePrimaryKey("day", "caller")
    day = models.DateTimeField()  # UTC midnight
    caller = models.TextField()
    events = models.BigIntegerField()
    logins = models.BigIntegerField()  # user_login, either outcome
    failures = models.BigIntegerField()  # success = false, any type
    # The day's events before 03:00, 06:00, ... 21:00 UTC (a user's heatmap
    # outside UTC). A default in the database: rows the triggers of an older
    # release write during `migrate` get one, and the rebuild after corrects it.
    before_03 = models.IntegerField(db_default=0)
    before_06 = models.IntegerField(db_default=0)
    before_09 = models.IntegerField(db_default=0)
    before_12 = models.IntegerField(db_default=0)
    before_15 = models.IntegerField(db_default=0)
    before_18 = models.IntegerField(db_default=0)
    before_21 = models.IntegerField(db_default=0)

    class Meta:
        db_table = "event_counts_daily_caller"

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.caller}: {self.events}"


class DailyCallerTypeCount(models.Model):
    """Pre-aggregate: events per UTC day, caller, type and outcome (a user's
    events by type, on their page). Keyed by the caller first: a window is
    one range of the key, its whole UTC days here, its partial days from
    `events`."""

    pk = models.CompositePrimaryKey("caller", "day", "event_type", "success")
    caller = models.TextField()
    day = models.DateTimeField()  # UTC midnight
    event_type = models.TextField()
    success = models.BooleanField()
    n = models.BigIntegerField()

    class Meta:
        db_table = "event_counts_daily_caller_type"

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.caller} {self.event_type}: {self.n}"


class DailyProjectCount(models.Model):
    """Pre-aggregate: per UTC day and project (audit/aggregates.py
    PROJECT_OF_EVENT), its events and the experiments, realizations and
    materializations created (the most active projects)."""

    pk = models.CompositePrimaryKey("day", "project")
    day = models.DateTimeField()  # UTC midnight
    project = models.TextField()
    events = models.BigIntegerField()
    experiments = models.BigIntegerField()
    realizations = models.BigIntegerField()
    materializations = models.BigIntegerField()

    class Meta:
        db_table = "event_counts_daily_project"
        indexes = [
            # One project's days: the most active projects' exact counts
            # (dashboards/stats/top.py bounded_top).
            models.Index(fields=["project", "day"], name="idx_daily_project_project"),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.project}: {self.events}"


class DailyFacilityCount(models.Model):
    """Pre-aggregate: realization and materialization allocations per UTC
    day and facility (the event's target), succeeded and failed (the
    facilities by allocations)."""

    pk = models.CompositePrimaryKey("day", "facility")
    day = models.DateTimeField()  # UTC midnight
    facility = models.TextField()
    allocations = models.BigIntegerField()  # either outcome
    realizations = models.BigIntegerField()  # realization_allocated, succeeded
    materializations = models.BigIntegerField()  # materialization_allocated, succeeded
    failed = models.BigIntegerField()

    class Meta:
        db_table = "allocation_counts_daily"

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.facility}: {self.allocations}"


class DailyErrorCount(models.Model):
    """Pre-aggregate: failed events per UTC day, event type and error
    message ('' for none): the most frequent errors."""

    pk = models.CompositePrimaryKey("day", "event_type", "error_message")
    day = models.DateTimeField()  # UTC midnight
    event_type = models.TextField()
    error_message = models.TextField()
    n = models.BigIntegerField()

    class Meta:
        db_table = "failure_counts_daily"

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.event_type} {self.error_message[:40]}: {self.n}"


class DailyFailedLogin(models.Model):
    """Pre-aggregate: failed logins per UTC day and username (the failed
    logins by user)."""

    pk = models.CompositePrimaryKey("day", "username")
    day = models.DateTimeField()  # UTC midnight
    username = models.TextField()
    n = models.BigIntegerField()

    class Meta:
        db_table = "failed_logins_daily"
        indexes = [
            # One user's days: the last day a ranked user failed in a window
            # (dashboards/stats/failures.py failed_logins).
            models.Index(fields=["username", "day"], name="idx_failed_logins_user"),
        ]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.username}: {self.n}"


class MonthlyFailedLogin(models.Model):
    """Pre-aggregate: DailyFailedLogin per UTC month. A year's failed logins
    by user read its whole months here (audit.buckets.month_plan)."""

    pk = models.CompositePrimaryKey("month", "username")
    month = models.DateTimeField()  # UTC midnight of the month's first day
    username = models.TextField()
    n = models.BigIntegerField()

    class Meta:
        db_table = "failed_logins_monthly"

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.username}: {self.n}"


class MonthlyCallerCount(models.Model):
    """Pre-aggregate: DailyCallerCount per UTC month. A year is read as its
    whole months here, the whole days around them from the daily table and
    the partial days from `events` (audit.buckets.month_plan)."""

    pk = models.CompositePrimaryKey("month", "caller")
    month = models.DateTimeField()  # UTC midnight of the month's first day
    caller = models.TextField()
    events = models.BigIntegerField()
    logins = models.BigIntegerField()  # user_login, either outcome
    failures = models.BigIntegerField()  # success = false, any type

    class Meta:
        db_table = "event_counts_monthly_caller"
        indexes = [
            # Each month's busiest callers first: the candidates of the most
            # active users (dashboards/stats/top.py bounded_top).
            models.Index(fields=["month", "-events", "caller"], name="idx_monthly_caller_rank"),
            # One caller's months: the candidates' exact counts.
            models.Index(fields=["caller", "month"], name="idx_monthly_caller_caller"),
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.caller}: {self.events}"


class MonthlyProjectCount(models.Model):
    """Pre-aggregate: DailyProjectCount per UTC month (the most active
    projects of a year or of all time)."""

    pk = models.CompositePrimaryKey("month", "project")
    month = models.DateTimeField()  # UTC midnight of the month's first day
    project = models.TextField()
    events = models.BigIntegerField()
    experiments = models.BigIntegerField()
    realizations = models.BigIntegerField()
    materializations = models.BigIntegerField()

    class Meta:
        db_table = "event_counts_monthly_project"
        indexes = [
            # One project's months: the first projects' other measures.
            models.Index(fields=["project", "month"], name="idx_monthly_project_project"),
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.project}: {self.events}"


class FacilityAllocation(models.Model):
    """Pre-aggregate: the newest successful allocation or free of each
    realization and materialization at each facility (the event's target),
    by (timestamp, free first, event_uuid), and whether it freed it: the
    allocations in use are the rows not freed (aggregates.ALLOCATIONS)."""

    pk = models.CompositePrimaryKey("facility", "kind", "name")
    facility = models.TextField()  # the event's target, a facility's slug
    kind = models.TextField()  # realization, materialization
    name = models.TextField()  # the event's subject
    last_at = models.DateTimeField()
    last_uuid = models.UUIDField()
    freed = models.BooleanField()

    class Meta:
        db_table = "facility_allocations"
        indexes = [
            # The allocations in use at a facility (facilities/models.py).
            models.Index(
                fields=["facility", "kind"],
                name="idx_allocations_in_use",
                condition=models.Q(freed=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.facility} {self.kind} {self.name}{' (freed)' if self.freed else ''}"


class OrgMembershipEvent(models.Model):
    """Pre-aggregate: each successful membership event of an organization,
    with its (organization, payload.kind, member) key and whether it removed
    the member, read from its key index alone: an organization's members at
    a time before a later change (organizations by members over a window
    that ends in the past, dashboards/stats/org_members.py), where `events` would
    give each membership event's row from the heap (aggregates.MEMBERSHIP_EVENTS)."""

    event_uuid = models.UUIDField(primary_key=True)
    at = models.DateTimeField()  # the event's timestamp
    org = models.TextField()
    kind = models.TextField(null=True)  # usermember, projectmember
    member = models.TextField(null=True)  # the event's target
    n = models.BigIntegerField()  # 1: the count a delete takes back to 0
    removals = models.BigIntegerField()  # 1 when the event removed the member

    class Meta:
        db_table = "org_membership_events"
        constraints = [
            # The triggers' ON CONFLICT target (a NULL is one key, as DISTINCT
            # ON takes it); an organization's membership events in the order
            # that finds each membership's latest before a time, index-only.
            models.UniqueConstraint(
                fields=["org", "kind", "member", "at", "event_uuid"],
                include=["removals"],
                name="org_membership_events_key",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        removed = " (removed)" if self.removals else ""
        return f"{self.at:%Y-%m-%d %H:%M} {self.org} {self.kind} {self.member}{removed}"


class OrgMembership(models.Model):
    """Pre-aggregate: the newest successful membership event, by (timestamp,
    event_uuid), of each (organization, payload.kind, member), and whether it
    removed the member: organizations by members (aggregates.MEMBERSHIPS)."""

    org = models.TextField()
    kind = models.TextField(null=True)  # usermember, projectmember
    member = models.TextField(null=True)  # the event's target
    last_at = models.DateTimeField()
    last_uuid = models.UUIDField()
    removed = models.BooleanField()  # the latest event is org_member_deleted

    class Meta:
        db_table = "org_memberships"
        constraints = [
            # The triggers' ON CONFLICT target (a NULL is one key, as DISTINCT
            # ON takes it), and one organization's members.
            models.UniqueConstraint(
                fields=["org", "kind", "member"],
                name="org_memberships_key",
                nulls_distinct=False,
            ),
        ]
        indexes = [
            # One organization's memberships since its latest creation, read
            # from the index alone: organizations by members
            # (dashboards/stats/top.py), 1,025 orgs' 38,700 of 246,000 at 10M.
            models.Index(
                fields=["org", "last_at"],
                include=["kind", "removed"],
                name="idx_memberships_org_since",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.org} {self.kind} {self.member}{' (removed)' if self.removed else ''}"
