"""Streaming export writers: CSV, JSON (an array) and NDJSON, optionally gzipped.

The one export path for the explorer's download buttons, the API, the
`export_events` command and the admin's export. PostgreSQL formats every row
(`COPY (SELECT …) TO STDOUT`), and Python only forwards the bytes, so memory
stays flat and the first bytes leave as soon as the first row is found.

Formats:
- CSV: a header, the ten event columns (timestamps ISO 8601 UTC, success
  true/false, payload as JSON text, NULL as an empty cell and an empty string
  as ""), then `timestamp_local` in the display time zone, then one column
  per requested payload key (`fields=payload.kind,payload.role`).
- JSON: one array, one event object per line.
- NDJSON: one event object per line.
JSON and NDJSON objects hold exactly the ten columns, so `import_events` (and
the ingest API) take them back as they are.

Spreadsheet safety: a CSV cell that begins with = + - @ tab or CR (after any
run of single quotes, and any spaces, tabs, CRs or newlines: some spreadsheets
trim those first, and " =1+1" or "\n=cmd" then runs too) gets one more
leading single quote, so a spreadsheet shows it as text instead of running it
as a formula; a plain negative number
(-5, -2.5e3) is left alone, since it is no formula. `unneutralise` strips
exactly that quote again, so a CSV round trip restores every value.
"""

import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import psycopg
from django.db import DataError, transaction
from django.db.models.expressions import RawSQL
from django.http import StreamingHttpResponse
from psycopg import generators, pq

from audit.models import Event, EventQuerySet
from sphere_stats.db import read_connection

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
GZIP_TYPE = "application/gzip"
# Characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (*Event.COLUMNS, "timestamp_local")
PAYLOAD_FIELD = re.compile(r"^payload\.([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})$")
MAX_FIELDS = 20
# Bytes gathered before a chunk is handed to the server: big enough that the
# per-chunk cost vanishes, small enough that the first bytes leave at once.
CHUNK_BYTES = 64 * 1024
# Above this many rows (the planner's estimate) an export reads the keyset
# index in order rather than sorting, so its first bytes leave at once.
SORT_FREE_ABOVE = 100_000
GZIP_LEVEL = 5

_T = '"events"'
# Text output of timestamps is several times cheaper than to_char(). The UTC
# column never depends on the session time zone; the local column is the
# timestamptz's own text under `SET LOCAL TimeZone` (offset included, such as
# -04 or +05:30), set only inside the export's transaction.
#
# The UTC text without its Z. The CSV computes it once per row below the cells
# (in the ordered rows' SELECT) so that in a UTC export, the default, the
# local column reuses it: a timestamp's text output is the dearest part of a
# CSV row after the payload's.
_UTC_TEXT = f"""replace(({_T}."timestamp" AT TIME ZONE 'UTC')::text, ' ', 'T')"""
# With its Z: the JSON lines' timestamp.
_UTC = f"({_UTC_TEXT} || 'Z')"
# One event as the JSON and NDJSON exports write it, for a row of `events`
# named "events" in the query: also the line an audit stream sends and the
# line prune_events archives, so all three match byte for byte.
JSON_LINE = "json_build_object({})::text".format(
    ", ".join(
        f"'{name}', {expr}"
        for name, expr in [
            ("event_uuid", f'{_T}."event_uuid"'),
            ("timestamp", _UTC),
            *((c, f'{_T}."{c}"') for c in Event.COLUMNS[2:]),
        ]
    )
)
# PostgreSQL writes a whole-hour offset as -04: add the :00 RFC 3339 wants.
# date_part() returns a float; extract() a numeric, which costs more.
_LOCAL = f"""(replace({_T}."timestamp"::text, ' ', 'T')
  || CASE WHEN date_part('timezone_minute', {_T}."timestamp") = 0 THEN ':00' ELSE '' END)"""
# A cell to neutralise: any run of single quotes, then any leading white
# space, then a formula character (tab and CR are formula characters too).
# A regular expression is about twice as fast here as left(ltrim(...)).
_FORMULA = r"'^''*[ \t\r\n]*[-=+@\t\r]'"
# Every character such a cell can start with (tab, LF, CR, space, quote,
# + - = @) has a code below 65 ('A'): one comparison of ascii() is a far
# cheaper test than the regular expressions, which then run on the few
# cells that pass it (digits pass too, and fail the expressions).
_FORMULA_BELOW = 65
FORMULA = re.compile(r"'*[ \t\r\n]*[-=+@\t\r]")
# ...unless it is a plain negative number (a payload's -5, a temperature),
# which no spreadsheet runs as a formula and which should stay a number.
_NUMBER = r"'^''*-[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$'"
NEGATIVE_NUMBER = re.compile(r"-[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


# The export's zone, and no statement timeout: a web request's (a few
# seconds, against runaway queries) would cut a download of millions of rows
# short. Each wait for the next rows stays bounded (sphere_stats.db), so a
# server that stops answering still ends the export. JIT as the server sets
# it (the sessions turn it off, settings.DB_JIT): an export's millions of rows
# are the work it pays off on. Returns the settings it replaces first (a
# SELECT list runs left to right), to put back.
_SETTINGS_SQL = """
SELECT current_setting('TimeZone'), current_setting('statement_timeout'), current_setting('jit'),
       set_config('TimeZone', %(zone)s, true), set_config('statement_timeout', %(timeout)s, true),
       set_config('jit', coalesce(%(jit)s, (SELECT reset_val FROM pg_settings WHERE name = 'jit')),
                  true)
"""


def _copy_batches(copy: psycopg.Copy) -> Iterator[list[memoryview]]:
    """COPY's rows (one line each), in lists of about CHUNK_BYTES.

    Each of psycopg's reads (`for row in copy`) is a whole wait on the
    connection, a Python cost (a generator, the bounded wait of
    sphere_stats.db) that rivals the row's own in the server. libpq has
    usually received many rows already, so they are taken from its buffer
    directly; psycopg's read, bounded wait included, runs only when the
    buffer is empty.
    """
    get_copy_data = copy.connection.pgconn.get_copy_data
    batch: list[memoryview] = []
    size = 0
    while True:
        nbytes, data = get_copy_data(1)  # 1: never blocks
        if nbytes > 0:
            batch.append(data)
            size += nbytes
            if size >= CHUNK_BYTES:
                yield batch
                batch = []
                size = 0
        elif nbytes == 0:  # nothing received yet: wait for it
            if data := copy.read():
                batch.append(data)
                size += len(data)
            else:  # the read met the end, and finished the COPY
                break
        else:
            _end_copy(copy)
            break
    if batch:
        yield batch


def _end_copy(copy: psycopg.Copy) -> None:
    """The end was in libpq's buffer: fetch COPY's result as psycopg's read
    would have, which leaves the connection ready; an error in the middle of
    the rows (a cancel, a failing cast) is raised here."""
    results = copy.connection.wait(generators.fetch_many(copy.connection.pgconn))
    if results[-1].status != pq.ExecStatus.COMMAND_OK:
        encoding = copy.connection.info.encoding
        raise psycopg.errors.error_from_result(results[-1], encoding=encoding)


class ExportError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _safe(expression: str) -> str:
    """SQL that neutralises a text cell (see the module docstring)."""
    return (
        f"CASE WHEN ascii({expression}) < {_FORMULA_BELOW}"
        f" AND {expression} ~ {_FORMULA} AND {expression} !~ {_NUMBER}"
        f" THEN '''' || {expression} ELSE {expression} END"
    )


# One payload key's cell; _safe repeats the expression, and its parameter.
_PAYLOAD_CELL = _safe(f'({_T}."payload" #>> %s)')


def _is_formula(value: str) -> bool:
    """The Python twin of _FORMULA and _NUMBER."""
    return bool(FORMULA.match(value)) and not NEGATIVE_NUMBER.fullmatch(value.lstrip("'"))


def neutralise(value: str | None) -> str | None:
    """Python twin of the SQL neutralisation, for tests and other writers."""
    if value and _is_formula(value):
        return "'" + value
    return value


def unneutralise(value: str | None) -> str | None:
    """Undo `neutralise`: drop the one quote it added, nothing else."""
    if value and value[0] == "'" and _is_formula(value):
        return value[1:]
    return value


def parse_fields(raw: str | Iterable[str] | None) -> list[str]:
    """`payload.kind,payload.role` as payload keys; ExportError when malformed."""
    if raw is None:
        return []
    items = raw.split(",") if isinstance(raw, str) else [p for r in raw for p in r.split(",")]
    keys = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        match = PAYLOAD_FIELD.match(item)
        if not match:
            raise ExportError("fields", f"{item[:40]!r} is not payload.<key>")
        if match.group(1) not in keys:
            keys.append(match.group(1))
    if len(keys) > MAX_FIELDS:
        raise ExportError("fields", f"at most {MAX_FIELDS} payload fields")
    return keys


@dataclass
class Export:
    """What to write: the rows (a filtered queryset) and how."""

    queryset: EventQuerySet
    format: str = "csv"
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    fields: list[str] = field(default_factory=list)
    gzip: bool = False
    # The planner's row estimate, once `check` (or the first row) asked for it.
    estimate: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ExportError("format", f"must be one of {', '.join(FORMATS)}")

    def check(self) -> None:
        """Have PostgreSQL read the export's query and zone before a byte is
        sent: once a response streams, its status is sent, and an error
        there cuts the download short with the server's bare error page.

        EXPLAIN parses and binds every filter value (the planner's estimate,
        needed anyway, comes with it); the zone is checked against
        PostgreSQL's own time zone database, which may lag Python's."""
        reader = read_connection()
        try:
            with transaction.atomic(using=reader.alias), reader.cursor() as cursor:
                cursor.execute("SELECT now() AT TIME ZONE %s", [self.zone.key])
        except DataError:
            raise ExportError(
                "tz", f"{self.zone.key} is a zone the database does not know"
            ) from None
        self.estimate = self.queryset.estimated_count()

    def select(self) -> tuple[str, list]:
        """The SELECT whose rows COPY writes, newest first, and its parameters."""
        if self.format == "csv":
            # event_type and subject_type are slugs (checked on ingest): a
            # formula can't start them, so they skip the neutralising CASE.
            # The uuid and the payload go to COPY as they are: it writes them
            # with the very output functions of a ::text cast, minus a copy.
            utc_zone = self.zone.key == "UTC"
            columns: list[tuple[str, list]] = [
                (f'{_T}."event_uuid"', []),
                (f"""{_T}."utc_text" || 'Z'""", []),
                (f'{_T}."event_type"', []),
                (_safe(f'{_T}."caller"'), []),
                (_safe(f'{_T}."subject"'), []),
                (f'{_T}."subject_type"', []),
                (_safe(f'{_T}."target"'), []),
                (f"""CASE WHEN {_T}."success" THEN 'true' ELSE 'false' END""", []),
                (_safe(f'{_T}."error_message"'), []),
                (f'{_T}."payload"', []),
                (f"""{_T}."utc_text" || '+00:00'""" if utc_zone else _LOCAL, []),
                *(
                    (_PAYLOAD_CELL, [key.split(".")] * _PAYLOAD_CELL.count("%s"))
                    for key in self.fields
                ),
            ]
        else:
            columns = [(JSON_LINE, [])]
        qs = self.queryset.order_by("-timestamp", "-event_uuid")
        if self.format == "csv":
            # A constant of this module, no values.
            qs = qs.annotate(utc_text=RawSQL(_UTC_TEXT, []))  # noqa: S611
        rows_sql, rows_params = qs.query.sql_with_params()
        # The cells are computed above the ordered rows, not below them: the
        # (incremental) sort then moves the table's narrow rows instead of
        # the wide text ones. OFFSET 0 keeps the planner from merging the two
        # levels back; the rows keep their order, so the outer ORDER BY costs
        # no second sort.
        fence = "" if qs.query.is_sliced else " OFFSET 0"
        # The SQL is this module's constants; every value is a bound parameter.
        sql = (
            f"SELECT {', '.join(expression for expression, _ in columns)}"
            f" FROM ({rows_sql}{fence}) AS {_T}"
            f' ORDER BY {_T}."timestamp" DESC, {_T}."event_uuid" DESC'
        )
        return sql, [*(p for _, params in columns for p in params), *rows_params]

    def copy_sql(self) -> tuple[str, list]:
        sql, params = self.select()
        if self.format == "csv":
            return f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", list(params)
        # CSV mode with a quote and delimiter that JSON text never holds (PG
        # escapes control characters in JSON) passes each object through raw;
        # text mode would double every backslash.
        options = "FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02'"
        return f"COPY ({sql}) TO STDOUT WITH ({options})", list(params)

    def header(self) -> bytes:
        if self.format == "csv":
            names = [*CSV_COLUMNS, *(f"payload.{key}" for key in self.fields)]
            return (",".join(names) + "\n").encode()
        if self.format == "json":
            return b"["
        return b""

    def batches(self) -> Iterator[list[memoryview]]:
        """The rows as COPY writes them, one line each, in lists of about
        CHUNK_BYTES."""
        sql, params = self.copy_sql()
        # A sort of millions of rows would delay the first byte by the whole
        # sort, so for a big export the keyset index must return them in order
        # from the first row. For a selective one (a rare payload value, one
        # caller) a bitmap index scan plus a small sort is far cheaper than
        # walking the whole time index, so the planner keeps its choice there.
        if self.estimate is None:
            self.estimate = self.queryset.estimated_count()
        big = self.estimate > SORT_FREE_ABOVE
        # A transaction so SET LOCAL stays inside it.
        reader = read_connection()  # the replica when the request reads from it
        with transaction.atomic(using=reader.alias), reader.cursor() as cursor:
            cursor.execute(_SETTINGS_SQL, {"zone": self.zone.key, "timeout": "0", "jit": None})
            session_zone, session_timeout, session_jit = cursor.fetchone()[:3]
            if big:
                cursor.execute("SET LOCAL enable_sort = off")
            with cursor.cursor.copy(sql, params) as copy:
                yield from _copy_batches(copy)
            # Inside a caller's outer transaction (a test's, a command's) SET
            # LOCAL would outlive this block: put the settings back.
            cursor.execute(
                _SETTINGS_SQL,
                {"zone": session_zone, "timeout": session_timeout, "jit": session_jit},
            )
            if big:
                cursor.execute("SET LOCAL enable_sort = on")

    def body(self) -> Iterator[bytes]:
        """Uncompressed bytes, in chunks of about CHUNK_BYTES."""
        if self.format == "json":
            yield from self._json_body()
            return
        head = self.header()
        for batch in self.batches():
            yield b"".join([head, *batch]) if head else b"".join(batch)
            head = b""
        if head:
            yield head

    def _json_body(self) -> Iterator[bytes]:
        """One array: each COPY line is an element; commas go between."""
        opening = separator = self.header() + b"\n"
        for batch in self.batches():
            items = []
            for data in batch:
                items.append(separator + bytes(data[:-1]).replace(b"\n", b",\n"))
                separator = b",\n"
            yield b"".join(items)
        yield opening + b"]\n" if separator is opening else b"\n]\n"

    def stream(self) -> Iterator[bytes]:
        """The file's bytes: the body, gzipped when asked."""
        if not self.gzip:
            yield from self.body()
            return
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        for chunk in self.body():
            out = compressor.compress(chunk)
            if out:
                yield out
        yield compressor.flush()

    @property
    def extension(self) -> str:
        return self.format + (".gz" if self.gzip else "")

    def response(self, filename_stem: str, *, content_encoding: bool = False):
        """A StreamingHttpResponse of this export.

        `content_encoding` gzips on the wire (Content-Encoding: gzip, for an
        API client that sent Accept-Encoding: gzip) instead of as a .gz file.
        Raises ExportError (before anything streams) for a zone the database
        does not know, unless the caller has called `check` itself (in
        its own handling of bad parameters, as the views do).
        """
        if self.estimate is None:
            self.check()
        if content_encoding:
            self.gzip = True
            content_type = FORMATS[self.format]
            name = f"{filename_stem}.{self.format}"
        else:
            content_type = GZIP_TYPE if self.gzip else FORMATS[self.format]
            name = f"{filename_stem}.{self.extension}"
        response = StreamingHttpResponse(self.stream(), content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Cache-Control"] = "no-store"
        # Ask nginx not to buffer the whole stream before passing it on.
        response["X-Accel-Buffering"] = "no"
        if content_encoding:
            response["Content-Encoding"] = "gzip"
            response["Vary"] = "Accept-Encoding"
        return response
