"""Top-N tables: the most active users and projects, organizations by
members, facilities by allocations, the most frequent errors and who
failed to log in.

The users and projects over a window read monthly pre-aggregates for its
whole UTC months, daily ones for the whole UTC days around them and
`events` for the partial days at both edges (audit.buckets.month_plan):
event_counts_monthly_caller and event_counts_daily_caller
(audit.aggregate_models MonthlyCallerCount, DailyCallerCount),
event_counts_monthly_project and event_counts_daily_project. The facilities
read allocation_counts_daily (audit.DailyFacilityCount) for whole days
(audit.buckets.whole_days: a few facilities, a few rows a day), the errors
and failed logins dashboards/stats/failures.py, the organizations by
members dashboards/stats/org_members.py.
"""

from psycopg import sql

from audit.aggregate_models import MonthlyCallerCount, MonthlyProjectCount
from audit.buckets import (
    DAY_EDGES,
    DAY_SIGN,
    RAW_EDGES,
    RAW_SIGN,
    fetch,
    month_plan,
    whole_days,
)
from audit.models import (
    DailyCallerCount,
    DailyFacilityCount,
    DailyProjectCount,
    Entity,
)
from dashboards.stats.failures import failed_logins, top_errors
from dashboards.stats.org_members import top_orgs_by_members
from dashboards.stats.ranking import bounded_top, heads_sql, touched_months
from dashboards.stats.registry import N_OR_ALL, Column, N, Param, Result, TableStat, register
from sphere_stats.windows import Window

ENTITIES = sql.Identifier(Entity._meta.db_table)

CALLER_COUNTS = sql.SQL(
    "count(*), count(*) FILTER (WHERE event_type = 'user_login'),"
    " count(*) FILTER (WHERE NOT success)"
)
USERS = sql.SQL("caller IN (SELECT name FROM {} WHERE kind = 'user')").format(ENTITIES)
# Every caller's counts over a month_plan: each day and raw row with its
# side's sign (a month read whole has its days outside the window taken back).
CALLERS_SQL = sql.SQL(
    "SELECT caller, sum(events)::bigint, sum(logins)::bigint, sum(failures)::bigint FROM ("
    "  SELECT caller, events, logins, failures FROM {monthly}"
    "  WHERE month >= %(first_month)s AND month < %(end_month)s"
    "  UNION ALL SELECT caller, {day_sign} * events, {day_sign} * logins,"
    "   {day_sign} * failures FROM {daily} WHERE {day_edges}"
    "  UNION ALL SELECT caller, sign * events, sign * logins, sign * failures FROM ("
    "   SELECT caller, {raw_sign} AS sign, {counts} FROM events WHERE {edges} GROUP BY 1, 2"
    "  ) AS r (caller, sign, events, logins, failures)"
    ") AS s (caller, events, logins, failures) GROUP BY caller"
).format(
    monthly=sql.Identifier(MonthlyCallerCount._meta.db_table),
    daily=sql.Identifier(DailyCallerCount._meta.db_table),
    day_edges=DAY_EDGES,
    day_sign=DAY_SIGN,
    raw_sign=RAW_SIGN,
    counts=CALLER_COUNTS,
    edges=RAW_EDGES,
)


# The exact counts of a list of callers over a month_plan: each caller's rows
# read by key (idx_monthly_caller_caller, idx_daily_caller_caller and
# idx_events_caller_ts), so the cost follows the candidates, not the callers.
CALLER_CANDIDATES_SQL = sql.SQL(
    "SELECT c.caller, sum(x.events)::bigint, sum(x.logins)::bigint, sum(x.failures)::bigint"
    " FROM unnest(%(keys)s::text[]) AS c (caller)"
    " JOIN {entities} u ON u.kind = 'user' AND u.scope = '' AND u.name = c.caller"
    " CROSS JOIN LATERAL ("
    "  SELECT events, logins, failures FROM {monthly} WHERE caller = c.caller"
    "  AND month >= %(first_month)s AND month < %(end_month)s"
    "  UNION ALL SELECT {head_sign} * events, {head_sign} * logins, {head_sign} * failures"
    "  FROM {daily} WHERE caller = c.caller"
    "  AND day >= %(days_head_lo)s AND day < %(days_head_hi)s"
    "  UNION ALL SELECT {tail_sign} * events, {tail_sign} * logins, {tail_sign} * failures"
    "  FROM {daily} WHERE caller = c.caller"
    "  AND day >= %(days_tail_lo)s AND day < %(days_tail_hi)s"
    "  UNION ALL SELECT {head_sign} * n, {head_sign} * l, {head_sign} * f FROM ("
    "   SELECT {counts} FROM events WHERE caller = c.caller"
    "   AND timestamp >= %(head_lo)s AND timestamp < %(head_hi)s) AS h (n, l, f)"
    "  UNION ALL SELECT {tail_sign} * n, {tail_sign} * l, {tail_sign} * f FROM ("
    "   SELECT {counts} FROM events WHERE caller = c.caller"
    "   AND timestamp >= %(tail_lo)s AND timestamp < %(tail_hi)s) AS t (n, l, f)"
    " ) AS x (events, logins, failures)"
    " GROUP BY c.caller HAVING sum(x.events) > 0 ORDER BY 2 DESC, 1 LIMIT %(n)s"
).format(
    entities=ENTITIES,
    monthly=sql.Identifier(MonthlyCallerCount._meta.db_table),
    daily=sql.Identifier(DailyCallerCount._meta.db_table),
    counts=CALLER_COUNTS,
    head_sign=sql.SQL("%(head_sign)s::int"),
    tail_sign=sql.SQL("%(tail_sign)s::int"),
)


# Each month's busiest callers: idx_monthly_caller_rank.
CALLER_HEADS_SQL = heads_sql(MonthlyCallerCount._meta.db_table, "caller", "events")


def top_callers(window: Window, n: int, source: str = "auto") -> list[tuple]:
    """Users by events they caused in the window: (user, events, logins, failures).

    Whole UTC months come from event_counts_monthly_caller, the whole days
    around them from event_counts_daily_caller, the partial days at both
    edges from `events`, for the candidates bounded_top picks (every caller
    when they do not prove the ranking); source="raw"
    (or a window without a whole UTC day) counts everything from `events`.
    """
    days = None if source == "raw" else month_plan(window.start, window.end)
    if days is None:
        query = sql.SQL(
            "SELECT caller, {counts} FROM events"
            " WHERE timestamp >= %(start)s AND timestamp < %(end)s AND {users}"
            " GROUP BY caller ORDER BY 2 DESC, 1 LIMIT %(n)s"
        ).format(counts=CALLER_COUNTS, users=USERS)
        return fetch(query, {"start": window.start, "end": window.end, "n": n})
    found = bounded_top(CALLER_HEADS_SQL, CALLER_CANDIDATES_SQL, 1, n, touched_months(window), days)
    if found is not None:
        return found
    query = sql.SQL(
        "SELECT * FROM ({ranking}) AS ranked (caller, events, logins, failures)"
        " WHERE {users} AND events > 0 ORDER BY 2 DESC, 1 LIMIT %(n)s"
    ).format(ranking=CALLERS_SQL, users=USERS)
    return fetch(query, {**days, "n": n})


PROJECT_MEASURES = {
    "events": "count(*)",
    "experiments": "count(*) FILTER (WHERE event_type = 'experiment_created' AND success)",
    "realizations": "count(*) FILTER (WHERE event_type = 'realization_allocated' AND success)",
    "materializations": (
        "count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success)"
    ),
}
PROJECT_COUNTS = sql.SQL(", ".join(PROJECT_MEASURES.values()))
# A project's own events (created, members) count as well as those naming it
# in payload.project (experiments, realizations).
PROJECT_EVENTS = sql.SQL("(payload->>'project' IS NOT NULL OR subject_type = 'project')")
PROJECTS_RAW_SQL = (
    "SELECT coalesce(payload->>'project', subject) AS project, {counts} FROM events"
    " WHERE timestamp >= %(start)s AND timestamp < %(end)s AND {project_events}"
    " GROUP BY 1 HAVING {measure} > 0 ORDER BY {order} DESC, 1 LIMIT %(n)s"
)
# Every project's count of one measure over a month_plan, ranked: only the
# keys of the first n (their other measures are read by key after). One
# narrow column sums faster than four.
PROJECT_RANKING_SQL = (
    "SELECT project FROM ("
    "  SELECT project, {by} FROM {monthly}"
    "  WHERE month >= %(first_month)s AND month < %(end_month)s"
    "  UNION ALL SELECT project, {day_sign} * {by} FROM {daily} WHERE {day_edges}"
    "  UNION ALL SELECT project, sign * n FROM ("
    "   SELECT coalesce(payload->>'project', subject), {raw_sign}, {measure} FROM events"
    "   WHERE {edges} AND {project_events} GROUP BY 1, 2"
    "  ) AS r (project, sign, n)"
    ") AS s (project, n) GROUP BY 1 HAVING sum(n) > 0 ORDER BY sum(n) DESC, 1 LIMIT %(n)s"
)


# The exact counts of a list of projects over a month_plan, read by key:
# idx_monthly_project_project, idx_daily_project_project, idx_events_project_ts
# for the events naming a project, idx_events_subject_ts for its own.
PROJECT_CANDIDATES_SQL = (
    "SELECT c.project, {sums} FROM unnest(%(keys)s::text[]) AS c (project)"
    " CROSS JOIN LATERAL ("
    "  SELECT {columns} FROM {monthly} WHERE project = c.project"
    "  AND month >= %(first_month)s AND month < %(end_month)s"
    "  UNION ALL SELECT {day_signed} FROM {daily} WHERE project = c.project"
    "  AND day >= %(days_head_lo)s AND day < %(days_head_hi)s"
    "  UNION ALL SELECT {day_signed} FROM {daily} WHERE project = c.project"
    "  AND day >= %(days_tail_lo)s AND day < %(days_tail_hi)s"
    "  UNION ALL SELECT {raw_signed} FROM ("
    "   SELECT {raw_sign}, {counts} FROM events WHERE payload->>'project' = c.project"
    "   AND {edges} GROUP BY 1"
    "   UNION ALL SELECT {raw_sign}, {counts} FROM events WHERE subject_type = 'project'"
    "   AND subject = c.project AND payload->>'project' IS NULL AND {edges} GROUP BY 1"
    "  ) AS r (sign, {columns})"
    " ) AS x ({columns})"
    " GROUP BY 1 HAVING sum({by}) > 0 ORDER BY {order} DESC, 1 LIMIT %(n)s"
)


def top_projects(window: Window, n: int, by: str, source: str = "auto") -> list[tuple]:
    """Projects by events about them or naming them in payload.project, experiments created,
    realizations or materializations in the window: (project, events,
    experiments, realizations, materializations), every column over the
    same events whatever `by` ranks them.

    Whole UTC months come from event_counts_monthly_project, the whole days
    around them from event_counts_daily_project, the partial days at both
    edges from `events` (idx_events_project_ts): every project's `by` alone
    is summed to find the first n, whose other measures are then read by
    key. Projects are fewer and their activity more even than callers': one
    narrow column of every project sums faster than bounded_top's
    candidates prove a ranking (at 10M events, a year, side by side: 32 ms
    against 63-71).
    source="raw" (or a window without a whole UTC day) counts everything
    from `events`.
    """
    order = sql.Literal(list(PROJECT_MEASURES).index(by) + 2)
    days = None if source == "raw" else month_plan(window.start, window.end)
    if days is None:
        query = sql.SQL(PROJECTS_RAW_SQL).format(
            counts=PROJECT_COUNTS,
            project_events=PROJECT_EVENTS,
            measure=sql.SQL(PROJECT_MEASURES[by]),
            order=order,
        )
        return fetch(query, {"start": window.start, "end": window.end, "n": n})
    columns = [sql.Identifier(c) for c in PROJECT_MEASURES]
    names = {
        "sums": sql.SQL(", ").join(sql.SQL("sum({})::bigint").format(c) for c in columns),
        "columns": sql.SQL(", ").join(columns),
        "monthly": sql.Identifier(MonthlyProjectCount._meta.db_table),
        "daily": sql.Identifier(DailyProjectCount._meta.db_table),
        "counts": PROJECT_COUNTS,
        "edges": RAW_EDGES,
        "by": sql.Identifier(by),
        "order": order,
        "raw_sign": RAW_SIGN,
        # Each day or raw row's counts with its side's sign (month_plan).
        "day_signed": sql.SQL(", ").join(sql.SQL("{} * {}").format(DAY_SIGN, c) for c in columns),
        "raw_signed": sql.SQL(", ").join(sql.SQL("sign * {}").format(c) for c in columns),
    }
    return _every_project(names, by, n, days)


def _every_project(names: dict, by: str, n: int, days: dict) -> list[tuple]:
    """The first n projects by `by` over a month_plan, every project summed."""
    ranking = sql.SQL(PROJECT_RANKING_SQL).format(
        **names,
        day_edges=DAY_EDGES,
        day_sign=DAY_SIGN,
        project_events=PROJECT_EVENTS,
        measure=sql.SQL(PROJECT_MEASURES[by]),
    )
    keys = [key for (key,) in fetch(ranking, {**days, "n": n})]
    return fetch(sql.SQL(PROJECT_CANDIDATES_SQL).format(**names), {**days, "keys": keys, "n": n})


FACILITIES_RAW_SQL = (
    "SELECT target, count(*) FILTER (WHERE event_type = 'realization_allocated' AND success),"
    " count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success),"
    " count(*) FILTER (WHERE NOT success) FROM events"
    " WHERE event_type IN ('realization_allocated', 'materialization_allocated')"
    " AND timestamp >= %(start)s AND timestamp < %(end)s AND target IS NOT NULL"
    " GROUP BY 1 ORDER BY count(*) FILTER (WHERE success) DESC, 4 DESC, 1 LIMIT %(n)s"
)
# The successful allocations are the realizations and the materializations.
FACILITIES_SQL = sql.SQL(
    "SELECT facility, sum(r)::bigint, sum(m)::bigint, sum(f)::bigint FROM ("
    "  SELECT facility, realizations, materializations, failed FROM {daily}"
    "  WHERE day >= %(first_day)s AND day < %(end_day)s"
    "  UNION ALL SELECT target,"
    "   count(*) FILTER (WHERE event_type = 'realization_allocated' AND success),"
    "   count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success),"
    "   count(*) FILTER (WHERE NOT success) FROM events"
    "  WHERE event_type IN ('realization_allocated', 'materialization_allocated')"
    "   AND {edges} AND target IS NOT NULL GROUP BY 1"
    ") AS s (facility, r, m, f) GROUP BY 1 ORDER BY sum(r) + sum(m) DESC, 4 DESC, 1 LIMIT %(n)s"
).format(daily=sql.Identifier(DailyFacilityCount._meta.db_table), edges=RAW_EDGES)


def top_facilities(window: Window, n: int, source: str = "auto") -> list[tuple]:
    """Facilities by allocations in the window: (facility, realizations,
    materializations, failed). Whole UTC days from allocation_counts_daily,
    the partial days at both edges from `events` (idx_events_type_ts)."""
    days = None if source == "raw" else whole_days(window.start, window.end)
    if days is None:
        return fetch(FACILITIES_RAW_SQL, {"start": window.start, "end": window.end, "n": n})
    return fetch(FACILITIES_SQL, {**days, "n": n})


@register
class TopUsers(TableStat):
    name = "top_users"
    title = "Most active users"
    description = "Users by the events they caused in the period (logins, changes, requests)."
    params = (N,)
    uses_preaggregates = True

    columns = (
        Column("user", link="user"),
        Column("events", "integer"),
        Column("logins", "integer"),
        Column("failures", "integer"),
    )

    def rows(self, window, filters, source):
        return top_callers(window, filters["n"], source)


@register
class TopProjects(TableStat):
    name = "top_projects"
    title = "Most active projects"
    description = (
        "Projects by events about them or naming them (payload.project), experiments "
        "created, realizations or materializations in the period."
    )
    params = (
        N,
        Param("by", "what to rank by", default="events", choices=tuple(PROJECT_MEASURES)),
    )

    uses_preaggregates = True

    columns = (
        Column("project", link="project"),
        Column("events", "integer"),
        Column("experiments", "integer"),
        Column("realizations", "integer"),
        Column("materializations", "integer"),
    )

    def rows(self, window, filters, source):
        return top_projects(window, filters["n"], filters["by"], source)


@register
class TopOrgs(TableStat):
    name = "top_orgs"
    title = "Organizations by members"
    description = (
        "Organizations existing at the end of the period by their user and project "
        "members then, reconstructed from membership events."
    )
    params = (N,)
    uses_preaggregates = True

    columns = (
        Column("organization", link="organization"),
        Column("user_members", "integer"),
        Column("project_members", "integer"),
    )

    def rows(self, window, filters, source):
        return top_orgs_by_members(filters["n"], window.end, source)


@register
class TopFacilities(TableStat):
    name = "top_facilities"
    title = "Facilities by allocations"
    description = "Successful realization and materialization allocations per facility."
    params = (N,)

    uses_preaggregates = True

    columns = (
        Column("facility", link="facility"),
        Column("realizations", "integer"),
        Column("materializations", "integer"),
        Column("failed", "integer"),
    )

    def rows(self, window, filters, source):
        return top_facilities(window, filters["n"], source)


@register
class TopErrors(TableStat):
    name = "top_errors"
    title = "Most frequent error messages"
    description = "Error messages of failed events in the period, most frequent first."
    params = (N,)

    uses_preaggregates = True

    columns = (
        Column("error_message"),
        Column("event_type"),
        Column("count", "integer"),
        Column("last_seen", "datetime"),
    )

    def rows(self, window, filters, source):
        return top_errors(window, filters["n"], source)


@register
class FailedLogins(TableStat):
    name = "failed_logins"
    title = "Failed logins by user"
    description = "Who failed to log in during the period, how often, and the last error."
    params = (N_OR_ALL,)

    uses_preaggregates = True

    columns = (
        Column("user", link="user"),
        Column("failures", "integer"),
        Column("last_attempt", "datetime"),
        Column("last_error"),
    )

    def compute(self, window, filters, source="auto"):
        found = failed_logins(window, filters["n"] or None, source)
        return Result(
            list(self.columns),
            [list(r[:4]) for r in found],
            # How many users failed in all, so a page showing the top N can say so.
            {"total": found[0][4] if found else 0, "total_of": "users"},
        )
