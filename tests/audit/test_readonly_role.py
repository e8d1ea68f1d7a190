"""manage.py create_readonly_role: a login for Metabase, Grafana and psql
that reads events, the pre-aggregates and the stats_ views, and writes
nothing, connected to as that role on the real server.

Roles belong to the whole server, not to the test database: each test uses
a name of its own and drops the role at its end, whatever happened."""

import base64
import hashlib
import hmac
import uuid
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from psycopg import errors, sql

from audit.aggregates import DERIVED_TABLES
from audit.ingest import ingest
from audit.management.commands.create_readonly_role import READABLE_TABLES
from tests.dashboards.conftest import FIRST_BATCH, NOW

VIEWS = (
    "stats_entities_now",
    "stats_memberships_now",
    "stats_logins_daily",
    "stats_events_daily",
    "stats_entities_daily",
)


def connect(user: str) -> psycopg.Connection:
    """A connection to the test database as `user` (the test servers trust
    local connections, so any existing role gets in)."""
    s = connection.settings_dict
    return psycopg.connect(
        host=s["HOST"] or None,
        port=s["PORT"] or None,
        dbname=s["NAME"],
        user=user,
        autocommit=True,
        connect_timeout=5,
    )


def _drop_role(name: str) -> None:
    # Its own connection: the test's may be in a failed transaction.
    with connect(connection.settings_dict["USER"]) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
            role = sql.Identifier(name)
            admin.execute(sql.SQL("DROP OWNED BY {}").format(role))
            admin.execute(sql.SQL("DROP ROLE {}").format(role))


@pytest.fixture
def role_name():
    name = f"test_ro_{uuid.uuid4().hex[:10]}"
    yield name
    _drop_role(name)


def create_role(*args: str) -> str:
    out = StringIO()
    call_command("create_readonly_role", *args, stdout=out)
    return out.getvalue()


def role_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])
        return cursor.fetchone() is not None


def ddl(template: str, *names: str) -> None:
    """Run `template` with `names` as quoted identifiers on the test's connection."""
    statement = sql.SQL(template).format(*(sql.Identifier(n) for n in names))
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(connection.connection))


def rows(conn, relation: str) -> list[tuple]:
    query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(relation))
    return sorted(conn.execute(query).fetchall(), key=repr)


@pytest.mark.django_db(transaction=True)
def test_the_role_reads_events_every_pre_aggregate_and_every_view_as_they_are(role_name):
    ingest(FIRST_BATCH, now=NOW)
    assert "Created role" in create_role(role_name)
    with connect(role_name) as reader, connect(connection.settings_dict["USER"]) as owner:
        for relation in (*READABLE_TABLES, *VIEWS):
            assert rows(reader, relation) == rows(owner, relation), relation
        assert len(rows(reader, "events")) == len(FIRST_BATCH)
        assert rows(reader, "stats_memberships_now")


@pytest.mark.django_db(transaction=True)
def test_the_role_can_write_nothing_even_when_it_turns_read_only_off(role_name):
    ingest(FIRST_BATCH, now=NOW)
    create_role(role_name)
    with connect(role_name) as reader:
        # The second guard: its sessions start read-only.
        assert reader.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(errors.ReadOnlySqlTransaction):
            reader.execute("DELETE FROM events")
        # The first: it holds no privilege to write, whatever the session says.
        reader.execute("SET default_transaction_read_only = off")
        writes = [
            "INSERT INTO events (event_uuid, timestamp, event_type, caller, subject,"
            " subject_type, success) VALUES (gen_random_uuid(), now(), 'user_login', 'x',"
            " 'x', 'user', true)",
            "UPDATE events SET caller = 'mallory'",
            "DELETE FROM events",
            "TRUNCATE events",
            *(f"DELETE FROM {table}" for table in DERIVED_TABLES),
            "UPDATE entity_changes_hourly SET delta = 0",
            "CREATE TABLE notes (id int)",
            "CREATE VIEW stats_mine AS SELECT 1 AS one",
            # SECURITY DEFINER: it would rewrite `entities` with its owner's rights.
            "SELECT sphere_stats_refresh_entities(ARRAY['user'], ARRAY[''], ARRAY['alice'])",
            # Django's tables: password hashes, sessions, API tokens.
            "SELECT * FROM auth_user",
            "SELECT * FROM django_session",
            "SELECT * FROM api_tokens",
        ]
        for statement in writes:
            with pytest.raises(errors.InsufficientPrivilege):
                reader.execute(statement)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events")
        assert cursor.fetchone() == (len(FIRST_BATCH),)


@pytest.mark.django_db(transaction=True)
def test_running_it_again_is_harmless_and_grants_views_added_since(role_name):
    create_role(role_name)

    def privileges() -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, p.privilege_type FROM pg_class AS c,"
                " unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p"
                " (privilege_type)"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v')"
                " AND has_table_privilege(%s, c.oid, p.privilege_type) ORDER BY 1, 2",
                [role_name],
            )
            return cursor.fetchall()

    granted = privileges()
    assert {relation for relation, _ in granted} == {*READABLE_TABLES, *VIEWS}
    assert {privilege for _, privilege in granted} == {"SELECT"}
    assert "Updated role" in create_role(role_name)
    assert privileges() == granted
    with connection.cursor() as cursor:
        cursor.execute("CREATE VIEW stats_extra AS SELECT count(*) AS events FROM events")
    try:
        create_role(role_name)
        with connect(role_name) as reader:
            assert reader.execute("SELECT events FROM stats_extra").fetchone() == (0,)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP VIEW stats_extra")


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether a PostgreSQL SCRAM-SHA-256 verifier is that of `password` (RFC 5802)."""
    method, iterations_salt, keys = verifier.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key, server_key = keys.split(":")
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return (
        method == "SCRAM-SHA-256"
        and base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key
        and base64.b64encode(hmac.new(salted, b"Server Key", "sha256").digest()).decode()
        == server_key
    )


def _stored_password(name: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [name])
        return cursor.fetchone()[0]


def test_the_password_comes_from_the_environment_and_is_sent_hashed(db, role_name, monkeypatch):
    monkeypatch.setenv("METABASE_DB_PASSWORD", "s3cret-'quoted'")
    out = create_role(role_name, "--password-env", "METABASE_DB_PASSWORD", "-v", "2")
    assert "s3cret" not in out
    stored = _stored_password(role_name)
    assert _scram_matches(stored, "s3cret-'quoted'")
    # Re-run without it (to grant new tables): the password stays.
    create_role(role_name)
    assert _stored_password(role_name) == stored


def test_without_a_password_variable_the_role_has_no_password(db, role_name):
    create_role(role_name)
    assert _stored_password(role_name) is None


def test_a_missing_password_variable_is_an_error_and_creates_nothing(db, role_name, monkeypatch):
    monkeypatch.delenv("NO_SUCH_PASSWORD", raising=False)
    with pytest.raises(CommandError, match=r"\$NO_SUCH_PASSWORD is not set"):
        create_role(role_name, "--password-env", "NO_SUCH_PASSWORD")
    assert not role_exists(role_name)


def test_a_dry_run_prints_the_statements_and_creates_nothing(db, role_name):
    out = create_role(role_name, "--dry-run")
    assert f'CREATE ROLE "{role_name}" LOGIN NOSUPERUSER' in out
    assert f'ALTER ROLE "{role_name}" SET default_transaction_read_only = on;' in out
    assert '"public"."events"' in out and '"public"."stats_memberships_now"' in out
    assert "Dry run: nothing was changed." in out
    assert not role_exists(role_name)


def test_a_database_user_who_may_not_create_roles_gets_a_clear_error(db, role_name):
    plain = f"test_plain_{uuid.uuid4().hex[:10]}"
    # Inside the test's transaction: rolled back with it.
    ddl("CREATE ROLE {} NOLOGIN", plain)
    ddl("SET ROLE {}", plain)
    try:
        with pytest.raises(CommandError, match=f"{plain}' .* may not create roles"):
            create_role(role_name)
    finally:
        ddl("RESET ROLE")
    assert not role_exists(role_name)


def test_it_refuses_to_make_its_own_connection_role_read_only(db):
    with pytest.raises(CommandError, match="role this command connects as"):
        create_role(connection.settings_dict["USER"])


def test_it_refuses_a_role_that_owns_tables(db, role_name):
    ddl("CREATE ROLE {}", role_name)
    ddl("CREATE TABLE owned_by_someone (id int)")
    ddl("ALTER TABLE owned_by_someone OWNER TO {}", role_name)
    with pytest.raises(CommandError, match="owns database objects"):
        create_role(role_name)


def test_it_refuses_a_member_of_a_role_that_may_write(db, role_name):
    writer = f"test_writer_{uuid.uuid4().hex[:10]}"
    ddl("CREATE ROLE {}", writer)
    ddl("CREATE ROLE {}", role_name)
    ddl("GRANT {} TO {}", writer, role_name)
    with pytest.raises(CommandError, match=f"member of {writer}"):
        create_role(role_name)


def test_it_fails_and_changes_nothing_when_public_may_write(db, role_name):
    ddl("GRANT INSERT ON events TO PUBLIC")
    with pytest.raises(CommandError, match="can write events through grants to PUBLIC"):
        create_role(role_name)
    assert not role_exists(role_name)
