import json
import operator
import uuid
from functools import reduce

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Lower
from django.db.models.lookups import IsNull

from audit import buckets
from audit.aggregate_models import (  # noqa: F401 (models of this app, imported from here)
    DailyCallerCount,
    DailyCallerTypeCount,
    DailyCount,
    DailyErrorCount,
    DailyFacilityCount,
    DailyFailedLogin,
    DailyLoginUser,
    DailyProjectCount,
    FacilityAllocation,
    HourlyLoginUser,
    MonthlyFailedLogin,
    MonthlyLoginUser,
    OrgMembership,
    OrgMembershipEvent,
    WeeklyLoginUser,
)
from audit.catalog import LIFECYCLE_TYPES, MEMBERSHIP_TYPES


class ILike(models.Func):
    """`expression ILIKE pattern`. Django's icontains is UPPER(x) LIKE UPPER(p)
    on PostgreSQL, which a pg_trgm index on the column cannot serve; ILIKE it can."""

    arg_joiner = " ILIKE "
    template = "(%(expressions)s)"
    output_field = models.BooleanField()


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

        user: about them, by them, or the target of a group's event;
        organization: about it; project: about it, its experiments and
        resources (payload.project), or its org memberships; experiment: of
        `project` (names repeat across projects), about it or its
        realizations. ValueError for any other kind."""
        qs = self._involving_base(kind)
        return qs.filter(reduce(operator.or_, self._involving(kind, name, project)))

    def involving_parts(self, kind: str, name: str, project: str = "") -> list["EventQuerySet"]:
        """involving() as one queryset per way of being involved, each of
        which an index answers in time order: the newest rows of their union
        are the newest of each part's newest (newest_of)."""
        qs = self._involving_base(kind)
        return [qs.filter(q) for q in self._involving(kind, name, project)]

    def _involving_base(self, kind: str) -> "EventQuerySet":
        if kind in ("user", "organization"):
            return self
        # alias, not annotate: the key is a condition, never a column a caller
        # (an export's SELECT) should receive.
        qs = self.alias(project_of=KeyTextTransform("project", "payload"))
        if kind == "experiment":
            return qs.alias(experiment_of=KeyTextTransform("experiment", "payload"))
        return qs

    @staticmethod
    def _involving(kind: str, name: str, project: str) -> list[models.Q]:
        if kind == "user":
            return [
                models.Q(subject_type="user", subject=name),
                models.Q(caller=name),
                models.Q(target=name, subject_type__in=("organization", "project")),
            ]
        if kind == "organization":
            return [models.Q(subject_type="organization", subject=name)]
        if kind == "project":
            return [
                models.Q(subject_type="project", subject=name),
                models.Q(project_of=name),
                models.Q(subject_type="organization", target=name, payload__kind="projectmember"),
            ]
        if kind == "experiment":
            return [
                models.Q(project_of=project, subject_type="experiment", subject=name),
                models.Q(project_of=project, experiment_of=name),
            ]
        raise ValueError(f"unknown entity kind {kind!r}")

    def mentioning(self, kind: str, scope: str, name: str) -> "EventQuerySet":
        """Events that mention one entity as the entity fold reads them
        (audit/entity_fold.py _MENTIONS): as the subject, the member of a
        membership event or the payload's project. Success is not checked."""
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
        # idx_events_timestamp (or a filter's own time-ordered index) gives the
        # order, an incremental sort the event_uuid of equal timestamps.
        return self.order_by("-timestamp", "-event_uuid")

    def before(self, timestamp, event_uuid) -> "EventQuerySet":
        """Keyset page: rows strictly older than (timestamp, event_uuid).

        The redundant `timestamp <= ts` is the planner's index condition; the
        OR alone is only a filter, which made deep pages cost like OFFSET."""
        return self.filter(timestamp__lte=timestamp).filter(
            models.Q(timestamp__lt=timestamp)
            | models.Q(timestamp=timestamp, event_uuid__lt=event_uuid)
        )

    def after(self, timestamp, event_uuid) -> "EventQuerySet":
        """Keyset page: rows strictly newer than (timestamp, event_uuid);
        `timestamp >= ts` is the index condition, as in before()."""
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
        """Events whose error message contains `text`, ignoring case: a rare
        substring of 3+ characters through idx_events_error_trgm (migration
        0006, where pg_trgm is), a frequent one newest-first to a full page."""
        # LIKE's wildcards (and its escape character) are taken literally.
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return self.filter(ILike(models.F("error_message"), models.Value(f"%{escaped}%")))

    def estimated_count(self) -> int:
        """The planner's row estimate for this query: EXPLAIN, not COUNT(*)."""
        from sphere_stats.db import read_connection

        sql, params = self.order_by().query.sql_with_params()
        with read_connection().cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])


# About half of all events (logins, facility status reports): left out of
# idx_events_type_ts. Changing them means a migration.
FREQUENT_TYPES = ("user_login", "facility_status")


def newest_of(parts: list[EventQuerySet], limit: int) -> list["Event"]:
    """The newest `limit` rows of the union of `parts`, newest first.

    Each part's own newest `limit` are read through its index, then
    merged: one OR of the parts walked idx_events_timestamp from the
    newest row, filtering, until it found them (163 ms for a project of
    the 10M-event demo, 850,000 rows read)."""
    heads = [part.newest_first()[:limit] for part in parts]
    if len(heads) == 1:
        return list(heads[0])
    merged = heads[0].union(*heads[1:])
    return list(merged.order_by("-timestamp", "-event_uuid")[:limit])


class Event(models.Model):
    """One audit event: the SPHERE request's DDL, column for column. Rows
    are immutable: nothing in this project updates an event."""

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

    # The DDL's columns in order: the API's fields, the exports' and imports' columns.
    # fmt: off
    COLUMNS = ("event_uuid", "timestamp", "event_type", "caller", "subject", "subject_type",
               "target", "success", "error_message", "payload")
    # fmt: on

    class Meta:
        db_table = "events"
        ordering = ["-timestamp", "-event_uuid"]
        indexes = [
            # The five indexes of the SPHERE request's DDL, under its names (an
            # adopted portal table keeps them as they are). Keyset pages newest
            # (or, backwards, oldest) first: the read API, the explorer, exports,
            # prune_events, an incremental sort ordering equal timestamps by
            # event_uuid; the stats' raw edges (a time range, any type).
            models.Index(fields=["-timestamp"], name="idx_events_timestamp"),
            # Whether a type has any event (seen_event_types), and the explorer's
            # filter on several rare types (a bitmap, then a sort).
            models.Index(fields=["event_type"], name="idx_events_event_type"),
            # A user's own events among those involving them (a user's page: an
            # arm of the bitmap OR with idx_events_subject_ts and _target).
            models.Index(fields=["caller"], name="idx_events_caller"),
            # Kept as the DDL's: idx_events_subject_ts answers its queries too.
            models.Index(fields=["subject_type", "subject"], name="idx_events_subject"),
            # The memberships of a user (memberships_of) and the arm of a user's
            # or project's page for the events naming them as the target.
            models.Index(fields=["target"], name="idx_events_target"),
            # Ours ascend in time (read backwards, newest first, as cheaply).
            # One type over a time range: the explorer's type filter, the
            # catalog's last event of a type. Not the two frequent types (half
            # the rows): a time-ordered scan meets one of them every few rows.
            models.Index(
                fields=["event_type", "timestamp"],
                name="idx_events_type_ts",
                condition=~models.Q(event_type__in=FREQUENT_TYPES),
            ),
            # One caller's events newest first (the explorer's caller filter;
            # idx_events_caller is not in time order), with the type and outcome
            # so that a user's events per type are an index-only scan.
            models.Index(
                fields=["caller", "timestamp"],
                include=["event_type", "success"],
                name="idx_events_caller_ts",
            ),
            # An entity's timeline and the replay of its members.
            models.Index(
                fields=["subject_type", "subject", "-timestamp"], name="idx_events_subject_ts"
            ),
            # A project's or experiment's timeline (payload.project over time),
            # the fold's first mention of a project. Only the rows that name a
            # project (two in five): any `payload->>'project' = x` implies it.
            # Its statistics are events_project_stats' (migration 0017).
            models.Index(
                KeyTextTransform("project", "payload"),
                "timestamp",
                name="idx_events_project_ts",
                condition=models.Q(IsNull(KeyTextTransform("project", "payload"), False)),
            ),
            # Failures over a time range (top errors, failed logins, the
            # explorer's failed filter): a few percent.
            models.Index(
                fields=["timestamp"],
                name="idx_events_failures_ts",
                condition=models.Q(success=False),
            ),
            # payload_matches (@>) for rare values, which would otherwise scan
            # the timestamp index to the end; jsonb_path_ops serves only @>, at
            # a fifth of the table's size and no visible cost to ingest.
            GinIndex(
                fields=["payload"], opclasses=["jsonb_path_ops"], name="idx_events_payload_gin"
            ),
            # Successful logins with the username: active users, index-only.
            models.Index(
                fields=["timestamp"],
                include=["subject"],
                name="idx_events_logins_ts",
                condition=models.Q(event_type="user_login", success=True),
            ),
            # The entity fold's lifecycle events (audit/entity_fold.py): one event
            # in ten, so a user with 100k logins costs the triggers nothing.
            models.Index(
                fields=["subject_type", "subject", "timestamp"],
                name="idx_events_lifecycle",
                condition=models.Q(success=True, event_type__in=LIFECYCLE_TYPES),
            ),
            # A member's earliest membership event, the fold's first mention of
            # an entity (idx_events_target alone was ANDed with the type index,
            # 0.5 ms an entity).
            models.Index(
                fields=["target", "timestamp"],
                name="idx_events_member_target",
                condition=models.Q(success=True, event_type__in=MEMBERSHIP_TYPES),
            ),
            # Not declared here: idx_events_error_trgm (error_contains) needs
            # pg_trgm, which not every server has (migration 0006);
            # idx_events_user_by_others (a user's events made by others,
            # migration 0012); the facility pages' idx_events_facility_* and
            # idx_events_failed_target (facilities migrations).
        ]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.event_type} {self.subject}"

    def as_dict(self) -> dict:
        row = {name: getattr(self, name) for name in self.COLUMNS}
        return row | {"event_uuid": str(self.event_uuid), "timestamp": self.timestamp.isoformat()}


class HourlyCountQuerySet(models.QuerySet):
    def exact_count(self, event_types, success, start=None, end=None) -> int:
        """Exact number of events of these types/outcome in [start, end)
        (None: unbounded).

        Whole UTC days come from event_counts_daily, the whole hours around
        them from this pre-aggregate, and the partial hours at either edge
        from `events` (at most two hours of rows, through idx_events_type_ts
        or idx_events_timestamp): audit.buckets.cover plans the pieces. A year
        is then ~365 rows per type instead of ~8,760, which is what keeps
        the explorer's exact count cheap.
        """
        sources = {None: Event.objects.all(), "hour": self, "day": DailyCount.objects.all()}
        columns = {None: "timestamp", "hour": "bucket", "day": "day"}
        total = 0
        for unit, lo, hi in buckets.cover(start, end, ("hour", "day")):
            qs = sources[unit]
            if event_types:
                qs = qs.filter(event_type__in=event_types)
            if success is not None:
                qs = qs.filter(success=success)
            if lo is not None:
                qs = qs.filter(**{f"{columns[unit]}__gte": lo})
            if hi is not None:
                qs = qs.filter(**{f"{columns[unit]}__lt": hi})
            total += qs.count() if unit is None else qs.aggregate(n=models.Sum("n"))["n"] or 0
        return total


class HourlyCount(models.Model):
    """Pre-aggregate: events per UTC hour, type and outcome, kept by the
    triggers on `events` (audit/aggregates.py) like every pre-aggregate here.
    Hours regroup into the days, weeks and months of any whole-hour zone."""

    pk = models.CompositePrimaryKey("bucket", "event_type", "success")
    bucket = models.DateTimeField()
    event_type = models.TextField()
    success = models.BooleanField()
    n = models.BigIntegerField()
    # Of those, the events in the hour's first 15, 30 and 45 minutes: where a
    # zone's bucket edge cuts the hour (a Kolkata midnight is 18:30 UTC),
    # each side is counted without reading `events`.
    n15 = models.BigIntegerField(db_default=0)
    n30 = models.BigIntegerField(db_default=0)
    n45 = models.BigIntegerField(db_default=0)

    objects = HourlyCountQuerySet.as_manager()

    class Meta:
        db_table = "event_counts_hourly"
        # No index but the key: a per-type series (the logins of a year)
        # reads its hours' rows of every type by the key's range: the planner
        # took the key over an (event_type, bucket) index for every window
        # and zone (audit migration 0038).

    def __str__(self) -> str:
        return f"{self.bucket:%Y-%m-%d %H}h {self.event_type} {self.success}: {self.n}"


class EntityQuerySet(models.QuerySet):
    def current(self) -> "EntityQuerySet":
        """Entities that exist now (idx_entities_current)."""
        return self.exclude(state=Entity.GONE)

    def matching(self, text: str) -> "EntityQuerySet":
        """Names starting with `text`, case-insensitively (idx_entities_name_prefix)."""
        return self.annotate(lower_name=Lower("name")).filter(lower_name__startswith=text.lower())


class Entity(models.Model):
    """Pre-aggregate: every entity seen in a successful event with its state
    now, folded from its events (audit/entity_fold.py ENTITY_FOLD)."""

    GONE = "gone"

    pk = models.CompositePrimaryKey("kind", "scope", "name")
    kind = models.TextField()
    # An experiment's project; a realization's or materialization's facility.
    scope = models.TextField(default="", blank=True)
    name = models.TextField()
    # One of its kind's states (audit.catalog.ENTITY_KINDS), or gone.
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
    # First seen in another event or an inventory: may be older than first_seen.
    predates_log = models.BooleanField(default=False)

    objects = EntityQuerySet.as_manager()

    class Meta:
        db_table = "entities"
        indexes = [
            # Current counts by kind and state (the overview cards, /metrics).
            # Partial: no other query can take it, so the insert trigger's
            # probe of a statement's entities (kind, scope and name) always
            # reads the primary key, even from statistics of an empty table.
            models.Index(
                fields=["kind", "state"],
                name="idx_entities_current",
                condition=~models.Q(state="gone"),
            ),
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
    (valid_to null for the current one), folded with `Entity`."""

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
