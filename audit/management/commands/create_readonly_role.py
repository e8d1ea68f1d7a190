"""A PostgreSQL login for Metabase, Grafana and psql that reads the audit
events, the pre-aggregates and the stats_ views, and writes nothing.

The role gets SELECT on exactly READABLE_TABLES and the stats_ views, USAGE
on their schema and nothing else: not Django's tables (password hashes,
sessions, API tokens), no write on any table, no CREATE in the schema. Its
sessions start read-only (default_transaction_read_only), a second guard
that a session may turn off but that stops a careless UPDATE in psql.

Re-running it converges: the role's attributes are set again, every table
privilege in the schema is revoked and the list granted anew, so tables and
views added since are granted and anything granted by hand is taken back.
The outcome is then checked with has_table_privilege() and friends, which
also see what PUBLIC was granted; if the role could still write anywhere,
the command fails and its transaction changes nothing.

It needs a database user that may create roles (a superuser, or CREATEROLE
and owner of the tables): the one that runs `migrate` normally is.
"""

import os

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection, transaction
from psycopg import sql

from audit.aggregates import PREAGGREGATE_TABLES
from audit.models import Event

# What the role may read, in one place: `events`, every pre-aggregate's table
# (audit.aggregates, the entity changes included), and every view named
# stats_… in the schema (audit migration 0014 and any added later, found when
# the command runs).
READABLE_TABLES = (Event._meta.db_table, *PREAGGREGATE_TABLES)
VIEW_PREFIX = "stats_"
WRITE_PRIVILEGES = "INSERT, UPDATE, DELETE, TRUNCATE"
# Predefined roles that only read; membership in any other role would let
# the role SET ROLE to it and write with its privileges.
READ_ONLY_GROUPS = {
    "pg_monitor",
    "pg_read_all_data",
    "pg_read_all_settings",
    "pg_read_all_stats",
    "pg_stat_scan_tables",
}
# pg_roles column: (its keyword in CREATE/ALTER ROLE, the value wanted).
ATTRIBUTES = {
    "rolcanlogin": ("LOGIN", True),
    "rolsuper": ("SUPERUSER", False),
    "rolcreatedb": ("CREATEDB", False),
    "rolcreaterole": ("CREATEROLE", False),
    # Privileges of any role it is later made a member of stay out of its
    # sessions unless it SET ROLEs to that role explicitly.
    "rolinherit": ("INHERIT", False),
    "rolreplication": ("REPLICATION", False),
    "rolbypassrls": ("BYPASSRLS", False),
}
# A statement to run and how to show it (None: as it is): the password is never shown.
Statement = tuple[sql.Composable, str | None]


def _attribute(keyword: str, on: bool) -> sql.SQL:
    return sql.SQL(keyword if on else f"NO{keyword}")


def _grant_statements(
    role: sql.Identifier, database: str, schema: str, readable: list[str]
) -> list[Statement]:
    """Its session settings and connect right, every privilege in the
    schema taken back, and SELECT granted on `readable`."""
    statements: list[Statement] = [
        (statement.format(role, sql.Identifier(database), sql.Identifier(schema)), None)
        for statement in (
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on"),
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}"),
            sql.SQL("GRANT CONNECT ON DATABASE {1} TO {0}"),
            # Converge: take back whatever the role holds in the schema, then grant the list.
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {2} FROM {0}"),
            sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {2} FROM {0}"),
            sql.SQL("REVOKE CREATE ON SCHEMA {2} FROM {0}"),
            sql.SQL("GRANT USAGE ON SCHEMA {2} TO {0}"),
        )
    ]
    tables = sql.SQL(", ").join(sql.Identifier(schema, t) for t in readable)
    statements.append((sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(tables, role), None))
    return statements


def _definer_revokes(cursor, schema: str, schema_oid: int) -> list[Statement]:
    """EXECUTE taken from PUBLIC on the schema's SECURITY DEFINER functions.

    Such a function runs with its owner's rights, and PUBLIC may execute
    every function: sphere_stats_refresh_entities would let anyone rewrite
    `entities`. Only the triggers need it, and they run as its owner.
    """
    cursor.execute(
        "SELECT proname, pg_get_function_identity_arguments(oid) FROM pg_proc "
        "WHERE pronamespace = %(schema)s AND prosecdef AND prorettype <> 'trigger'::regtype "
        "AND has_function_privilege(%(public)s, oid, 'EXECUTE') ORDER BY 1, 2",
        {"schema": schema_oid, "public": "public"},
    )
    return [
        (
            sql.SQL("REVOKE EXECUTE ON FUNCTION {}({}) FROM PUBLIC").format(
                sql.Identifier(schema, function), sql.SQL(arguments)
            ),
            None,
        )
        for function, arguments in cursor.fetchall()
    ]


class Command(BaseCommand):
    help = "Create or update a read-only PostgreSQL role for Metabase, Grafana and psql."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the role's name, e.g. metabase")
        parser.add_argument(
            "--password-env",
            metavar="VAR",
            help="set the role's password from this environment variable (never an "
            "argument, which `ps` shows); without it a new role has no password "
            "(trust or peer authentication) and an existing one keeps its own",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="print the statements; change nothing"
        )

    def handle(self, *args, name: str, password_env: str | None, dry_run: bool, **options):
        password = None
        if password_env:
            password = os.environ.get(password_env, "")
            if not password:
                raise CommandError(f"--password-env: ${password_env} is not set or is empty.")
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                self._apply(cursor, name, password, dry_run, options["verbosity"])
        except DatabaseError as exc:
            raise CommandError(f"PostgreSQL refused: {exc}".strip()) from exc

    # --- what is there ----------------------------------------------------------------

    def _one(self, cursor, query: str, params: dict | None = None):
        cursor.execute(query, params)
        return cursor.fetchone()

    def _check_runner(self, cursor) -> str:
        """The database user running this; CommandError unless it may create roles."""
        user, allowed = self._one(
            cursor,
            "SELECT current_user, rolsuper OR rolcreaterole FROM pg_roles "
            "WHERE rolname = current_user",
        )
        if not allowed:
            raise CommandError(
                f"The database user {user!r} (DATABASE_URL) may not create roles. Run this "
                "command as a superuser or a user with CREATEROLE that owns the tables, e.g. "
                "DATABASE_URL=postgresql://postgres@HOST/DB python manage.py "
                "create_readonly_role NAME"
            )
        return user

    def _schema(self, cursor) -> tuple[str, int]:
        found = self._one(
            cursor,
            "SELECT n.nspname, n.oid FROM pg_class AS c "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(%(events)s)",
            {"events": Event._meta.db_table},
        )
        if found is None:
            raise CommandError("There is no events table here: run `manage.py migrate` first.")
        return found

    def _relations(self, cursor, schema_oid: int) -> tuple[list[str], list[str]]:
        """(READABLE_TABLES, the stats_ views) as found in the schema."""
        cursor.execute(
            "SELECT t FROM unnest(%(tables)s::text[]) AS t WHERE NOT EXISTS ("
            " SELECT 1 FROM pg_class WHERE relnamespace = %(schema)s AND relname = t)",
            {"tables": list(READABLE_TABLES), "schema": schema_oid},
        )
        missing = [row[0] for row in cursor.fetchall()]
        if missing:
            raise CommandError(
                f"Missing tables: {', '.join(missing)}. Run `manage.py migrate` first."
            )
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = %(schema)s "
            "AND relkind IN ('v', 'm') AND starts_with(relname, %(prefix)s) ORDER BY relname",
            {"schema": schema_oid, "prefix": VIEW_PREFIX},
        )
        return list(READABLE_TABLES), [row[0] for row in cursor.fetchall()]

    def _existing_role(self, cursor, name: str, runner: str) -> dict | None:
        """The role's attributes if it exists; CommandError if it must not be
        made read-only (this connection's own, a superuser, an owner of
        objects, or a member of a role that may write)."""
        if name in (runner, self._one(cursor, "SELECT session_user")[0]):
            raise CommandError(
                f"{name!r} is the role this command connects as (the application's own?): "
                "a read-only role must be a role of its own."
            )
        cursor.execute(
            f"SELECT oid, {', '.join(ATTRIBUTES)} FROM pg_roles WHERE rolname = %(name)s",
            {"name": name},
        )
        row = cursor.fetchone()
        if row is None:
            return None
        oid, values = row[0], dict(zip(ATTRIBUTES, row[1:], strict=True))
        if values["rolsuper"]:
            raise CommandError(f"{name!r} is a superuser: it cannot be made read-only.")
        if self._one(
            cursor,
            "SELECT EXISTS (SELECT 1 FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass "
            "AND refobjid = %(oid)s AND deptype = 'o')",
            {"oid": oid},
        )[0]:
            raise CommandError(
                f"{name!r} owns database objects (an application's role?), and an owner can "
                "always write them: a read-only role must be a role of its own."
            )
        cursor.execute(
            "SELECT g.rolname FROM pg_auth_members AS m JOIN pg_roles AS g ON g.oid = m.roleid "
            "WHERE m.member = %(oid)s ORDER BY 1",
            {"oid": oid},
        )
        groups = [g for (g,) in cursor.fetchall() if g not in READ_ONLY_GROUPS]
        if groups:
            raise CommandError(
                f"{name!r} is a member of {', '.join(groups)}, and could SET ROLE to write "
                f"with its privileges. Revoke that first (REVOKE {groups[0]} FROM {name})."
            )
        return values

    # --- what to run ---------------------------------------------------------------------

    def _apply(self, cursor, name: str, password: str | None, dry_run: bool, verbosity: int):
        runner = self._check_runner(cursor)
        schema, schema_oid = self._schema(cursor)
        tables, views = self._relations(cursor, schema_oid)
        existing = self._existing_role(cursor, name, runner)
        database = self._one(cursor, "SELECT current_database()")[0]
        role = sql.Identifier(name)
        statements = [
            *self._role_statements(role, name, existing, password, dry_run),
            *_grant_statements(role, database, schema, [*tables, *views]),
            *_definer_revokes(cursor, schema, schema_oid),
        ]
        for statement, shown in statements:
            if dry_run or verbosity >= 2:
                text = shown or f"{statement.as_string(connection.connection)};"
                self.stdout.write(text)
            if not dry_run:
                cursor.execute(statement.as_string(connection.connection))
        if dry_run:
            self.stdout.write("Dry run: nothing was changed.")
            return
        self._verify(cursor, name, schema, schema_oid, [*tables, *views])

        verb = "Created" if existing is None else "Updated"
        how = (
            "with the password from the environment"
            if password is not None
            else "without a password (trust or peer authentication)"
            if existing is None
            else "keeping its password"
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} role {name} {how}: it reads {len(tables)} tables and {len(views)} "
                f"views in {database}.{schema} and writes nothing."
            )
        )
        self.stdout.write(f"  tables: {', '.join(tables)}")
        self.stdout.write(f"  views: {', '.join(views) or '(none: run `manage.py migrate`)'}")

    def _role_statements(
        self,
        role: sql.Identifier,
        name: str,
        existing: dict | None,
        password: str | None,
        dry_run: bool,
    ) -> list[Statement]:
        """The role created, or its attributes set where they differ, and its password."""
        statements: list[Statement] = []
        if existing is None:
            wanted = sql.SQL(" ").join(_attribute(k, on) for k, on in ATTRIBUTES.values())
            statements.append((sql.SQL("CREATE ROLE {} {}").format(role, wanted), None))
        else:
            # Only what differs: a non-superuser may not even restate some
            # attributes (NOSUPERUSER, NOREPLICATION, NOBYPASSRLS).
            changed = [
                _attribute(keyword, on)
                for column, (keyword, on) in ATTRIBUTES.items()
                if existing[column] != on
            ]
            if changed:
                alter = sql.SQL("ALTER ROLE {} {}").format(role, sql.SQL(" ").join(changed))
                statements.append((alter, None))
        if password is not None:
            shown = (
                sql.SQL("ALTER ROLE {} PASSWORD '…';  -- its hash, from the environment")
                .format(role)
                .as_string(connection.connection)
            )
            statements.append((self._password_statement(role, name, password, dry_run), shown))
        return statements

    def _password_statement(
        self, role: sql.Identifier, name: str, password: str, dry_run: bool
    ) -> sql.Composable:
        # The server's own hash (SCRAM), computed here as psql's \password
        # does, so the password itself never reaches a server log.
        if dry_run:
            return sql.SQL("")
        with connection.cursor() as cursor:
            cursor.execute("SHOW password_encryption")
            algorithm = cursor.fetchone()[0]
        verifier = connection.connection.pgconn.encrypt_password(
            password.encode(), name.encode(), algorithm.encode()
        )
        return sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(verifier.decode()))

    # --- what came of it -------------------------------------------------------------------

    def _verify(self, cursor, name: str, schema: str, schema_oid: int, readable: list[str]):
        """CommandError (rolling everything back) unless the role reads every
        relation of `readable` and can write nowhere, PUBLIC's grants included."""
        problems = []
        cursor.execute(
            "SELECT t FROM unnest(%(tables)s::text[]) AS t "
            "WHERE NOT has_table_privilege(%(role)s, format('%%I.%%I', %(schema)s::text, t), "
            "'SELECT')",
            {"tables": readable, "role": name, "schema": schema},
        )
        unreadable = [t for (t,) in cursor.fetchall()]
        if unreadable:
            problems.append(
                f"it cannot read {', '.join(unreadable)} (grant them as their owner or a superuser)"
            )
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = %(schema)s "
            "AND relkind IN ('r', 'p', 'v', 'm', 'f') "
            "AND has_table_privilege(%(role)s, oid, %(writes)s) ORDER BY 1",
            {"schema": schema_oid, "role": name, "writes": WRITE_PRIVILEGES},
        )
        writable = [t for (t,) in cursor.fetchall()]
        if writable:
            problems.append(
                f"it can write {', '.join(writable)} through grants to PUBLIC (REVOKE "
                f"{WRITE_PRIVILEGES} ON those FROM PUBLIC)"
            )
        if self._one(
            cursor,
            "SELECT has_schema_privilege(%(role)s, %(schema)s, 'CREATE')",
            {"role": name, "schema": schema},
        )[0]:
            problems.append(
                f"it can create objects in schema {schema} through a grant to PUBLIC (the "
                f"default before PostgreSQL 15; REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC)"
            )
        cursor.execute(
            "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = %(schema)s "
            "AND prosecdef AND prorettype <> 'trigger'::regtype "
            "AND has_function_privilege(%(role)s, oid, 'EXECUTE') ORDER BY 1",
            {"schema": schema_oid, "role": name},
        )
        callable_ = [f for (f,) in cursor.fetchall()]
        if callable_:
            problems.append(f"it can run the SECURITY DEFINER functions {', '.join(callable_)}")
        if problems:
            raise CommandError(f"Nothing was changed: as set up, {name} " + "; ".join(problems))
