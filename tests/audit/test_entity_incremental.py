"""The insert trigger folds new lifecycle steps onto each entity's stored row
(audit/entity_append.py) instead of refolding its whole history: whatever
order and batches the events arrive in, `entities` and `entity_intervals`
stay equal to the fold of `events` from scratch (audit/entity_fold.py),
after every statement."""

import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from audit.aggregates import ENTITIES, ENTITY_CHANGE_TABLES, computed_intervals
from audit.entity_append import CACHED_PLAN_KEYS
from audit.models import Entity, EntityInterval, Event

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USERS = ("ann", "bob", "cyd")
ORGS = ("isi", "utah")
PROJECTS = ("botnets", "dns")
EXPERIMENTS = (("exp1", "botnets"), ("exp2", "dns"))
REALIZATIONS = (("rlz.exp1.botnets", "isi"), ("rlz.exp1.botnets", "utah"), ("rlz.exp2.dns", "isi"))
VERBS = ("created", "activated", "frozen", "unfrozen", "declined", "deleted", "catalogued")
PREFIX = {"user": "user", "organization": "org", "project": "project"}
COLUMNS = Event.COLUMNS
TYPES = ("uuid", "timestamptz", "text", "text", "text", "text", "text", "bool", "text", "jsonb")
INSERT = (
    f"INSERT INTO events ({', '.join(COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%({c})s::{t}[]" for c, t in zip(COLUMNS, TYPES, strict=True))
    + ")"
)


def _group_lifecycle(rng: random.Random) -> tuple:
    kind = rng.choice(tuple(PREFIX))
    name = rng.choice({"user": USERS, "organization": ORGS, "project": PROJECTS}[kind])
    verb = rng.choice(VERBS)
    payload = {}
    if verb == "catalogued":
        # Now and then a state the kind does not have: the fold reads it as seen.
        payload["state"] = rng.choice(("pending", "active", "frozen", "lost"))
    if kind != "user" and verb in ("created", "catalogued", "activated") and rng.random() < 0.7:
        payload["category"] = rng.choice(("Research", "Class", "Ops"))
        if rng.random() < 0.5:
            payload["description"] = rng.choice(("first", "second", "third"))
    # Now and then a lifecycle type about another kind, as raw SQL may write.
    subject_type = kind if rng.random() < 0.95 else rng.choice(("project", "facility"))
    return f"{PREFIX[kind]}_{verb}", name, subject_type, None, payload


def _experiment(rng: random.Random) -> tuple:
    name, project = rng.choice(EXPERIMENTS)
    verb = rng.choice(("created", "created", "deleted", "catalogued", "pushed"))
    payload = {"project": project}
    if verb == "pushed":
        payload.update(model_file="model.py", revision="r1")
    elif rng.random() < 0.5:
        payload["description"] = rng.choice(("one", "two"))
    return f"experiment_{verb}", name, "experiment", None, payload


def _resource(rng: random.Random) -> tuple:
    name, facility = rng.choice(REALIZATIONS)
    noun = rng.choice(("realization", "materialization"))
    verb = rng.choice(("allocated", "allocated", "freed"))
    project = name.split(".")[-1]
    payload = {"project": project, "experiment": name.split(".")[1], "facility": facility}
    return f"{noun}_{verb}", name, noun, facility, {**payload, "resources": ["n1"]}


def _mention(rng: random.Random) -> tuple:
    """An event that only mentions an entity: a login, a membership, a push."""
    match rng.randrange(3):
        case 0:
            user = rng.choice(USERS)
            return "user_login", user, "user", None, {}
        case 1:
            org, user = rng.choice(ORGS), rng.choice(USERS)
            payload = {"kind": "usermember", "role": "member", "state": "active"}
            return "org_member_added", org, "organization", user, payload
        case _:
            project, member = rng.choice(PROJECTS), rng.choice(PROJECTS)
            payload = {"kind": "projectmember", "role": "member", "state": "active"}
            return "project_member_added", project, "project", member, payload


def random_events(rng: random.Random, n: int) -> list[dict]:
    """n events about a few entities, mostly in time order: some share a
    timestamp with the one before, some go back in time, a few fail."""
    events, at = [], START
    makers = (_group_lifecycle, _group_lifecycle, _experiment, _resource, _mention)
    for _ in range(n):
        event_type, subject, subject_type, target, payload = rng.choice(makers)(rng)
        roll = rng.random()
        if roll < 0.15:
            ts = at  # the same instant as the one before
        elif roll < 0.25:
            ts = START + (at - START) * rng.random()  # back in time
        else:
            at += timedelta(minutes=rng.randint(1, 90))
            ts = at
        failed = rng.random() < 0.05
        events.append(
            {
                "event_uuid": str(uuid.uuid4()),
                "timestamp": ts,
                "event_type": event_type,
                "caller": rng.choice(("ops", "ann", "")),
                "subject": subject,
                "subject_type": subject_type,
                "target": target,
                "success": not failed,
                "error_message": "refused" if failed else None,
                "payload": json.dumps(payload),
            }
        )
    return events


def insert(cursor, batch: list[dict]) -> None:
    """One INSERT statement of the whole batch, as a portal or COPY writes."""
    cursor.execute(INSERT, {c: [e[c] for e in batch] for c in COLUMNS})


def entity_drift(cursor) -> list[str]:
    """Every difference of the stored entities, intervals and hourly and
    monthly changes from the fold of `events` from scratch."""
    found = ENTITIES.differences(cursor, ENTITIES.all_keys(cursor))
    for changes in ENTITY_CHANGE_TABLES:
        found += changes.differences(cursor)
    return found


@pytest.mark.parametrize("seed", range(8))
def test_entities_equal_the_fold_after_every_batch(seed):
    rng = random.Random(seed)
    events = random_events(rng, 160)
    with connection.cursor() as cursor:
        i = 0
        while i < len(events):
            size = rng.choice((1, 1, 2, 3, 5, 8, 20))
            batch = events[i : i + size]
            insert(cursor, batch)
            i += size
            assert entity_drift(cursor) == [], f"after events {i - size}..{i} of seed {seed}"
    # Not vacuously: the entities lived through many states.
    assert Entity.objects.count() >= 10
    assert EntityInterval.objects.filter(valid_to__isnull=False).count() >= 20


@pytest.mark.parametrize("seed", range(2))
def test_entities_equal_the_fold_when_one_statement_touches_hundreds(seed):
    """Batches that touch more entities than CACHED_PLAN_KEYS, whose fold is
    planned for the statement instead of cached."""
    rng = random.Random(50 + seed)
    events = random_events(rng, 1200)
    for e in events:  # the same histories spread over many more entities
        e["subject"] += str(rng.randrange(60))
        if e["target"] and e["event_type"].endswith("member_added"):
            e["target"] += str(rng.randrange(60))
    with connection.cursor() as cursor:
        for i in range(0, len(events), 400):
            batch = events[i : i + 400]
            assert len({(e["subject_type"], e["subject"]) for e in batch}) > CACHED_PLAN_KEYS
            insert(cursor, batch)
            assert entity_drift(cursor) == [], f"after events {i}..{i + 400} of seed {seed}"
    assert Entity.objects.count() > 3 * CACHED_PLAN_KEYS


@pytest.mark.parametrize("seed", range(3))
def test_entities_stay_exact_when_deletes_and_updates_come_between_inserts(seed):
    rng = random.Random(100 + seed)
    events = random_events(rng, 120)
    with connection.cursor() as cursor:
        for i in range(0, len(events), 4):
            insert(cursor, events[i : i + 4])
            roll = rng.random()
            if roll < 0.2:
                cursor.execute(
                    "DELETE FROM events WHERE event_uuid = %(id)s",
                    {"id": rng.choice(events[: i + 4])["event_uuid"]},
                )
            elif roll < 0.4:
                cursor.execute(
                    "UPDATE events SET timestamp = timestamp + interval '1 hour' "
                    "WHERE event_uuid = %(id)s",
                    {"id": rng.choice(events[: i + 4])["event_uuid"]},
                )
            assert entity_drift(cursor) == [], f"after events 0..{i + 4} of seed {seed}"


def test_entities_created_in_time_order_get_the_intervals_of_their_history():
    """A project created, activated, frozen and deleted in four statements,
    a login of a user no event created first: the intervals read as the
    history does."""
    at = [START + timedelta(hours=h) for h in range(5)]
    steps = [
        ("project_created", "botnets", "project", {"category": "Research"}, at[0]),
        ("project_activated", "botnets", "project", {}, at[1]),
        ("user_login", "ann", "user", {}, at[1]),
        ("project_frozen", "botnets", "project", {}, at[2]),
        ("project_deleted", "botnets", "project", {}, at[3]),
    ]
    with connection.cursor() as cursor:
        for event_type, subject, subject_type, payload, ts in steps:
            row = {
                "event_uuid": str(uuid.uuid4()),
                "timestamp": ts,
                "event_type": event_type,
                "caller": "ops",
                "subject": subject,
                "subject_type": subject_type,
                "target": None,
                "success": True,
                "error_message": None,
                "payload": json.dumps(payload),
            }
            insert(cursor, [row])
    assert sorted(computed_intervals(["project", "user"])) == sorted(
        [
            ("project", "pending", at[0], at[1]),
            ("project", "active", at[1], at[2]),
            ("project", "frozen", at[2], at[3]),
            ("user", "active", at[1], None),
        ]
    )
    stored = EntityInterval.objects.all()
    assert sorted((i.kind, i.state, i.valid_from, i.valid_to) for i in stored) == sorted(
        computed_intervals(["project", "user"])
    )
    project = Entity.objects.get(kind="project", name="botnets")
    assert (project.state, project.since, project.until, project.category) == (
        "gone",
        at[0],
        at[3],
        "Research",
    )
