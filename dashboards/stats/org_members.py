"""Organizations by members at a window's end: from org_memberships
(audit.OrgMembership, each membership's latest event) for a window that
ends now, from org_membership_events (audit.OrgMembershipEvent, each
membership event) for one that ended in the past."""

from datetime import timedelta

from django.utils import timezone
from psycopg import sql

from audit import catalog
from audit.buckets import fetch
from audit.models import Entity, OrgMembership, OrgMembershipEvent

ENTITIES = sql.Identifier(Entity._meta.db_table)

# The latest successful membership event of each (org, member, kind) since
# the org's latest creation, read from `events` (idx_events_subject_ts).
ORG_MEMBERS_RAW_SQL = (
    "SELECT org, count(*) FILTER (WHERE kind = 'usermember'),"
    " count(*) FILTER (WHERE kind = 'projectmember') FROM ("
    "  SELECT DISTINCT ON (e.subject, e.target, e.payload->>'kind') e.subject AS org,"
    "   e.payload->>'kind' AS kind, e.event_type"
    "  FROM events e JOIN {entities} o ON o.kind = 'organization' AND o.scope = ''"
    "   AND o.name = e.subject AND o.since < %(at)s AND (o.until IS NULL OR o.until >= %(at)s)"
    "  WHERE e.event_type = ANY(%(member_types)s) AND e.success AND e.timestamp >= o.since"
    "   AND e.timestamp < %(at)s"
    "  ORDER BY e.subject, e.target, e.payload->>'kind', e.timestamp DESC,"
    "   e.event_uuid DESC"
    ") AS latest WHERE event_type <> ALL(%(removals)s)"
    " GROUP BY org ORDER BY 2 DESC, 3 DESC, 1 LIMIT %(n)s"
)
# The organizations existing at `at`, each with its latest creation.
ORGS_AT = (
    "WITH orgs AS MATERIALIZED ("
    "  SELECT name, since FROM {entities} WHERE kind = 'organization' AND scope = ''"
    "   AND since < %(at)s AND (until IS NULL OR until >= %(at)s))"
)
# An org's members at `at` from its membership events before it (and since
# its creation), read from org_membership_events' key index in the order
# that gives each membership's latest first, driven by the org (LATERAL: a
# join let the planner scan every org's events first).
MEMBERS_AT = (
    " CROSS JOIN LATERAL ("
    "  SELECT DISTINCT ON (e.kind, e.member) e.kind, e.removals > 0"
    "  FROM {membership_events} e WHERE e.org = o.name AND e.at >= o.since AND e.at < %(at)s"
    "  ORDER BY e.kind DESC, e.member DESC, e.at DESC, e.event_uuid DESC"
    " ) AS r (kind, removed)"
)
MEMBER_COUNTS = (
    "count(*) FILTER (WHERE r.kind = 'usermember'),"
    " count(*) FILTER (WHERE r.kind = 'projectmember')"
)
ORG_MEMBERS_SQL = (
    ORGS_AT
    # Each org's members from its memberships' latest events, counted org by
    # org as its key index gives them (LATERAL: no hash of every membership,
    # at 10M events 38,000 of 1,025 orgs: 17-20 ms against 25-27);
    # `changed`: one of them changed at or after `at`, so the latest event
    # is not the one that counts then (for a window ending now, one that
    # arrived since it ended).
    + ", counted AS MATERIALIZED ("
    "  SELECT o.name AS org, c.users, c.projects, c.changed FROM orgs o CROSS JOIN LATERAL ("
    "   SELECT count(*) FILTER (WHERE m.kind = 'usermember' AND NOT m.removed) AS users,"
    "    count(*) FILTER (WHERE m.kind = 'projectmember' AND NOT m.removed) AS projects,"
    "    coalesce(bool_or(m.last_at >= %(at)s), false) AS changed"
    "   FROM {memberships} m WHERE m.org = o.name AND m.last_at >= o.since"
    "  ) AS c"
    ") SELECT org, users, projects FROM counted WHERE NOT changed AND users + projects > 0"
    f" UNION ALL SELECT o.name, {MEMBER_COUNTS}"
    " FROM counted c JOIN orgs o ON o.name = c.org"
    f" {MEMBERS_AT} WHERE c.changed AND NOT r.removed GROUP BY o.name"
    " ORDER BY 2 DESC, 3 DESC, 1 LIMIT %(n)s"
)
# Every org replays its membership events: a window ending in the past,
# where most orgs have changed since (at 10M events and 30 days ago, 745 of
# 944), and reading their latest rows as well cost more than it saved.
ORG_MEMBERS_PAST_SQL = (
    ORGS_AT + f" SELECT o.name, {MEMBER_COUNTS} FROM orgs o {MEMBERS_AT}"
    " WHERE NOT r.removed GROUP BY o.name ORDER BY 2 DESC, 3 DESC, 1 LIMIT %(n)s"
)
# A window that ended this long ago is in the past.
RECENT = timedelta(minutes=5)


def top_orgs_by_members(n: int, at, source: str = "auto") -> list[tuple]:
    """Organizations existing at `at` by current user and project members
    (membership events since each org's latest creation): (organization,
    user members, project members).

    A membership counts when its latest successful event before `at` (and
    since the org's creation) did not remove the member. For a window that
    ends now, org_memberships (each membership's latest event) answers for
    every org none of whose memberships changed at or after `at`, and the
    others replay their membership events from org_membership_events; for
    one that ended before RECENT, every org replays them. source="raw"
    replays every org's from `events` (idx_events_subject_ts).
    """
    names = {
        "entities": ENTITIES,
        "memberships": sql.Identifier(OrgMembership._meta.db_table),
        "membership_events": sql.Identifier(OrgMembershipEvent._meta.db_table),
    }
    if source == "raw":
        statement = ORG_MEMBERS_RAW_SQL
    elif at < timezone.now() - RECENT:
        statement = ORG_MEMBERS_PAST_SQL
    else:
        statement = ORG_MEMBERS_SQL
    query = sql.SQL(statement).format(**names)
    params = {
        "at": at,
        "n": n,
        "member_types": list(catalog.membership_types("organization")),
        "removals": list(catalog.MEMBER_REMOVALS),
    }
    return fetch(query, params)
