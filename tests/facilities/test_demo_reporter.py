"""manage.py demo_reporter, and how `make run` and demo_setup use it."""

import os
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core.management import CommandError, call_command

from audit.models import Event
from demo.management.commands import demo_reporter
from facilities.summary import facility_rows
from tests.factories import facility

NOW = datetime(2026, 4, 23, 21, 0, tzinfo=UTC)
CURRENT = {
    "isi": "up",
    "utah": "up",
    "wisc": "down",
    "clemson": "maintenance",
    "mass": "up",
    "tacc": "degraded",
}
ROOT = Path(settings.BASE_DIR)


def statuses_at(moment: datetime) -> dict[str, str]:
    with time_machine.travel(moment, tick=False):
        return {row.slug: row.status.status for row in facility_rows(datetime.now(UTC))}


@pytest.mark.django_db
def test_once_reports_each_facility_in_its_demo_status_through_ingest():
    call_command("seed_facilities", verbosity=0)
    facility("lab", name="A facility of our own")
    out = StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("demo_reporter", "--once", stdout=out)
    assert statuses_at(NOW + timedelta(minutes=10)) == {**CURRENT, "lab": "up"}
    wisc = Event.objects.get(subject="wisc")
    assert (wisc.caller, wisc.payload["message"]) == (
        "wisc-controller",
        "power failure in machine room B",
    )
    assert "Reported 7 facility statuses" in out.getvalue()
    # Without the next round the map goes grey, which is why it runs on.
    assert set(statuses_at(NOW + timedelta(minutes=16)).values()) == {"unknown"}


# Real transactions: each round closes its connection, which a test's
# wrapping transaction would not survive.
@pytest.mark.django_db(transaction=True)
def test_it_reports_again_every_interval(monkeypatch):
    facility("isi")
    naps = []

    class Stop(Exception):
        pass

    def sleep(seconds):
        naps.append(seconds)
        if len(naps) == 2:
            raise Stop

    monkeypatch.setattr(demo_reporter.time, "sleep", sleep)
    with pytest.raises(Stop):
        call_command("demo_reporter", "--every", "120", stdout=StringIO())
    assert naps == [120, 120]
    assert Event.objects.filter(subject="isi", event_type="facility_status").count() == 2


@pytest.mark.django_db
def test_rounds_longer_than_the_staleness_limit_keep_the_map_known_in_between(settings):
    settings.FACILITY_STALE_AFTER = 60
    call_command("seed_facilities", verbosity=0)
    with time_machine.travel(NOW, tick=False):
        call_command("demo_reporter", "--once", "--every", "120", stdout=StringIO())
    # Each report says the next comes within a round and a half (180 s).
    assert {e.payload["interval"] for e in Event.objects.all()} == {180}
    assert statuses_at(NOW + timedelta(seconds=179)) == CURRENT
    assert set(statuses_at(NOW + timedelta(seconds=181)).values()) == {"unknown"}


@pytest.mark.django_db
def test_rounds_too_far_apart_for_a_reports_interval_are_a_usage_error():
    with pytest.raises(CommandError, match="may be at most 604800 s"):
        call_command("demo_reporter", "--once", "--every", str(7 * 24 * 3600))
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_a_zero_interval_is_a_usage_error():
    with pytest.raises(CommandError, match="argument --every: 0 is not at least 1"):
        call_command("demo_reporter", "--every", "0")


@pytest.mark.django_db
def test_demo_setup_seeds_the_facilities_once_and_reports_their_status_on_every_run(
    settings, tmp_path, monkeypatch
):
    from demo.management.commands import demo_setup

    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.BASE_DIR = tmp_path
    monkeypatch.setattr(demo_setup, "CREDENTIALS", tmp_path / "var" / "demo_credentials.txt")
    with time_machine.travel(NOW, tick=False):
        call_command("demo_setup", events=2000, stdout=StringIO(), stderr=StringIO())
    seeded = Event.objects.count()
    assert statuses_at(NOW) == CURRENT
    later = NOW + timedelta(days=2)
    assert set(statuses_at(later).values()) == {"unknown"}
    with time_machine.travel(later, tick=False):
        call_command("demo_setup", events=2000, stdout=StringIO(), stderr=StringIO())
    assert Event.objects.count() == seeded + len(CURRENT)
    assert statuses_at(later) == CURRENT


def run_recipe() -> str:
    """The `make run` shell line that starts gunicorn, as make would run it."""
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "run", "BIN=fakebin"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = re.findall(r"(?ms)^[^\n]*demo_reporter &.*?--graceful-timeout 10$", dry)
    return line


def test_make_run_starts_the_reporter_and_the_worker_beside_gunicorn_in_one_shell():
    line = run_recipe()
    assert re.search(r"fakebin/python manage\.py demo_reporter &", line)
    assert re.search(r"fakebin/python manage\.py run_worker &", line)
    assert "trap 'kill $reporter $worker 2>/dev/null' EXIT" in line
    assert line.index("run_worker &") < line.index("trap") < line.index("fakebin/gunicorn")
    assert subprocess.run(["sh", "-n", "-c", line]).returncode == 0


def test_make_run_stops_the_reporter_and_the_worker_when_gunicorn_exits(tmp_path):
    # Stand-ins: the "reporter" and the "worker" sleep and note their pids;
    # "gunicorn" serves for a moment and exits, as it does after Ctrl-C.
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    pid_file = tmp_path / "python.pids"
    (bin_dir / "python").write_text(f"#!/bin/sh\necho $$ >> {pid_file}\nexec sleep 60\n")
    (bin_dir / "gunicorn").write_text("#!/bin/sh\nsleep 1\n")
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    subprocess.run(["sh", "-c", run_recipe()], cwd=tmp_path, check=True, timeout=30)
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2
    for _ in range(50):
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return
        time.sleep(0.1)
    for pid in alive:
        os.kill(pid, 9)
    pytest.fail("the reporter or the worker outlived gunicorn")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.django_db(transaction=True)
def test_by_default_it_reports_often_enough_for_the_map_and_no_more(monkeypatch, settings):
    # Two thirds of the staleness limit: inside it with room for a slow round,
    # and no more reports than that takes (they count in "events received").
    for stale_after, every in ((900, 600), (120, 80)):
        settings.FACILITY_STALE_AFTER = stale_after
        naps = []

        def sleep(seconds, naps=naps):
            naps.append(seconds)
            raise KeyboardInterrupt

        monkeypatch.setattr(demo_reporter.time, "sleep", sleep)
        err = StringIO()
        with pytest.raises(KeyboardInterrupt):
            call_command("demo_reporter", stdout=StringIO(), stderr=err)
        assert naps == [every]
        assert err.getvalue() == ""
