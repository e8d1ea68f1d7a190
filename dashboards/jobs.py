"""The weekly report's schedule, run by the background worker.

REPORT_SCHEDULE names a weekday and a local time in REPORT_TIME_ZONE ("mon
08:00"): each week's slot. Once a minute the job finds this week's slot (the
week from Monday, local); when the clock has passed it and nobody has sent
it, the job claims it (a `report_runs` row, committed before the mail
leaves) and mails the 7d report ending at the slot to REPORT_RECIPIENTS.

Exactly once: the slot is unique in `report_runs`, and the row is claimed in
one statement (ReportRun.objects.claim), so a second worker, a restarted
one or the next run finds it taken. A send that failed (the SMTP server
refused or did not answer: nothing was accepted) is recorded and tried again
after 1, 2, 4 ... minutes, at most an hour apart, until the next slot. A
worker that dies mid-send leaves its row without an outcome, and that row is
never sent again: the mail may have left, and a lost report is better than
a double one (deleting the row sends it anew).
"""

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings

from dashboards.models import ReportRun
from dashboards.report import build_report, render_email
from sphere_stats.windows import WindowError, parse_zone
from sphere_stats.worker import job

log = logging.getLogger(__name__)

SCHEDULED_PERIOD = "7d"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SCHEDULE = re.compile(r"\s*([A-Za-z]+)\s+(\d{1,2}):(\d{2})\s*")
SCHEDULE_HELP = "a weekday and a 24-hour local time, such as 'mon 08:00'"


class ScheduleError(ValueError):
    """REPORT_SCHEDULE or REPORT_TIME_ZONE cannot be read."""


def _weekday(name: str) -> int | None:
    """0 for mon, monday, Mon ...; None for no weekday."""
    name = name.lower()
    found = [i for i, day in enumerate(WEEKDAYS) if len(name) >= 3 and day.startswith(name)]
    return found[0] if found else None


@dataclass(frozen=True)
class Schedule:
    weekday: int  # 0 is Monday
    at: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, text: str, zone_name: str) -> "Schedule":
        match = SCHEDULE.fullmatch(text)
        weekday = _weekday(match.group(1)) if match else None
        hour, minute = (int(match.group(2)), int(match.group(3))) if match else (-1, -1)
        if weekday is None or not (0 <= hour < 24 and 0 <= minute < 60):
            raise ScheduleError(f"REPORT_SCHEDULE={text!r} is not {SCHEDULE_HELP}")
        try:
            zone = parse_zone(zone_name)
        except WindowError as exc:
            raise ScheduleError(f"REPORT_TIME_ZONE={zone_name!r}: {exc.message}") from None
        return cls(weekday, time(hour, minute), zone)

    @classmethod
    def from_settings(cls) -> "Schedule":
        return cls.parse(settings.REPORT_SCHEDULE, settings.REPORT_TIME_ZONE)

    def slot(self, now: datetime) -> datetime:
        """This week's slot (UTC), the week running from Monday in the zone.
        A local time that a DST change skips is read with the offset before
        it (02:30 on the spring-forward night is 03:30); one it repeats, as
        the first of the two."""
        today = now.astimezone(self.zone).date()
        day = today - timedelta(days=today.weekday()) + timedelta(days=self.weekday)
        return datetime.combine(day, self.at, tzinfo=self.zone).astimezone(UTC)

    def describe(self) -> str:
        return f"{WEEKDAYS[self.weekday].capitalize()}s at {self.at:%H:%M} {self.zone.key}"


@job("dashboards.report", every=60)
def send_due_report(now: datetime) -> int:
    """Send this week's report if its slot has passed and nobody has sent
    (or is sending) it; 1 if this call sent it. A failed send is recorded on
    its row for a later try and raised."""
    schedule = Schedule.from_settings()
    recipients = list(settings.REPORT_RECIPIENTS)
    if not recipients:
        return 0
    slot = schedule.slot(now)
    if now < slot:
        return 0
    run = ReportRun.objects.claim(slot, now, recipients)
    if run is None:
        return 0
    try:
        report = build_report(SCHEDULED_PERIOD, schedule.zone.key, slot)
        render_email(report, to=recipients).send()
    except Exception as exc:
        run.record_failure(now, f"{type(exc).__name__}: {exc}")
        log.warning("weekly report of %s: attempt %d failed: %s", slot, run.attempts, exc)
        raise
    run.record_sent(now)
    log.info("weekly report of %s sent to %s", slot, ", ".join(recipients))
    return 1
