"""Views for SQL users (Metabase, Grafana, psql): the stats_ views.

Each answers one question of the SPHERE stats request in plain SQL, the way
the portal's pages answer it, and reads the pre-aggregates where they hold
the answer, so that a dashboard refreshing them costs little at 10M events:

- stats_entities_now: entities existing now by kind and state (entities;
  dashboards.stats current_counts for a window ending now);
- stats_memberships_now: current members of every existing organization
  and project with their roles (events about each group since its latest
  existence began, through idx_events_subject_ts; dashboards.queries
  members(), statement for statement);
- stats_logins_daily: logins per UTC day by outcome, and the distinct users
  who logged in (event_counts_daily, login_users_hourly);
- stats_events_daily: events per UTC day by type and outcome
  (event_counts_daily);
- stats_entities_daily: entities in each state at the end of every UTC day
  (entity_changes_hourly; the growth charts).

Written to be right in any session time zone (Metabase and Grafana set
their own): days are cut with date_trunc(..., 'UTC') and stepped in hours.
A filter on `day` reaches the daily pre-aggregate's primary key in
stats_logins_daily and stats_events_daily (Grafana's $__timeFilter).

The SQL is carried here as it is on this day, membership event types and
all (audit.catalog MEMBER_TYPES and MEMBER_REMOVALS); a later change of the
catalog that the views must follow is a new migration. docs/sql_access.md
describes the views for their readers; manage.py create_readonly_role grants
them with the tables.
"""

from django.db import migrations

ENTITIES_NOW = [
    """
CREATE OR REPLACE VIEW stats_entities_now AS
SELECT kind, state, count(*) AS entities
FROM entities
WHERE state <> 'gone'
GROUP BY kind, state
""",
    "COMMENT ON VIEW stats_entities_now IS 'Entities existing now by kind and state: users, "
    "organizations and projects (pending, active, frozen), experiments (exists), realizations "
    "and materializations (active). An entity deleted or declined is not counted; one "
    "re-created counts once. The cards of the overview page.'",
    "COMMENT ON COLUMN stats_entities_now.kind IS 'user, organization, project, experiment, "
    "realization or materialization'",
    "COMMENT ON COLUMN stats_entities_now.state IS 'pending, active or frozen (users, "
    "organizations, projects); exists (experiments); active (realizations, materializations)'",
    "COMMENT ON COLUMN stats_entities_now.entities IS 'how many exist now in this state'",
]

# dashboards.queries.members(kind, name, since) for every organization and
# project that exists (scope '', state not gone), with its `since`: the
# latest successful membership event of each (member, payload kind) since
# the group's latest existence began, unless it removed the member; `since`
# of a member is its first event after its latest removal.
MEMBERSHIPS_NOW = [
    """
CREATE OR REPLACE VIEW stats_memberships_now AS
SELECT g.kind AS group_kind, g.name AS group_name, m.member_kind, m.member, m.role,
       m.member_state, m.since
FROM entities AS g
CROSS JOIN LATERAL (
    SELECT target AS member, kind AS member_kind, role, state AS member_state, joined AS since
    FROM (
        SELECT DISTINCT ON (target, kind) target, kind, role, state, event_type,
               min(timestamp) FILTER (
                   WHERE event_type NOT IN ('org_member_deleted', 'project_member_deleted')
                     AND removals_after = 0
               ) OVER (PARTITION BY target, kind) AS joined
        FROM (
            SELECT e.target, e.payload->>'kind' AS kind, e.payload->>'role' AS role,
                   e.payload->>'state' AS state, e.event_type, e.timestamp, e.event_uuid,
                   count(*) FILTER (
                       WHERE e.event_type IN ('org_member_deleted', 'project_member_deleted')
                   ) OVER (
                       PARTITION BY e.target, e.payload->>'kind'
                       ORDER BY e.timestamp DESC, e.event_uuid DESC
                   ) AS removals_after
            FROM events AS e
            WHERE e.subject_type = g.kind AND e.subject = g.name AND e.success
              AND (
                  (g.kind = 'organization' AND e.event_type IN (
                      'org_member_added', 'org_member_updated', 'org_member_deleted',
                      'org_member_catalogued'))
                  OR (g.kind = 'project' AND e.event_type IN (
                      'project_member_added', 'project_member_updated',
                      'project_member_deleted', 'project_member_catalogued'))
              )
              AND e.timestamp >= coalesce(g.since, '-infinity'::timestamptz)
              AND e.target IS NOT NULL
        ) AS history
        ORDER BY target, kind, timestamp DESC, event_uuid DESC
    ) AS latest
    WHERE event_type NOT IN ('org_member_deleted', 'project_member_deleted')
) AS m
WHERE g.kind IN ('organization', 'project') AND g.scope = '' AND g.state <> 'gone'
""",
    "COMMENT ON VIEW stats_memberships_now IS 'Current members of every existing organization "
    "and project, with their role: the latest successful membership event of each member "
    "since the group''s latest creation, unless it removed them. The Members table of an "
    "organization''s or project''s page.'",
    "COMMENT ON COLUMN stats_memberships_now.group_kind IS 'organization or project'",
    "COMMENT ON COLUMN stats_memberships_now.group_name IS 'the organization or project name'",
    "COMMENT ON COLUMN stats_memberships_now.member_kind IS 'usermember (member is a username) "
    "or projectmember (member is a project in an organization): payload.kind of the events'",
    "COMMENT ON COLUMN stats_memberships_now.member IS 'the username or project name (the "
    "events'' target)'",
    "COMMENT ON COLUMN stats_memberships_now.role IS 'creator, maintainer or member, as of "
    "the latest membership event'",
    "COMMENT ON COLUMN stats_memberships_now.member_state IS 'pending or active, as of the "
    "latest membership event (NULL when it named none)'",
    "COMMENT ON COLUMN stats_memberships_now.since IS 'member since: the first membership "
    "event after their latest removal'",
]

LOGINS_DAILY = [
    """
CREATE OR REPLACE VIEW stats_logins_daily AS
SELECT d.day, d.succeeded, d.failed, u.users
FROM (
    SELECT day,
           coalesce(sum(n) FILTER (WHERE success), 0)::bigint AS succeeded,
           coalesce(sum(n) FILTER (WHERE NOT success), 0)::bigint AS failed
    FROM event_counts_daily
    WHERE event_type = 'user_login'
    GROUP BY day
) AS d
CROSS JOIN LATERAL (
    SELECT count(DISTINCT username) AS users
    FROM login_users_hourly
    WHERE hour >= d.day AND hour < d.day + interval '24 hours'
) AS u
""",
    "COMMENT ON VIEW stats_logins_daily IS 'Login attempts per UTC day that had any: how "
    "many succeeded and failed, and how many distinct users logged in successfully. The "
    "Logins chart at daily resolution in UTC, and its daily active users.'",
    "COMMENT ON COLUMN stats_logins_daily.day IS 'the UTC day (its midnight, timestamptz)'",
    "COMMENT ON COLUMN stats_logins_daily.succeeded IS 'successful user_login events'",
    "COMMENT ON COLUMN stats_logins_daily.failed IS 'failed user_login events'",
    "COMMENT ON COLUMN stats_logins_daily.users IS 'distinct users with a successful login'",
]

EVENTS_DAILY = [
    """
CREATE OR REPLACE VIEW stats_events_daily AS
SELECT day, event_type, success, n AS events
FROM event_counts_daily
""",
    "COMMENT ON VIEW stats_events_daily IS 'Events received per UTC day, event type and "
    "outcome (days, types and outcomes without events have no row). The Events by type "
    "chart at daily resolution in UTC.'",
    "COMMENT ON COLUMN stats_events_daily.day IS 'the UTC day (its midnight, timestamptz)'",
    "COMMENT ON COLUMN stats_events_daily.event_type IS 'the event type (the catalog at "
    "/catalog/ describes each)'",
    "COMMENT ON COLUMN stats_events_daily.success IS 'whether the events succeeded'",
    "COMMENT ON COLUMN stats_events_daily.events IS 'how many events'",
]

# The deltas of entity_changes_hourly summed per UTC day and accumulated:
# the entities in a state at the end of a day are those that entered it
# before then and had not left it.
ENTITIES_DAILY = [
    """
CREATE OR REPLACE VIEW stats_entities_daily AS
WITH changes AS (
    SELECT date_trunc('day', hour, 'UTC') AS day, kind, state, sum(delta) AS delta
    FROM entity_changes_hourly
    GROUP BY 1, 2, 3
), every_day AS (
    SELECT day, kind, state, delta FROM changes
    UNION ALL
    SELECT d.day, s.kind, s.state, 0
    FROM (
        SELECT min(day) AS first, greatest(max(day), date_trunc('day', now(), 'UTC')) AS last
        FROM changes
    ) AS span
    CROSS JOIN generate_series(span.first, span.last, interval '24 hours') AS d (day)
    CROSS JOIN (SELECT DISTINCT kind, state FROM changes) AS s
)
SELECT day, kind, state,
       (sum(sum(delta)) OVER (PARTITION BY kind, state ORDER BY day))::bigint AS entities
FROM every_day
GROUP BY day, kind, state
""",
    "COMMENT ON VIEW stats_entities_daily IS 'Entities in each state at the end of every UTC "
    "day, from the first day an entity appeared to today: users, organizations, projects, "
    "experiments, realizations and materializations over time. The growth chart at daily "
    "resolution in UTC.'",
    "COMMENT ON COLUMN stats_entities_daily.day IS 'the UTC day (its midnight, timestamptz); "
    "the counts are as of its end'",
    "COMMENT ON COLUMN stats_entities_daily.kind IS 'user, organization, project, experiment, "
    "realization or materialization'",
    "COMMENT ON COLUMN stats_entities_daily.state IS 'pending, active, frozen, exists'",
    "COMMENT ON COLUMN stats_entities_daily.entities IS 'how many were in this state at the "
    "end of the day'",
]


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0013_adoption"),
    ]

    operations = [
        migrations.RunSQL(ENTITIES_NOW, "DROP VIEW IF EXISTS stats_entities_now"),
        migrations.RunSQL(MEMBERSHIPS_NOW, "DROP VIEW IF EXISTS stats_memberships_now"),
        migrations.RunSQL(LOGINS_DAILY, "DROP VIEW IF EXISTS stats_logins_daily"),
        migrations.RunSQL(EVENTS_DAILY, "DROP VIEW IF EXISTS stats_events_daily"),
        migrations.RunSQL(ENTITIES_DAILY, "DROP VIEW IF EXISTS stats_entities_daily"),
    ]
