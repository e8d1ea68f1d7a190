import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import QueryDict
from django.utils import timezone
from tqdm import tqdm

from audit.export import FORMATS, Export, ExportError, parse_fields
from audit.filters import EventFilter, FilterError
from audit.models import Event


class Command(BaseCommand):
    help = "Stream the events matching the explorer's filters to a CSV, JSON or NDJSON file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=list(FORMATS), default="ndjson")
        parser.add_argument(
            "--output", "-o", default="-", help="file to write ('-', the default, is stdout)"
        )
        parser.add_argument("--gzip", action="store_true", help="gzip the output")
        parser.add_argument("--event-type", action="append", default=[], help="repeatable")
        parser.add_argument("--subject-type", default="")
        parser.add_argument("--subject", default="")
        parser.add_argument("--caller", default="")
        parser.add_argument("--target", default="")
        outcome = parser.add_mutually_exclusive_group()
        outcome.add_argument("--succeeded", action="store_true", help="only successes")
        outcome.add_argument("--failed", action="store_true", help="only failures")
        parser.add_argument("--payload", action="append", default=[], help="key=value, repeatable")
        parser.add_argument("--error-contains", default="")
        parser.add_argument("--since", default="", help="RFC 3339, or a date with --period")
        parser.add_argument("--until", default="")
        parser.add_argument("--period", default="", help="1h, 24h, 7d, 30d, 90d, 1y, all, custom")
        parser.add_argument("--tz", default="", help="display time zone of the CSV's local column")
        parser.add_argument("--fields", default="", help="CSV: payload.kind,payload.role,…")

    def handle(self, *args, **options) -> None:
        query = QueryDict(mutable=True)
        query.setlist("event_type", options["event_type"])
        query.setlist("payload", options["payload"])
        for name in ("subject_type", "subject", "caller", "target", "error_contains"):
            query[name] = options[name]
        for name in ("since", "until", "period", "tz"):
            if options[name]:
                query[name] = options[name]
        if options["succeeded"] or options["failed"]:
            query["success"] = "true" if options["succeeded"] else "false"
        try:
            event_filter = EventFilter.from_query(query)
            export = Export(
                event_filter.apply(Event.objects.all()),
                format=options["format"],
                zone=event_filter.zone,
                fields=parse_fields(options["fields"]),
                gzip=options["gzip"],
            )
        except (FilterError, ExportError) as exc:
            raise CommandError(str(exc)) from None

        to_stdout = options["output"] == "-"
        # Closed in the finally below (stdout is not ours to close).
        out = sys.stdout.buffer if to_stdout else Path(options["output"]).open("wb")  # noqa: SIM115
        written = 0
        try:
            with tqdm(
                unit="B",
                unit_scale=True,
                desc="export",
                disable=to_stdout or options["verbosity"] < 1 or None,
                file=sys.stderr,
            ) as bar:
                for chunk in export.stream():
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        finally:
            if not to_stdout:
                out.close()
        if not to_stdout:
            name = event_filter.file_stem(now=timezone.now())
            self.stdout.write(
                self.style.SUCCESS(
                    f"Wrote {written:,} bytes to {options['output']} ({name}.{export.extension})."
                )
            )
