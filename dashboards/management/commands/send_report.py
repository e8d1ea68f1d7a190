"""`manage.py send_report`: mail the report of a period now (docs/reports.md).
The weekly schedule (dashboards/jobs.py) sends the same report by itself;
a report sent by hand takes no slot of it."""

import smtplib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.utils import timezone

from dashboards.jobs import Schedule, ScheduleError
from dashboards.report import REPORT_PERIODS, ReportError, build_report, render_email


class Command(BaseCommand):
    help = "Mail the report of the last period: figures, top-N tables, facility uptime, CSV."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--period", default="7d", help=f"one of {', '.join(REPORT_PERIODS)} (default 7d)"
        )
        parser.add_argument("--tz", help="the report's time zone (default REPORT_TIME_ZONE)")
        parser.add_argument(
            "--to",
            nargs="+",
            action="extend",
            default=[],
            metavar="ADDRESS",
            help="recipients (default REPORT_RECIPIENTS)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="print the mail's text instead of sending it"
        )

    def handle(self, *args, period: str, tz: str | None, to: list[str], dry_run: bool, **options):
        try:
            schedule = Schedule.from_settings()
        except ScheduleError as exc:
            raise CommandError(str(exc)) from None
        recipients = to or list(settings.REPORT_RECIPIENTS)
        for address in recipients:
            try:
                validate_email(address)
            except ValidationError:
                raise CommandError(f"{address!r} is not an email address") from None
        if not recipients and not dry_run:
            raise CommandError("no recipients: give --to ADDRESS or set REPORT_RECIPIENTS")
        try:
            report = build_report(period, tz or schedule.zone.key, timezone.now())
        except ReportError as exc:
            raise CommandError(str(exc)) from None
        message = render_email(report, to=recipients)
        if dry_run:
            self.stdout.write(f"Subject: {message.subject}\n\n{message.body}")
            self.stdout.write(f"(not sent; the mail attaches {report.filename})")
            return
        try:
            message.send()
        except (smtplib.SMTPException, OSError) as exc:
            raise CommandError(f"the mail server did not take the report: {exc}") from None
        self.stdout.write(
            self.style.SUCCESS(f"Sent {message.subject!r} to {', '.join(recipients)}.")
        )
