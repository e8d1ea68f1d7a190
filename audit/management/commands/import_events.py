"""Import events from files written by export_events or the export buttons.

CSV, JSON and NDJSON, each optionally gzip-compressed (detected by content).
Every event goes through audit.ingest (the catalog's validation, then the
set-based insert that also keeps the hourly counts), in batches. Importing
the same file twice changes nothing the second time: the events come back as
duplicates. A bad line is reported with its line number and skipped.

Unlike the live ingest API, an import never makes up what a line lacks: a
line without a timestamp is rejected (the API would store it at "now", the
time of the import), and a line without an event_uuid gets one derived from
its content (content_uuid), so importing such a file again finds the same
events instead of storing them twice.
"""

import gzip
import io
import itertools
import json
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from audit.export import unneutralise
from audit.ingest import FIELDS, Row, store, validate_event
from audit.jsonb import loads
from sphere_stats.cli import positive_int

FORMATS = ("csv", "json", "ndjson")
MAX_DUPLICATE_LINES = 20
# One CSV cell: quoted (quotes doubled inside, may span lines) or bare.
CSV_CELL = re.compile(r'"((?:[^"]|"")*)"(?=,|\Z)|([^,"]*)(?=,|\Z)', re.S)
CSV_TEXT_COLUMNS = ("caller", "subject", "target", "error_message")
# Fixed forever: changing it would give every uuid-less event a new uuid, and
# a re-import would store them all a second time.
CONTENT_NAMESPACE = uuid.UUID("5e1f4a3c-27b9-4c5e-9d0a-6f3b8e2c1a70")


def content_uuid(row: Row) -> uuid.UUID:
    """A uuid5 of the event's nine other columns as sorted-keys JSON, with the
    timestamp in UTC: the same event gives the same uuid from any file format."""
    content = {
        "timestamp": row.timestamp.astimezone(UTC).isoformat(),
        "event_type": row.event_type,
        "caller": row.caller,
        "subject": row.subject,
        "subject_type": row.subject_type,
        "target": row.target,
        "success": row.success,
        "error_message": row.error_message,
        "payload": row.payload,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return uuid.uuid5(CONTENT_NAMESPACE, canonical)


@dataclass
class Report:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    # Line numbers of the duplicates, the first MAX_DUPLICATE_LINES of them.
    duplicate_lines: list[int] = field(default_factory=list)
    # "line" for CSV, NDJSON and export-style JSON; "item" for other JSON.
    unit: str = "line"


def open_events_file(path: str) -> tuple[BinaryIO, BinaryIO]:
    """(the raw file, the decompressed stream): gzip is detected by its magic bytes."""
    # The caller closes it once the import is done.
    raw = sys.stdin.buffer if path == "-" else Path(path).open("rb")  # noqa: SIM115
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if head == b"\x1f\x8b":
        return raw, gzip.GzipFile(fileobj=raw)
    return raw, raw


def detect_format(path: str, stream: BinaryIO) -> str:
    name = path.lower().removesuffix(".gz")
    for fmt, suffixes in {
        "csv": (".csv",),
        "json": (".json",),
        "ndjson": (".ndjson", ".jsonl"),
    }.items():
        if name.endswith(suffixes):
            return fmt
    head = stream.peek(64)[:64].lstrip() if hasattr(stream, "peek") else b""
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        return "ndjson"
    return "csv"


def split_csv_record(text: str) -> list[str | None]:
    """One CSV record's cells. Unlike the csv module, an empty bare cell is None
    (PostgreSQL's NULL) and "" is the empty string, so NULL and '' survive."""
    cells: list[str | None] = []
    pos = 0
    while True:
        match = CSV_CELL.match(text, pos)
        if match is None:
            raise ValueError(f"malformed CSV in column {len(cells) + 1}")
        if match.group(1) is not None:
            cells.append(match.group(1).replace('""', '"'))
        else:
            cells.append(match.group(2) or None)
        pos = match.end()
        if pos >= len(text):
            return cells
        pos += 1


def csv_records(lines: Iterator[str]) -> Iterator[tuple[int, str]]:
    """(first line number, record text): a quoted cell may hold newlines."""
    pending, start, number = "", 0, 0
    for number, line in enumerate(lines, start=1):
        if not pending:
            start = number
        pending += line
        if pending.count('"') % 2 == 0:
            yield start, pending.rstrip("\r\n")
            pending = ""
    if pending:
        yield start, pending.rstrip("\r\n")


def read_csv(text: io.TextIOBase) -> Iterator[tuple[int, Any]]:
    records = csv_records(iter(text.readline, ""))
    try:
        _, header_text = next(records)
    except StopIteration:
        return
    header = [h or "" for h in split_csv_record(header_text)]
    missing = [c for c in FIELDS if c not in header]
    if missing:
        raise CommandError(f"the CSV header lacks the column(s) {', '.join(missing)}")
    positions = {name: header.index(name) for name in FIELDS}
    for number, record in records:
        if not record.strip():
            continue
        try:
            cells = split_csv_record(record)
            if len(cells) != len(header):
                raise ValueError(f"has {len(cells)} cells, the header has {len(header)}")
            yield number, _csv_event({n: cells[i] for n, i in positions.items()})
        except ValueError as exc:
            yield number, exc


def _csv_event(cells: dict[str, str | None]) -> dict[str, Any]:
    event: dict[str, Any] = dict(cells)
    for name in CSV_TEXT_COLUMNS:
        event[name] = unneutralise(event[name])
    # The CSV writes '' as "" (a string) and NULL as nothing: caller is never NULL.
    event["caller"] = event["caller"] or ""
    success = (event["success"] or "").strip().lower()
    if success in ("true", "t", "1", "yes"):
        event["success"] = True
    elif success in ("false", "f", "0", "no"):
        event["success"] = False
    else:
        raise ValueError(f"success: {success!r} is not true or false")
    try:
        event["payload"] = loads(event["payload"]) if event["payload"] else {}
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"payload: not JSON ({exc})") from None
    return event


def read_ndjson(text: io.TextIOBase) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            yield number, loads(line)
        except (ValueError, RecursionError) as exc:
            yield number, ValueError(f"not JSON: {exc}")


def _whole_object_or_end(line: str) -> bool:
    body = line.strip().removesuffix(",")
    if body in ("]", ""):
        return True
    try:
        return isinstance(loads(body), dict)
    except (ValueError, RecursionError):
        return False


def read_json(text: io.TextIOBase, report: Report) -> Iterator[tuple[int, Any]]:
    """An array. The export's layout (one event per line) is read line by line
    in constant memory; any other layout is loaded whole and numbered by item."""
    first, second = text.readline(), text.readline()
    if first.strip() == "[" and _whole_object_or_end(second):
        for number, line in enumerate(itertools.chain([second], text), start=2):
            body = line.strip().removesuffix(",")
            if not body or body == "]":
                continue
            try:
                yield number, loads(body)
            except (ValueError, RecursionError) as exc:
                yield number, ValueError(f"not JSON: {exc}")
        return
    try:
        document = loads(first + second + text.read())
    except (ValueError, RecursionError) as exc:
        raise CommandError(f"the file is not JSON: {exc}") from None
    if isinstance(document, dict) and isinstance(document.get("events"), list):
        document = document["events"]
    if not isinstance(document, list):
        document = [document]
    report.unit = "item"
    yield from enumerate(document, start=1)


@dataclass
class Importer:
    """Validates a file's items and stores them `batch` at a time into `report`."""

    report: Report
    batch: int
    dry_run: bool
    advance: Callable[[], None]  # moves the progress bar to the file's position
    now: datetime = field(default_factory=timezone.now)
    rows: list[Row] = field(default_factory=list)

    def add(self, number: int, item: Any) -> None:
        if isinstance(item, Exception):
            self.report.rejected.append((number, str(item)))
            return
        if isinstance(item, dict) and item.get("timestamp") in (None, ""):
            self.report.rejected.append(
                (number, "timestamp: is required (an import never stores 'now')")
            )
            return
        row, problems = validate_event(number, item, self.now)
        if row is None:
            self.report.rejected.append((number, _problems(problems)))
            return
        if item.get("event_uuid") is None:
            row.event_uuid = content_uuid(row)
        self.rows.append(row)
        if len(self.rows) >= self.batch:
            self.flush()

    def flush(self) -> None:
        report = self.report
        if self.rows and not self.dry_run:
            result = store(self.rows)
            report.accepted += result.accepted
            report.duplicates += result.duplicates
            report.rejected.extend((c["index"], c["message"]) for c in result.conflicts)
            # Each row's index is its line number (validate_event in add).
            room = MAX_DUPLICATE_LINES - len(report.duplicate_lines)
            report.duplicate_lines.extend(result.duplicate_indexes[: max(room, 0)])
        elif self.rows:
            report.accepted += len(self.rows)
        self.rows.clear()
        self.advance()


def _progress(raw: BinaryIO, size: int | None, bar: tqdm) -> Callable[[], None]:
    """A function that moves `bar` to how far into the file `raw` is read."""
    position = 0

    def advance() -> None:
        nonlocal position
        if size is not None and not raw.closed:
            now_at = raw.tell()
            bar.update(now_at - position)
            position = now_at

    return advance


class Command(BaseCommand):
    help = "Import events from a CSV, JSON or NDJSON file (gzip too), as export_events writes them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the file to import ('-' reads stdin)")
        parser.add_argument("--format", choices=FORMATS, help="default: from the name or content")
        parser.add_argument(
            "--batch", type=positive_int, default=2000, help="events per transaction"
        )
        parser.add_argument("--dry-run", action="store_true", help="validate only; store nothing")
        parser.add_argument(
            "--max-report", type=int, default=100, help="rejected lines to list (default 100)"
        )

    def handle(self, *args, file: str, batch: int, dry_run: bool, max_report: int, **options):
        try:
            raw, stream = open_events_file(file)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        fmt = options["format"] or detect_format(file, stream)
        text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
        report = Report()
        size = Path(file).stat().st_size if file != "-" else None
        reader = {"csv": read_csv, "ndjson": read_ndjson}.get(fmt)
        items = reader(text) if reader else read_json(text, report)
        with tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc="import",
            disable=options["verbosity"] < 1 or None,
            file=sys.stderr,
        ) as bar:
            importer = Importer(report, batch, dry_run, _progress(raw, size, bar))
            try:
                for number, item in items:
                    importer.add(number, item)
                importer.flush()
            except UnicodeDecodeError as exc:
                raise CommandError(f"{file} is not UTF-8 text ({exc.reason})") from None
            except (OSError, EOFError) as exc:
                raise CommandError(f"cannot read {file}: {exc}") from None
            finally:
                if raw is not sys.stdin.buffer:
                    raw.close()
        self._report(report, dry_run, max_report)

    def _report(self, report: Report, dry_run: bool, max_report: int) -> None:
        verb = "would be accepted" if dry_run else "accepted"
        summary = (
            f"{report.accepted} {verb}, {report.duplicates} duplicate, "
            f"{len(report.rejected)} rejected"
        )
        style = self.style.WARNING if report.rejected else self.style.SUCCESS
        self.stdout.write(style(summary))
        for number, message in sorted(report.rejected)[:max_report]:
            self.stdout.write(f"  {report.unit} {number}: {message}")
        if len(report.rejected) > max_report:
            self.stdout.write(f"  … and {len(report.rejected) - max_report} more")
        if report.duplicate_lines:
            shown = ", ".join(str(n) for n in sorted(report.duplicate_lines))
            more = report.duplicates - len(report.duplicate_lines)
            self.stdout.write(
                f"  duplicate {report.unit}s (already stored, or repeated): {shown}"
                + (f" … and {more} more" if more > 0 else "")
            )


def _problems(problems: list[dict]) -> str:
    return "; ".join(
        f"{p['field']}: {p['message']}" if p.get("field") else p["message"] for p in problems
    )
