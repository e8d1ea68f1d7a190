"""The report mailed by `send_report` and by the weekly schedule, sent to a
real SMTP server on loopback and read back as its recipients get it."""

import csv
import io
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection

from bench.servers import database_url
from dashboards.jobs import Schedule, ScheduleError, send_due_report
from dashboards.models import ReportRun
from tests import factories
from tests.receivers import SmtpReceiver, free_port

ROOT = Path(__file__).resolve().parent.parent.parent
# Monday 2026-04-20 08:00 in Asia/Kolkata (+05:30): the default slot's moment there.
NOW = datetime(2026, 4, 20, 2, 30, tzinfo=UTC)
WEEK = timedelta(days=7)
KOLKATA = "Asia/Kolkata"
SUBJECT = "sphere_stats report, last 7 days: 2026-04-13 08:00 to 2026-04-20 08:00 Asia/Kolkata"


def login(at: datetime, who: str, success: bool = True) -> dict:
    return factories.event(
        timestamp=at,
        caller=who,
        subject=who,
        success=success,
        error_message=None if success else "invalid credentials",
    )


def project(at: datetime, name: str, success: bool = True) -> dict:
    return factories.event(
        timestamp=at,
        event_type="project_created",
        subject=name,
        subject_type="project",
        success=success,
        error_message=None if success else "quota exceeded",
        payload={"category": "Research"},
    )


@pytest.fixture
def history(db) -> None:
    """Two weeks before NOW: this window [NOW - 7d, NOW) and the one before."""
    factories.store(
        # This window; 18:29 and 18:31 UTC on the 15th fall on two days in Kolkata.
        login(NOW - WEEK, "carol"),  # its first moment: counted
        login(datetime(2026, 4, 15, 18, 29, tzinfo=UTC), "alice"),
        login(datetime(2026, 4, 15, 18, 31, tzinfo=UTC), "bob"),
        login(datetime(2026, 4, 16, 10, 0, tzinfo=UTC), "bob", success=False),
        login(datetime(2026, 4, 19, 12, 0, tzinfo=UTC), "mallory", success=False),
        login(datetime(2026, 4, 19, 12, 5, tzinfo=UTC), "mallory", success=False),
        project(datetime(2026, 4, 14, 9, 0, tzinfo=UTC), "botnets"),
        project(datetime(2026, 4, 17, 9, 0, tzinfo=UTC), "nope", success=False),
        login(NOW, "dave"),  # the window's end: the next window's
        # The previous window.
        login(datetime(2026, 4, 10, 8, 0, tzinfo=UTC), "alice"),
        login(datetime(2026, 4, 11, 8, 0, tzinfo=UTC), "alice"),
        login(datetime(2026, 4, 12, 8, 0, tzinfo=UTC), "erin", success=False),
        login(NOW - WEEK - timedelta(minutes=1), "frank"),
        now=NOW,
    )


@pytest.fixture
def smtp(settings):
    receiver = SmtpReceiver().start()
    # pytest-django keeps mail in memory; the report goes through real SMTP.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = receiver.port
    yield receiver
    receiver.stop()


@pytest.fixture
def weekly(settings):
    settings.REPORT_SCHEDULE = "mon 08:00"
    settings.REPORT_TIME_ZONE = KOLKATA
    settings.REPORT_RECIPIENTS = ["ops@localhost", "lead@localhost"]


def raw_figures(start: datetime, end: datetime) -> dict[str, float]:
    """The overview's period figures, counted straight from `events`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE event_type = 'user_login' AND success),"
            " count(*) FILTER (WHERE event_type = 'user_login' AND NOT success),"
            " count(DISTINCT subject) FILTER (WHERE event_type = 'user_login' AND success),"
            " count(*), count(*) FILTER (WHERE NOT success)"
            " FROM events WHERE timestamp >= %(start)s AND timestamp < %(end)s",
            {"start": start, "end": end},
        )
        ok, failed, users, events, failures = cursor.fetchone()
    return {
        "logins_succeeded": ok,
        "logins_failed": failed,
        "login_users": users,
        "events": events,
        "failure_rate": round(100.0 * failures / events, 2) if events else 0.0,
    }


def raw_days(start: datetime, end: datetime, zone: str) -> list[list[str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT date_trunc('day', timestamp, %(zone)s), count(*) FROM events"
            " WHERE timestamp >= %(start)s AND timestamp < %(end)s GROUP BY 1 ORDER BY 1",
            {"start": start, "end": end, "zone": zone},
        )
        return [
            [day.astimezone(ZoneInfo(zone)).isoformat(), str(n)] for day, n in cursor.fetchall()
        ]


def subject(message: Message) -> str:
    # A long header arrives folded over lines (RFC 5322): unfold it.
    return message["Subject"].replace("\r\n", "").replace("\n", "")


def parts(message: Message) -> dict[str, str]:
    """The mail's text, HTML and attachment (by its file name), decoded."""
    found = {}
    for part in message.walk():
        if part.get_content_maintype() == "multipart":
            continue
        name = part.get_filename() or part.get_content_type()
        found[name] = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    return found


def sections(text: str) -> dict[str, list[dict[str, str]]]:
    """The CSV's blocks: a row with the section's name, its header, its rows."""
    blocks: dict[str, list[dict[str, str]]] = {}
    rows = list(csv.reader(io.StringIO(text)))
    block: list[list[str]] = []
    for row in [*rows, []]:
        if row:
            block.append(row)
            continue
        if block:
            (name,), header, *body = block
            blocks[name] = [dict(zip(header, r, strict=True)) for r in body]
        block = []
    return blocks


def send(*args: str) -> str:
    out = io.StringIO()
    call_command("send_report", *args, stdout=out)
    return out.getvalue()


def test_the_command_mails_the_figures_of_the_window_against_the_previous_one(
    history, smtp, api_client
):
    with time_machine.travel(NOW, tick=False):
        send("--period", "7d", "--tz", KOLKATA, "--to", "ops@localhost")
        page = api_client.get(f"/api/v1/stats/period_summary?period=7d&tz={KOLKATA}").json()
    (message,) = smtp.messages
    assert subject(message) == SUBJECT
    assert message["To"] == "ops@localhost"
    mail = parts(message)
    figures = {r["metric"]: r for r in sections(mail[CSV_NAME])["figures"]}
    now, before = raw_figures(NOW - WEEK, NOW), raw_figures(NOW - 2 * WEEK, NOW - WEEK)
    assert {m: float(r["value"]) for m, r in figures.items()} == now
    assert {m: float(r["previous"]) for m, r in figures.items()} == before
    assert now["logins_succeeded"] == 3 and before["logins_succeeded"] == 3
    # The same rows as the overview's cards read, through its JSON.
    assert [[str(v) if v is not None else "" for v in r] for r in page["rows"]] == [
        list(r.values()) for r in figures.values()
    ]
    assert "Logins failed: 3 (+200.0% vs 1)" in mail["text/plain"]
    assert "Users who logged in: 3 (+50.0% vs 2)" in mail["text/plain"]
    assert "Logins succeeded: 3 (±0% vs 3)" in mail["text/plain"]


CSV_NAME = "sphere-stats-report-2026-04-13-2026-04-20.csv"


def test_the_attachment_holds_the_top_tables_the_page_shows(history, smtp, api_client):
    with time_machine.travel(NOW, tick=False):
        send("--tz", KOLKATA, "--to", "ops@localhost")
        tables = sections(parts(smtp.messages[0])[CSV_NAME])
        for name in ("top_users", "failed_logins", "failures_by_type", "top_errors"):
            page = api_client.get(f"/api/v1/stats/{name}?period=7d&tz={KOLKATA}&n=10").json()
            assert [["" if v is None else str(v) for v in r] for r in page["rows"]] == [
                list(r.values()) for r in tables[name]
            ], name
    assert tables["failed_logins"][0] == {
        "user": "mallory",
        "failures": "2",
        "last_attempt": "2026-04-19T17:35:00+05:30",
        "last_error": "invalid credentials",
    }
    assert tables["report"] == [
        {
            "period": "7d",
            "time_zone": KOLKATA,
            "start": "2026-04-13T08:00:00+05:30",
            "end": "2026-04-20T08:00:00+05:30",
            "previous_start": "2026-04-06T08:00:00+05:30",
            "previous_end": "2026-04-13T08:00:00+05:30",
        }
    ]


@pytest.mark.parametrize("zone", [KOLKATA, "UTC"])
def test_the_days_are_cut_at_midnight_in_the_reports_zone(history, smtp, zone):
    with time_machine.travel(NOW, tick=False):
        send("--tz", zone, "--to", "ops@localhost")
    mail = parts(smtp.messages[0])
    attachment = next(text for name, text in mail.items() if name.endswith(".csv"))
    days = sections(attachment)["activity"]
    counted = [[d["day"], d["events"]] for d in days if d["events"] != "0"]
    assert counted == raw_days(NOW - WEEK, NOW, zone)
    # 18:29 and 18:31 UTC: one day in UTC, two in Kolkata (23:59 and 00:01).
    per_day = {d["day"][:10]: d for d in days}
    if zone == KOLKATA:
        assert per_day["2026-04-15"]["logins_succeeded"] == "1"
        assert per_day["2026-04-16"]["logins_succeeded"] == "1"
    else:
        assert per_day["2026-04-15"]["logins_succeeded"] == "2"


def test_facility_uptime_is_the_panels_rule_over_the_window_by_local_day(db, smtp, settings):
    settings.FACILITY_STALE_AFTER = 4 * 3600
    factories.facility("isi", name="USC ISI")
    down_from = datetime(2026, 4, 15, 16, 30, tzinfo=UTC)  # 22:00 in Kolkata
    down_to = down_from + timedelta(hours=6)  # 04:00 the next day there
    every = timedelta(hours=3)
    factories.reporting("isi", NOW - WEEK - every, down_from - every, "up", every=every)
    factories.reporting("isi", down_from, down_to - every, "down", every=every)
    factories.reporting("isi", down_to, NOW, "up", every=every)
    with time_machine.travel(NOW, tick=False):
        send("--tz", KOLKATA, "--to", "ops@localhost")
    mail = parts(smtp.messages[0])
    tables = sections(mail[CSV_NAME])
    (isi,) = tables["facility_uptime"]
    assert isi["up_percent"] == str(round(100 * 162 / 168, 2))
    assert (isi["down_hours"], isi["up_hours"], isi["unknown_hours"]) == ("6.0", "162.0", "0.0")
    days = {d["date"]: d for d in tables["facility_uptime_days"]}
    assert list(days) == [f"2026-04-{d}" for d in range(13, 21)]
    assert days["2026-04-15"]["worst_status"] == days["2026-04-16"]["worst_status"] == "down"
    assert days["2026-04-15"]["up_percent"] == str(round(100 * 22 / 24, 2))
    assert days["2026-04-16"]["up_percent"] == str(round(100 * 20 / 24, 2))
    assert days["2026-04-14"]["worst_status"] == "up"
    assert "isi       USC ISI  96.43" in mail["text/plain"]


def test_the_html_part_has_no_outside_links_or_images(history, smtp):
    with time_machine.travel(NOW, tick=False):
        send("--tz", KOLKATA, "--to", "ops@localhost")
    html = parts(smtp.messages[0])["text/html"]
    assert "Most active users" in html and "mallory" in html
    for outside in ("http:", "https:", "//", "<img", "src=", "<link", "url("):
        assert outside not in html, outside


def test_a_dry_run_prints_the_text_and_sends_nothing(history, smtp):
    with time_machine.travel(NOW, tick=False):
        out = send("--tz", KOLKATA, "--dry-run")
    assert SUBJECT in out and "Logins succeeded: 3" in out
    assert smtp.messages == []


def test_it_refuses_without_recipients_or_with_a_bad_period(db, smtp, settings):
    settings.REPORT_RECIPIENTS = []
    with pytest.raises(CommandError, match="no recipients"):
        send()
    with pytest.raises(CommandError, match="period must be one of"):
        send("--period", "9d", "--to", "ops@localhost")
    with pytest.raises(CommandError, match="not an email address"):
        send("--to", "ops")
    with pytest.raises(CommandError, match="tz: unknown time zone"):
        send("--tz", "Mars/Olympus", "--to", "ops@localhost")
    assert smtp.messages == []


@pytest.mark.parametrize("bad", ["monday", "08:00", "funday 08:00", "mon 24:00", "mon 8:60"])
def test_a_bad_schedule_is_a_clear_error_in_the_command_and_the_job(db, smtp, settings, bad):
    settings.REPORT_SCHEDULE = bad
    settings.REPORT_RECIPIENTS = ["ops@localhost"]
    with pytest.raises(CommandError, match=r"REPORT_SCHEDULE=.* is not a weekday and a 24-hour"):
        send()
    with pytest.raises(ScheduleError, match="REPORT_SCHEDULE"):
        send_due_report(NOW)
    assert smtp.messages == []


def test_schedules_read_as_weekday_and_local_time():
    schedule = Schedule.parse("Friday 17:30", "kolkata")
    assert schedule.slot(NOW) == datetime(2026, 4, 24, 12, 0, tzinfo=UTC)
    assert schedule.describe() == "Fridays at 17:30 Asia/Kolkata"
    # On Sunday the week's Monday slot is behind.
    sunday = datetime(2026, 4, 26, 12, 0, tzinfo=UTC)
    assert Schedule.parse("mon 08:00", "UTC").slot(sunday) == datetime(2026, 4, 20, 8, tzinfo=UTC)
    with pytest.raises(ScheduleError, match="REPORT_TIME_ZONE"):
        Schedule.parse("mon 08:00", "Mars/Olympus")


def test_the_schedule_sends_once_at_the_slot(history, smtp, weekly):
    assert send_due_report(NOW - timedelta(minutes=1)) == 0
    assert smtp.messages == [] and not ReportRun.objects.exists()
    assert send_due_report(NOW + timedelta(seconds=20)) == 1
    (message,) = smtp.messages
    assert subject(message) == SUBJECT
    assert message["To"] == "ops@localhost, lead@localhost"
    figures = {r["metric"]: r for r in sections(parts(message)[CSV_NAME])["figures"]}
    assert float(figures["events"]["value"]) == raw_figures(NOW - WEEK, NOW)["events"]
    assert send_due_report(NOW + timedelta(seconds=80)) == 0
    assert send_due_report(NOW + timedelta(days=3)) == 0
    assert len(smtp.messages) == 1
    (run,) = ReportRun.objects.all()
    assert (run.slot, run.ok, run.attempts) == (NOW, True, 1)
    assert run.recipients == ["ops@localhost", "lead@localhost"]
    # The next week's slot is another report.
    assert send_due_report(NOW + WEEK) == 1
    assert len(smtp.messages) == 2


def test_nothing_is_scheduled_without_recipients(db, smtp, weekly, settings):
    settings.REPORT_RECIPIENTS = []
    assert send_due_report(NOW + timedelta(minutes=5)) == 0
    assert smtp.messages == [] and not ReportRun.objects.exists()


def test_a_failed_send_is_retried_later_and_sent_once(history, weekly, settings):
    receiver = SmtpReceiver(port=free_port())  # not started: the port refuses
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", receiver.port
    with pytest.raises(ConnectionRefusedError):
        send_due_report(NOW)
    run = ReportRun.objects.get()
    assert not run.ok and "ConnectionRefusedError" in run.error
    receiver.start()
    try:
        # Not yet due again: the first retry waits a minute.
        assert send_due_report(NOW + timedelta(seconds=30)) == 0
        assert send_due_report(NOW + timedelta(seconds=61)) == 1
        assert send_due_report(NOW + timedelta(seconds=130)) == 0
    finally:
        receiver.stop()
    assert [subject(m) for m in receiver.messages] == [SUBJECT]
    run.refresh_from_db()
    assert (run.ok, run.attempts, run.error) == (True, 2, "")


@pytest.mark.django_db(transaction=True)
def test_workers_racing_for_a_slot_send_one_mail(smtp, weekly):
    sent, ready = [], threading.Barrier(3)

    def worker():
        try:
            ready.wait()
            sent.append(send_due_report(NOW + timedelta(seconds=5)))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(sent) == [0, 0, 1]
    assert len(smtp.messages) == 1 and ReportRun.objects.count() == 1


RESTARTED_WORKER = """
import django, sys, time_machine
from datetime import datetime
django.setup()
from sphere_stats.worker import JOBS, run_job
with time_machine.travel(datetime.fromisoformat(sys.argv[1]), tick=False):
    print(run_job(JOBS["dashboards.report"]))
"""


@pytest.mark.django_db(transaction=True)
def test_a_restarted_worker_does_not_send_the_slot_again(smtp, weekly):
    assert send_due_report(NOW + timedelta(seconds=5)) == 1
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sphere_stats.settings",
        # The test database's URL, a socket directory as host included
        # (the embedded PostgreSQL).
        "DATABASE_URL": database_url(db),
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp.port),
        "REPORT_SCHEDULE": "mon 08:00",
        "REPORT_TIME_ZONE": KOLKATA,
        "REPORT_RECIPIENTS": "ops@localhost",
    }
    later = (NOW + timedelta(minutes=2)).isoformat()
    done = subprocess.run(
        [sys.executable, "-c", RESTARTED_WORKER, later],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0"
    assert len(smtp.messages) == 1
