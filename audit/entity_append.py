"""The insert trigger's entity fold: the new lifecycle steps of a statement
folded onto each entity's stored row, instead of its whole history refolded.

An entity's row in `entities` is the fold (audit/entity_fold.py ENTITY_FOLD)
of every step it had when the last statement about it ended. When every new
step of a statement comes after the last folded one, which is the usual case
(events arrive in time order), the row holds all the fold needs of the past,
and the new steps are applied to it by the same rules: its open interval is
closed and new ones are added, nothing is read from `events`. Anything else
(a step at or before the last folded one, a mention before the first, an
unknown kind) goes to sphere_stats_refresh_entities, which refolds the whole
history. Deletes and updates always do.
"""

from audit.catalog import CATALOGUED, CREATE, GONE
from audit.entity_fold import (
    _ACTION_ROWS,
    _CHANGES,
    _KIND_ROWS,
    _LIFECYCLE_TYPES,
    _LIVES,
    _MENTIONS,
    ENTITY_COLUMNS,
    ENTITY_LOCK,
    SCOPE_OF_EVENT,
)

# The insert trigger's search for the entities a statement touched: as
# _touched_entities, each key once (an INSERT of 10,000 logins names a few
# hundred users: one probe of `entities` each, not one per row), with the
# earliest time the statement mentions it (NULL: not mentioned), which
# APPEND_FOLD needs.
TOUCHED_BY_INSERT = f"""
SELECT array_agg(kind), array_agg(scope), array_agg(name), array_agg(mentioned)
    INTO kinds, scopes, names, seen_at
FROM (SELECT DISTINCT e.subject_type AS kind, {SCOPE_OF_EVENT} AS scope, e.subject AS name
      FROM {{rows}} AS e WHERE e.success AND e.event_type IN ({_LIFECYCLE_TYPES})) AS l
FULL JOIN (SELECT m.kind, m.scope, m.name, min(m.ts) AS mentioned
           FROM ({_MENTIONS.format(rows="{rows}")}) AS m GROUP BY 1, 2, 3) AS m
    USING (kind, scope, name)
WHERE l.kind IS NOT NULL OR NOT EXISTS (
    SELECT 1 FROM entities AS x WHERE x.kind = m.kind AND x.scope = m.scope
      AND x.name = m.name AND x.first_seen <= m.mentioned)
"""

# The insert trigger's fold, after ENTITY_LOCK, of the touched entities
# (arrays kinds, scopes, names, seen_at) whose new steps all come after the
# steps already folded: the usual case, events arriving in time order. The
# stored row then holds all the fold needs of the past (the state, and
# whether a create keeps it), the new steps of {rows} are folded onto it by
# ENTITY_FOLD's rules, the open interval is closed and new ones added. An
# entity not in `entities` has no step outside {rows} (every event about an
# entity is folded when its statement ends, under the lock), so it folds from
# {rows} alone. Every other key (a step at or before the last folded one, a
# mention before the first, a kind the fold does not know) is left in the
# arrays for sphere_stats_refresh_entities. tests/audit/
# test_entity_incremental.py holds the two equal.
APPEND_FOLD = f"""
WITH kinds (kind, initial, seen, states) AS (VALUES {_KIND_ROWS}),
actions (event_type, action) AS (VALUES {_ACTION_ROWS}),
life AS (
    SELECT e.subject_type AS kind, {SCOPE_OF_EVENT} AS scope, e.subject AS name,
           e.timestamp AS ts, e.event_uuid AS id, e.caller, a.action,
           e.payload->>'state' AS named, e.payload->>'category' AS category,
           e.payload->>'description' AS description
    FROM {{rows}} AS e JOIN actions AS a ON a.event_type = e.event_type
    WHERE e.success AND e.event_type IN ({_LIFECYCLE_TYPES})
),
span AS (SELECT kind, scope, name, min(ts) AS first_ts FROM life GROUP BY 1, 2, 3),
-- prefix_sets: what the past gives a create (grp 0 below): the state, unless
-- it is gone, or none was set yet (a seen step alone, or no past).
plan AS (
    SELECT t.kind, t.scope, t.name, t.mentioned, s.first_ts, kd.initial, kd.seen, kd.states,
           x.kind IS NOT NULL AS known, coalesce(x.state, '{GONE}') AS prefix_state,
           CASE WHEN x.last_event_at IS NOT NULL THEN x.state END AS prefix_sets,
           x.since, x.until, x.created_by, x.category, x.description, x.first_seen,
           x.last_change, x.predates_log,
           coalesce(kd.kind IS NOT NULL AND (x.kind IS NULL OR (
               s.first_ts > coalesce(x.last_event_at, x.first_seen)
               AND (t.mentioned IS NULL OR t.mentioned >= x.first_seen))), false) AS appended
    FROM unnest({{keys}}) AS t(kind, scope, name, mentioned)
    LEFT JOIN kinds AS kd ON kd.kind = t.kind
    LEFT JOIN span AS s ON s.kind = t.kind AND s.scope = t.scope AND s.name = t.name
    LEFT JOIN entities AS x ON x.kind = t.kind AND x.scope = t.scope AND x.name = t.name
),
steps AS (
    SELECT p.kind, p.scope, p.name, p.mentioned AS ts, NULL::uuid AS id, '' AS caller,
           'seen' AS action, NULL AS named, NULL AS category, NULL AS description, 0 AS ord
    FROM plan AS p WHERE p.appended AND NOT p.known AND p.mentioned IS NOT NULL
      AND (p.first_ts IS NULL OR p.mentioned < p.first_ts)
    UNION ALL
    SELECT l.*, 1 FROM life AS l JOIN plan AS p USING (kind, scope, name) WHERE p.appended
),
grouped AS (
    SELECT s.*, p.initial, p.seen, p.prefix_state, p.prefix_sets, CASE
        WHEN s.action IN ('{CREATE}', 'seen') THEN NULL
        WHEN s.action = '{CATALOGUED}' THEN
            CASE WHEN s.named = ANY(p.states) THEN s.named ELSE p.seen END
        ELSE s.action END AS sets
    FROM steps AS s JOIN plan AS p USING (kind, scope, name)
),
counted AS (
    SELECT g.*, count(g.sets) OVER (PARTITION BY kind, scope, name ORDER BY ts, ord, id) AS grp
    FROM grouped AS g
),
stated AS (
    SELECT c.*, coalesce(c.sets, nullif(CASE WHEN c.grp = 0 THEN c.prefix_sets
               ELSE first_value(c.sets) OVER (PARTITION BY kind, scope, name, grp
                                             ORDER BY ts, ord, id) END, '{GONE}'),
           CASE c.action WHEN 'seen' THEN c.seen ELSE c.initial END) AS state
    FROM counted AS c
),
changed AS (
    SELECT s.*, lag(s.state, 1, s.prefix_state) OVER (
               PARTITION BY kind, scope, name ORDER BY ts, ord, id) AS before
    FROM stated AS s
),
{_CHANGES}
-- life: how many lives have begun among the new steps by this one (0: the
-- stored row's life goes on).
{_LIVES}
folded AS (
    SELECT l.kind, l.scope, l.name,
           (array_agg(l.state ORDER BY ts DESC, ord DESC, id DESC NULLS LAST))[1] AS state,
           CASE WHEN max(l.life) > 0 THEN min(l.ts) FILTER (WHERE l.life = l.last_life)
                ELSE min(p.since) END AS since,
           CASE WHEN (array_agg(l.state ORDER BY ts DESC, ord DESC, id DESC NULLS LAST))[1]
                     = '{GONE}' THEN coalesce(max(l.ts) FILTER (WHERE l.state <> l.before),
                                              min(p.until)) END AS until,
           CASE WHEN max(l.life) > 0 THEN (array_agg(l.caller ORDER BY ts, ord, id)
               FILTER (WHERE l.life = l.last_life))[1]
                ELSE coalesce(min(p.created_by), '') END AS created_by,
           coalesce((array_agg(l.category ORDER BY ts DESC, ord DESC, id DESC NULLS LAST)
               FILTER (WHERE l.life = l.last_life AND l.state <> '{GONE}'
                       AND l.action IN ('{CREATE}', '{CATALOGUED}')
                       AND l.category IS NOT NULL))[1],
               CASE WHEN max(l.life) > 0 THEN '' ELSE min(p.category) END, '') AS category,
           coalesce((array_agg(l.description ORDER BY ts DESC, ord DESC, id DESC NULLS LAST)
               FILTER (WHERE l.life = l.last_life AND l.state <> '{GONE}'
                       AND l.action IN ('{CREATE}', '{CATALOGUED}')
                       AND l.description IS NOT NULL))[1],
               CASE WHEN max(l.life) > 0 THEN '' ELSE min(p.description) END, '') AS description,
           coalesce(min(p.first_seen), min(l.ts)) AS first_seen,
           coalesce(max(l.ts) FILTER (WHERE l.state <> l.before), min(p.last_change),
                    min(l.ts)) AS last_change,
           max(l.ts) FILTER (WHERE l.ord = 1) AS last_event_at,
           coalesce(bool_or(p.predates_log), (array_agg(l.action ORDER BY ts, ord, id))[1]
                    IN ('seen', '{CATALOGUED}')) AS predates_log
    FROM lives AS l JOIN plan AS p USING (kind, scope, name)
    GROUP BY l.kind, l.scope, l.name
),
closed AS (
    UPDATE entity_intervals AS i SET valid_to = c.first_change
    FROM (SELECT kind, scope, name, min(ts) AS first_change FROM changes GROUP BY 1, 2, 3) AS c
    JOIN plan AS p USING (kind, scope, name)
    WHERE p.known AND p.prefix_state <> '{GONE}' AND i.kind = c.kind AND i.scope = c.scope
      AND i.name = c.name AND i.valid_to IS NULL
),
opened AS (
    INSERT INTO entity_intervals (kind, scope, name, state, valid_from, valid_to)
    SELECT kind, scope, name, state, ts, next_ts FROM changes
    WHERE state <> '{GONE}' ORDER BY ts
),
saved AS (
    INSERT INTO entities ({ENTITY_COLUMNS})
    SELECT {ENTITY_COLUMNS} FROM folded
    ON CONFLICT (kind, scope, name) DO UPDATE SET state = excluded.state,
        since = excluded.since, until = excluded.until, created_by = excluded.created_by,
        category = excluded.category, description = excluded.description,
        first_seen = excluded.first_seen, last_change = excluded.last_change,
        last_event_at = excluded.last_event_at, predates_log = excluded.predates_log
)
SELECT array_agg(kind), array_agg(scope), array_agg(name) {{into}}
FROM plan WHERE NOT appended
"""


# Up to this many touched entities, APPEND_FOLD runs with the plan PL/pgSQL
# caches (planning it costs a single event about a millisecond). More, and it
# is planned for the statement at hand: a plan cached for a few rows may join
# its steps with nested loops, quadratic in a batch of thousands.
CACHED_PLAN_KEYS = 64


def insert_sql(rows: str) -> tuple[str, list[str]]:
    """The insert trigger's entity statements for the transition table
    `rows`: the search for touched entities (a SELECT … INTO the trigger's
    kinds, scopes, names and seen_at, which may be given upsert CTEs), then
    the statements that fold them."""
    cached = APPEND_FOLD.format(
        rows=rows, keys="kinds, scopes, names, seen_at", into="INTO kinds, scopes, names"
    )
    planned = APPEND_FOLD.format(rows=rows, keys="$1, $2, $3, $4", into="")
    return TOUCHED_BY_INSERT.format(rows=rows), [
        # The lock before the stored rows are read: each statement then
        # reads the rows the one before it committed.
        f"IF kinds IS NOT NULL THEN PERFORM pg_advisory_xact_lock({ENTITY_LOCK}); "
        f"IF cardinality(kinds) <= {CACHED_PLAN_KEYS} THEN {cached}; "
        f"ELSE EXECUTE $append${planned}$append$ INTO kinds, scopes, names "
        "USING kinds, scopes, names, seen_at; END IF; END IF",
        "IF kinds IS NOT NULL THEN "
        "PERFORM sphere_stats_refresh_entities(kinds, scopes, names); END IF",
    ]
