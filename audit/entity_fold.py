"""The entity pre-aggregates: `entities` and `entity_intervals`, folded per
entity from its successful lifecycle events by one SQL statement
(ENTITY_FOLD), and `entity_changes_hourly`, summed from the intervals.

What each event type does to an entity is its catalog entry's `lifecycle`
(audit/catalog.py); which events mention a member, its `membership`. The
declarations that use these classes are in audit/aggregates.py.
"""

from dataclasses import dataclass

from audit import catalog
from audit.aggregate_tables import TableDeclaration, sql_literals
from audit.catalog import CATALOGUED, CREATE, ENTITY_KINDS, GONE

Key = tuple[str, str, str]  # (kind, scope, name)
ENTITY_LOCK = 7_400_042  # pg_advisory_xact_lock key, see REFRESH_FUNCTION

_LIFECYCLE_TYPES = sql_literals(catalog.LIFECYCLE_TYPES)
_MEMBERSHIP_TYPES = sql_literals(catalog.MEMBERSHIP_TYPES)
_SEEN_KINDS = sql_literals(k.name for k in ENTITY_KINDS.values() if k.seen)

# The scope an entity is named in, for an event about it (alias e):
# experiments within their project, realizations within their facility.
SCOPE_OF_EVENT = (
    "CASE e.subject_type WHEN 'experiment' THEN coalesce(e.payload->>'project', '') "
    "WHEN 'realization' THEN coalesce(e.target, '') "
    "WHEN 'materialization' THEN coalesce(e.target, '') ELSE '' END"
)

# The fold's tables of what each entity kind starts as, and of what each
# lifecycle event type does (its catalog entry's lifecycle.action).
_KIND_ROWS = ", ".join(
    f"('{k.name}', '{k.initial}', '{k.seen}', ARRAY[{sql_literals(k.states)}]::text[])"
    for k in ENTITY_KINDS.values()
)
_ACTION_ROWS = ", ".join(
    f"('{name}', '{spec.lifecycle.action}')"
    for name, spec in catalog.CATALOG.items()
    if spec.lifecycle
)

# Where an entity is mentioned (alias e): as the subject of a successful
# event, as the member of a membership event, as the project of one. Each
# arm has an index for one entity's earliest mention (idx_events_subject_ts,
# idx_events_target, idx_events_project_ts).
_MENTIONS = f"""
SELECT e.subject_type AS kind, {SCOPE_OF_EVENT} AS scope, e.subject AS name, e.timestamp AS ts
FROM {{rows}} AS e WHERE e.success AND e.subject_type IN ({_SEEN_KINDS})
UNION ALL
SELECT CASE e.payload->>'kind' WHEN 'usermember' THEN 'user' ELSE 'project' END, '', e.target,
       e.timestamp
FROM {{rows}} AS e WHERE e.success AND e.event_type IN ({_MEMBERSHIP_TYPES})
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
          AND e.event_type IN ({_MEMBERSHIP_TYPES})
          AND e.payload->>'kind' = CASE k.kind WHEN 'user' THEN 'usermember'
                                   ELSE 'projectmember' END) END,
    CASE WHEN k.kind = 'project' THEN
       (SELECT min(e.timestamp) FROM events AS e
         WHERE e.payload->>'project' = k.name AND e.success) END
) AS ts
FROM k WHERE k.kind IN ({_SEEN_KINDS})
"""

# The fold, for the entities in relation k (kind, scope, name). Steps are
# ordered by (ts, ord, id); a "create" or "seen" step keeps a state that
# exists and gives one that does not the kind's initial (or seen) state;
# every other step sets its state. The CTEs end in `folded` (one row per
# entity) and `intervals` (one row per stretch in a state other than gone).
# Steps shared by the full fold (ENTITY_FOLD) and the append (audit/
# entity_append.py), over a CTE `changed` of each step with the state
# before it: the steps that change the state, each with the next one's time;
# and each step's life (how many times the entity had begun to exist by it)
# beside the last life.
_CHANGES = """changes AS (
    SELECT c.*, lead(c.ts) OVER (PARTITION BY kind, scope, name ORDER BY ts, ord, id) AS next_ts
    FROM changed AS c WHERE c.state <> c.before
),"""
_LIVES = f"""lived AS (
    SELECT c.*, count(*) FILTER (WHERE c.before = '{GONE}' AND c.state <> '{GONE}') OVER (
               PARTITION BY kind, scope, name ORDER BY ts, ord, id) AS life
    FROM changed AS c
),
lives AS (
    SELECT l.*, max(l.life) OVER (PARTITION BY kind, scope, name) AS last_life FROM lived AS l
),"""

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
    WHERE e.success AND e.event_type IN ({_LIFECYCLE_TYPES}) AND {SCOPE_OF_EVENT} = k.scope
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
{_CHANGES}
intervals AS (
    SELECT kind, scope, name, state, ts AS valid_from, next_ts AS valid_to
    FROM changes WHERE state <> '{GONE}'
),
-- life: how many times the entity had begun to exist by this step; the
-- steps of its latest existence are those of the highest.
{_LIVES}
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
        f"FROM {rows} AS e WHERE e.success AND e.event_type IN ({_LIFECYCLE_TYPES}) "
        f"UNION SELECT m.kind, m.scope, m.name FROM ({_MENTIONS.format(rows=rows)}) AS m "
        f"WHERE {test}"
    )


@dataclass(frozen=True)
class Entities:
    """`entities` and `entity_intervals`, written only by REFRESH_FUNCTION and
    the insert trigger's APPEND_FOLD (audit/entity_append.py): their text is
    the declaration's definition (a change of either refolds everything)."""

    name: str = "entities"

    @property
    def definition(self) -> str:
        # Imported here: entity_append builds on this module's fragments.
        from audit.entity_append import APPEND_FOLD

        return REFRESH_FUNCTION + APPEND_FOLD

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
            f"WHERE e.success AND e.event_type IN ({_LIFECYCLE_TYPES}) "
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


@dataclass(frozen=True)
class EntityChanges(TableDeclaration):
    """A table of per-hour (or per-day or per-month: `column`) deltas summed
    from entity_intervals (its rows as `computed`). Triggers of their own on
    entity_intervals keep it (audit migrations 0008, 0027 and 0030); declared, it
    is verified and rebuilt with the rest."""

    table: str
    computed: str  # the table's rows computed from entity_intervals
    column: str = "hour"  # its UTC time unit's column

    def apply_sql(self, rows: str, sign: int) -> list[str]:
        return []  # the triggers on entity_intervals

    def rebuild(self, cursor) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(%(lock)s)", {"lock": ENTITY_LOCK})
        cursor.execute(f"DELETE FROM {self.table}")
        cursor.execute(
            f"INSERT INTO {self.table} (kind, {self.column}, state, delta) {self.computed}"
        )

    def differences(self, cursor) -> list[str]:
        at = self.column
        cursor.execute(
            f"SELECT coalesce(s.kind, r.kind), coalesce(s.{at}, r.{at}), "
            "coalesce(s.state, r.state), s.delta, r.delta "
            f"FROM (SELECT * FROM {self.table} WHERE delta <> 0) AS s "
            f"FULL JOIN ({self.computed}) AS r (kind, {at}, state, delta) "
            f"ON s.kind = r.kind AND s.{at} = r.{at} AND s.state = r.state "
            "WHERE s.delta IS DISTINCT FROM r.delta ORDER BY 1, 2, 3 LIMIT 1000"
        )
        unit = {"hour": "%Y-%m-%d %Hh", "day": "%Y-%m-%d"}.get(at, "%Y-%m")
        return [
            f"{self.table} ({kind}, {moment:{unit}}, {state}): stored {have}, "
            f"entity_intervals say {want}"
            for kind, moment, state, have, want in cursor.fetchall()
        ]
