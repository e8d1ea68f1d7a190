"""One user, organization, project or experiment: its events per local day
(the calendar heatmap of its page), its events by type, and the members of
an organization or project or the memberships of a user, which its page
and GET /api/v1/entities/ show beside them.

Events involving an entity are audit's Event.objects.involving, which the
timeline and its downloads filter by too. A user's own events (the bulk)
per day come from event_counts_daily_caller (audit.DailyCallerCount), and
by type from event_counts_daily_caller_type (audit.DailyCallerTypeCount);
the rest are index scans of `events`.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, DateTimeField, F, Func, Q, Value
from psycopg import sql

from audit import catalog
from audit.aggregate_tables import utc_bin
from audit.aggregates import BEFORE_CHECKPOINTS, CHECKPOINT_HOURS
from audit.buckets import fetch, local_days, whole_days
from audit.models import DailyCallerCount, DailyCallerTypeCount, Entity, Event
from dashboards.charts import GRID, bucket_end, explore_url, layout
from dashboards.stats.registry import ENTITY_PARAMS, NO_OPTIONS, Column, Result, Stat, register
from sphere_stats.windows import Window

# A user's events (Event.objects.involving("user", name)) as three disjoint
# parts, each with its own index: their own, those about them by others
# (idx_events_user_by_others) and their memberships changed by others
# (idx_events_target). Each takes the user's name, %(name)s.
USER_OWN = sql.SQL("caller = %(name)s")
USER_BY_OTHERS = sql.SQL("subject_type = 'user' AND subject = %(name)s AND caller <> subject")
USER_MEMBERSHIPS_BY_OTHERS = sql.SQL(
    "target = %(name)s AND subject_type IN ('organization', 'project') AND caller <> target"
)
USER_PARTS = (USER_OWN, USER_BY_OTHERS, USER_MEMBERSHIPS_BY_OTHERS)

# No local day lasts longer than this, so every event of a local day that
# begins before `end` is older than end + LONGEST_DAY.
LONGEST_DAY = timedelta(hours=26)

# A user's own events from the start of the UTC day u.d (a row `c` of
# event_counts_daily_caller, or none) to the moment {x} in it: the row's
# count before the third hour k nearest {x} (0 at midnight, the day's events
# at the next one), plus or minus the events between that hour and {x}, one
# index-only range of idx_events_caller_ts of at most an hour and a half.
_CHECKPOINTS = ", ".join(f"c.{column}" for column, _ in BEFORE_CHECKPOINTS)
_BEFORE = (
    f"(SELECT coalesce((ARRAY[0, {_CHECKPOINTS}, c.events])[k.k + 1], 0)"
    " + CASE WHEN {x} >= k.at THEN 1 ELSE -1 END * (SELECT count(*) FROM events"
    "  WHERE {{own}} AND timestamp >= least({x}, k.at) AND timestamp < greatest({x}, k.at))"
    f" AS n FROM (SELECT round(extract(epoch FROM {{x}} - u.d) / {CHECKPOINT_HOURS * 3600})::int"
    f" AS k) AS r CROSS JOIN LATERAL (SELECT r.k, u.d + r.k * interval '{CHECKPOINT_HOURS} hours'"
    " AS at) AS k)"
)

USER_DAILY_SQL = (
    "WITH local_days AS ("
    "  SELECT lo, hi, date_trunc('day', lo + (hi - lo) / 2, 'UTC') AS d FROM {local_days}"
    "), pieces AS ("
    "  SELECT lo AS day, least(lo, d) AS p_lo, greatest(lo, d) AS p_hi,"
    "   CASE WHEN lo < d THEN 1 ELSE -1 END AS sign FROM local_days WHERE lo <> d"
    "  UNION ALL SELECT lo, least(hi, d + interval '24 hours'),"
    "   greatest(hi, d + interval '24 hours'),"
    "   CASE WHEN hi > d + interval '24 hours' THEN 1 ELSE -1 END"
    "  FROM local_days WHERE hi <> d + interval '24 hours'"
    "), counted AS MATERIALIZED ("
    "  SELECT u.p_lo, u.p_hi, b.n - a.n AS n FROM ("
    f"   SELECT DISTINCT p_lo, p_hi, {utc_bin('day', 'p_lo')} AS d FROM pieces"
    "  ) AS u LEFT JOIN {daily} AS c ON c.caller = %(name)s AND c.day = u.d"
    f"  CROSS JOIN LATERAL {_BEFORE.format(x='u.p_hi')} AS b"
    f"  CROSS JOIN LATERAL {_BEFORE.format(x='u.p_lo')} AS a"
    ") SELECT day, sum(n)::bigint FROM ("
    "  SELECT l.lo AS day, c.events AS n FROM local_days AS l"
    "  JOIN {daily} AS c ON c.caller = %(name)s AND c.day = l.d"
    "  UNION ALL SELECT p.day, p.sign * c.n FROM pieces AS p JOIN counted AS c USING (p_lo, p_hi)"
    "  UNION ALL SELECT date_trunc('day', timestamp, %(tz)s), 1 FROM events"
    "  WHERE {by_others} AND timestamp >= %(start)s AND timestamp < %(upper)s"
    "  UNION ALL SELECT date_trunc('day', timestamp, %(tz)s), 1 FROM events"
    "  WHERE {memberships_by_others} AND timestamp >= %(start)s AND timestamp < %(upper)s"
    ") AS s GROUP BY 1 HAVING day < %(end)s AND sum(n) > 0 ORDER BY 1"
)


def _user_daily(name: str, tz_name: str, start: datetime, end: datetime) -> list:
    """entity_daily of a user. Their own events (caller, the bulk) per local
    day L are the count of the UTC day d that holds L's middle, from
    event_counts_daily_caller, plus the part of L outside d and minus the
    part of d outside L (8 or 10 of 24 hours in New York, 11 in Kolkata, none in
    UTC). Each part lies in one UTC day and is counted from that day's row
    (_BEFORE): its counts before each third hour, corrected from `events`
    between the nearest one and the local midnight (Kolkata's 18:30: the
    half hour after 18:00). The part a day takes back is the part the next
    day adds, so each is counted once, MATERIALIZED (inlined, the planner
    counts it for both days). A year of the busiest user in Kolkata at 10M
    events: 166 ms when each part was an index-only count of all its hours,
    16 ms this way. Then, disjoint from those, the events about them by
    others (idx_events_user_by_others) and the membership changes of theirs
    made by others (idx_events_target), few enough to bucket row by row."""
    query = sql.SQL(USER_DAILY_SQL).format(
        local_days=local_days(),
        daily=sql.Identifier(DailyCallerCount._meta.db_table),
        own=USER_OWN,
        by_others=USER_BY_OTHERS,
        memberships_by_others=USER_MEMBERSHIPS_BY_OTHERS,
    )
    params = {"name": name, "tz": tz_name, "start": start, "end": end, "upper": end + LONGEST_DAY}
    return fetch(query, params)


def entity_daily(
    kind: str,
    name: str,
    project: str,
    tz_name: str,
    start: datetime,
    end: datetime,
    source: str = "auto",
) -> list:
    """(local day, events) for one entity, every local day from `start`
    (a local midnight) to the last one beginning before `end`, whole.

    A user's own events (the bulk: a busy user causes millions) come from
    event_counts_daily_caller, corrected by index-only counts of the hours
    where the local day and the UTC day differ (none in UTC); source="raw"
    and other kinds read `events` row by row.
    """
    if kind == "user" and source != "raw":
        return _user_daily(name, tz_name, start, end)
    local_day = Func(
        Value("day"),
        F("timestamp"),
        Value(tz_name),
        function="date_trunc",
        output_field=DateTimeField(),
    )
    # No upper bound in SQL: with one, the planner trades the busy user's
    # bitmap scans for a scan of the whole table (measured: 5.2 s for 3.1 s).
    rows = (
        Event.objects.involving(kind, name, project)
        .filter(timestamp__gte=start)
        .annotate(day=local_day)
        .values_list("day")
        .annotate(n=Count("*"))
        .order_by("day")
    )
    return [(day, n) for day, n in rows if day < end]


USER_TYPE_COUNTS_SQL = (
    "SELECT event_type, count(*) FILTER (WHERE success) AS ok,"
    " count(*) FILTER (WHERE NOT success) AS bad FROM events"
    " WHERE {} AND timestamp >= %(start)s AND timestamp < %(end)s GROUP BY 1"
)
# A user's own events by type (USER_OWN): the window's whole UTC days from
# event_counts_daily_caller_type, its partial days at both ends from
# idx_events_caller_ts, one range each, read from the index alone (the two
# ranges OR-ed became a bitmap scan of the heap).
USER_OWN_BY_DAY_SQL = (
    "SELECT event_type, coalesce(sum(n) FILTER (WHERE success), 0)::bigint AS ok,"
    " coalesce(sum(n) FILTER (WHERE NOT success), 0)::bigint AS bad FROM ("
    "  SELECT event_type, success, n FROM {daily} WHERE caller = %(name)s"
    "  AND day >= %(first_day)s AND day < %(end_day)s"
    "  UNION ALL SELECT event_type, success, 1 FROM events WHERE caller = %(name)s"
    "  AND timestamp >= %(head_lo)s AND timestamp < %(head_hi)s"
    "  UNION ALL SELECT event_type, success, 1 FROM events WHERE caller = %(name)s"
    "  AND timestamp >= %(tail_lo)s AND timestamp < %(tail_hi)s"
    ") AS s GROUP BY 1"
)


def entity_type_counts(
    kind: str, name: str, project: str, window: Window, source: str = "auto"
) -> list[tuple]:
    """(event_type, succeeded, failed) for one entity in the window.

    A user's events are three disjoint parts, each read through its own
    index: their own (the bulk: whole UTC days from
    event_counts_daily_caller_type, partial days from idx_events_caller_ts,
    which carries the type and the outcome), those about them by others and
    their memberships changed by others; source="raw" and other kinds
    filter `events` by Event.objects.involving."""
    if kind == "user" and source != "raw":
        days = whole_days(window.start, window.end)
        own = (
            sql.SQL(USER_TYPE_COUNTS_SQL).format(USER_OWN)
            if days is None
            else sql.SQL(USER_OWN_BY_DAY_SQL).format(
                daily=sql.Identifier(DailyCallerTypeCount._meta.db_table)
            )
        )
        parts = sql.SQL(" UNION ALL ").join(
            [own, *(sql.SQL(USER_TYPE_COUNTS_SQL).format(part) for part in USER_PARTS[1:])]
        )
        return fetch(
            sql.SQL(
                "SELECT event_type, sum(ok)::bigint, sum(bad)::bigint FROM ({}) AS s"
                " GROUP BY 1 ORDER BY 2 DESC, 1"
            ).format(parts),
            {"name": name, "start": window.start, "end": window.end, **(days or {})},
        )
    qs = Event.objects.involving(kind, name, project).in_window(window.start, window.end)
    return list(
        qs.values_list("event_type")
        .annotate(
            ok=Count("event_uuid", filter=Q(success=True)),
            failed=Count("event_uuid", filter=Q(success=False)),
        )
        .order_by("-ok", "event_type")
    )


# `removals_after` counts the removals at or after each event, in event order
# (timestamp, event_uuid): an add (or update, or inventory entry) with none
# after it belongs to the current membership. The type is compared through
# coalesce (never NULL) so that it filters the subject's few rows, not a
# BitmapAnd with idx_events_event_type, which read every membership event of
# the table (at 10M events, 346,000 of them: 46 ms of an org page's 74).
MEMBERS_SQL = (
    "SELECT target, kind, role, state, joined FROM ("
    "  SELECT DISTINCT ON (target, kind) target, kind, role, state, event_type,"
    "   min(timestamp) FILTER (WHERE event_type <> ALL(%(removals)s) AND removals_after = 0)"
    "    OVER (PARTITION BY target, kind) AS joined"
    "  FROM ("
    "   SELECT target, payload->>'kind' AS kind, payload->>'role' AS role,"
    "    payload->>'state' AS state, event_type, timestamp, event_uuid,"
    "    count(*) FILTER (WHERE event_type = ANY(%(removals)s)) OVER (PARTITION BY target,"
    "     payload->>'kind' ORDER BY timestamp DESC, event_uuid DESC) AS removals_after"
    "   FROM events WHERE subject_type = %(kind)s AND subject = %(name)s AND success"
    "    AND coalesce(event_type, '') = ANY(%(member_types)s) AND timestamp >= %(since)s"
    "    AND target IS NOT NULL"
    "  ) AS history"
    "  ORDER BY target, kind, timestamp DESC, event_uuid DESC"
    ") AS latest WHERE event_type <> ALL(%(removals)s) ORDER BY kind DESC, role, target"
)


def members(subject_type: str, name: str, since: datetime | None) -> list[tuple]:
    """Current members of one org or project from its membership events since
    its latest creation: (member, kind, role, state, since), where since is
    the first add after the member's latest removal (a re-added member is a
    member since the re-add, not since the first time)."""
    params = {
        "kind": subject_type,
        "name": name,
        "since": since or datetime(1, 1, 1, tzinfo=UTC),
        "member_types": list(catalog.membership_types(subject_type)),
        "removals": list(catalog.MEMBER_REMOVALS),
    }
    return fetch(MEMBERS_SQL, params)


def memberships_of(user: str) -> list[tuple]:
    """The orgs and projects a user is a member of now: (kind, name, role, state)
    from the latest membership event per group since its creation (idx_events_target)."""
    query = sql.SQL(
        "SELECT m.subject_type, m.subject, m.role, m.state FROM ("
        "  SELECT DISTINCT ON (subject_type, subject) subject_type, subject, event_type,"
        "   payload->>'role' AS role, payload->>'state' AS state, timestamp FROM events"
        "  WHERE target = %(user)s AND success AND subject_type IN ('organization', 'project')"
        "   AND payload->>'kind' = 'usermember' AND event_type = ANY(%(member_types)s)"
        "  ORDER BY subject_type, subject, timestamp DESC, event_uuid DESC"
        ") AS m JOIN {entities} g ON g.kind = m.subject_type AND g.scope = ''"
        "  AND g.name = m.subject AND g.state <> 'gone' AND m.timestamp >= g.since"
        " WHERE m.event_type <> ALL(%(removals)s) ORDER BY 1, 2"
    ).format(entities=sql.Identifier(Entity._meta.db_table))
    params = {
        "user": user,
        "member_types": list(catalog.MEMBERSHIP_TYPES),
        "removals": list(catalog.MEMBER_REMOVALS),
    }
    return fetch(query, params)


# --- the calendar heatmap ------------------------------------------------------------


def activity_first_day(window: Window) -> datetime:
    """Local midnight of the period's first day in the display zone: the
    heatmap shows every day the period touches, each day whole."""
    return _local_midnight(window.local(window.start).date(), window)


def _local_midnight(day, window: Window) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=window.zone).astimezone(UTC)


def _nice_step(top: int) -> int:
    """An integer tick step giving at most five ticks up to `top` (1, 2, 5, 10, 20, ...)."""
    step = 1
    while top / step > 5:
        for factor in (2, 2.5, 2):
            step = int(step * factor)
            if top / step <= 5:
                break
    return step


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _heat_scale(top: int) -> list:
    """Grey for a day without events, then light to dark green: the grey
    holds below half an event, so the colour key shows it too."""
    zero = 0.5 / top
    return [
        [0, "#ebedf0"],
        [zero, "#ebedf0"],
        [zero, "#c6e48b"],
        [max(zero, 0.3), "#7bc96f"],
        [max(zero, 0.6), "#239a3b"],
        [1, "#196127"],
    ]


def _week_ticks(mondays: list) -> list[tuple[str, str]]:
    """(x, label) of the weeks that get a tick: over a short period every
    week ("Mar 02"); over a long one, the first week of each month ("Mar")."""
    if len(mondays) <= 10:
        return [(m.isoformat(), f"{m:%b %d}") for m in mondays]
    starts = [w for w, m in enumerate(mondays) if w == 0 or m.month != mondays[w - 1].month]
    # A first month shown for a week or two would print over the next.
    if len(starts) > 1 and starts[1] - starts[0] < 3:
        starts.pop(0)
    return [
        (
            mondays[w].isoformat(),
            f"{mondays[w]:%b}" if mondays[w].month != 1 else f"{mondays[w]:%b %Y}",
        )
        for w in starts
    ]


def _entity_filter(options) -> str:
    """The explorer's `entity` filter for the stat's entity, or "" when its
    cells do not open the explorer."""
    if not (options.explore and options.filters.get("kind")):
        return ""
    kind, name, project = (options.filters[k] for k in ("kind", "name", "project"))
    return f"{kind}:{project}/{name}" if kind == "experiment" else f"{kind}:{name}"


def _heat_trace(x: list[str], z: list, text: list, top: int) -> dict:
    return {
        "type": "heatmap",
        "x": x,
        "y": list(WEEKDAYS),
        "z": z,
        "text": text,
        "hovertemplate": "%{text}<extra></extra>",
        "xgap": 3,
        "ygap": 3,
        "zmin": 0,
        "colorscale": _heat_scale(top),
        "zmax": top,
        # The key below the grid, left, where the eye already is (a year's
        # grid and a week's end at different widths).
        "colorbar": {
            "title": {"text": "Events per day", "side": "right"},
            "orientation": "h",
            "x": 0,
            "xanchor": "left",
            "y": -0.5,
            "yanchor": "top",
            "lenmode": "pixels",
            "len": 220,
            "thickness": 10,
            "outlinewidth": 0,
            "tick0": 0,
            "dtick": _nice_step(top),
        },
    }


def _heat_layout(window: Window, ticks: list[tuple[str, str]]) -> dict:
    return layout(
        height=270,
        margin={"l": 60, "r": 10, "t": 10, "b": 100},
        yaxis={
            "autorange": "reversed",
            "fixedrange": True,
            # Square cells: a week's column as wide as a day's row is tall.
            "scaleanchor": "x",
            "scaleratio": 1,
            "constrain": "domain",
            "title": {"text": "Day of week"},
            "automargin": True,
            **GRID,
        },
        xaxis={
            "type": "category",
            "fixedrange": True,
            "constrain": "domain",
            "constraintoward": "left",
            "tickvals": [t for t, _ in ticks],
            "ticktext": [label for _, label in ticks],
            "title": {"text": f"Week from Monday ({window.tz_name})"},
            "showgrid": False,
            **GRID,
        },
        # On a phone a year's squares would be specks: rows fill the height.
        meta={
            "narrow": {"yaxis.scaleanchor": False, "xaxis.tickangle": -45},
            "wide": {"yaxis.scaleanchor": "x", "xaxis.tickangle": "auto"},
        },
    )


@register
class EntityActivity(Stat):
    name = "entity_activity"
    title = "Activity per day"
    description = (
        "Events per day involving one user, organization, project or experiment on every "
        "day of the display time zone that the period touches, each day whole (the "
        "calendar heatmap: a column per week, from Monday)."
    )
    chart = "heatmap"
    params = ENTITY_PARAMS
    uses_preaggregates = True

    def compute(self, window, filters, source="auto"):
        rows = entity_daily(
            filters["kind"],
            filters["name"],
            filters["project"],
            window.tz_name,
            activity_first_day(window),
            window.end,
            source,
        )
        return Result(
            [Column("day", "datetime"), Column("events", "integer")], [list(r) for r in rows]
        )

    def _cells(self, result, window, entity: str) -> tuple[list, list, list, list]:
        """(Mondays, counts, texts, explorer URLs): a column per week, a row
        per weekday, None outside the period."""
        first = window.local(activity_first_day(window)).date()
        last = window.local(window.end - timedelta(microseconds=1)).date()
        monday = first - timedelta(days=first.weekday())
        weeks = (last - monday).days // 7 + 1
        counts = {window.local(day).date(): n for day, n in result.rows}
        z: list[list[Any]] = [[None] * weeks for _ in range(7)]
        text = [[""] * weeks for _ in range(7)]
        urls = [[""] * weeks for _ in range(7)]
        # Each cell is a whole local day (entity_daily counts days whole),
        # so its explorer range is not cut to the period's edges.
        last_end = bucket_end(_local_midnight(last, window), "day", window)
        days = replace(window, start=activity_first_day(window), end=last_end)
        for w in range(weeks):
            for d in range(7):
                day = monday + timedelta(weeks=w, days=d)
                if first <= day <= last:
                    z[d][w] = counts.get(day, 0)
                    text[d][w] = f"{day:%a %Y-%m-%d}: {z[d][w]} events"
                    if entity:
                        start = _local_midnight(day, window)
                        end = bucket_end(start, "day", window)
                        urls[d][w] = explore_url(days, start, end, entity=entity)
        mondays = [monday + timedelta(weeks=w) for w in range(weeks)]
        return mondays, z, text, urls

    def figure(self, result, window, options=NO_OPTIONS):
        entity = _entity_filter(options)
        mondays, z, text, urls = self._cells(result, window, entity)
        top = max([1, *(n for _, n in result.rows)])
        trace = _heat_trace([m.isoformat() for m in mondays], z, text, top)
        if options.explore and entity:
            trace["customdata"] = urls
            trace["hovertemplate"] = "%{text}<br>Click to list them<extra></extra>"
        return {"data": [trace], "layout": _heat_layout(window, _week_ticks(mondays))}


@register
class EntityEvents(Stat):
    name = "entity_events"
    title = "Events in the period"
    description = "Events per type involving one user, organization, project or experiment."
    params = ENTITY_PARAMS

    def compute(self, window, filters, source="auto"):
        rows = [
            [t, ok, bad, (catalog.get(t).description if catalog.get(t) else "uncatalogued")]
            for t, ok, bad in entity_type_counts(
                filters["kind"], filters["name"], filters["project"], window, source
            )
        ]
        return Result(
            [
                Column("event_type"),
                Column("succeeded", "integer"),
                Column("failed", "integer"),
                Column("description"),
            ],
            rows,
        )
