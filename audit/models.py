import uuid

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Lower

from audit.catalog import LIFECYCLE_TYPES, MEMBER_TYPES
from sphere_stats.windows import utc_ceil, utc_floor

MEMBERSHIP_TYPES = tuple(t for types in MEMBER_TYPES.values() for t in types)


class ILike(models.Func):
    """`expression ILIKE pattern`. Django's icontains is UPPER(x) LIKE UPPER(p)
    on PostgreSQL, which a pg_trgm index on the column cannot serve; ILIKE it can."""

    arg_joiner = " ILIKE "
    template = "(%(expressions)s)"
    output_field = models.BooleanField()


def like_pattern(text: str) -> str:
    """`%text%` with LIKE's wildcards (and its escape character) taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class EventQuerySet(models.QuerySet):
    def in_window(self, start=None, end=None) -> "EventQuerySet":
        """Events with start <= timestamp < end; either bound may be None."""
        qs = self
        if start is not None:
            qs = qs.filter(timestamp__gte=start)
        if end is not None:
            qs = qs.filter(timestamp__lt=end)
        return qs

    def about(self, subject_type: str, subject: str) -> "EventQuerySet":
        """Events whose subject is this entity (uses idx_events_subject_ts)."""
        return self.filter(subject_type=subject_type, subject=subject)

    def involving(self, kind: str, name: str, project: str = "") -> "EventQuerySet":
        """Events involving one entity: its page's timeline, heatmap, counts and downloads.

        user: about them, by them (caller), or changing their memberships
        (target of an organization's or project's member event);
        organization: about it; project: about it, its experiments and
        resources (payload.project, idx_events_project_ts), or its org
        memberships (payload.kind projectmember); experiment: of `project`
        (payload.project, since experiment names repeat across projects), and
        about it or its realizations (payload.experiment).
        ValueError for any other kind.
        """
        if kind == "user":
            return self.filter(
                models.Q(subject_type="user", subject=name)
                | models.Q(caller=name)
                | models.Q(target=name, subject_type__in=("organization", "project"))
            )
        if kind == "organization":
            return self.filter(subject_type="organization", subject=name)
        # alias, not annotate: the key is a condition, never a column a caller
        # (an export's SELECT) should receive.
        qs = self.alias(project_of=KeyTextTransform("project", "payload"))
        if kind == "project":
            return qs.filter(
                models.Q(subject_type="project", subject=name)
                | models.Q(project_of=name)
                | models.Q(subject_type="organization", target=name, payload__kind="projectmember")
            )
        if kind == "experiment":
            return qs.alias(experiment_of=KeyTextTransform("experiment", "payload")).filter(
                models.Q(project_of=project),
                models.Q(subject_type="experiment", subject=name) | models.Q(experiment_of=name),
            )
        raise ValueError(f"unknown entity kind {kind!r}")

    def mentioning(self, kind: str, scope: str, name: str) -> "EventQuerySet":
        """Events that mention one entity as the entity fold reads them
        (audit/aggregates.py _MENTIONS): as the subject (an experiment within
        its project), as a member added, changed or removed, or as the
        project of an experiment or resource. Success is not checked here."""
        about = models.Q(subject_type=kind, subject=name)
        member = models.Q(target=name, event_type__in=MEMBERSHIP_TYPES)
        if kind == "experiment":
            return self.filter(about & models.Q(payload__project=scope))
        if kind == "user":
            return self.filter(about | (member & models.Q(payload__kind="usermember")))
        if kind == "project":
            return self.filter(
                about
                | (member & models.Q(payload__kind="projectmember"))
                | models.Q(payload__project=name)
            )
        return self.filter(about)

    def newest_first(self) -> "EventQuerySet":
        # Matches idx_events_ts_uuid, so keyset pages are index scans.
        return self.order_by("-timestamp", "-event_uuid")

    def before(self, timestamp, event_uuid) -> "EventQuerySet":
        """Keyset page: rows strictly older than (timestamp, event_uuid).

        The redundant `timestamp <= ts` is what the planner can use as an
        index condition (on every index with a timestamp column); the OR
        alone is only a filter, which made deep pages cost like OFFSET.
        """
        return self.filter(timestamp__lte=timestamp).filter(
            models.Q(timestamp__lt=timestamp)
            | models.Q(timestamp=timestamp, event_uuid__lt=event_uuid)
        )

    def after(self, timestamp, event_uuid) -> "EventQuerySet":
        """Keyset page: rows strictly newer than (timestamp, event_uuid).

        `timestamp >= ts` is the index condition, as in before().
        """
        return self.filter(timestamp__gte=timestamp).filter(
            models.Q(timestamp__gt=timestamp)
            | models.Q(timestamp=timestamp, event_uuid__gt=event_uuid)
        )

    def oldest_first(self) -> "EventQuerySet":
        # The same index scanned backwards: the explorer's "newer" pages.
        return self.order_by("timestamp", "event_uuid")

    def payload_matches(self, documents: list[dict]) -> "EventQuerySet":
        """Events whose payload contains any of `documents` (JSONB @>)."""
        condition = models.Q()
        for document in documents:
            condition |= models.Q(payload__contains=document)
        return self.filter(condition)

    def error_contains(self, text: str) -> "EventQuerySet":
        """Events whose error message contains `text`, ignoring case.

        `error_message ILIKE '%text%'`, which idx_events_error_trgm (pg_trgm,
        migration 0006) serves for a rare substring of three or more
        characters; a frequent one reads newest-first until a page is full.
        Where pg_trgm is missing the index is too, and a rare substring scans
        (with success=False, only idx_events_failures_ts).
        """
        return self.filter(ILike(models.F("error_message"), models.Value(like_pattern(text))))

    def estimated_count(self) -> int:
        """The planner's row estimate for this query: EXPLAIN, not COUNT(*)."""
        from sphere_stats.db import read_connection

        sql, params = self.order_by().query.sql_with_params()
        with read_connection().cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            import json

            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])


class Event(models.Model):
    """One audit event. The table is the SPHERE request's DDL, column for column.

    Rows are immutable: nothing in this project updates an event.
    """

    event_uuid = models.UUIDField(primary_key=True, default=uuid.uuid4)
    timestamp = models.DateTimeField()
    event_type = models.TextField()
    caller = models.TextField()
    subject = models.TextField()
    subject_type = models.TextField()
    target = models.TextField(null=True, blank=True)
    success = models.BooleanField()
    error_message = models.TextField(null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True)

    objects = EventQuerySet.as_manager()

    COLUMNS = (
        "event_uuid",
        "timestamp",
        "event_type",
        "caller",
        "subject",
        "subject_type",
        "target",
        "success",
        "error_message",
        "payload",
    )

    class Meta:
        db_table = "events"
        ordering = ["-timestamp", "-event_uuid"]
        indexes = [
            # The five indexes of the SPHERE request's DDL, under its names.
            models.Index(fields=["-timestamp"], name="idx_events_timestamp"),
            models.Index(fields=["event_type"], name="idx_events_event_type"),
            models.Index(fields=["caller"], name="idx_events_caller"),
            models.Index(fields=["subject_type", "subject"], name="idx_events_subject"),
            models.Index(fields=["target"], name="idx_events_target"),
            # Keyset pagination, newest first: the read API, the explorer and
            # exports (ORDER BY timestamp DESC, event_uuid DESC).
            models.Index(fields=["-timestamp", "-event_uuid"], name="idx_events_ts_uuid"),
            # One type over a time range, newest first: logins per bucket from
            # the raw table, the explorer filtered by type.
            models.Index(fields=["event_type", "-timestamp"], name="idx_events_type_ts"),
            # One caller's events, newest first: the explorer's caller filter
            # and its deeper pages. idx_events_caller (the seed's) finds the
            # rows but not in time order, so a busy caller's first page
            # sorted all of them or scanned the whole timeline for them. It
            # carries the type and outcome so that a user's events per type
            # (their page) are an index-only scan (audit 0012).
            models.Index(
                fields=["caller", "-timestamp", "-event_uuid"],
                include=["event_type", "success"],
                name="idx_events_caller_ts",
            ),
            # An entity's timeline (its subject events, newest first) and the
            # reconstruction of its current state and members.
            models.Index(
                fields=["subject_type", "subject", "-timestamp"], name="idx_events_subject_ts"
            ),
            # A project's or experiment's timeline and the top projects
            # (payload.project over a time range); see dashboards/queries.py.
            models.Index(
                KeyTextTransform("project", "payload"),
                models.F("timestamp").desc(),
                name="idx_events_project_ts",
            ),
            # Failures over a time range: the most frequent error messages and
            # failed logins by user (a few percent of all events).
            models.Index(
                fields=["-timestamp"],
                name="idx_events_failures_ts",
                condition=models.Q(success=False),
            ),
            # The explorer's payload key=value filter (payload @> '{"k": "v"}',
            # EventQuerySet.payload_matches) for rare values, which would
            # otherwise scan the timestamp index to the end. jsonb_path_ops
            # serves only @>, at about a fifth of the table's size; measured
            # in bench/export.py, it adds no visible cost to ingest.
            GinIndex(
                fields=["payload"], opclasses=["jsonb_path_ops"], name="idx_events_payload_gin"
            ),
            # Successful logins over a time range with the username in the
            # index: distinct users who logged in and daily/weekly/monthly
            # active users are index-only scans (dashboards/queries.py).
            models.Index(
                fields=["timestamp"],
                include=["subject"],
                name="idx_events_logins_ts",
                condition=models.Q(event_type="user_login", success=True),
            ),
            # The lifecycle events of a few entities, read by
            # the entity fold (audit/aggregates.py) in the triggers: small (about
            # one event in ten), so a user with 100k logins costs nothing.
            models.Index(
                fields=["subject_type", "subject", "timestamp"],
                name="idx_events_lifecycle",
                condition=models.Q(success=True, event_type__in=LIFECYCLE_TYPES),
            ),
            # The earliest membership event of a member (a user or a project
            # as the target): when an entity that predates the log was first
            # seen, read by the entity fold (audit/aggregates.py) for each
            # entity a statement touches. idx_events_target alone made the
            # planner AND it with the type index, 0.5 ms an entity.
            models.Index(
                fields=["target", "timestamp"],
                name="idx_events_member_target",
                condition=models.Q(success=True, event_type__in=MEMBERSHIP_TYPES),
            ),
            # Not declared here: idx_events_error_trgm (GIN, gin_trgm_ops on
            # error_message WHERE error_message IS NOT NULL) serves
            # EventQuerySet.error_contains, the explorer's and API's
            # error_contains filter. It needs the pg_trgm extension, which not
            # every server has (the embedded one lacks it), so migration 0006
            # creates it only where pg_trgm is available.
        ]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.event_type} {self.subject}"

    def as_dict(self) -> dict:
        return {
            "event_uuid": str(self.event_uuid),
            "timestamp": self.timestamp.isoformat(),
            "event_type": self.event_type,
            "caller": self.caller,
            "subject": self.subject,
            "subject_type": self.subject_type,
            "target": self.target,
            "success": self.success,
            "error_message": self.error_message,
            "payload": self.payload,
        }


class HourlyCountQuerySet(models.QuerySet):
    def exact_count(self, event_types, success, start=None, end=None) -> int:
        """Exact number of events of these types/outcome in [start, end)
        (None: unbounded).

        Whole UTC days come from event_counts_daily, the whole hours around
        them from this pre-aggregate, and the partial hours at either edge
        from `events` (at most two hours of rows, through idx_events_type_ts
        or idx_events_ts_uuid). A year is then ~365 rows per type instead of
        ~8,760, which is what keeps the explorer's exact count cheap.
        """

        def narrowed(qs):
            if event_types:
                qs = qs.filter(event_type__in=event_types)
            if success is not None:
                qs = qs.filter(success=success)
            return qs

        def raw(lo, hi) -> int:
            return narrowed(Event.objects.in_window(lo, hi)).count()

        def summed(qs, column: str, lo, hi) -> int:
            qs = narrowed(qs)
            if lo is not None:
                qs = qs.filter(**{f"{column}__gte": lo})
            if hi is not None:
                qs = qs.filter(**{f"{column}__lt": hi})
            return qs.aggregate(n=models.Sum("n"))["n"] or 0

        hour_lo = utc_ceil(start, "hour") if start is not None else None
        hour_hi = utc_floor(end, "hour") if end is not None else None
        if hour_lo is not None and hour_hi is not None and hour_lo >= hour_hi:
            return raw(start, end)
        total = 0
        if start is not None and hour_lo != start:
            total += raw(start, hour_lo)
        if end is not None and hour_hi != end:
            total += raw(hour_hi, end)
        day_lo = utc_ceil(hour_lo, "day") if hour_lo is not None else None
        day_hi = utc_floor(hour_hi, "day") if hour_hi is not None else None
        if day_lo is not None and day_hi is not None and day_lo >= day_hi:
            return total + summed(self, "bucket", hour_lo, hour_hi)
        if hour_lo is not None and day_lo != hour_lo:
            total += summed(self, "bucket", hour_lo, day_lo)
        if hour_hi is not None and day_hi != hour_hi:
            total += summed(self, "bucket", day_hi, hour_hi)
        return total + summed(DailyCount.objects.all(), "day", day_lo, day_hi)


class HourlyCount(models.Model):
    """Pre-aggregate: events per UTC hour, type and outcome.

    Maintained by the triggers on `events` in the transaction of every
    insert and delete, whoever makes it, so it is exact and as fresh as the table. Hourly buckets
    regroup into days, weeks and months in any time zone whose offset is a
    whole number of hours; other zones are answered from the raw table.
    """

    pk = models.CompositePrimaryKey("bucket", "event_type", "success")
    bucket = models.DateTimeField()
    event_type = models.TextField()
    success = models.BooleanField()
    n = models.BigIntegerField()

    objects = HourlyCountQuerySet.as_manager()

    class Meta:
        db_table = "event_counts_hourly"
        indexes = [
            # Per-type series (logins over 90 days) without scanning other types.
            models.Index(fields=["event_type", "bucket"], name="idx_counts_hourly_type"),
        ]

    def __str__(self) -> str:
        return f"{self.bucket:%Y-%m-%d %H}h {self.event_type} {self.success}: {self.n}"


class DailyCount(models.Model):
    """Pre-aggregate: events per UTC day, type and outcome, the hourly
    counts rolled up about 24 times smaller for exact counts over months
    and years. Written by the same trigger statements as
    event_counts_hourly, so the two always agree.
    """

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
    """Pre-aggregate: successful logins per UTC hour and user (the subject
    of user_login), for the daily, weekly and monthly active users.

    A month of logins is some 20 times more rows than distinct (hour, user)
    pairs, and those regroup into the local days of any zone: whole hours
    come from here, the hours a local midnight cuts (Asia/Kolkata) and the
    partial hours at a window's edges from `events`. Kept by the triggers
    on `events` like the hourly counts.
    """

    pk = models.CompositePrimaryKey("hour", "username")
    hour = models.DateTimeField()  # UTC, on the hour
    username = models.TextField()
    n = models.BigIntegerField()

    class Meta:
        db_table = "login_users_hourly"

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.username}: {self.n}"


# The project an event counts for in the top projects: the one its payload
# names (experiments, realizations, ...), else itself for a project's own
# events, else none (audit/aggregates.py COUNT_TABLES).
PROJECT_OF_EVENT = (
    "coalesce(payload->>'project', CASE WHEN subject_type = 'project' THEN subject END)"
)


class DailyCallerCount(models.Model):
    """Pre-aggregate: events per UTC day and caller, with the logins and the
    failures among them (the most active users).

    Kept exact by the triggers on `events` (audit/aggregates.py; a re-sent
    event is not inserted, so it counts once; a late one lands in its own
    day; a deleted one is taken back). A window
    reads its whole UTC days here and its partial days at both edges from
    `events`, so the answer is exact for any window and zone.
    """

    pk = models.CompositePrimaryKey("day", "caller")
    day = models.DateTimeField()  # UTC midnight
    caller = models.TextField()
    events = models.BigIntegerField()
    logins = models.BigIntegerField()  # user_login, either outcome
    failures = models.BigIntegerField()  # success = false, any type

    class Meta:
        db_table = "event_counts_daily_caller"

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.caller}: {self.events}"


class DailyProjectCount(models.Model):
    """Pre-aggregate: per UTC day and project (PROJECT_OF_EVENT), its events
    and the experiments, realizations and materializations created
    successfully (the most active projects). Maintained like DailyCallerCount.
    """

    pk = models.CompositePrimaryKey("day", "project")
    day = models.DateTimeField()  # UTC midnight
    project = models.TextField()
    events = models.BigIntegerField()
    experiments = models.BigIntegerField()
    realizations = models.BigIntegerField()
    materializations = models.BigIntegerField()

    class Meta:
        db_table = "event_counts_daily_project"

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.project}: {self.events}"


ORG_MEMBER_TYPES = MEMBER_TYPES["organization"]


class OrgMembership(models.Model):
    """Pre-aggregate: the latest successful membership event of each
    (organization, payload.kind, member), the newest by (timestamp,
    event_uuid), and whether it removed the member (organizations by
    members).

    The triggers on `events` replace a row only with a newer event, so the
    order in which events arrive does not matter, and recompute the rows of
    deleted events (audit/aggregates.py MEMBERSHIPS).
    """

    org = models.TextField()
    kind = models.TextField(null=True)  # usermember, projectmember
    member = models.TextField(null=True)  # the event's target
    last_at = models.DateTimeField()
    last_uuid = models.UUIDField()
    removed = models.BooleanField()  # the latest event is org_member_deleted

    class Meta:
        db_table = "org_memberships"
        constraints = [
            # The triggers' ON CONFLICT target; a NULL kind or member
            # is one key, as DISTINCT ON over `events` takes it. Also the
            # members of one organization (org first).
            models.UniqueConstraint(
                fields=["org", "kind", "member"],
                name="org_memberships_key",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.org} {self.kind} {self.member}{' (removed)' if self.removed else ''}"


class EntityQuerySet(models.QuerySet):
    def current(self) -> "EntityQuerySet":
        """Entities that exist now (idx_entities_kind_state)."""
        return self.exclude(state=Entity.GONE)

    def matching(self, text: str) -> "EntityQuerySet":
        """Names starting with `text`, case-insensitively (idx_entities_name_prefix)."""
        return self.annotate(lower_name=Lower("name")).filter(lower_name__startswith=text.lower())


class Entity(models.Model):
    """Pre-aggregate: every user, organization, project, experiment,
    realization and materialization seen in a successful event, with its
    state now. Folded per entity from its events by the triggers on `events`
    (audit/aggregates.py ENTITY_FOLD), so it is exact whatever wrote the
    rows and in whatever order they arrived.
    """

    GONE = "gone"

    pk = models.CompositePrimaryKey("kind", "scope", "name")
    kind = models.TextField()
    # An experiment's project; a realization's or materialization's facility.
    scope = models.TextField(default="", blank=True)
    name = models.TextField()
    # pending, active or frozen (users, orgs, projects), exists
    # (experiments), active (realizations, materializations), or gone
    # (audit.catalog.ENTITY_KINDS).
    state = models.TextField()
    # The latest existence: when it began, who began it, when it ended.
    since = models.DateTimeField(null=True)
    until = models.DateTimeField(null=True)
    created_by = models.TextField(default="", blank=True)
    category = models.TextField(default="", blank=True)
    description = models.TextField(default="", blank=True)
    first_seen = models.DateTimeField()
    last_change = models.DateTimeField()
    # The newest lifecycle event folded in.
    last_event_at = models.DateTimeField(null=True)
    # No creation event: it was first seen in another event (a login, a
    # membership) or in an inventory, and may be older than first_seen.
    predates_log = models.BooleanField(default=False)

    objects = EntityQuerySet.as_manager()

    class Meta:
        db_table = "entities"
        indexes = [
            # Current counts by kind and state (the overview cards).
            models.Index(fields=["kind", "state"], name="idx_entities_kind_state"),
            # The navigation search's suggestions (name prefix, any case).
            models.Index(
                OpClass(Lower("name"), name="text_pattern_ops"),
                name="idx_entities_name_prefix",
            ),
        ]

    def __str__(self) -> str:
        scope = f"{self.scope}/" if self.scope else ""
        return f"{self.kind} {scope}{self.name}: {self.state}"


class EntityIntervalQuerySet(models.QuerySet):
    def alive_at(self, moment) -> "EntityIntervalQuerySet":
        """Intervals covering `moment`: valid_from <= moment < valid_to."""
        return self.filter(valid_from__lte=moment).filter(
            models.Q(valid_to__isnull=True) | models.Q(valid_to__gt=moment)
        )


class EntityInterval(models.Model):
    """Pre-aggregate: each stretch of time an entity spent in one state
    (valid_to is null for the current one). Counts at any moment and growth
    per bucket come from here; maintained with `Entity`."""

    kind = models.TextField()
    scope = models.TextField(default="", blank=True)
    name = models.TextField()
    state = models.TextField()
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True)

    objects = EntityIntervalQuerySet.as_manager()

    class Meta:
        db_table = "entity_intervals"
        indexes = [
            # Counts at a moment and the starts per bucket (growth charts).
            models.Index(fields=["kind", "valid_from"], name="idx_intervals_from"),
            # The ends per bucket (growth charts).
            models.Index(fields=["kind", "valid_to"], name="idx_intervals_to"),
            # Replacing one entity's intervals when its events change.
            models.Index(fields=["kind", "scope", "name"], name="idx_intervals_entity"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} {self.state} {self.valid_from}–{self.valid_to}"


class AggregateDefinition(models.Model):
    """The digest of each pre-aggregate's declaration (audit/aggregates.py)
    as last built: `migrate` rebuilds the ones whose declaration changed."""

    name = models.TextField(primary_key=True)
    digest = models.TextField()
    built_at = models.DateTimeField()

    class Meta:
        db_table = "aggregate_definitions"

    def __str__(self) -> str:
        return f"{self.name} {self.digest}"
