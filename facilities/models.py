"""Facilities: the testbed's sites, placed on the map.

A facility's status and the resources in use there are not stored here: they
are derived from audit events (see facilities/status.py), so the map can never
disagree with the event log.
"""

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KT

from audit.facility_runs import RUNS_TABLE, hold_sql, interval_sql, runs_current
from audit.models import Event
from facilities.status import (
    STATUS_EVENT,
    Allocation,
    CurrentStatus,
    Report,
    Run,
    Usage,
    UsageSummary,
    current_status,
)
from sphere_stats.db import read_connection

# URL segments under /facilities/ that are pages, not facilities.
RESERVED_SLUGS = frozenset({"map", "status"})
# What a facility's `url` may be: a page to link to.
WEB_URL_SCHEMES = ["http", "https"]


def validate_not_reserved(value: str) -> None:
    if value in RESERVED_SLUGS:
        raise ValidationError(f"'{value}' is reserved for a page under /facilities/.")


# For each slug: its latest status report, and the first report of the run
# that ends with it ("since"): the start of the facility's last run in
# facility_runs (one probe of its primary key). The event type is written into
# the SQL, not passed, so the planner can match idx_events_facility_reports.
_LATEST_REPORT = f"""
SELECT s.slug, r.timestamp, r.status, r.message, r.caller, r.interval, run.started
FROM unnest(%(slugs)s::text[]) AS s(slug)
LEFT JOIN LATERAL (
    SELECT e.timestamp, e.payload->>'status' AS status,
           coalesce(e.payload->>'message', '') AS message, e.caller,
           {interval_sql("e.payload")} AS interval
    FROM events e
    WHERE e.subject_type = 'facility' AND e.subject = s.slug AND e.event_type = '{STATUS_EVENT}'
    ORDER BY e.timestamp DESC, e.event_uuid DESC
    LIMIT 1
) r ON true
"""
CURRENT_STATUS_SQL = f"""{_LATEST_REPORT}
LEFT JOIN LATERAL (
    SELECT x.started FROM {RUNS_TABLE} x WHERE x.facility = s.slug
    ORDER BY x.started DESC, x.first_uuid DESC LIMIT 1
) run ON true
"""
# The same from the reports alone, while facility_runs were built with
# another FACILITY_STALE_AFTER (audit/facility_runs.py). Walking back from the
# latest report, the run ends at the first report whose predecessor has
# another status or is older than the predecessor's hold time (a silence,
# unknown on the uptime bar), or has no predecessor. The walk streams
# idx_events_facility_reports and stops at the run's first report.
CURRENT_STATUS_RAW_SQL = f"""{_LATEST_REPORT}
LEFT JOIN LATERAL (
    SELECT w.timestamp AS started
    FROM (
        SELECT e.timestamp, e.event_uuid,
               lead(e.timestamp) OVER newest_first AS before_ts,
               lead(e.payload->>'status') OVER newest_first AS before_status,
               lead({interval_sql("e.payload")}) OVER newest_first AS before_interval
        FROM events e
        WHERE e.subject_type = 'facility' AND e.subject = s.slug AND e.event_type = '{STATUS_EVENT}'
        WINDOW newest_first AS (ORDER BY e.timestamp DESC, e.event_uuid DESC)
    ) w
    WHERE w.before_ts IS NULL
       OR w.before_status IS DISTINCT FROM r.status
       OR w.timestamp - w.before_ts > {hold_sql("w.before_interval")}
    ORDER BY w.timestamp DESC, w.event_uuid DESC
    LIMIT 1
) run ON true
"""

# The allocations in use at each facility: the realizations and
# materializations whose newest successful allocation-or-free event there is
# an allocation, as facility_allocations holds them (audit.models.
# FacilityAllocation, idx_allocations_in_use): a few rows per facility
# however long its history. Payloads are read only for these events.
ACTIVE_SQL = """
SELECT a.facility AS slug, a.last_uuid AS event_uuid
FROM facility_allocations a
WHERE a.facility = ANY(%(slugs)s::text[]) AND a.kind = ANY(%(kinds)s::text[]) AND NOT a.freed
"""
ACTIVE_ALLOCATIONS_SQL = f"""
SELECT e.* FROM ({ACTIVE_SQL}) a JOIN events e ON e.event_uuid = a.event_uuid
ORDER BY e.timestamp DESC, e.event_uuid DESC
LIMIT %(limit)s
"""
KINDS = ("realization", "materialization")
# The subjects of a facility's own events (Facility.recent_failures).
FAILURE_SUBJECTS = (*KINDS, "facility")
# The same, counted in the database: allocations by kind and distinct hosts.
USAGE_SUMMARY_SQL = f"""
WITH active AS MATERIALIZED (
    SELECT a.slug, e.subject_type,
           CASE WHEN jsonb_typeof(e.payload->'resources') = 'array'
                THEN e.payload->'resources' ELSE '[]'::jsonb END AS resources
    FROM ({ACTIVE_SQL}) a JOIN events e ON e.event_uuid = a.event_uuid
)
SELECT slug, subject_type, count(*) FROM active GROUP BY 1, 2
UNION ALL
SELECT slug, 'hosts', count(DISTINCT host)
FROM active, jsonb_array_elements_text(resources) AS host
GROUP BY 1
"""


def _strings(value) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value)


class FacilityQuerySet(models.QuerySet):
    def for_map(self) -> "FacilityQuerySet":
        """Every facility in display order (name, then slug)."""
        return self.order_by("name", "slug")

    def current_statuses(self, now: datetime, stale_after: timedelta) -> dict[str, CurrentStatus]:
        """Each facility's status at `now` by slug: the latest report by event
        timestamp, unknown when that is older than its hold time (its
        payload.interval, never less than `stale_after`); since the first
        report after the last change of status or silence longer than the
        hold time of the report before it."""
        slugs = list(self.values_list("slug", flat=True))
        if not slugs:
            return {}
        with read_connection().cursor() as cursor:
            current = runs_current(cursor, int(stale_after.total_seconds()))
            cursor.execute(
                CURRENT_STATUS_SQL if current else CURRENT_STATUS_RAW_SQL,
                {"slugs": slugs, "stale": stale_after},
            )
            rows = cursor.fetchall()
        result = {}
        for slug, ts, status, message, caller, interval, started in rows:
            last = Report(ts, status or "", message, caller, interval) if ts else None
            result[slug] = current_status(last, started, now, stale_after)
        return result

    def usage_summary(self) -> dict[str, UsageSummary]:
        """Per slug: distinct hosts in use and how many realizations and
        materializations hold them, counted in PostgreSQL (no rows fetched)."""
        slugs = list(self.values_list("slug", flat=True))
        result = {slug: UsageSummary() for slug in slugs}
        if not slugs:
            return result
        with read_connection().cursor() as cursor:
            cursor.execute(USAGE_SUMMARY_SQL, {"slugs": slugs, "kinds": list(KINDS)})
            for slug, what, n in cursor.fetchall():
                summary = result[slug]
                if what == "hosts":
                    summary.in_use = n
                elif what == "realization":
                    summary.realizations = n
                elif what == "materialization":
                    summary.materializations = n
        return result

    def usage(self, kinds: tuple[str, ...] = KINDS, limit: int | None = None) -> dict[str, Usage]:
        """Resources in use at each facility by slug: realizations and/or
        materializations allocated and not yet freed, newest first (at most
        `limit` in all)."""
        slugs = list(self.values_list("slug", flat=True))
        result = {slug: Usage() for slug in slugs}
        if not slugs:
            return result
        params = {"slugs": slugs, "kinds": list(kinds), "limit": limit}
        for event in Event.objects.raw(ACTIVE_ALLOCATIONS_SQL, params):
            payload = event.payload if isinstance(event.payload, dict) else {}
            result[event.target].allocations.append(
                Allocation(
                    kind=event.subject_type,
                    name=event.subject,
                    project=str(payload.get("project", "")),
                    experiment=str(payload.get("experiment", "")),
                    resources=_strings(payload.get("resources")),
                    nodes=len(_strings(payload.get("nodes"))),
                    since=event.timestamp,
                    caller=event.caller,
                )
            )
        return result


class Facility(models.Model):
    """A testbed site. `slug` is the name events use (facility_status subject,
    realization/materialization target and payload.facility)."""

    slug = models.SlugField(
        max_length=64,
        unique=True,
        validators=[validate_not_reserved],
        help_text="The facility name used in events, e.g. 'isi'.",
    )
    name = models.CharField(max_length=200)
    latitude = models.FloatField(
        validators=[MinValueValidator(-90.0), MaxValueValidator(90.0)],
        help_text="Decimal degrees, -90 to 90.",
    )
    longitude = models.FloatField(
        validators=[MinValueValidator(-180.0), MaxValueValidator(180.0)],
        help_text="Decimal degrees, -180 to 180.",
    )
    kind = models.CharField(
        max_length=64, blank=True, help_text="What sort of site: 'compute', 'wireless', …"
    )
    description = models.TextField(blank=True)
    # Rendered as a link on the facility's panel: a `javascript:` or `data:`
    # URL there would run in the page, so only these two, in the validator
    # (forms, the admin, imports) and in the database (facility_url_scheme).
    url = models.URLField(blank=True, validators=[URLValidator(schemes=WEB_URL_SCHEMES)])
    capacity_nodes = models.PositiveIntegerField(
        default=0, help_text="Total physical nodes (hosts) at the facility."
    )

    objects = FacilityQuerySet.as_manager()

    class Meta:
        ordering = ["name", "slug"]
        verbose_name_plural = "facilities"
        constraints = [
            # The validators guard forms and imports; these guard everything else.
            models.CheckConstraint(
                condition=models.Q(latitude__gte=-90) & models.Q(latitude__lte=90),
                name="facility_latitude_range",
            ),
            models.CheckConstraint(
                condition=models.Q(longitude__gte=-180) & models.Q(longitude__lte=180),
                name="facility_longitude_range",
            ),
            models.CheckConstraint(
                condition=models.Q(url="")
                | models.Q(url__istartswith="http://")
                | models.Q(url__istartswith="https://"),
                name="facility_url_scheme",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("facilities:detail", args=[self.slug])

    @property
    def web_url(self) -> str:
        """`url` when it is one to link to (http or https), else "": what a
        template links, whatever reached the row."""
        scheme = self.url.partition("://")[0].lower()
        return self.url if scheme in WEB_URL_SCHEMES else ""

    def status_events(self) -> models.QuerySet:
        """This facility's status reports (idx_events_subject_ts)."""
        return Event.objects.about("facility", self.slug).filter(event_type=STATUS_EVENT)

    def _report_fields(self) -> tuple:
        # ->> text, not JSON: the panel reads ~100 reports a day for 90 days,
        # and decoding each value as JSON was a third of its time. The
        # interval is checked in SQL, by the rule the map's query uses (SQL
        # made of constants, nothing the caller gives).
        column = f'"{Event._meta.db_table}"."payload"'
        interval = RawSQL(interval_sql(column), ())  # noqa: S611
        return ("timestamp", KT("payload__status"), KT("payload__message"), "caller", interval)

    @staticmethod
    def _as_reports(rows) -> list[Report]:
        return [
            Report(ts, str(status or ""), str(message or ""), caller, interval)
            for ts, status, message, caller, interval in rows
        ]

    def report_before(self, start: datetime) -> Report | None:
        """The latest report before `start` (one probe of
        idx_events_facility_reports), if any."""
        before = (
            self.status_events()
            .filter(timestamp__lt=start)
            .order_by("-timestamp", "-event_uuid")
            .values_list(*self._report_fields())[:1]
        )
        return next(iter(self._as_reports(before)), None)

    def reports(self, start: datetime, end: datetime | None = None) -> list[Report]:
        """Status reports in [start, end) in time order (no end: all since
        start), preceded by the report in force at `start`, if any."""
        before = self.report_before(start)
        during = (
            self.status_events()
            .in_window(start, end)
            .order_by("timestamp", "event_uuid")
            .values_list(*self._report_fields())
        )
        return ([before] if before else []) + self._as_reports(during)

    def runs(self, start: datetime) -> list[Run]:
        """The runs of this facility's reports (facility_runs) in time order:
        the one in force at `start` (the latest begun before it), then every
        run begun since. A few rows where `reports` reads thousands."""
        fields = ("started", "status", "message", "caller", "interval_secs", "hold_until", "ended")
        mine = FacilityRun.objects.filter(facility=self.slug)
        before = mine.filter(started__lt=start).order_by("-started", "-first_uuid")[:1]
        since = mine.filter(started__gte=start).order_by("started", "first_uuid")
        return [Run(*row) for row in [*before.values_list(*fields), *since.values_list(*fields)]]

    def recent_failures(self, limit: int = 10) -> list[Event]:
        """The latest failed realizations, materializations and status reports
        at this facility, newest first; uses idx_events_failed_target. Other
        events whose target happens to equal the slug (a user or project
        named like the facility, as a member target) are not the facility's."""
        return list(
            Event.objects.filter(
                target=self.slug, success=False, subject_type__in=FAILURE_SUBJECTS
            ).order_by("-timestamp", "-event_uuid")[:limit]
        )


class FacilityRun(models.Model):
    """A run of one status in a facility's reports (audit/facility_runs.py): a
    pre-aggregate of `events`, written only by the triggers on it and by a
    rebuild; the rows cover [started, ended) with `status`."""

    pk = models.CompositePrimaryKey("facility", "started", "first_uuid")
    facility = models.TextField()
    started = models.DateTimeField()
    first_uuid = models.UUIDField()
    # payload.status as reported ('' for none), not yet mapped to a state.
    status = models.TextField()
    # The run's first report, which a status change lists.
    message = models.TextField()
    caller = models.TextField()
    interval_secs = models.IntegerField(null=True)
    last_report = models.DateTimeField()
    last_uuid = models.UUIDField()
    hold_until = models.DateTimeField()
    ended = models.DateTimeField()

    class Meta:
        db_table = RUNS_TABLE
        indexes = [
            # The charts' bands: the runs of one state ending after a window starts.
            models.Index(fields=["status", "ended"], name="idx_facility_runs_status_end"),
        ]

    def __str__(self) -> str:
        return f"{self.facility} {self.status} from {self.started:%Y-%m-%d %H:%M:%S}"
