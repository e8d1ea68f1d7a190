"""Entity states on the pages: the overview's cards (one per kind, its
states beside the total) and each entity page's state, since and until, and
the note on an entity that predates the log, with the seed's eight rows
(tests/fixtures/seed_rows.json) and a demo history holding every state."""

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from django.db import connection

from audit.ingest import ingest
from dashboards.stats import STATS
from demo.history import generate
from tests.dashboards.conftest import NOW, event, make_window
from tests.dashboards.test_members import members_table

SEED_ROWS = json.loads((Path(__file__).parent.parent / "fixtures" / "seed_rows.json").read_text())
# The morning after the seed's rows.
SEED_NOW = datetime(2026, 4, 24, 12, 0, tzinfo=UTC)
KINDS = {"user": "Users", "organization": "Organizations", "project": "Projects"}
SINGLE = {
    "experiment": "Experiments",
    "realization": "Active realizations",
    "materialization": "Active materializations",
}


def text(html: str) -> str:
    """What a reader sees: cells, items and blocks apart, inline markup joined."""
    inline = re.sub(r"</?(a|span|strong)\b[^>]*>", "", html)
    return " ".join(re.sub(r"<[^>]+>", " ", inline).split())


def card(body: str, kind: str) -> str:
    """The text of one overview card, as a reader sees it."""
    cards = body.split('class="grid cards entity-cards">', 1)[1]
    cards = cards.split('<div class="chart-links"', 1)[0]
    html = cards.split(f'class="card stat-card" id="card-{kind}">', 1)[1]
    return text(html.split('<div class="card', 1)[0])


def section(body: str, section_id: str) -> str:
    return body.split(f'id="{section_id}">', 1)[1].split("</section>", 1)[0]


def signed(n: int) -> str:
    return f"+{n:,}" if n > 0 else f"−{-n:,}" if n < 0 else "±0"


def expected_card(kind: str, now: dict, then: dict) -> str:
    """What a card reads for {(kind, state): count} now and at the period's start."""
    if kind in SINGLE:
        state = "exists" if kind == "experiment" else "active"
        n = now.get((kind, state), 0)
        return f"{SINGLE[kind]} {n:,} {signed(n - then.get((kind, state), 0))}"
    states = ("active", "pending", "frozen")
    total = sum(now.get((kind, s), 0) for s in states)
    change = total - sum(then.get((kind, s), 0) for s in states)
    parts = " ".join(f"{now.get((kind, s), 0):,} {s}" for s in states)
    return f"{KINDS[kind]} {total:,} {signed(change)} {parts}"


def counts_now() -> dict[tuple[str, str], int]:
    """Entities existing now by kind and state, from the entities table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT kind, state, count(*) FROM entities WHERE state <> 'gone' GROUP BY 1, 2"
        )
        return {(kind, state): n for kind, state, n in cursor.fetchall()}


def counts_at(moment: datetime) -> dict[tuple[str, str], int]:
    """Entities by kind and state after every event before `moment`, from
    the intervals each spent in a state."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT kind, state, count(*) FROM entity_intervals WHERE valid_from < %(t)s"
            " AND (valid_to IS NULL OR valid_to >= %(t)s) GROUP BY 1, 2",
            {"t": moment},
        )
        return {(kind, state): n for kind, state, n in cursor.fetchall()}


def raw_counts(window) -> tuple[dict, dict]:
    """current_counts computed from `events` alone: (now, at the period's start)."""
    rows = STATS["current_counts"].compute(window, {}, "raw").rows
    now = {(kind, state): n for kind, state, n, _, _ in rows if n}
    then = {(kind, state): n for kind, state, _, n, _ in rows if n}
    return now, then


# --- the seed's eight rows ------------------------------------------------------------


@pytest.fixture
def seed(db):
    assert ingest(SEED_ROWS, now=SEED_NOW).accepted == 8
    with time_machine.travel(SEED_NOW, tick=False):
        yield


def test_the_seeds_org_exists_from_its_first_mention_and_may_be_older(analyst_client, seed):
    response = analyst_client.get("/orgs/orgtest/")
    assert response.status_code == 200
    body = response.content.decode()
    assert '<span class="badge state-active" title="exists and can be used">active</span>' in body
    state = text(section(body, "state"))
    assert "Exists now Yes, active exists and can be used" in state
    assert "Since 2026-04-23 20:50:23 UTC (first seen; may be older)" in state
    assert "Until still exists" in state
    assert "Created by not recorded" in state
    assert "Category — Description —" in state
    assert (
        "First seen 2026-04-23 20:50:23 UTC in org_member_added; no creation event was "
        "recorded, so it may be older." in state
    )
    # The note's event links to the event itself (an analyst's page).
    assert '<a href="/events/2e2812be-3e7a-4a30-8c64-4ec09018f1ab/">org_member_added</a>' in body
    # Both removals failed: both members remain, each since its add.
    count, rows = members_table(analyst_client, "/orgs/orgtest/")
    assert count == "2"
    assert rows == [
        ["testuser", "user", "member", "active", "2026-04-23 20:50:23 UTC"],
        ["testproject", "project", "member", "active", "2026-04-23 20:50:28 UTC"],
    ]


@pytest.mark.parametrize(
    ("url", "first_seen", "first_event"),
    [
        ("/users/testuser/", "2026-04-23 20:50:23 UTC", "org_member_added"),
        ("/projects/testproject/", "2026-04-23 20:50:28 UTC", "org_member_added"),
        # Named only as the project of the seed's experiments.
        ("/projects/glawler/", "2026-04-23 21:17:46 UTC", "experiment_created"),
    ],
)
def test_every_entity_the_seed_only_mentions_says_it_may_be_older(
    viewer_client, seed, url, first_seen, first_event
):
    body = viewer_client.get(url).content.decode()
    assert "badge state-active" in body
    assert (
        f"First seen {first_seen} in {first_event}; no creation event was recorded, "
        "so it may be older." in text(section(body, "state"))
    )
    # A viewer sees the event's type, not a link to the explorer.
    assert "/events/" not in section(body, "state")


def test_the_seeds_experiment_is_gone_since_its_second_deletion(viewer_client, seed):
    body = viewer_client.get("/experiments/glawler/testexp/").content.decode()
    assert '<span class="badge state-gone" title="deleted">gone</span>' in body
    state = text(section(body, "state"))
    assert "Exists now No: deleted 2026-04-23 21:18:48 UTC (experiment_deleted)" in state
    # Its latest existence, the second one.
    assert "Existed from 2026-04-23 21:18:45 UTC Until 2026-04-23 21:18:48 UTC" in state
    assert "Created by glawler" in state
    assert "First seen 2026-04-23 21:17:46 UTC" in state
    assert "may be older" not in state


def test_a_name_seen_only_as_a_caller_has_a_page_without_a_state(viewer_client, seed):
    response = viewer_client.get("/users/glawler/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "state unknown" in body
    assert "it appears only as a caller or in failed events" in section(body, "state")


def test_the_seeds_cards_count_what_exists(viewer_client, seed):
    body = viewer_client.get("/?period=all").content.decode()
    shown = {kind: card(body, kind) for kind in (*KINDS, *SINGLE)}
    assert shown == {
        "user": "Users 1 +1 1 active 0 pending 0 frozen",
        "organization": "Organizations 1 +1 1 active 0 pending 0 frozen",
        "project": "Projects 2 +2 2 active 0 pending 0 frozen",
        "experiment": "Experiments 0 ±0",
        "realization": "Active realizations 0 ±0",
        "materialization": "Active materializations 0 ±0",
    }
    window = make_window(SEED_NOW, period="all")
    now, then = raw_counts(window)
    assert now == counts_now()
    assert {kind: expected_card(kind, now, then) for kind in shown} == shown


# --- every state ----------------------------------------------------------------------------


def group(ts: str, verb: str, name: str, kind: str, **payload) -> dict:
    prefix = "org" if kind == "organization" else kind
    return event(ts, f"{prefix}_{verb}", name, kind, payload=payload or None)


STATES = [
    event("2026-03-01T09:00:00Z", "user_created", "pat", "user", caller="pat"),
    event("2026-03-01T10:00:00Z", "user_created", "quinn", "user", caller="quinn"),
    event("2026-03-01T11:00:00Z", "user_activated", "quinn", "user"),
    event("2026-03-02T10:00:00Z", "user_frozen", "quinn", "user"),
    event("2026-03-01T12:00:00Z", "user_created", "rory", "user", caller="rory"),
    event("2026-03-01T12:30:00Z", "user_declined", "rory", "user"),
    group(
        "2026-03-03T08:00:00Z",
        "created",
        "lab",
        "organization",
        category="Research",
        description="A lab",
    ),
    group("2026-03-03T09:00:00Z", "activated", "lab", "organization"),
    group("2026-03-04T08:00:00Z", "created", "club", "organization", category="Education"),
    group("2026-03-04T08:00:00Z", "created", "wsn", "project", category="Research"),
    group("2026-03-04T09:00:00Z", "activated", "wsn", "project"),
    group("2026-03-05T09:00:00Z", "frozen", "wsn", "project"),
    group("2026-03-06T09:00:00Z", "unfrozen", "wsn", "project"),
    group("2026-03-07T09:00:00Z", "frozen", "wsn", "project"),
    group("2026-03-04T10:00:00Z", "created", "spam", "project", category="Industry"),
    group("2026-03-04T11:00:00Z", "declined", "spam", "project"),
]


@pytest.fixture
def states(db):
    ingest(STATES, now=NOW)
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.mark.parametrize(
    ("url", "badge", "exists", "since", "until"),
    [
        (
            "/users/pat/",
            "pending",
            "Yes, pending created, waiting for approval",
            "Since 2026-03-01 09:00:00 UTC",
            "Until still exists",
        ),
        (
            "/users/quinn/",
            "frozen",
            "Yes, frozen exists but cannot be used",
            "Since 2026-03-01 10:00:00 UTC",
            "Until still exists",
        ),
        (
            "/users/rory/",
            "gone",
            "No: declined 2026-03-01 12:30:00 UTC (user_declined)",
            "Existed from 2026-03-01 12:00:00 UTC",
            "Until 2026-03-01 12:30:00 UTC",
        ),
        (
            "/orgs/lab/",
            "active",
            "Yes, active exists and can be used",
            "Since 2026-03-03 08:00:00 UTC",
            "Until still exists",
        ),
        (
            "/orgs/club/",
            "pending",
            "Yes, pending created, waiting for approval",
            "Since 2026-03-04 08:00:00 UTC",
            "Until still exists",
        ),
        (
            "/projects/wsn/",
            "frozen",
            "Yes, frozen exists but cannot be used",
            "Since 2026-03-04 08:00:00 UTC",
            "Until still exists",
        ),
        (
            "/projects/spam/",
            "gone",
            "No: declined 2026-03-04 11:00:00 UTC (project_declined)",
            "Existed from 2026-03-04 10:00:00 UTC",
            "Until 2026-03-04 11:00:00 UTC",
        ),
    ],
)
def test_each_state_shows_with_its_badge_since_and_until(
    viewer_client, states, url, badge, exists, since, until
):
    body = viewer_client.get(url).content.decode()
    heading = body.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert f'class="badge state-{badge}"' in heading and f">{badge}</span>" in heading
    state = text(section(body, "state"))
    assert f"Exists now {exists} {since} {until}" in state
    assert "may be older" not in state


def test_an_org_and_a_project_show_their_category_and_description(viewer_client, states):
    lab = text(section(viewer_client.get("/orgs/lab/").content.decode(), "state"))
    assert "Category Research Description A lab" in lab
    wsn = text(section(viewer_client.get("/projects/wsn/").content.decode(), "state"))
    assert "Category Research Description —" in wsn
    pat = text(section(viewer_client.get("/users/pat/").content.decode(), "state"))
    assert "Category" not in pat and "Description" not in pat


def test_a_recreated_org_that_predates_the_log_lists_the_members_of_its_latest_life(
    viewer_client, db
):
    def member(ts, verb, who):
        payload = {"kind": "usermember"}
        if verb != "deleted":
            payload |= {"role": "member", "state": "active"}
        return event(ts, f"org_member_{verb}", "lab", "organization", target=who, payload=payload)

    ingest(
        [
            member("2026-03-01T10:00:00Z", "added", "alice"),
            group("2026-03-02T10:00:00Z", "deleted", "lab", "organization"),
            group("2026-03-03T10:00:00Z", "created", "lab", "organization", category="Research"),
            member("2026-03-03T10:00:01Z", "added", "bob"),
        ],
        now=NOW,
    )
    with time_machine.travel(NOW, tick=False):
        body = viewer_client.get("/orgs/lab/").content.decode()
        count, rows = members_table(viewer_client, "/orgs/lab/")
    state = text(section(body, "state"))
    assert "Exists now Yes, pending" in state
    assert "Since 2026-03-03 10:00:00 UTC Until still exists" in state
    assert (
        "First seen 2026-03-01 10:00:00 UTC in org_member_added, before any record of its "
        "creation: its first existence may be older." in state
    )
    assert (count, rows) == ("1", [["bob", "user", "member", "active", "2026-03-03 10:00:01 UTC"]])


# --- the overview on a demo history --------------------------------------------------------


@pytest.fixture
def demo(db):
    ingest(list(generate(8000, days=120, seed=3, end=NOW)), now=NOW)
    with time_machine.travel(NOW, tick=False):
        yield


def test_the_demo_history_has_entities_in_every_state(demo):
    now = counts_now()
    for kind in KINDS:
        for state in ("pending", "active", "frozen"):
            assert now.get((kind, state)), (kind, state)
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT kind FROM entities WHERE predates_log")
        assert {kind for (kind,) in cursor.fetchall()} >= set(KINDS)


@pytest.mark.parametrize("query", ["period=30d&tz=America/New_York", "period=all", "period=7d"])
def test_the_cards_equal_the_entities_table_and_the_raw_events(viewer_client, demo, query):
    body = viewer_client.get(f"/?{query}").content.decode()
    window = make_window(NOW, **dict(part.split("=") for part in query.split("&")))
    now, then = counts_now(), counts_at(window.start)
    assert (now, then) == raw_counts(window)
    for kind in (*KINDS, *SINGLE):
        assert card(body, kind) == expected_card(kind, now, then), kind
