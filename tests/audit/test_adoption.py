"""Adopting an existing portal-audit database: the portal's own `events`
table (the SPHERE request's DDL, one more index of its own, the request's
eight sample rows), made with psql, then `manage.py migrate` pointed at it,
as the README tells an operator to do. Everything runs through the real
clients (psql, manage.py, gunicorn, a browser-like session) on a database of
its own on the suite's server."""

import json
import re
from datetime import datetime

import pytest

from audit.models import Event
from tests.audit.adopt_helpers import (
    PORTAL_INDEX,
    PORTAL_INDEX_DDL,
    SEED_DDL,
    SEED_INDEXES,
    SEED_ROWS,
    database_url,
    insert_sql,
    logged_in,
    manage,
    psql,
    scratch_database,
    scratch_roles,
    served,
)

TRIGGERS = {f"sphere_stats_events_{op}" for op in ("insert", "delete", "update", "truncate")}
INDEX_DEFINITIONS = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events'"
# Every row, as text, in one digest: any changed value changes it.
ROWS_DIGEST = "SELECT md5(string_agg(e::text, '|' ORDER BY event_uuid)) FROM events AS e"


class Adopted:
    def __init__(self, name: str, migrate, rows_before: str, indexes_before: str) -> None:
        self.name = name
        self.url = database_url(name)
        self.migrate = migrate
        self.rows_before = rows_before
        self.indexes_before = indexes_before

    def sql(self, query: str) -> list[list[str]]:
        out = psql(self.name, query, tuples=True)
        return [line.split("|") for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def adopted():
    """The portal's database as psql made it, after `manage.py migrate`."""
    with scratch_database("adopt") as name:
        psql(name, SEED_DDL + PORTAL_INDEX_DDL + insert_sql(SEED_ROWS))
        rows_before = psql(name, ROWS_DIGEST, tuples=True)
        indexes_before = psql(name, INDEX_DEFINITIONS + " ORDER BY 1", tuples=True)
        migrate = manage(database_url(name), "migrate", "--no-input")
        yield Adopted(name, migrate, rows_before, indexes_before)


def test_migrate_adopts_the_portal_database_and_keeps_every_row(adopted):
    assert adopted.migrate.returncode == 0, adopted.migrate.stderr[-3000:]
    assert "Pre-aggregates built from events" in adopted.migrate.stdout
    # The progress bars of the backfill, on stderr.
    assert "entities: 100%" in adopted.migrate.stderr
    assert psql(adopted.name, ROWS_DIGEST, tuples=True) == adopted.rows_before
    stored = {
        row["event_uuid"]: row
        for (line,) in adopted.sql("SELECT row_to_json(e) FROM events AS e")
        for row in [json.loads(line)]
    }
    assert len(stored) == 8
    for sample in SEED_ROWS:
        row = stored[sample["event_uuid"]]
        assert datetime.fromisoformat(row.pop("timestamp")) == datetime.fromisoformat(
            sample["timestamp"]
        )
        assert row == {k: v for k, v in sample.items() if k != "timestamp"}


def test_the_portals_own_indexes_stay_as_they_were(adopted):
    before = dict(line.split("|", 1) for line in adopted.indexes_before.splitlines())
    after = dict(adopted.sql(INDEX_DEFINITIONS))
    assert {*SEED_INDEXES, PORTAL_INDEX} <= set(before)
    for name in (*SEED_INDEXES, PORTAL_INDEX):
        assert after[name] == before[name], name


def test_our_indexes_on_events_are_built_and_valid(adopted):
    found = dict(
        adopted.sql(
            "SELECT c.relname, i.indisvalid AND i.indisready FROM pg_index AS i "
            "JOIN pg_class AS c ON c.oid = i.indexrelid WHERE i.indrelid = 'events'::regclass"
        )
    )
    declared = {index.name for index in Event._meta.indexes}
    assert declared - set(found) == set()
    # No invalid leftover of an interrupted CONCURRENTLY build, ours or theirs.
    assert {name for name, valid in found.items() if valid != "t"} == set()


def test_the_triggers_on_events_are_installed_and_enabled(adopted):
    found = dict(
        adopted.sql(
            "SELECT tgname, tgenabled FROM pg_trigger "
            "WHERE tgrelid = 'events'::regclass AND NOT tgisinternal"
        )
    )
    assert set(found) >= TRIGGERS
    assert {found[name] for name in TRIGGERS} == {"O"}


def test_verify_aggregates_finds_every_pre_aggregate_equal_to_the_events(adopted):
    result = manage(adopted.url, "verify_aggregates")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Every pre-aggregate equals the events table." in result.stdout


def test_orgtest_exists_from_its_first_membership_with_both_members(adopted):
    assert adopted.sql(
        "SELECT state, predates_log, first_seen = '2026-04-23 20:50:23.597554+00' "
        "FROM entities WHERE kind = 'organization' AND name = 'orgtest'"
    ) == [["active", "t", "t"]]
    # The two failed removals changed nothing.
    assert adopted.sql(
        "SELECT kind, member, removed FROM org_memberships WHERE org = 'orgtest' ORDER BY 1"
    ) == [["projectmember", "testproject", "f"], ["usermember", "testuser", "f"]]


# --- the pages, on the adopted database, with the portal writing beside them ------------

# The current counts of the entities, over `events` by hand, for the event types
# this test writes: an entity exists from its first successful mention (active:
# it predates the log), a user whose latest lifecycle event is user_created is
# pending, an experiment exists while its latest lifecycle event is a creation.
ORACLE_TYPES = {
    "org_member_added",
    "org_member_deleted",
    "experiment_created",
    "experiment_deleted",
    "user_created",
    "user_login",
}
COUNTS_BY_HAND = """
WITH mentioned AS (
    SELECT subject_type AS kind, subject AS name FROM events
    WHERE success AND subject_type IN ('user', 'organization', 'project')
    UNION SELECT CASE payload->>'kind' WHEN 'usermember' THEN 'user' ELSE 'project' END, target
    FROM events WHERE success AND event_type LIKE 'org_member_%' AND target IS NOT NULL
    UNION SELECT 'project', payload->>'project' FROM events
    WHERE success AND payload->>'project' IS NOT NULL
),
latest AS (
    SELECT DISTINCT ON (subject_type, coalesce(payload->>'project', ''), subject)
           subject_type AS kind, subject AS name, event_type
    FROM events
    WHERE success AND event_type IN ('user_created', 'experiment_created', 'experiment_deleted')
    ORDER BY subject_type, coalesce(payload->>'project', ''), subject, timestamp DESC
)
SELECT m.kind, CASE l.event_type WHEN 'user_created' THEN 'pending' ELSE 'active' END, count(*)
FROM mentioned AS m LEFT JOIN latest AS l USING (kind, name) GROUP BY 1, 2
UNION ALL
SELECT 'experiment', 'exists', count(*) FROM latest
WHERE kind = 'experiment' AND event_type = 'experiment_created' HAVING count(*) > 0
"""


def _counts_by_hand(adopted) -> dict[tuple[str, str], int]:
    types = {t for (t,) in adopted.sql("SELECT DISTINCT event_type FROM events")}
    assert types <= ORACLE_TYPES, "COUNTS_BY_HAND does not know these types"
    return {(kind, state): int(n) for kind, state, n in adopted.sql(COUNTS_BY_HAND)}


def _current_counts(session, base: str, source: str = "auto") -> dict[tuple[str, str], int]:
    answer = session.get(f"{base}/api/v1/stats/current_counts?source={source}", timeout=60)
    assert answer.status_code == 200, answer.text
    return {(kind, state): n for kind, state, n, _, _ in answer.json()["rows"] if n}


def _cards(session, base: str, wanted: dict) -> dict[str, int | None]:
    """The overview's cards named in `wanted`: label -> the number shown."""
    page = session.get(f"{base}/", timeout=60)
    assert page.status_code == 200, page.text[:2000]
    found = re.findall(
        r'<div class="label">([^<]+)</div>\s*<div class="value">\s*([\d,]+)', page.text
    )
    assert found, "no cards on the overview"
    shown = {label: int(value.replace(",", "")) for label, value in found}
    return {label: shown.get(label) for label in wanted}


def _members(session, base: str, org: str) -> tuple[str, str]:
    page = session.get(f"{base}/orgs/{org}/", timeout=60)
    assert page.status_code == 200
    head = re.search(r"<h1>(.*?)</h1>", page.text, re.S).group(1)
    members = re.search(r'<section class="card" id="members">(.*?)</section>', page.text, re.S)
    assert members, "no members section on the organization's page"
    return head, members.group(1)


LOGIN = {
    "event_uuid": "9b0c6f3e-6a55-4d8e-9a34-0b1a5c0d7e01",
    "event_type": "user_login",
    "caller": "loginuser",
    "subject": "loginuser",
    "subject_type": "user",
    "target": None,
    "success": True,
    "error_message": None,
    "payload": {},
}
CREATED = {
    **LOGIN,
    "event_uuid": "9b0c6f3e-6a55-4d8e-9a34-0b1a5c0d7e02",
    "event_type": "user_created",
    "caller": "newbie",
    "subject": "newbie",
}


def _portal_insert(adopted, *events: dict) -> None:
    """The portal's own INSERT, through psql, timestamped by the server's clock."""
    rows = [{**event, "timestamp": "1970-01-01"} for event in events]
    sql = insert_sql(rows).replace("'1970-01-01'", "now() - interval '1 second'")
    psql(adopted.name, sql)


def test_the_pages_show_the_adopted_data_and_count_the_portals_writes_at_once(adopted):
    password = "pw-adopt-viewer-1"
    made = manage(
        adopted.url,
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User; "
        f"u = User.objects.create_user('adopt_viewer', password='{password}'); "
        "u.groups.add(Group.objects.get(name='viewer'))",
    )
    assert made.returncode == 0, made.stderr
    # STATS_CACHE_SECONDS=0: a page may otherwise show a stat it computed
    # up to 30 s before; the pre-aggregates it reads have no lag at all.
    with served(adopted.url, STATS_CACHE_SECONDS="0") as base:
        session = logged_in(base, "adopt_viewer", password)

        # The overview's cards: each kind's entities (its states summed).
        # Projects: testproject, and glawler that testexp names.
        expected = {"Organizations": 1, "Users": 1, "Projects": 2, "Experiments": 0}
        assert _cards(session, base, expected) == expected
        head, members = _members(session, base, "orgtest")
        assert "orgtest" in head and "active" in head
        assert 'muted small">2</span>' in members
        assert ">testuser</a>" in members and ">testproject</a>" in members
        by_hand = _counts_by_hand(adopted)
        assert _current_counts(session, base) == by_hand
        assert _current_counts(session, base, "raw") == by_hand

        _portal_insert(adopted, CREATED, LOGIN)
        expected = {"Users": 3, "Events received": 2, "Logins succeeded": 1}
        expected["Users who logged in"] = 1
        assert _cards(session, base, expected) == expected
        by_hand = _counts_by_hand(adopted)
        assert by_hand[("user", "pending")] == 1 and by_hand[("user", "active")] == 2
        assert _current_counts(session, base) == by_hand

        psql(adopted.name, f"DELETE FROM events WHERE event_uuid = '{LOGIN['event_uuid']}';")
        expected = {"Users": 2, "Events received": 1, "Logins succeeded": 0}
        expected["Users who logged in"] = 0
        assert _cards(session, base, expected) == expected
        by_hand = _counts_by_hand(adopted)
        assert by_hand[("user", "active")] == 1
        assert _current_counts(session, base) == by_hand

    psql(adopted.name, f"DELETE FROM events WHERE event_uuid = '{CREATED['event_uuid']}';")
    result = manage(adopted.url, "verify_aggregates")
    assert result.returncode == 0, result.stdout


# --- the privileges the README names ------------------------------------------------------


def _portal_database(name: str, portal: str) -> None:
    """As the portal set it up: its role owns `events` and the rows."""
    psql(name, f'GRANT CREATE ON SCHEMA public TO "{portal}";')
    psql(name, SEED_DDL + insert_sql(SEED_ROWS), user=portal)


def test_a_member_of_the_owning_role_adopts_events_and_the_portal_role_needs_nothing_more():
    with (
        scratch_roles("adopt_portal", "adopt_stats") as (portal, stats),
        scratch_database("adopt_roles") as name,
    ):
        _portal_database(name, portal)
        # What the README asks of the sphere_stats role: membership in the
        # role that owns `events`, and CREATE on the schema.
        psql(name, f'GRANT "{portal}" TO "{stats}"; GRANT CREATE ON SCHEMA public TO "{stats}";')
        url = database_url(name, stats)
        migrate = manage(url, "migrate", "--no-input")
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        assert psql(
            name, "SELECT tableowner FROM pg_tables WHERE tablename = 'events'", tuples=True
        ).split() == [portal]

        # The portal writes as before, with no right on our tables, and is counted.
        psql(name, insert_sql([{**LOGIN, "timestamp": "2026-04-24 08:00:00+00"}]), user=portal)
        refused = psql(name, "SELECT * FROM event_counts_hourly;", user=portal, check=False)
        assert refused.returncode != 0 and "permission denied" in refused.stderr
        assert psql(
            name,
            "SELECT n FROM event_counts_hourly WHERE event_type = 'user_login' "
            "AND bucket = '2026-04-24 08:00+00'",
            tuples=True,
        ).split() == ["1"]
        psql(name, "DELETE FROM events WHERE event_type = 'experiment_deleted';", user=portal)
        result = manage(url, "verify_aggregates")
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_role_that_does_not_own_events_is_refused_and_changes_no_row():
    with (
        scratch_roles("adopt_portal", "adopt_other") as (portal, other),
        scratch_database("adopt_roles") as name,
    ):
        _portal_database(name, portal)
        psql(name, f'GRANT CREATE ON SCHEMA public TO "{other}";')
        before = psql(name, ROWS_DIGEST, tuples=True)
        migrate = manage(database_url(name, other), "migrate", "--no-input")
        assert migrate.returncode != 0
        assert "must be owner of table events" in migrate.stderr
        assert psql(name, ROWS_DIGEST, tuples=True) == before
