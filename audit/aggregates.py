"""The pre-aggregates of `events`, each declared once.

Every table here is derived from `events` alone and kept exact by
statement-level triggers on `events` (AFTER INSERT, DELETE, UPDATE and
TRUNCATE, with transition tables), whoever writes the rows: ingest, the
portal's own INSERTs, psql, COPY, pg_restore, a prune. A row counts the
moment its transaction commits, and a deleted row stops counting the same
way; nothing has to call the API or run a command.

Three families, each declared below:

- COUNT_TABLES: counts per UTC hour, day or month and some keys (event type and
  outcome, caller, project, login user). One CountTable says which rows it
  counts, grouped how; from it come the trigger's upsert (+1 per inserted
  row, -1 per deleted one), the rebuild of a time range, the comparison
  with the raw table (verify_aggregates) and nothing else to keep in step.
- MEMBERSHIPS: the latest membership event of each (org, kind, member), and
  MEMBERSHIP_EVENTS (a CountTable) every one of them;
  ALLOCATIONS: the latest allocation or free of each realization and
  materialization at each facility.
- ENTITIES: every user, organization, project, experiment, realization and
  materialization with its state and the intervals it spent in each state,
  folded from the entity's successful lifecycle events (audit/entity_fold.py),
  and ENTITY_CHANGES, their per-hour deltas. What each event type does comes
  from its entry in audit/catalog.py.
- FACILITY_RUNS: each facility's status reports folded into runs of one
  status (audit/facility_runs.py), for the uptime bars and the charts' bands.

How a declaration becomes SQL is in audit/aggregate_tables.py and
audit/entity_fold.py; audit/triggers.py installs the triggers after every
`migrate`, rebuilds and verifies.
"""

from datetime import datetime

from django.conf import settings
from django.db import connection

from audit import catalog
from audit.aggregate_tables import CountTable, LatestEvents, sql_literals, utc_bin
from audit.buckets import QUARTER_MINUTES
from audit.entity_fold import Entities, EntityChanges
from audit.facility_runs import RUNS_TABLE, FacilityRuns

# The project an event counts for in the top projects: the one its payload
# names (experiments, realizations, ...), else itself for a project's own
# events, else none.
PROJECT_OF_EVENT = (
    "coalesce(payload->>'project', CASE WHEN subject_type = 'project' THEN subject END)"
)

_TYPE_AND_OUTCOME = (("event_type", "event_type"), ("success", "success"))
_LOGINS = "event_type = 'user_login' AND success"
_FAILED_LOGINS = "event_type = 'user_login' AND NOT success"
_FAILED_LOGIN = (("username", "subject"),)
# The events of an hour before its 15th, 30th and 45th minute (every zone's
# bucket edges fall on a quarter hour).
_QUARTERS = tuple(
    (f"n{m}", f"count(*) FILTER (WHERE extract(minute FROM timestamp AT TIME ZONE 'UTC') < {m})")
    for m in QUARTER_MINUTES
)
# The quarter hour of its UTC day an event falls in, 0 to 95.
_LOGIN_BOUNDS = (("first_login", "min", "timestamp"), ("last_login", "max", "timestamp"))
_QUARTER_OF_DAY = (
    "(4 * extract(hour FROM timestamp AT TIME ZONE 'UTC')"
    " + div(extract(minute FROM timestamp AT TIME ZONE 'UTC'), 15))::smallint"
)
# The most active users and projects, per day and per month.
_CALLER = (("caller", "caller"),)
_CALLER_COUNTS = (
    ("events", "count(*)"),
    ("logins", "count(*) FILTER (WHERE event_type = 'user_login')"),
    ("failures", "count(*) FILTER (WHERE NOT success)"),
)
# A caller's events of a UTC day before 03:00, 06:00, ... 21:00 UTC: a local
# day of a zone whose midnight is not UTC's is a UTC day's count corrected by
# the events between the local midnight and the nearest of these (at most an
# hour and a half of `events`) rather than by all of those between the two
# midnights (a user's heatmap, dashboards/stats/entity.py).
CHECKPOINT_HOURS = 3
BEFORE_CHECKPOINTS = tuple(
    (
        f"before_{hour:02d}",
        f"count(*) FILTER (WHERE timestamp - {utc_bin('day')} < interval '{hour} hours')",
    )
    for hour in range(CHECKPOINT_HOURS, 24, CHECKPOINT_HOURS)
)
_PROJECT = (("project", PROJECT_OF_EVENT),)
_PROJECT_COUNTS = (
    ("events", "count(*)"),
    ("experiments", "count(*) FILTER (WHERE event_type = 'experiment_created' AND success)"),
    ("realizations", "count(*) FILTER (WHERE event_type = 'realization_allocated' AND success)"),
    (
        "materializations",
        "count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success)",
    ),
)
_PROJECT_EVENTS = "payload->>'project' IS NOT NULL OR subject_type = 'project'"
# The organizations' membership event types, and the removals among
# membership events, as SQL lists.
_ORG_MEMBER_TYPES = sql_literals(catalog.membership_types("organization"))
_MEMBER_REMOVALS = sql_literals(catalog.MEMBER_REMOVALS)
# Each successful membership event of an organization, one row each (the
# unit a microsecond: a group is one event). An organization's members at a
# time before a later change replay its membership events from this table's
# key index alone, instead of from `events`, whose rows come from the heap
# (organizations by members over a window that ended 30 days ago, at 10M
# events: 283 ms, 49 from these).
MEMBERSHIP_EVENTS = CountTable(
    "org_membership_events",
    "at",
    "microseconds",
    (
        ("org", "subject"),
        ("kind", "payload->>'kind'"),
        ("member", "target"),
        ("event_uuid", "event_uuid"),
    ),
    counts=(
        ("n", "count(*)"),
        (
            "removals",
            f"count(*) FILTER (WHERE event_type IN ({_MEMBER_REMOVALS}))",
        ),
    ),
    only=f"event_type IN ({_ORG_MEMBER_TYPES}) AND success",
    nullable=("kind", "member"),
)

COUNT_TABLES = (
    CountTable(
        "event_counts_hourly",
        "bucket",
        "hour",
        _TYPE_AND_OUTCOME,
        counts=(("n", "count(*)"), *_QUARTERS),
    ),
    CountTable("event_counts_daily", "day", "day", _TYPE_AND_OUTCOME),
    CountTable(
        "login_users_hourly",
        "hour",
        "hour",
        (("username", "subject"),),
        counts=(("n", "count(*)"), *_QUARTERS),
        only="event_type = 'user_login' AND success",
    ),
    # The same per UTC day and month, for the users who logged in over a long
    # window: a year is some 12 monthly rows per user, not 8,760 hourly ones.
    # A day's row also holds the first and last quarter hour with a login:
    # a local day that begins or ends on a quarter hour of a UTC day takes
    # the users who logged in after (or before) it from these two numbers,
    # not from the day's hourly rows (dashboards/stats/active_users.py).
    CountTable(
        "login_users_daily",
        "day",
        "day",
        (("username", "subject"),),
        only=_LOGINS,
        bounds=(
            ("first_quarter", "min", _QUARTER_OF_DAY),
            ("last_quarter", "max", _QUARTER_OF_DAY),
        ),
    ),
    # Per UTC week and month, with each user's first and last login: the
    # weekly and monthly active users of a window's whole weeks and months
    # come from one or two of these groups each rather than from
    # deduplicating their days' (day, user) pairs (a year in UTC at 10M
    # events: 61 ms that way, 23 with these tables).
    CountTable(
        "login_users_weekly",
        "week",
        "week",
        (("username", "subject"),),
        only=_LOGINS,
        bounds=_LOGIN_BOUNDS,
    ),
    CountTable(
        "login_users_monthly",
        "month",
        "month",
        (("username", "subject"),),
        only=_LOGINS,
        bounds=_LOGIN_BOUNDS,
    ),
    CountTable(
        "event_counts_daily_caller",
        "day",
        "day",
        _CALLER,
        counts=(*_CALLER_COUNTS, *BEFORE_CHECKPOINTS),
    ),
    # The same by type and outcome, for one user's events by type: the busiest
    # user's 30 days at 10M events are some 200,000 entries of
    # idx_events_caller_ts, and a few hundred rows here.
    CountTable("event_counts_daily_caller_type", "day", "day", (*_CALLER, *_TYPE_AND_OUTCOME)),
    CountTable(
        "event_counts_daily_project",
        "day",
        "day",
        _PROJECT,
        counts=_PROJECT_COUNTS,
        only=_PROJECT_EVENTS,
    ),
    # The same per UTC month, for the top users and projects of a year or
    # of all time: some 12 (callers) and 19 (projects) times fewer rows
    # than the days; the days and `events` answer a window's edges.
    CountTable("event_counts_monthly_caller", "month", "month", _CALLER, counts=_CALLER_COUNTS),
    CountTable(
        "event_counts_monthly_project",
        "month",
        "month",
        _PROJECT,
        counts=_PROJECT_COUNTS,
        only=_PROJECT_EVENTS,
    ),
    # Facilities by allocations: a few facilities, so a year is some
    # thousands of rows however many events.
    CountTable(
        "allocation_counts_daily",
        "day",
        "day",
        (("facility", "target"),),
        counts=(
            ("allocations", "count(*)"),
            (
                "realizations",
                "count(*) FILTER (WHERE event_type = 'realization_allocated' AND success)",
            ),
            (
                "materializations",
                "count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success)",
            ),
            ("failed", "count(*) FILTER (WHERE NOT success)"),
        ),
        only=(
            "event_type IN ('realization_allocated', 'materialization_allocated')"
            " AND target IS NOT NULL"
        ),
    ),
    # The most frequent errors and the failed logins by user: only failures
    # (a few percent of events) are counted.
    CountTable(
        "failure_counts_daily",
        "day",
        "day",
        (("event_type", "event_type"), ("error_message", "coalesce(error_message, '')")),
        only="NOT success",
    ),
    CountTable("failed_logins_daily", "day", "day", _FAILED_LOGIN, only=_FAILED_LOGINS),
    # The same per UTC month: a year's failed logins by user are some 12 rows
    # per user instead of one per day they failed.
    CountTable("failed_logins_monthly", "month", "month", _FAILED_LOGIN, only=_FAILED_LOGINS),
    MEMBERSHIP_EVENTS,
)

# Each organization membership's latest event.
MEMBERSHIPS = LatestEvents(
    "org_memberships",
    keys=(("org", "e.subject"), ("kind", "e.payload->>'kind'"), ("member", "e.target")),
    values=(
        ("last_at", "e.timestamp"),
        ("last_uuid", "e.event_uuid"),
        ("removed", f"e.event_type IN ({_MEMBER_REMOVALS})"),
    ),
    rank=("last_at", "last_uuid"),
    types=_ORG_MEMBER_TYPES,
    nullable=("kind", "member"),
)

# Each realization's and materialization's newest allocation or free at each
# facility (the event's target): the allocations in use are the rows not
# freed. On equal timestamps the free wins (a free taken for the earlier
# event would hold the hosts until the subject's next event, perhaps never),
# then the greater uuid.
ALLOCATIONS = LatestEvents(
    "facility_allocations",
    keys=(("facility", "e.target"), ("kind", "e.subject_type"), ("name", "e.subject")),
    values=(
        ("last_at", "e.timestamp"),
        ("last_uuid", "e.event_uuid"),
        ("freed", f"e.event_type IN ({sql_literals(catalog.ALLOCATION_FREES)})"),
    ),
    rank=("last_at", "freed", "last_uuid"),
    types=sql_literals(catalog.ALLOCATION_TYPES),
    only="e.target IS NOT NULL",
)

ENTITIES = Entities()


# Per UTC hour, kind and state, the entities that entered (+1) and left (-1)
# it. Its own triggers on entity_intervals keep it (audit migrations 0008,
# 0027 and 0030); it is declared here to be verified and rebuilt with the rest.
def _changes_per(unit: str) -> str:
    """The entities entering (+1) and leaving (-1) each state per UTC `unit`,
    summed from entity_intervals: an EntityChanges table's rows."""
    return (
        f"SELECT kind, {unit}, state, sum(d) FROM ("
        f"SELECT kind, date_trunc('{unit}', valid_from, 'UTC') AS {unit}, state, 1 AS d "
        "FROM entity_intervals UNION ALL "
        f"SELECT kind, date_trunc('{unit}', valid_to, 'UTC'), state, -1 "
        "FROM entity_intervals WHERE valid_to IS NOT NULL"
        ") AS c GROUP BY 1, 2, 3 HAVING sum(d) <> 0"
    )


ENTITY_CHANGES = EntityChanges("entity_changes_hourly", computed=_changes_per("hour"))
# The same per UTC month (audit migration 0027): the entities in each state
# at a moment are its whole months' deltas and its month's hours', some
# hundreds of rows however many years the log holds.
ENTITY_CHANGES_MONTHLY = EntityChanges(
    "entity_changes_monthly", computed=_changes_per("month"), column="month"
)
# And per UTC day (audit migration 0030): a growth chart reads a whole UTC
# day inside one of its buckets as one row per kind and state, not 24.
ENTITY_CHANGES_DAILY = EntityChanges(
    "entity_changes_daily", computed=_changes_per("day"), column="day"
)
ENTITY_CHANGE_TABLES = (ENTITY_CHANGES, ENTITY_CHANGES_DAILY, ENTITY_CHANGES_MONTHLY)

# Each facility's status reports folded into runs of one status (facilities/
# runs.py). The hold of a report depends on FACILITY_STALE_AFTER: the value
# is part of the declaration, so changing the setting rebuilds the runs.
FACILITY_RUNS = FacilityRuns(RUNS_TABLE, stale=settings.FACILITY_STALE_AFTER)

AGGREGATES = (
    *COUNT_TABLES,
    MEMBERSHIPS,
    ALLOCATIONS,
    ENTITIES,
    *ENTITY_CHANGE_TABLES,
    FACILITY_RUNS,
)
# The tables the triggers on `events` write (entity_changes_hourly and
# _monthly follow entity_intervals by triggers of their own).
DERIVED_TABLES = (
    *(t.table for t in COUNT_TABLES),
    MEMBERSHIPS.table,
    ALLOCATIONS.table,
    "entity_intervals",
    "entities",
    FACILITY_RUNS.table,
)
# Every table a pre-aggregate writes: those, and the entity changes.
PREAGGREGATE_TABLES = (*DERIVED_TABLES, *(t.table for t in ENTITY_CHANGE_TABLES))


def computed_intervals(kinds) -> list[tuple[str, str, datetime, datetime | None]]:
    """(kind, state, valid_from, valid_to) folded from `events` without the
    pre-aggregate: the raw-table answer to compare against."""
    with connection.cursor() as cursor:
        kinds = set(kinds)
        keys = [k for k in ENTITIES.all_keys(cursor) if k[0] in kinds]
        return [
            (kind, state, start, end)
            for kind, _, _, state, start, end in ENTITIES.folded(cursor, keys, "intervals")
        ]
