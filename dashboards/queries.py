"""The queries behind the stats, each readable from the pre-aggregates or
straight from the raw `events` table (source="raw"), with equal answers.

dashboards reads audit's tables only; it never writes them. Pre-aggregates:
- event_counts_hourly (audit.HourlyCount): events per UTC hour, type and
  outcome. Whole hours of a window come from it, the partial hours at both
  edges from `events`; buckets regroup with date_trunc(unit, hour, zone),
  which is exact when the zone's offset is a whole number of hours over the
  window (other zones, such as Asia/Kolkata, read `events`).
- entities / entity_intervals (audit.aggregates): every entity's states over
  time; counts at a moment and growth per bucket.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.db import connection
from django.db.models import Count, Q, QuerySet

from audit import aggregates
from audit.models import Entity, EntityInterval, Event, HourlyCount
from sphere_stats.windows import Window

HOURLY = HourlyCount._meta.db_table
INTERVALS = EntityInterval._meta.db_table
ENTITIES = Entity._meta.db_table
SOURCES = ("auto", "raw")
HOUR = timedelta(hours=1)


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def first_event_time() -> datetime | None:
    """The oldest event's timestamp (idx_events_timestamp), for period=all."""
    row = _fetch("SELECT min(timestamp) FROM events", [])
    return row[0][0]


# Shorter than the shortest bucket of each unit in any zone (a local day can
# last 23 hours, a local hour 30 minutes on Lord Howe Island), so a sample at
# every stride hits every bucket.
STRIDES = {"hour": "30 minutes", "day": "12 hours", "week": "1 day", "month": "1 day"}


def buckets(window: Window) -> list[datetime]:
    """Every bucket start of the window, in order (UTC datetimes), cut by
    PostgreSQL exactly like the stats' date_trunc (DST included)."""
    rows = _fetch(
        "SELECT DISTINCT date_trunc(%s, g, %s) FROM generate_series("
        "%s::timestamptz, %s::timestamptz - interval '1 microsecond', %s::interval) AS g "
        "UNION SELECT date_trunc(%s, %s::timestamptz - interval '1 microsecond', %s) ORDER BY 1",
        [
            window.unit,
            window.tz_name,
            window.start,
            window.end,
            STRIDES[window.unit],
            window.unit,
            window.end,
            window.tz_name,
        ],
    )
    return [r[0] for r in rows]


# --- event counts (event_counts_hourly + edges) -------------------------------------


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + HOUR


@lru_cache(maxsize=512)
def _whole_hour_offsets(tz_name: str, start: datetime, end: datetime) -> bool:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz_name)
    # Offsets change at most a few times a year; a daily sample finds any
    # offset that lasts longer than a day.
    moment = start
    while True:
        offset = zone.utcoffset(moment.replace(tzinfo=None))
        if offset is None or offset.total_seconds() % 3600:
            return False
        if moment >= end:
            return True
        moment = min(moment + timedelta(days=1), end)


def hourly_usable(window: Window, bucketed: bool = True) -> bool:
    """Whether event_counts_hourly can answer for this window exactly."""
    if not bucketed or (window.unit == "hour" and window.tz_name == "UTC"):
        return True
    return _whole_hour_offsets(window.tz_name, window.start, window.end)


def seen_event_types(types: Iterable[str]) -> set[str]:
    """Which of `types` some stored event has: one probe of
    idx_events_event_type per type, however many events it has."""
    rows = _fetch(
        "SELECT t FROM unnest(%s::text[]) AS t"
        " WHERE EXISTS (SELECT 1 FROM events WHERE event_type = t)",
        [list(types)],
    )
    return {r[0] for r in rows}


def event_counts(
    window: Window,
    *,
    bucketed: bool = True,
    types: Iterable[str] | None = None,
    success: bool | None = None,
    source: str = "auto",
) -> list[tuple]:
    """(bucket, event_type, success, n) for events in the window; bucket is
    None when not bucketed. Whole hours come from event_counts_hourly."""
    types = list(types) if types else None
    bucket_of = "date_trunc(%s, {col}, %s)" if bucketed else "NULL::timestamptz"
    bucket_params = [window.unit, window.tz_name] if bucketed else []
    extra, extra_params = "", []
    if types:
        extra += " AND event_type = ANY(%s)"
        extra_params.append(types)
    if success is not None:
        extra += " AND success = %s"
        extra_params.append(success)

    full_start, full_end = _ceil_hour(window.start), _floor_hour(window.end)
    use_hourly = source != "raw" and full_start < full_end and hourly_usable(window, bucketed)
    if not use_hourly:
        return _fetch(
            f"SELECT {bucket_of.format(col='timestamp')} AS b, event_type, success, count(*) "
            f"FROM events WHERE timestamp >= %s AND timestamp < %s{extra} GROUP BY 1, 2, 3",
            [*bucket_params, window.start, window.end, *extra_params],
        )
    return _fetch(
        "SELECT b, event_type, success, sum(n)::bigint FROM ("
        f"  SELECT {bucket_of.format(col='bucket')} AS b, event_type, success, n FROM {HOURLY}"
        f"  WHERE bucket >= %s AND bucket < %s{extra}"
        "  UNION ALL"
        f"  SELECT {bucket_of.format(col='timestamp')}, event_type, success, 1 FROM events"
        "  WHERE ((timestamp >= %s AND timestamp < %s) OR (timestamp >= %s AND timestamp < %s))"
        f"  {extra}"
        ") AS s GROUP BY 1, 2, 3",
        [
            *bucket_params,
            full_start,
            full_end,
            *extra_params,
            *bucket_params,
            window.start,
            full_start,
            full_end,
            window.end,
            *extra_params,
        ],
    )


# --- entities (entity_intervals, or a replay of the raw lifecycle events) -----------


def _raw_intervals(kinds: Iterable[str]) -> list[tuple[str, str, datetime, datetime | None]]:
    """(kind, state, valid_from, valid_to) replayed from `events`, without
    the pre-aggregate: the raw-table answer to compare against."""
    kinds = set(kinds)
    found = []
    for key, events in aggregates._all_lifecycles():
        if key[0] not in kinds:
            continue
        folded = aggregates.fold(key[0], events)
        if folded:
            found.extend((key[0], s, a, b) for s, a, b in folded.intervals)
    return found


def _alive(start: datetime, end: datetime | None, moment: datetime) -> bool:
    # State after every event before `moment` (the window's half-open end).
    return start < moment and (end is None or end >= moment)


def entity_counts_at(
    moments: list[datetime], kinds: Iterable[str], source: str = "auto"
) -> list[dict[tuple[str, str], int]]:
    """For each moment, {(kind, state): entities in that state just before it}."""
    kinds = list(kinds)
    if source == "raw":
        intervals = _raw_intervals(kinds)
        answers = []
        for moment in moments:
            counts: dict[tuple[str, str], int] = defaultdict(int)
            for kind, state, start, end in intervals:
                if _alive(start, end, moment):
                    counts[kind, state] += 1
            answers.append(dict(counts))
        return answers
    # Alive at t = alive now (entities, idx_entities_kind_state)
    #   - open intervals that began at or after t (idx_intervals_from)
    #   + closed intervals that began before t and ended at or after t
    #     (idx_intervals_to).
    # Only intervals touching [t, now) are read, so recent moments are cheap
    # however long the history.
    now = _fetch(
        f"SELECT kind, state, count(*) FROM {ENTITIES} "
        "WHERE kind = ANY(%s) AND state <> %s GROUP BY 1, 2",
        [kinds, Entity.GONE],
    )
    answers = []
    for moment in moments:
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for kind, state, n in now:
            counts[kind, state] += n
        for kind, state, n in _fetch(
            f"SELECT kind, state, -count(*) FROM {INTERVALS} WHERE kind = ANY(%s) "
            "AND valid_from >= %s AND valid_to IS NULL GROUP BY 1, 2 "
            f"UNION ALL SELECT kind, state, count(*) FROM {INTERVALS} WHERE kind = ANY(%s) "
            "AND valid_to >= %s AND valid_from < %s GROUP BY 1, 2",
            [kinds, moment, kinds, moment, moment],
        ):
            counts[kind, state] += n
        answers.append({key: n for key, n in counts.items() if n})
    return answers


def entity_growth(window: Window, kinds: Iterable[str], source: str = "auto") -> dict:
    """{kind: [entities existing at the end of each bucket]} and the buckets."""
    kinds = list(kinds)
    starts = buckets(window)
    (baseline,) = entity_counts_at([window.start], kinds, source)
    deltas: dict[tuple[str, datetime], int] = defaultdict(int)
    if source == "raw":
        moments = []
        for kind, _state, start, end in _raw_intervals(kinds):
            for moment, sign in ((start, 1), (end, -1)):
                if moment is not None and window.start <= moment < window.end:
                    moments.append((kind, moment, sign))
        # Cut by PostgreSQL too, so both answers share every bucket edge.
        cut = _fetch(
            "SELECT date_trunc(%s, m, %s) FROM unnest(%s::timestamptz[]) WITH ORDINALITY "
            "AS u(m, i) ORDER BY i",
            [window.unit, window.tz_name, [m for _, m, _ in moments]],
        )
        for (kind, _, sign), (bucket,) in zip(moments, cut, strict=True):
            deltas[kind, bucket] += sign
    else:
        for kind, bucket, delta in _fetch(
            "SELECT kind, b, sum(d)::bigint FROM ("
            f"  SELECT kind, date_trunc(%s, valid_from, %s) AS b, 1 AS d FROM {INTERVALS}"
            "   WHERE kind = ANY(%s) AND valid_from >= %s AND valid_from < %s"
            "  UNION ALL"
            f"  SELECT kind, date_trunc(%s, valid_to, %s), -1 FROM {INTERVALS}"
            "   WHERE kind = ANY(%s) AND valid_to >= %s AND valid_to < %s"
            ") AS s GROUP BY 1, 2",
            [
                window.unit,
                window.tz_name,
                kinds,
                window.start,
                window.end,
                window.unit,
                window.tz_name,
                kinds,
                window.start,
                window.end,
            ],
        ):
            deltas[kind, bucket] += delta
    series = {}
    for kind in kinds:
        total = sum(n for (k, _), n in baseline.items() if k == kind)
        values = []
        for bucket in starts:
            total += deltas.get((kind, bucket), 0)
            values.append(total)
        series[kind] = values
    return {"buckets": starts, "series": series}


# --- raw-only queries (the raw table answers them fast enough) ----------------------


def distinct_login_users(window: Window) -> int:
    """Distinct users with a successful login in the window (idx_events_type_ts)."""
    return _fetch(
        "SELECT count(DISTINCT subject) FROM events WHERE event_type = 'user_login' "
        "AND success AND timestamp >= %s AND timestamp < %s",
        [window.start, window.end],
    )[0][0]


def active_users(window: Window) -> list[tuple[str, datetime, int]]:
    """(unit, bucket, distinct users logged in) for days, weeks and months of
    the display zone. The distinct (local day, user) pairs are found once
    (an index-only scan of idx_events_logins_ts); weeks and months are
    regrouped from them."""
    rows = _fetch(
        "WITH pairs AS MATERIALIZED ("
        "  SELECT DISTINCT date_trunc('day', timestamp, %s) AS day, subject FROM events"
        "  WHERE event_type = 'user_login' AND success AND timestamp >= %s AND timestamp < %s"
        ") SELECT 'day', day, count(*) FROM pairs GROUP BY 2"
        " UNION ALL SELECT 'week', date_trunc('week', day, %s), count(DISTINCT subject)"
        "  FROM pairs GROUP BY 2"
        " UNION ALL SELECT 'month', date_trunc('month', day, %s), count(DISTINCT subject)"
        "  FROM pairs GROUP BY 2",
        [window.tz_name, window.start, window.end, window.tz_name, window.tz_name],
    )
    order = {"day": 0, "week": 1, "month": 2}
    return sorted(rows, key=lambda r: (order[r[0]], r[1]))


def top_callers(window: Window, n: int) -> list[tuple]:
    """Users by events they caused in the window: (user, events, logins, failures)."""
    return _fetch(
        "SELECT caller, count(*), count(*) FILTER (WHERE event_type = 'user_login'), "
        "count(*) FILTER (WHERE NOT success) FROM events "
        "WHERE timestamp >= %s AND timestamp < %s AND caller IN "
        f"(SELECT name FROM {ENTITIES} WHERE kind = 'user') "
        "GROUP BY caller ORDER BY 2 DESC, 1 LIMIT %s",
        [window.start, window.end, n],
    )


PROJECT_MEASURES = {
    "events": "count(*)",
    "experiments": "count(*) FILTER (WHERE event_type = 'experiment_created' AND success)",
    "realizations": "count(*) FILTER (WHERE event_type = 'realization_allocated' AND success)",
    "materializations": (
        "count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success)"
    ),
}


def top_projects(window: Window, n: int, by: str) -> list[tuple]:
    """Projects by events about them or naming them in payload.project, experiments created,
    realizations or materializations in the window (idx_events_project_ts
    for 'events', idx_events_type_ts otherwise)."""
    types = {
        "experiments": ["experiment_created"],
        "realizations": ["realization_allocated"],
        "materializations": ["materialization_allocated"],
    }.get(by)
    where = (
        "AND event_type = ANY(%s)"
        if types
        else "AND (payload->>'project' IS NOT NULL OR subject_type = 'project')"
    )
    order = list(PROJECT_MEASURES).index(by) + 2
    # A project's own events (created, members) count as well as those
    # naming it in payload.project (experiments, realizations).
    return _fetch(
        "SELECT coalesce(payload->>'project', subject) AS project, "
        f"{', '.join(PROJECT_MEASURES.values())} "
        f"FROM events WHERE timestamp >= %s AND timestamp < %s {where} "
        f"GROUP BY 1 HAVING {PROJECT_MEASURES[by]} > 0 ORDER BY {order} DESC, 1 LIMIT %s",
        [window.start, window.end, *([types] if types else []), n],
    )


MEMBER_TYPES = {
    "organization": ("org_member_added", "org_member_updated", "org_member_deleted"),
    "project": ("project_member_added", "project_member_updated", "project_member_deleted"),
}


def members(subject_type: str, name: str, since: datetime | None) -> list[tuple]:
    """Current members of one org or project from its membership events since
    its latest creation: (member, kind, role, state, since), where since is
    the first add after the member's latest removal (a re-added member is a
    member since the re-add, not since the first time)."""
    added, _, deleted = MEMBER_TYPES[subject_type]
    # `removals_after` counts the removals at or after each event, in event
    # order (timestamp, event_uuid): an add with none after it belongs to
    # the current membership.
    rows = _fetch(
        "SELECT target, kind, role, state, joined FROM ("
        "  SELECT DISTINCT ON (target, kind) target, kind, role, state, event_type,"
        "   min(timestamp) FILTER (WHERE event_type = %s AND removals_after = 0)"
        "    OVER (PARTITION BY target, kind) AS joined"
        "  FROM ("
        "   SELECT target, payload->>'kind' AS kind, payload->>'role' AS role,"
        "    payload->>'state' AS state, event_type, timestamp, event_uuid,"
        "    count(*) FILTER (WHERE event_type = %s) OVER (PARTITION BY target,"
        "     payload->>'kind' ORDER BY timestamp DESC, event_uuid DESC) AS removals_after"
        "   FROM events WHERE subject_type = %s AND subject = %s AND success"
        "    AND event_type = ANY(%s) AND timestamp >= %s AND target IS NOT NULL"
        "  ) AS history"
        "  ORDER BY target, kind, timestamp DESC, event_uuid DESC"
        ") AS latest WHERE event_type <> %s ORDER BY kind DESC, role, target",
        [
            added,
            deleted,
            subject_type,
            name,
            list(MEMBER_TYPES[subject_type]),
            since or datetime(1, 1, 1, tzinfo=UTC),
            deleted,
        ],
    )
    return rows


def top_orgs_by_members(n: int, at: datetime) -> list[tuple]:
    """Organizations existing at `at` by current user and project members
    (membership events since each org's latest creation)."""
    return _fetch(
        "SELECT org, count(*) FILTER (WHERE kind = 'usermember'),"
        " count(*) FILTER (WHERE kind = 'projectmember') FROM ("
        "  SELECT DISTINCT ON (e.subject, e.target, e.payload->>'kind') e.subject AS org,"
        "   e.payload->>'kind' AS kind, e.event_type"
        f"  FROM events e JOIN {ENTITIES} o ON o.kind = 'organization' AND o.scope = ''"
        "   AND o.name = e.subject AND o.since < %s AND (o.until IS NULL OR o.until >= %s)"
        "  WHERE e.event_type IN ('org_member_added', 'org_member_updated',"
        "   'org_member_deleted') AND e.success AND e.timestamp >= o.since AND e.timestamp < %s"
        "  ORDER BY e.subject, e.target, e.payload->>'kind', e.timestamp DESC,"
        "   e.event_uuid DESC"
        ") AS latest WHERE event_type <> 'org_member_deleted'"
        " GROUP BY org ORDER BY 2 DESC, 3 DESC, 1 LIMIT %s",
        [at, at, at, n],
    )


def top_facilities(window: Window, n: int) -> list[tuple]:
    """Facilities by allocations in the window: (facility, realizations,
    materializations, failed) (idx_events_type_ts)."""
    return _fetch(
        "SELECT target, count(*) FILTER (WHERE event_type = 'realization_allocated' AND success),"
        " count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success),"
        " count(*) FILTER (WHERE NOT success) FROM events"
        " WHERE event_type IN ('realization_allocated', 'materialization_allocated')"
        " AND timestamp >= %s AND timestamp < %s AND target IS NOT NULL"
        " GROUP BY 1 ORDER BY count(*) FILTER (WHERE success) DESC, 4 DESC, 1 LIMIT %s",
        [window.start, window.end, n],
    )


def top_errors(window: Window, n: int) -> list[tuple]:
    """Most frequent (error_message, event_type) among failures in the window,
    with the last time seen (idx_events_failures_ts)."""
    return _fetch(
        "SELECT coalesce(error_message, ''), event_type, count(*), max(timestamp) FROM events"
        " WHERE NOT success AND timestamp >= %s AND timestamp < %s"
        " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT %s",
        [window.start, window.end, n],
    )


def failed_logins(window: Window, n: int | None) -> list[tuple]:
    """Failed logins in the window by username, most failures first: (user,
    failures, last attempt, last error, users in all) (idx_events_type_ts).
    `n=None` returns every user."""
    # The window count runs after GROUP BY and before LIMIT: every user is
    # grouped anyway to rank them, so knowing how many there are is free.
    return _fetch(
        "SELECT subject, count(*), max(timestamp),"
        " (array_agg(coalesce(error_message, '') ORDER BY timestamp DESC))[1],"
        " count(*) OVER () FROM events"
        " WHERE event_type = 'user_login' AND NOT success AND timestamp >= %s AND timestamp < %s"
        " GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s",
        [window.start, window.end, n],
    )


# --- one entity -------------------------------------------------------------------------


def involving(kind: str, name: str, project: str = "") -> QuerySet:
    """Events about one entity (its timeline, heatmap and counts): the one
    definition is audit's EventQuerySet.involving, which the timeline's
    downloads filter by too, so the page and its files hold the same rows."""
    return Event.objects.involving(kind, name, project)


def entity_daily(kind: str, name: str, project: str, tz_name: str, start: datetime) -> list:
    """(local day, events) for one entity since `start`."""
    qs = involving(kind, name, project).filter(timestamp__gte=start)
    sql, params = qs.order_by().values("timestamp").query.sql_with_params()
    return _fetch(
        f"SELECT date_trunc('day', e.timestamp, %s), count(*) FROM ({sql}) AS e "
        "GROUP BY 1 ORDER BY 1",
        [tz_name, *params],
    )


def entity_type_counts(kind: str, name: str, project: str, window: Window) -> list[tuple]:
    """(event_type, succeeded, failed) for one entity in the window."""
    qs = involving(kind, name, project).in_window(window.start, window.end)
    return list(
        qs.values_list("event_type")
        .annotate(
            ok=Count("event_uuid", filter=Q(success=True)),
            failed=Count("event_uuid", filter=Q(success=False)),
        )
        .order_by("-ok", "event_type")
    )


def memberships_of(user: str) -> list[tuple]:
    """The orgs and projects a user is a member of now: (kind, name, role, state)
    from the latest membership event per group since its creation (idx_events_target)."""
    return _fetch(
        "SELECT m.subject_type, m.subject, m.role, m.state FROM ("
        "  SELECT DISTINCT ON (subject_type, subject) subject_type, subject, event_type,"
        "   payload->>'role' AS role, payload->>'state' AS state, timestamp FROM events"
        "  WHERE target = %s AND success AND subject_type IN ('organization', 'project')"
        "   AND payload->>'kind' = 'usermember' AND event_type LIKE '%%member%%'"
        "  ORDER BY subject_type, subject, timestamp DESC, event_uuid DESC"
        f") AS m JOIN {ENTITIES} g ON g.kind = m.subject_type AND g.scope = ''"
        "  AND g.name = m.subject AND g.state <> 'gone' AND m.timestamp >= g.since"
        " WHERE m.event_type NOT LIKE '%%member_deleted' ORDER BY 1, 2",
        [user],
    )
