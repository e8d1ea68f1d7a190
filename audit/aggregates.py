"""The pre-aggregates of `events`, each declared once.

Every table here is derived from `events` alone and kept exact by
statement-level triggers on `events` (AFTER INSERT, DELETE, UPDATE and
TRUNCATE, with transition tables), whoever writes the rows: ingest, the
portal's own INSERTs, psql, COPY, pg_restore, a prune. A row counts the
moment its transaction commits, and a deleted row stops counting the same
way; nothing has to call the API or run a command.

Three families, each a list of declarations below:

- COUNT_TABLES: counts per UTC hour or day and some keys (event type and
  outcome, caller, project, login user). One CountTable says which rows it
  counts, grouped how; from it come the trigger's upsert (+1 per inserted
  row, -1 per deleted one), the rebuild of a time range, the comparison
  with the raw table (verify_aggregates) and nothing else to keep in step.
- MEMBERSHIPS: the latest membership event of each (org, kind, member).
- ENTITIES: every user, organization, project, experiment, realization and
  materialization with its state and the intervals it spent in each state,
  folded by one SQL statement (ENTITY_FOLD) from the entity's successful
  lifecycle events, preceded by a "seen" step at its first mention when it
  appears in an event before any lifecycle event of its own (it predates
  the log). What each event type does comes from audit/catalog.py.

`install()` runs after every `migrate` (audit/apps.py): it (re)creates the
trigger functions from these declarations and rebuilds, with a progress bar,
each pre-aggregate whose declaration changed since it was last built (all of
them on a database adopted with rows in it). The digest of each declaration
is kept in `aggregate_definitions`.
"""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from tqdm import tqdm

from audit import catalog
from audit.catalog import CATALOGUED, CREATE, ENTITY_KINDS, GONE
from audit.models import MEMBERSHIP_TYPES, PROJECT_OF_EVENT

Key = tuple[str, str, str]  # (kind, scope, name)
ENTITY_LOCK = 7_400_042  # pg_advisory_xact_lock key, see REFRESH_FUNCTION


def _quoted(names) -> str:
    """A SQL list of literals: catalog names and states are slugs."""
    return ", ".join(f"'{name}'" for name in names)


LIFECYCLE = _quoted(catalog.LIFECYCLE_TYPES)
MEMBER_TYPES = _quoted(MEMBERSHIP_TYPES)
ORG_MEMBER_TYPES = _quoted(catalog.MEMBER_TYPES["organization"])
SEEN_KINDS = _quoted(k.name for k in ENTITY_KINDS.values() if k.seen)

# The scope an entity is named in, for an event about it (alias e):
# experiments within their project, realizations within their facility.
SCOPE_OF_EVENT = (
    "CASE e.subject_type WHEN 'experiment' THEN coalesce(e.payload->>'project', '') "
    "WHEN 'realization' THEN coalesce(e.target, '') "
    "WHEN 'materialization' THEN coalesce(e.target, '') ELSE '' END"
)


# --- counting tables ------------------------------------------------------------------


class TableDeclaration:
    """A pre-aggregate stored in one table, declared by its dataclass fields:
    its name is the table's, and its definition (whose digest says when to
    rebuild it) is the declaration itself."""

    table: str

    @property
    def name(self) -> str:
        return self.table

    @property
    def definition(self) -> str:
        return repr(self)


@dataclass(frozen=True)
class CountTable(TableDeclaration):
    """Rows of `events` matching `only`, counted per UTC `unit` (hour or
    day, in column `time`) and `keys`. Each key and count is (its column,
    its SQL over an events row). The first count is count(*): a group whose
    first count falls to 0 has no rows left and its row is deleted."""

    table: str
    time: str
    unit: str
    keys: tuple[tuple[str, str], ...]
    counts: tuple[tuple[str, str], ...] = (("n", "count(*)"),)
    only: str = "TRUE"

    def _grouped(self, rows: str, sign: int = 1, where: str = "TRUE") -> str:
        select = ", ".join(
            [f"date_trunc('{self.unit}', timestamp, 'UTC')"]
            + [sql for _, sql in self.keys]
            + [f"{sign} * {sql}" if sign != 1 else sql for _, sql in self.counts]
        )
        groups = ", ".join(str(i) for i in range(1, len(self.keys) + 2))
        # Sorted so that concurrent statements lock the rows in one order.
        return (
            f"SELECT {select} FROM {rows} WHERE ({self.only}) AND ({where}) "
            f"GROUP BY {groups} ORDER BY {groups}"
        )

    def _columns(self) -> str:
        return ", ".join([self.time, *(c for c, _ in self.keys), *(c for c, _ in self.counts)])

    def apply_sql(self, rows: str, sign: int) -> list[str]:
        """The trigger's statements: add (sign 1) or take back (-1) `rows`."""
        key_columns = ", ".join([self.time, *(c for c, _ in self.keys)])
        added = ", ".join(f"{c} = t.{c} + excluded.{c}" for c, _ in self.counts)
        statements = [
            f"INSERT INTO {self.table} AS t ({self._columns()}) {self._grouped(rows, sign)} "
            f"ON CONFLICT ({key_columns}) DO UPDATE SET {added}"
        ]
        if sign < 0:
            keys = ", ".join(
                [f"date_trunc('{self.unit}', timestamp, 'UTC') AS k0"]
                + [f"{sql} AS k{i}" for i, (_, sql) in enumerate(self.keys, start=1)]
            )
            same = " AND ".join(
                [f"t.{self.time} = g.k0"]
                + [f"t.{c} = g.k{i}" for i, (c, _) in enumerate(self.keys, start=1)]
            )
            statements.append(
                f"DELETE FROM {self.table} AS t USING (SELECT DISTINCT {keys} FROM {rows} "
                f"WHERE ({self.only})) AS g WHERE {same} AND t.{self.counts[0][0]} = 0"
            )
        return statements

    def _range(self) -> tuple[str, str]:
        # Whole units: from the one `start` falls in to the end of the one
        # `end` falls in (an `end` on a unit's boundary ends its predecessor).
        lo = f"coalesce(date_trunc('{self.unit}', %(start)s::timestamptz, 'UTC'), '-infinity')"
        hi = (
            f"coalesce(date_trunc('{self.unit}', %(end)s::timestamptz - interval '1 microsecond',"
            f" 'UTC') + interval '1 {self.unit}', 'infinity')"
        )
        return lo, hi

    def rebuild(self, cursor, start: datetime | None, end: datetime | None) -> None:
        """Recompute the hours or days overlapping [start, end) (None: unbounded)."""
        lo, hi = self._range()
        params = {"start": start, "end": end}
        cursor.execute(
            f"DELETE FROM {self.table} WHERE {self.time} >= {lo} AND {self.time} < {hi}", params
        )
        # In time order, as the triggers write them: a window's rows are then
        # a few adjacent pages, not rows scattered over the whole table.
        cursor.execute(
            f"INSERT INTO {self.table} ({self._columns()}) "
            + self._grouped("events", where=f"timestamp >= {lo} AND timestamp < {hi}"),
            params,
        )

    def differences(self, cursor, start: datetime | None, end: datetime | None) -> list[str]:
        """Each group where the table and `events` disagree, as a sentence."""
        lo, hi = self._range()
        key_columns = [self.time, *(c for c, _ in self.keys)]
        counts = [c for c, _ in self.counts]
        stored = (
            f"SELECT {', '.join(key_columns + counts)} FROM {self.table} "
            f"WHERE {self.time} >= {lo} AND {self.time} < {hi}"
        )
        computed = self._grouped("events", where=f"timestamp >= {lo} AND timestamp < {hi}")
        cursor.execute(
            f"SELECT {', '.join(f's.{c}' for c in key_columns)}, "
            f"{', '.join(f'r.{c}' for c in key_columns)}, "
            f"{', '.join(f's.{c}' for c in counts)}, {', '.join(f'r.{c}' for c in counts)} "
            f"FROM ({stored}) AS s FULL JOIN ({computed}) AS r ({', '.join(key_columns + counts)}) "
            f"ON {' AND '.join(f's.{c} = r.{c}' for c in key_columns)} "
            f"WHERE ({', '.join(f's.{c}' for c in counts)}) IS DISTINCT FROM "
            f"({', '.join(f'r.{c}' for c in counts)}) ORDER BY 1, 2 LIMIT 1000",
            {"start": start, "end": end},
        )
        width = len(key_columns)
        found = []
        for row in cursor.fetchall():
            key = row[:width] if row[0] is not None else row[width : 2 * width]
            have, want = row[2 * width : 2 * width + len(counts)], row[2 * width + len(counts) :]
            found.append(
                f"{self.table} {dict(zip(key_columns, key, strict=True))}: "
                f"stored {dict(zip(counts, have, strict=True))}, "
                f"events say {dict(zip(counts, want, strict=True))}"
            )
        return found

    def time_span(self, cursor) -> list[tuple[datetime, datetime]]:
        """The months holding events, as [start, end) chunks of a rebuild."""
        cursor.execute(
            "SELECT date_trunc('month', min(timestamp), 'UTC'), max(timestamp) FROM events"
        )
        first, last = cursor.fetchone()
        chunks = []
        while first is not None and first <= last:
            nxt = (first.replace(day=1) + _MONTH).replace(day=1)
            chunks.append((first, nxt))
            first = nxt
        return chunks


_MONTH = timedelta(days=32)

_TYPE_AND_OUTCOME = (("event_type", "event_type"), ("success", "success"))
COUNT_TABLES = (
    CountTable("event_counts_hourly", "bucket", "hour", _TYPE_AND_OUTCOME),
    CountTable("event_counts_daily", "day", "day", _TYPE_AND_OUTCOME),
    CountTable(
        "login_users_hourly",
        "hour",
        "hour",
        (("username", "subject"),),
        only="event_type = 'user_login' AND success",
    ),
    CountTable(
        "event_counts_daily_caller",
        "day",
        "day",
        (("caller", "caller"),),
        counts=(
            ("events", "count(*)"),
            ("logins", "count(*) FILTER (WHERE event_type = 'user_login')"),
            ("failures", "count(*) FILTER (WHERE NOT success)"),
        ),
    ),
    CountTable(
        "event_counts_daily_project",
        "day",
        "day",
        (("project", PROJECT_OF_EVENT),),
        counts=(
            ("events", "count(*)"),
            (
                "experiments",
                "count(*) FILTER (WHERE event_type = 'experiment_created' AND success)",
            ),
            (
                "realizations",
                "count(*) FILTER (WHERE event_type = 'realization_allocated' AND success)",
            ),
            (
                "materializations",
                "count(*) FILTER (WHERE event_type = 'materialization_allocated' AND success)",
            ),
        ),
        only="payload->>'project' IS NOT NULL OR subject_type = 'project'",
    ),
)


# --- the latest membership event per (org, kind, member) -------------------------------


@dataclass(frozen=True)
class LatestMemberships(TableDeclaration):
    """org_memberships: the newest (timestamp, event_uuid) successful
    membership event of each (organization, payload.kind, member), and
    whether it removed the member. An inserted event replaces a row only if
    it is newer, so arrival order does not matter; a deleted event's keys
    are recomputed from what remains."""

    table: str = "org_memberships"
    types: str = ORG_MEMBER_TYPES
    removals: str = _quoted(catalog.MEMBER_REMOVALS)

    def _latest(self, rows: str, where: str = "TRUE") -> str:
        return (
            "SELECT DISTINCT ON (e.subject, e.payload->>'kind', e.target) e.subject, "
            f"e.payload->>'kind', e.target, e.timestamp, e.event_uuid, "
            f"e.event_type IN ({self.removals}) FROM {rows} AS e "
            f"WHERE e.event_type IN ({self.types}) AND e.success AND ({where}) "
            "ORDER BY e.subject, e.payload->>'kind', e.target, e.timestamp DESC, "
            "e.event_uuid DESC"
        )

    def apply_sql(self, rows: str, sign: int) -> list[str]:
        columns = "org, kind, member, last_at, last_uuid, removed"
        if sign > 0:
            return [
                f"INSERT INTO {self.table} AS m ({columns}) {self._latest(rows)} "
                "ON CONFLICT (org, kind, member) DO UPDATE SET last_at = excluded.last_at, "
                "last_uuid = excluded.last_uuid, removed = excluded.removed "
                "WHERE (excluded.last_at, excluded.last_uuid) > (m.last_at, m.last_uuid)"
            ]
        keys = (
            "SELECT DISTINCT e.subject AS org, e.payload->>'kind' AS kind, e.target AS member "
            f"FROM {rows} AS e WHERE e.event_type IN ({self.types}) AND e.success"
        )
        return [
            f"DELETE FROM {self.table} AS m USING ({keys}) AS g WHERE m.org = g.org "
            "AND m.kind IS NOT DISTINCT FROM g.kind AND m.member IS NOT DISTINCT FROM g.member",
            f"INSERT INTO {self.table} ({columns}) "
            + self._latest(
                "events",
                f"EXISTS (SELECT 1 FROM ({keys}) AS g WHERE e.subject = g.org "
                "AND e.payload->>'kind' IS NOT DISTINCT FROM g.kind "
                "AND e.target IS NOT DISTINCT FROM g.member)",
            ),
        ]

    def rebuild(self, cursor) -> None:
        cursor.execute(f"DELETE FROM {self.table}")
        cursor.execute(
            f"INSERT INTO {self.table} (org, kind, member, last_at, last_uuid, removed) "
            + self._latest("events")
        )

    def differences(self, cursor) -> list[str]:
        cursor.execute(
            "SELECT coalesce(s.org, r.org), coalesce(s.kind, r.kind), "
            "coalesce(s.member, r.member), s.last_uuid, r.last_uuid, s.removed, r.removed "
            f"FROM {self.table} AS s FULL JOIN ({self._latest('events')}) "
            "AS r (org, kind, member, last_at, last_uuid, removed) "
            "ON s.org = r.org AND s.kind IS NOT DISTINCT FROM r.kind "
            "AND s.member IS NOT DISTINCT FROM r.member "
            "WHERE (s.last_uuid, s.removed) IS DISTINCT FROM (r.last_uuid, r.removed) "
            "ORDER BY 1, 2, 3 LIMIT 1000"
        )
        return [
            f"{self.table} ({org}, {kind}, {member}): stored event {have} "
            f"(removed={have_removed}), events say {want} (removed={want_removed})"
            for org, kind, member, have, want, have_removed, want_removed in cursor.fetchall()
        ]


MEMBERSHIPS = LatestMemberships()


# --- entities ----------------------------------------------------------------------------

_KIND_ROWS = ", ".join(
    f"('{k.name}', '{k.initial}', '{k.seen}', ARRAY[{_quoted(k.states)}]::text[])"
    for k in ENTITY_KINDS.values()
)
_ACTION_ROWS = ", ".join(
    f"('{name}', '{spec.lifecycle[1]}')" for name, spec in catalog.CATALOG.items() if spec.lifecycle
)

# Where an entity is mentioned (alias e): as the subject of a successful
# event, as the member of a membership event, as the project of one. Each
# arm has an index for one entity's earliest mention (idx_events_subject_ts,
# idx_events_target, idx_events_project_ts).
_MENTIONS = f"""
SELECT e.subject_type AS kind, {SCOPE_OF_EVENT} AS scope, e.subject AS name, e.timestamp AS ts
FROM {{rows}} AS e WHERE e.success AND e.subject_type IN ({SEEN_KINDS})
UNION ALL
SELECT CASE e.payload->>'kind' WHEN 'usermember' THEN 'user' ELSE 'project' END, '', e.target,
       e.timestamp
FROM {{rows}} AS e WHERE e.success AND e.event_type IN ({MEMBER_TYPES})
  AND e.payload->>'kind' IN ('usermember', 'projectmember') AND e.target IS NOT NULL
UNION ALL
SELECT 'project', '', e.payload->>'project', e.timestamp
FROM {{rows}} AS e WHERE e.success AND e.payload->>'project' IS NOT NULL
"""

# One entity's earliest mention, for each key of k: index probes per key
# (idx_events_subject_ts, idx_events_member_target, idx_events_project_ts).
_FIRST_MENTION = f"""
SELECT k.kind, k.scope, k.name, least(
    (SELECT min(e.timestamp) FROM events AS e WHERE e.subject_type = k.kind
       AND e.subject = k.name AND e.success AND {SCOPE_OF_EVENT} = k.scope),
    CASE WHEN k.kind IN ('user', 'project') THEN
       (SELECT min(e.timestamp) FROM events AS e WHERE e.target = k.name AND e.success
          AND e.event_type IN ({MEMBER_TYPES})
          AND e.payload->>'kind' = CASE k.kind WHEN 'user' THEN 'usermember'
                                   ELSE 'projectmember' END) END,
    CASE WHEN k.kind = 'project' THEN
       (SELECT min(e.timestamp) FROM events AS e
         WHERE e.payload->>'project' = k.name AND e.success) END
) AS ts
FROM k WHERE k.kind IN ({SEEN_KINDS})
"""

# The fold, for the entities in relation k (kind, scope, name). Steps are
# ordered by (ts, ord, id); a "create" or "seen" step keeps a state that
# exists and gives one that does not the kind's initial (or seen) state;
# every other step sets its state. The CTEs end in `folded` (one row per
# entity) and `intervals` (one row per stretch in a state other than gone).
ENTITY_FOLD = f"""
kinds (kind, initial, seen, states) AS (VALUES {_KIND_ROWS}),
actions (event_type, action) AS (VALUES {_ACTION_ROWS}),
life AS (
    SELECT k.kind, k.scope, k.name, e.timestamp AS ts, e.event_uuid AS id, e.caller,
           a.action, e.payload->>'state' AS named, e.payload->>'category' AS category,
           e.payload->>'description' AS description
    FROM k
    JOIN events AS e ON e.subject_type = k.kind AND e.subject = k.name
    JOIN actions AS a ON a.event_type = e.event_type
    WHERE e.success AND e.event_type IN ({LIFECYCLE}) AND {SCOPE_OF_EVENT} = k.scope
),
-- Materialized: inlined, each row's least(…) would be evaluated once per use.
mention AS MATERIALIZED ({_FIRST_MENTION}),
steps AS (
    SELECT m.kind, m.scope, m.name, m.ts, NULL::uuid AS id, '' AS caller, 'seen' AS action,
           NULL AS named, NULL AS category, NULL AS description, 0 AS ord
    FROM mention AS m
    WHERE m.ts IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM life AS l
        WHERE l.kind = m.kind AND l.scope = m.scope AND l.name = m.name AND l.ts <= m.ts)
    UNION ALL
    SELECT kind, scope, name, ts, id, caller, action, named, category, description, 1 FROM life
),
setting AS (
    SELECT s.*, CASE
        WHEN s.action IN ('{CREATE}', 'seen') THEN NULL
        WHEN s.action = '{CATALOGUED}' THEN
            CASE WHEN s.named = ANY(kd.states) THEN s.named ELSE kd.seen END
        ELSE s.action END AS sets,
        kd.initial, kd.seen
    FROM steps AS s JOIN kinds AS kd USING (kind)
),
grouped AS (
    SELECT g.*, count(g.sets) OVER (PARTITION BY kind, scope, name ORDER BY ts, ord, id) AS grp
    FROM setting AS g
),
stated AS (
    SELECT g.*, coalesce(g.sets, nullif(first_value(g.sets) OVER (
               PARTITION BY kind, scope, name, grp ORDER BY ts, ord, id), '{GONE}'),
           CASE g.action WHEN 'seen' THEN g.seen ELSE g.initial END) AS state
    FROM grouped AS g
),
changed AS (
    SELECT s.*, lag(s.state, 1, '{GONE}') OVER (
               PARTITION BY kind, scope, name ORDER BY ts, ord, id) AS before
    FROM stated AS s
),
changes AS (
    SELECT c.*, lead(c.ts) OVER (PARTITION BY kind, scope, name ORDER BY ts, ord, id) AS next_ts
    FROM changed AS c WHERE c.state <> c.before
),
intervals AS (
    SELECT kind, scope, name, state, ts AS valid_from, next_ts AS valid_to
    FROM changes WHERE state <> '{GONE}'
),
-- life: how many times the entity had begun to exist by this step; the
-- steps of its latest existence are those of the highest.
lived AS (
    SELECT c.*, count(*) FILTER (WHERE c.before = '{GONE}' AND c.state <> '{GONE}') OVER (
               PARTITION BY kind, scope, name ORDER BY ts, ord, id) AS life
    FROM changed AS c
),
lives AS (
    SELECT l.*, max(l.life) OVER (PARTITION BY kind, scope, name) AS last_life FROM lived AS l
),
folded AS (
    SELECT kind, scope, name,
           (array_agg(state ORDER BY ts DESC, ord DESC, id DESC NULLS LAST))[1] AS state,
           min(ts) FILTER (WHERE life = last_life AND life > 0) AS since,
           CASE WHEN (array_agg(state ORDER BY ts DESC, ord DESC, id DESC NULLS LAST))[1]
                     = '{GONE}' THEN max(ts) FILTER (WHERE state <> before) END AS until,
           coalesce((array_agg(caller ORDER BY ts, ord, id)
               FILTER (WHERE life = last_life AND life > 0))[1], '') AS created_by,
           coalesce((array_agg(category ORDER BY ts DESC, ord DESC, id DESC NULLS LAST)
               FILTER (WHERE life = last_life AND life > 0 AND state <> '{GONE}'
                       AND action IN ('{CREATE}', '{CATALOGUED}')
                       AND category IS NOT NULL))[1], '') AS category,
           coalesce((array_agg(description ORDER BY ts DESC, ord DESC, id DESC NULLS LAST)
               FILTER (WHERE life = last_life AND life > 0 AND state <> '{GONE}'
                       AND action IN ('{CREATE}', '{CATALOGUED}')
                       AND description IS NOT NULL))[1], '') AS description,
           -- The seen step, when there is one, is the earliest mention.
           min(ts) AS first_seen,
           coalesce(max(ts) FILTER (WHERE state <> before), min(ts)) AS last_change,
           max(ts) FILTER (WHERE ord = 1) AS last_event_at,
           (array_agg(action ORDER BY ts, ord, id))[1] IN ('seen', '{CATALOGUED}')
               AS predates_log
    FROM lives GROUP BY kind, scope, name
)
"""
ENTITY_COLUMNS = (
    "kind, scope, name, state, since, until, created_by, category, description, "
    "first_seen, last_change, last_event_at, predates_log"
)
_KEYS_FROM_ARRAYS = (
    "k AS (SELECT DISTINCT kind, scope, name "
    "FROM unnest(kinds, scopes, names) AS t(kind, scope, name))"
)

# The one function that writes `entities` and `entity_intervals`: called by
# the triggers with the entities a statement touched, and by rebuild.
REFRESH_FUNCTION = f"""
CREATE OR REPLACE FUNCTION sphere_stats_refresh_entities(kinds text[], scopes text[],
                                                         names text[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
-- Index probes per entity, whatever the planner believes of `events`: inside
-- the statement that filled a new table, its statistics still say empty,
-- and a scan of all of it per entity was quadratic. One generic plan: the
-- statement is long to plan (a custom plan per call cost 3 ms of a single
-- event's 4), and the same nested loops serve one entity or twenty thousand.
SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $fn$
BEGIN
    -- One lock for every entity: a statement that changes entities waits
    -- for any other transaction that does, so each fold reads the committed
    -- events of the one before it. It is the lock the triggers of
    -- entity_changes_hourly take on every change of entity_intervals (audit
    -- migration 0008), taken here first so that no lock comes before it.
    PERFORM pg_advisory_xact_lock({ENTITY_LOCK});
    DELETE FROM entity_intervals AS i USING unnest(kinds, scopes, names) AS t(k, s, n)
    WHERE i.kind = t.k AND i.scope = t.s AND i.name = t.n;
    WITH {_KEYS_FROM_ARRAYS}, {ENTITY_FOLD},
    unseen AS (
        DELETE FROM entities AS x USING k
        WHERE x.kind = k.kind AND x.scope = k.scope AND x.name = k.name
          AND NOT EXISTS (SELECT 1 FROM folded AS f
                          WHERE f.kind = k.kind AND f.scope = k.scope AND f.name = k.name)
    ),
    stretches AS (
        INSERT INTO entity_intervals (kind, scope, name, state, valid_from, valid_to)
        SELECT * FROM intervals ORDER BY valid_from
    )
    INSERT INTO entities ({ENTITY_COLUMNS})
    SELECT {ENTITY_COLUMNS} FROM folded
    ON CONFLICT (kind, scope, name) DO UPDATE SET state = excluded.state,
        since = excluded.since, until = excluded.until, created_by = excluded.created_by,
        category = excluded.category, description = excluded.description,
        first_seen = excluded.first_seen, last_change = excluded.last_change,
        last_event_at = excluded.last_event_at, predates_log = excluded.predates_log;
END
$fn$;
-- It runs as its owner: only the triggers (which run as the owner too) call it.
REVOKE EXECUTE ON FUNCTION sphere_stats_refresh_entities(text[], text[], text[]) FROM PUBLIC;
"""


ENTITY_CHUNK = 5000  # entities refolded or compared per statement by a rebuild or a check


def key_arrays(keys: list[Key]) -> dict[str, list[str]]:
    """The named parameters kinds, scopes and names (text arrays) of these keys."""
    kinds, scopes, names = (list(c) for c in zip(*keys, strict=True)) if keys else ([], [], [])
    return {"kinds": kinds, "scopes": scopes, "names": names}


KEYS_FROM_PARAMS = (
    "k AS (SELECT DISTINCT kind, scope, name FROM unnest("
    "%(kinds)s::text[], %(scopes)s::text[], %(names)s::text[]) AS t(kind, scope, name))"
)


def _touched_entities(rows: str, inserted: bool) -> str:
    """The keys whose fold a statement's `rows` may change: every entity a
    successful lifecycle event is about, and every entity mentioned at or
    before its known first appearance (inserted) or at it (deleted)."""
    test = (
        "NOT EXISTS (SELECT 1 FROM entities AS x WHERE x.kind = m.kind AND x.scope = m.scope "
        "AND x.name = m.name AND x.first_seen <= m.ts)"
        if inserted
        else "EXISTS (SELECT 1 FROM entities AS x WHERE x.kind = m.kind AND x.scope = m.scope "
        "AND x.name = m.name AND x.first_seen >= m.ts)"
    )
    return (
        f"SELECT e.subject_type AS kind, {SCOPE_OF_EVENT} AS scope, e.subject AS name "
        f"FROM {rows} AS e WHERE e.success AND e.event_type IN ({LIFECYCLE}) "
        f"UNION SELECT m.kind, m.scope, m.name FROM ({_MENTIONS.format(rows=rows)}) AS m "
        f"WHERE {test}"
    )


@dataclass(frozen=True)
class Entities:
    name: str = "entities"
    definition: str = field(default=REFRESH_FUNCTION, repr=False)

    def apply_sql(self, rows: str, sign: int) -> list[str]:
        return [
            "SELECT array_agg(kind), array_agg(scope), array_agg(name) INTO kinds, scopes, names "
            f"FROM ({_touched_entities(rows, sign > 0)}) AS touched",
            "IF kinds IS NOT NULL THEN "
            "PERFORM sphere_stats_refresh_entities(kinds, scopes, names); END IF",
        ]

    def all_keys(self, cursor) -> list[Key]:
        """Every entity `events` knows of: lifecycle subjects and mentions."""
        cursor.execute(
            f"SELECT e.subject_type, {SCOPE_OF_EVENT}, e.subject FROM events AS e "
            f"WHERE e.success AND e.event_type IN ({LIFECYCLE}) "
            f"UNION SELECT kind, scope, name FROM ({_MENTIONS.format(rows='events')}) AS m "
            "UNION SELECT kind, scope, name FROM entities ORDER BY 1, 2, 3"
        )
        return cursor.fetchall()

    def chunks(self, cursor) -> list[list[Key]]:
        """Every entity's key (all_keys), ENTITY_CHUNK at a time."""
        keys = self.all_keys(cursor)
        return [keys[i : i + ENTITY_CHUNK] for i in range(0, len(keys), ENTITY_CHUNK)]

    def refresh(self, cursor, keys: list[Key]) -> None:
        if keys:
            cursor.execute(
                "SELECT sphere_stats_refresh_entities(%(kinds)s, %(scopes)s, %(names)s)",
                key_arrays(keys),
            )

    def folded(self, cursor, keys: list[Key], what: str = "folded") -> list[tuple]:
        """The fold of these entities computed from `events`, not stored:
        `folded` rows (ENTITY_COLUMNS) or `intervals`."""
        columns = (
            ENTITY_COLUMNS if what == "folded" else "kind, scope, name, state, valid_from, valid_to"
        )
        cursor.execute(
            f"WITH {KEYS_FROM_PARAMS}, {ENTITY_FOLD} SELECT {columns} FROM {what} ORDER BY 1, 2, 3",
            key_arrays(keys),
        )
        return cursor.fetchall()

    def _both_folded(self, cursor, keys: list[Key]) -> tuple[list[tuple], list[tuple]]:
        """The `folded` rows and the `intervals` of these entities from one
        computation of the fold (an interval row padded to the width of an
        entity row)."""
        cursor.execute(
            f"WITH {KEYS_FROM_PARAMS}, {ENTITY_FOLD} SELECT true, {ENTITY_COLUMNS} FROM folded "
            "UNION ALL SELECT false, kind, scope, name, state, valid_from, valid_to, NULL, NULL, "
            "NULL, NULL, NULL, NULL, NULL FROM intervals",
            key_arrays(keys),
        )
        entities, intervals = [], []
        for is_entity, *row in cursor.fetchall():
            if is_entity:
                entities.append(tuple(row))
            else:
                intervals.append(tuple(row[:6]))
        return entities, intervals

    def differences(self, cursor, keys: list[Key]) -> list[str]:
        found = []
        folded, intervals_want = self._both_folded(cursor, keys)
        want = {row[:3]: row for row in folded}
        params = key_arrays(keys)
        cursor.execute(
            f"SELECT {ENTITY_COLUMNS} FROM entities AS x JOIN unnest(%(kinds)s::text[], "
            "%(scopes)s::text[], %(names)s::text[]) AS t(kind, scope, name) "
            "USING (kind, scope, name)",
            params,
        )
        have = {row[:3]: row for row in cursor.fetchall()}
        columns = [c.strip() for c in ENTITY_COLUMNS.split(",")]
        for key in sorted(set(want) | set(have)):
            a, b = have.get(key), want.get(key)
            if a != b:
                diff = (
                    {c: (x, y) for c, x, y in zip(columns, a, b, strict=True) if x != y}
                    if a and b
                    else ("missing" if b else "not in events")
                )
                found.append(f"entities {key}: {diff}")
        cursor.execute(
            "SELECT kind, scope, name, state, valid_from, valid_to FROM entity_intervals AS i "
            "JOIN unnest(%(kinds)s::text[], %(scopes)s::text[], %(names)s::text[]) "
            "AS t(kind, scope, name) USING (kind, scope, name) ORDER BY 1, 2, 3",
            params,
        )
        intervals_have = cursor.fetchall()
        if sorted(intervals_have, key=repr) != sorted(intervals_want, key=repr):
            stale = {r[:3] for r in set(intervals_have) ^ set(intervals_want)}
            found.extend(f"entity_intervals {key}: differ from the events" for key in sorted(stale))
        return found


ENTITIES = Entities()


@dataclass(frozen=True)
class EntityChanges(TableDeclaration):
    """entity_changes_hourly: per UTC hour, kind and state, the entities that
    entered (+1) and left (-1) it, summed from entity_intervals. Its own
    triggers on entity_intervals keep it (audit migration 0008); it is
    declared here to be verified and rebuilt with the rest."""

    table: str = "entity_changes_hourly"
    computed: str = (
        "SELECT kind, hour, state, sum(d) FROM ("
        "SELECT kind, date_trunc('hour', valid_from, 'UTC') AS hour, state, 1 AS d "
        "FROM entity_intervals UNION ALL "
        "SELECT kind, date_trunc('hour', valid_to, 'UTC'), state, -1 "
        "FROM entity_intervals WHERE valid_to IS NOT NULL"
        ") AS c GROUP BY 1, 2, 3 HAVING sum(d) <> 0"
    )

    def apply_sql(self, rows: str, sign: int) -> list[str]:
        return []  # the triggers on entity_intervals

    def rebuild(self, cursor) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(%(lock)s)", {"lock": ENTITY_LOCK})
        cursor.execute(f"DELETE FROM {self.table}")
        cursor.execute(f"INSERT INTO {self.table} (kind, hour, state, delta) {self.computed}")

    def differences(self, cursor) -> list[str]:
        cursor.execute(
            "SELECT coalesce(s.kind, r.kind), coalesce(s.hour, r.hour), "
            "coalesce(s.state, r.state), s.delta, r.delta "
            f"FROM (SELECT * FROM {self.table} WHERE delta <> 0) AS s "
            f"FULL JOIN ({self.computed}) AS r (kind, hour, state, delta) "
            "ON s.kind = r.kind AND s.hour = r.hour AND s.state = r.state "
            "WHERE s.delta IS DISTINCT FROM r.delta ORDER BY 1, 2, 3 LIMIT 1000"
        )
        return [
            f"{self.table} ({kind}, {hour:%Y-%m-%d %H}h, {state}): stored {have}, "
            f"entity_intervals say {want}"
            for kind, hour, state, have, want in cursor.fetchall()
        ]


ENTITY_CHANGES = EntityChanges()
AGGREGATES = (*COUNT_TABLES, MEMBERSHIPS, ENTITIES, ENTITY_CHANGES)


# --- the triggers ------------------------------------------------------------------------


def _trigger(op: str, referencing: str, body: list[str]) -> str:
    name = f"sphere_stats_events_{op.lower()}"
    statements = "\n    ".join(f"{s};" for s in body)
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
DECLARE kinds text[]; scopes text[]; names text[];
BEGIN
    {statements}
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE TRIGGER {name} AFTER {op} ON events {referencing}
    FOR EACH STATEMENT EXECUTE FUNCTION {name}();
"""


def _applied(rows: str, sign: int) -> list[str]:
    return [s for aggregate in AGGREGATES for s in aggregate.apply_sql(rows, sign)]


def _inserted(rows: str) -> list[str]:
    """The insert trigger's statements, the upserts as CTEs of the statement
    that finds the entities to refold: one executor start instead of eight,
    a third of what the trigger cost a single-row INSERT."""
    upserts = [s for a in AGGREGATES if a is not ENTITIES for s in a.apply_sql(rows, 1)]
    find, refold = ENTITIES.apply_sql(rows, 1)
    ctes = ", ".join(f"upsert{i} AS ({sql})" for i, sql in enumerate(upserts))
    return [f"WITH {ctes} {find}", refold]


DERIVED_TABLES = (
    *(t.table for t in COUNT_TABLES),
    MEMBERSHIPS.table,
    "entity_intervals",
    "entities",
)
TRIGGERS_SQL = "\n".join(
    [
        REFRESH_FUNCTION,
        _trigger("INSERT", "REFERENCING NEW TABLE AS new_rows", _inserted("new_rows")),
        _trigger("DELETE", "REFERENCING OLD TABLE AS old_rows", _applied("old_rows", -1)),
        # Events are immutable here, but not to psql: an UPDATE is a delete
        # of the old rows and an insert of the new ones.
        _trigger(
            "UPDATE",
            "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
            _applied("old_rows", -1) + _applied("new_rows", 1),
        ),
        # A TRUNCATE that names the derived tables too (Django's flush) has
        # emptied them already and still holds them: those are skipped.
        _trigger(
            "TRUNCATE",
            "",
            [
                f"BEGIN TRUNCATE {table}; EXCEPTION WHEN object_in_use THEN NULL; END"
                for table in DERIVED_TABLES
            ],
        ),
    ]
)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- install, rebuild, verify ---------------------------------------------------------------


def _progress(total: int, desc: str, stream) -> tqdm:
    return tqdm(total=total, desc=desc, unit="chunk", file=stream, disable=stream is None)


def _locked_chunk(cursor) -> None:
    # Writers wait for the chunk (a month of counts, a few thousand
    # entities) instead of committing rows the rebuild's reads miss and its
    # deletes take back; readers never wait.
    cursor.execute("LOCK TABLE events IN SHARE MODE")


def rebuild_one(aggregate, stream=None, start=None, end=None) -> None:
    """Recompute one pre-aggregate from `events`, chunk by chunk, each chunk
    a transaction of its own."""
    with connection.cursor() as cursor:
        if isinstance(aggregate, CountTable):
            whole = start is None and end is None
            chunks = aggregate.time_span(cursor) if whole else [(start, end)]
            with _progress(len(chunks) + whole, aggregate.table, stream) as bar:
                for lo, hi in chunks:
                    with transaction.atomic():
                        _locked_chunk(cursor)
                        aggregate.rebuild(cursor, lo, hi)
                    bar.update()
                if whole:
                    # Rows outside the months that hold events have none.
                    span = {
                        "lo": chunks[0][0] if chunks else None,
                        "hi": chunks[-1][1] if chunks else None,
                    }
                    with transaction.atomic():
                        _locked_chunk(cursor)
                        cursor.execute(
                            f"DELETE FROM {aggregate.table} WHERE %(lo)s::timestamptz IS NULL "
                            f"OR {aggregate.time} < %(lo)s OR {aggregate.time} >= %(hi)s",
                            span,
                        )
                    bar.update()
        elif aggregate in (MEMBERSHIPS, ENTITY_CHANGES):
            with transaction.atomic(), _progress(1, aggregate.table, stream) as bar:
                _locked_chunk(cursor)
                aggregate.rebuild(cursor)
                bar.update()
        else:
            # No keys: one empty chunk, which takes the lock and refreshes nothing.
            chunks = aggregate.chunks(cursor) or [[]]
            with _progress(len(chunks), "entities", stream) as bar:
                for keys in chunks:
                    with transaction.atomic():
                        _locked_chunk(cursor)
                        aggregate.refresh(cursor, keys)
                    bar.update()
        cursor.execute(f"ANALYZE {aggregate.name}")


def install(stream=None, force: bool = False) -> list[str]:
    """(Re)create the triggers on `events` from the declarations, then
    rebuild each pre-aggregate whose declaration is new or changed (all, with
    force). Returns the names rebuilt."""
    with connection.cursor() as cursor:
        # CREATE INDEX CONCURRENTLY IF NOT EXISTS skips an index that an
        # interrupted build left invalid: the planner never uses it.
        cursor.execute(
            "SELECT indexrelid::regclass::text FROM pg_index "
            "WHERE indrelid = 'events'::regclass AND NOT indisvalid ORDER BY 1"
        )
        invalid = [name for (name,) in cursor.fetchall()]
    if invalid:
        raise RuntimeError(
            "Invalid indexes on events (an interrupted CREATE INDEX CONCURRENTLY): "
            + ", ".join(invalid)
            + ". Drop each (DROP INDEX CONCURRENTLY name;) and run migrate again."
        )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(TRIGGERS_SQL)
        cursor.execute("SELECT name, digest FROM aggregate_definitions")
        built = dict(cursor.fetchall())
    rebuilt = []
    if any(built.get(a.name) != digest(a.definition) for a in AGGREGATES) or force:
        # Fresh statistics first: a table adopted or restored moments ago
        # may never have been analyzed, and the rebuild's plans rely on them.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE events")
    for aggregate in AGGREGATES:
        wanted = digest(aggregate.definition)
        if force or built.get(aggregate.name) != wanted:
            rebuild_one(aggregate, stream)
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO aggregate_definitions (name, digest, built_at) "
                    "VALUES (%(name)s, %(digest)s, now()) ON CONFLICT (name) DO UPDATE "
                    "SET digest = excluded.digest, built_at = excluded.built_at",
                    {"name": aggregate.name, "digest": wanted},
                )
            rebuilt.append(aggregate.name)
    return rebuilt


def rebuild_counts(start: datetime | None = None, end: datetime | None = None) -> None:
    """Recompute the counting pre-aggregates for the hours and days
    overlapping [start, end), and all of org_memberships."""
    with transaction.atomic(), connection.cursor() as cursor:
        for table in COUNT_TABLES:
            table.rebuild(cursor, start, end)
        MEMBERSHIPS.rebuild(cursor)


def rebuild_entities() -> int:
    """Recompute every entity and its intervals; returns how many there are."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM entity_intervals")
        cursor.execute("DELETE FROM entities")
        for keys in ENTITIES.chunks(cursor):
            ENTITIES.refresh(cursor, keys)
        cursor.execute("SELECT count(*) FROM entities")
        return cursor.fetchone()[0]


def rebuild_aggregates(start: datetime | None = None, end: datetime | None = None) -> None:
    """Make every pre-aggregate agree with `events` again (the counts for
    [start, end), None: unbounded; memberships and entities whole)."""
    with transaction.atomic():
        rebuild_counts(start, end)
        rebuild_entities()


def differences(
    start: datetime | None = None, end: datetime | None = None
) -> Iterator[tuple[str, list[str]]]:
    """(pre-aggregate, its differences from `events`) for each one: the
    counts of the hours and days overlapping [start, end), every membership,
    every entity (in chunks)."""
    with connection.cursor() as cursor:
        for table in COUNT_TABLES:
            yield table.table, table.differences(cursor, start, end)
        yield MEMBERSHIPS.table, MEMBERSHIPS.differences(cursor)
        yield (
            "entities",
            [
                line
                for keys in ENTITIES.chunks(cursor)
                for line in ENTITIES.differences(cursor, keys)
            ],
        )
        yield ENTITY_CHANGES.table, ENTITY_CHANGES.differences(cursor)


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
