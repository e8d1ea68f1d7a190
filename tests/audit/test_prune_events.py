"""prune_events: opt-in retention that archives before it deletes and keeps
the pre-aggregates exact."""

import gzip
import json
from datetime import datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.ingest import ingest
from audit.management.commands import prune_events
from audit.models import DailyCount, Entity, EntityInterval, Event, HourlyCount, HourlyLoginUser
from audit.triggers import rebuild_aggregates
from demo.history import generate

NOW = "2026-06-01 12:00Z"


@pytest.fixture
def history(db) -> list[dict]:
    """400 days of simulated portal history ending at NOW."""
    with time_machine.travel(NOW, tick=False):
        events = list(generate(1500, days=400, seed=5, end=timezone.now()))
        ingest(events)
    return events


def prune(*args: str) -> str:
    out = StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("prune_events", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def snapshot() -> dict:
    """Every pre-aggregate, as comparable sets."""
    return {
        "hourly": set(HourlyCount.objects.values_list("bucket", "event_type", "success", "n")),
        "daily": set(DailyCount.objects.values_list("day", "event_type", "success", "n")),
        "logins": set(HourlyLoginUser.objects.values_list("hour", "username", "n")),
        "entities": set(Entity.objects.values_list("kind", "scope", "name", "state", "since")),
        "intervals": set(
            EntityInterval.objects.values_list("kind", "scope", "name", "state", "valid_from")
        ),
    }


def cutoff(days: int):
    with time_machine.travel(NOW, tick=False):
        return timezone.now() - timedelta(days=days)


def test_a_dry_run_reports_the_exact_count_and_changes_nothing(history, tmp_path):
    old = sum(1 for e in history if e["timestamp"] < cutoff(180).isoformat())
    before = Event.objects.count()
    out = prune("--older-than", "180", "--dry-run", "--archive", str(tmp_path / "a.ndjson.gz"))
    expected_old = Event.objects.filter(timestamp__lt=cutoff(180)).count()
    assert f"would delete {expected_old} events" in out
    assert old > 0
    assert Event.objects.count() == before
    assert not (tmp_path / "a.ndjson.gz").exists()


def test_it_archives_then_deletes_only_the_old_events(history, tmp_path):
    limit = cutoff(180)
    old = {str(e.event_uuid): e.as_dict() for e in Event.objects.filter(timestamp__lt=limit)}
    kept = Event.objects.filter(timestamp__gte=limit).count()
    archive = tmp_path / "old.ndjson.gz"

    out = prune("--older-than", "180", "--archive", str(archive), "--batch-size", "97")

    assert f"Deleted {len(old)} events" in out
    assert not Event.objects.filter(timestamp__lt=limit).exists()
    assert Event.objects.count() == kept
    lines = gzip.decompress(archive.read_bytes()).decode().splitlines()
    archived = {}
    for line in lines:
        event = json.loads(line)
        archived[event["event_uuid"]] = event
    assert set(archived) == set(old)
    # The same keys as the API's event JSON, and the same values.
    some = next(iter(old))
    assert list(archived[some]) == list(old[some])
    for key, value in old.items():
        got = archived[key]
        assert datetime.fromisoformat(got["timestamp"]) == datetime.fromisoformat(
            value["timestamp"]
        )
        assert {k: v for k, v in got.items() if k != "timestamp"} == {
            k: v for k, v in value.items() if k != "timestamp"
        }
    assert not list(tmp_path.glob("*.partial"))


def test_the_pre_aggregates_stay_exact(history):
    prune("--older-than", "200", "--batch-size", "50")
    after_prune = snapshot()
    rebuild_aggregates()  # recompute everything from the remaining events
    assert after_prune == snapshot()
    assert sum(n for *_, n in after_prune["hourly"]) == Event.objects.count()
    assert all(n > 0 for *_, n in after_prune["hourly"])
    assert after_prune["logins"] and all(n > 0 for *_, n in after_prune["logins"])


def test_the_archive_takes_the_events_back_through_ingest(history, tmp_path):
    archive = tmp_path / "back.ndjson.gz"
    before = snapshot()
    count = Event.objects.count()
    prune("--older-than", "300", "--archive", str(archive))
    events = [json.loads(line) for line in gzip.decompress(archive.read_bytes()).splitlines()]
    with time_machine.travel(NOW, tick=False):
        result = ingest(events)
    assert result.accepted == len(events)
    assert Event.objects.count() == count
    assert snapshot() == before


def test_it_never_overwrites_an_archive(history, tmp_path):
    archive = tmp_path / "exists.ndjson.gz"
    archive.write_bytes(b"precious")
    with pytest.raises(CommandError, match="never overwritten"):
        prune("--older-than", "30", "--archive", str(archive))
    assert archive.read_bytes() == b"precious"
    assert Event.objects.count() == len(history)


def test_it_refuses_an_archive_name_that_is_not_ndjson_gz(history, tmp_path):
    with pytest.raises(CommandError, match=r"\.ndjson\.gz"):
        prune("--older-than", "30", "--archive", str(tmp_path / "x.csv"))


def test_it_needs_an_age_so_nothing_is_pruned_by_accident(db):
    with pytest.raises(CommandError):
        call_command("prune_events")
    with pytest.raises(CommandError, match="at least 1 day"):
        call_command("prune_events", "--older-than", "0")


def test_nothing_older_means_nothing_to_do(history):
    out = prune("--older-than", "1000")
    assert "nothing to do" in out
    assert Event.objects.count() == len(history)


# --- a rerun after a crash --------------------------------------------------------------


class Crash(Exception):
    """The process dying mid-run, as far as the database and the archive can tell."""


def crash_on_call(n: int, function=None):
    """`function` (or nothing), raising Crash after its nth call."""
    calls = 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        result = function(*args, **kwargs) if function else None
        if calls == n:
            raise Crash
        return result

    return wrapper


def crash_before_call(n: int, function):
    """`function`, raising Crash instead of its nth call."""
    calls = 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == n:
            raise Crash
        return function(*args, **kwargs)

    return wrapper


def old_uuids(days: int) -> set[str]:
    return {
        str(u)
        for u in Event.objects.filter(timestamp__lt=cutoff(days)).values_list(
            "event_uuid", flat=True
        )
    }


def archived_uuids(archive) -> list[str]:
    # gzip.decompress reads every member, as zcat does.
    return [
        json.loads(line)["event_uuid"]
        for line in gzip.decompress(archive.read_bytes()).splitlines()
    ]


def assert_archived_exactly_once(archive, doomed: set[str]) -> None:
    uuids = archived_uuids(archive)
    assert len(uuids) == len(set(uuids)), "an event was archived twice"
    assert set(uuids) == doomed
    assert not Event.objects.filter(event_uuid__in=doomed).exists()
    assert not archive.with_name(archive.name + ".partial").exists()


def test_a_rerun_after_a_crash_keeps_the_batches_the_crashed_run_committed(
    history, tmp_path, monkeypatch
):
    doomed = old_uuids(180)
    archive = tmp_path / "old.ndjson.gz"
    args = ("--older-than", "180", "--archive", str(archive), "--batch-size", "97")
    # The second batch dies before its lines are written: it rolls back.
    monkeypatch.setattr(
        prune_events, "write_member", crash_before_call(2, prune_events.write_member)
    )
    with pytest.raises(Crash):
        prune(*args)
    monkeypatch.undo()
    assert Event.objects.filter(event_uuid__in=doomed).count() == len(doomed) - 97

    out = prune(*args)

    assert "keeps the 97 events an interrupted run deleted" in out
    assert f"Deleted {len(doomed) - 97} events" in out
    assert_archived_exactly_once(archive, doomed)


def test_a_batch_archived_but_not_committed_is_archived_once_on_the_rerun(
    history, tmp_path, monkeypatch
):
    doomed = old_uuids(180)
    archive = tmp_path / "old.ndjson.gz"
    args = ("--older-than", "180", "--archive", str(archive), "--batch-size", "97")
    # The second batch's lines reach the disk, then the process dies before its commit.
    monkeypatch.setattr(prune_events, "write_member", crash_on_call(2, prune_events.write_member))
    with pytest.raises(Crash):
        prune(*args)
    monkeypatch.undo()
    assert len(archived_uuids(archive.with_name(archive.name + ".partial"))) == 2 * 97

    prune(*args)

    assert_archived_exactly_once(archive, doomed)


def test_a_member_torn_by_the_crash_is_cut_off_on_the_rerun(history, tmp_path, monkeypatch):
    doomed = old_uuids(180)
    archive = tmp_path / "old.ndjson.gz"
    partial = archive.with_name(archive.name + ".partial")
    args = ("--older-than", "180", "--archive", str(archive), "--batch-size", "97")
    monkeypatch.setattr(
        prune_events, "write_member", crash_before_call(2, prune_events.write_member)
    )
    with pytest.raises(Crash):
        prune(*args)
    monkeypatch.undo()
    member = gzip.compress(b'{"event_uuid": "00000000-0000-0000-0000-000000000000"}\n' * 50)
    with partial.open("ab") as f:
        f.write(member[: len(member) // 2])

    prune(*args)

    assert_archived_exactly_once(archive, doomed)


def test_a_rerun_finishes_an_archive_whose_run_crashed_before_the_rename(
    history, tmp_path, monkeypatch
):
    doomed = old_uuids(180)
    archive = tmp_path / "old.ndjson.gz"
    args = ("--older-than", "180", "--archive", str(archive))
    monkeypatch.setattr(type(archive), "rename", crash_on_call(1, None))
    with pytest.raises(Crash):
        prune(*args)
    monkeypatch.undo()
    assert not archive.exists()

    out = prune(*args)

    assert f"keeps the {len(doomed)} events" in out
    assert_archived_exactly_once(archive, doomed)


def test_a_damaged_partial_archive_is_refused_with_how_to_recover(history, tmp_path):
    archive = tmp_path / "old.ndjson.gz"
    partial = archive.with_name(archive.name + ".partial")
    whole = gzip.compress(b'{"event_uuid": "00000000-0000-0000-0000-000000000000"}\n')
    partial.write_bytes(whole + b"not gzip at all")
    with pytest.raises(CommandError, match=f"damaged after byte {len(whole)}.*truncate -s"):
        prune("--older-than", "180", "--archive", str(archive))
    assert Event.objects.count() == len(history)
