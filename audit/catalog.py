"""The event catalog: a static schema for every event type the portal sends.

One registry, one entry per type, each of the same shape: what the caller,
subject and target mean, the payload keys with their types, one example.
A known type is validated against its entry; an unknown type is stored as is
and counted as uncatalogued (the portal evolves and nothing may be dropped).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Payload value types, as JSON sees them.
STRING, INTEGER, BOOLEAN, STRING_LIST, OBJECT = "string", "integer", "boolean", "string[]", "object"

FACILITY_STATES = ("up", "degraded", "down", "maintenance")
# The longest a facility_status report may say it holds (payload.interval,
# seconds): a controller quiet for more than a week is not being monitored.
FACILITY_MAX_INTERVAL = 7 * 24 * 3600
MEMBER_ROLES = ("creator", "maintainer", "member")
MEMBER_STATES = ("pending", "active")


@dataclass(frozen=True)
class PayloadKey:
    type: str
    required: bool = False
    description: str = ""
    choices: tuple[str, ...] = ()
    # Bounds of an integer key, both included (None: unbounded).
    minimum: int | None = None
    maximum: int | None = None

    def problem(self, value: Any) -> str | None:
        """Why `value` does not fit this key, or None."""
        # An if-chain, not a dict of every check: this runs for every key of
        # every event ingested, and only the check of this key's type is due.
        if self.type == STRING:
            ok = isinstance(value, str)
        elif self.type == INTEGER:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type == BOOLEAN:
            ok = isinstance(value, bool)
        elif self.type == STRING_LIST:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, dict)
        if not ok:
            return f"must be of type {self.type}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum}"
        return None


class Lifecycle(NamedTuple):
    """What a lifecycle event does to the entity it is about."""

    kind: str  # the entity's kind (ENTITY_KINDS), which is the event's subject_type
    action: str  # CREATE, CATALOGUED, or the state it sets (GONE ends the entity)


@dataclass(frozen=True)
class EventType:
    name: str
    group: str
    description: str
    subject_type: str
    caller: str
    subject: str
    target: str = ""
    payload: dict[str, PayloadKey] = field(default_factory=dict)
    example: dict[str, Any] = field(default_factory=dict)
    # Set for an event that changes whether an entity exists or its state.
    lifecycle: Lifecycle | None = None
    # SET_MEMBER or REMOVE_MEMBER for an org's or project's membership event.
    membership: str = ""

    @property
    def membership_of(self) -> str:
        """The kind of group whose members this event changes
        ("organization" or "project"), or "" if it changes none."""
        return self.subject_type if self.membership else ""

    def payload_problems(self, payload: dict[str, Any]) -> list[tuple[str, str]]:
        """(field, message) for each payload key that is missing or ill-typed."""
        problems = []
        for key, spec in self.payload.items():
            if key not in payload:
                if spec.required:
                    problems.append((f"payload.{key}", "is required for this event type"))
                continue
            message = spec.problem(payload[key])
            if message:
                problems.append((f"payload.{key}", message))
        return problems


CATALOG: dict[str, EventType] = {}


def register(event_type: EventType) -> EventType:
    assert event_type.name not in CATALOG, event_type.name
    CATALOG[event_type.name] = event_type
    return event_type


def get(name: str) -> EventType | None:
    return CATALOG.get(name)


# --- entity kinds --------------------------------------------------------------


@dataclass(frozen=True)
class EntityKind:
    """A kind of entity whose existence and state the lifecycle events
    track (audit/entity_fold.py folds them into `entities`).

    `initial` is the state a create gives an entity that does not exist;
    `seen` the state of one that is mentioned by a successful event before
    any lifecycle event of its own (it predates the log), or "" if a
    mention says nothing (realizations exist only through their events).
    """

    name: str
    initial: str
    seen: str
    states: tuple[str, ...]


GONE = "gone"
ENTITY_KINDS: dict[str, EntityKind] = {
    kind.name: kind
    for kind in (
        EntityKind("user", "pending", "active", ("pending", "active", "frozen")),
        EntityKind("organization", "pending", "active", ("pending", "active", "frozen")),
        EntityKind("project", "pending", "active", ("pending", "active", "frozen")),
        EntityKind("experiment", "exists", "exists", ("exists",)),
        EntityKind("realization", "active", "", ("active",)),
        EntityKind("materialization", "active", "", ("active",)),
    )
}
# What a lifecycle event does: "create" (the kind's initial state if the
# entity does not exist, else nothing), "catalogued" (the state its payload
# names: an inventory snapshot), or the state it sets (GONE ends it).
CREATE, CATALOGUED = "create", "catalogued"
# What a membership event does to the member: "set" (add or change the
# role) or "remove".
SET_MEMBER, REMOVE_MEMBER = "set", "remove"


# --- users, organizations and projects -------------------------------------------

_ADMIN = "the portal user or service that made the change (may be empty for automation)"
_CATALOGUED = (
    "A snapshot from the portal's inventory (manage.py import_inventory): the {kind} "
    "exists in the state named, as of the event's time. Recorded only when the "
    "inventory differs from what the events say."
)

# (verb, what it does, description); {a} is "a user", "an organization", ...
_LIFECYCLE_VERBS = [
    ("created", CREATE, "{A} was created; it starts pending."),
    ("activated", "active", "{A} was activated (approved, or unfrozen)."),
    ("frozen", "frozen", "{A} was frozen: it exists but cannot be used."),
    ("unfrozen", "active", "{A} was unfrozen: active again."),
    ("declined", GONE, "{A}'s pending request was declined."),
    ("deleted", GONE, "{A} was deleted."),
    ("catalogued", CATALOGUED, ""),
]

for kind, prefix, article, name_example, extra_payload in [
    (
        "user",
        "user",
        "a user",
        "alice",
        {
            "institution": PayloadKey(STRING, description="the user's institution"),
            "country": PayloadKey(STRING, description="ISO country name or code"),
        },
    ),
    ("organization", "org", "an organization", "isi", {}),
    ("project", "project", "a project", "botnets", {}),
]:
    for verb, action, text in _LIFECYCLE_VERBS:
        payload = dict(extra_payload)
        example_payload: dict[str, Any] = {}
        if kind != "user":
            payload["category"] = PayloadKey(
                STRING, required=verb == "created", description=f"{kind} category"
            )
            payload["description"] = PayloadKey(STRING, description=f"{kind} description")
            if verb in ("created", "catalogued"):
                example_payload = {"category": "Research", "description": "Botnet studies"}
        elif verb == "created":
            example_payload = {"institution": "USC/ISI"}
        if action == CATALOGUED:
            payload["state"] = PayloadKey(
                STRING,
                required=True,
                choices=ENTITY_KINDS[kind].states,
                description=f"the {kind}'s state in the inventory",
            )
            example_payload["state"] = "active"
        register(
            EventType(
                name=f"{prefix}_{verb}",
                group=f"{kind}s",
                description=(
                    _CATALOGUED.format(kind=kind)
                    if action == CATALOGUED
                    else text.replace("{A}", article[0].upper() + article[1:])
                ),
                subject_type=kind,
                caller=_ADMIN,
                subject=f"the {kind} name" if kind != "user" else "the username",
                payload=payload,
                example={
                    "event_type": f"{prefix}_{verb}",
                    "caller": "alice" if verb == "created" else "ops",
                    "subject": name_example,
                    "subject_type": kind,
                    "success": True,
                    "payload": example_payload,
                },
                lifecycle=Lifecycle(kind, action),
            )
        )

register(
    EventType(
        name="user_login",
        group="users",
        description="A login attempt; success says whether it succeeded.",
        subject_type="user",
        caller="the username that tried to log in (as typed)",
        subject="the username that tried to log in",
        payload={"method": PayloadKey(STRING, description="password, token, sso, ...")},
        example={
            "event_type": "user_login",
            "caller": "alice",
            "subject": "alice",
            "subject_type": "user",
            "success": False,
            "error_message": "invalid credentials",
            "payload": {"method": "password"},
        },
    )
)

# --- memberships -------------------------------------------------------------------

for kind, prefix in [("organization", "org"), ("project", "project")]:
    article = "an" if kind[0] in "aeiou" else "a"
    for verb, action, text in [
        ("added", SET_MEMBER, "A member was added"),
        ("updated", SET_MEMBER, "A member's role or state changed"),
        ("deleted", REMOVE_MEMBER, "A member was removed"),
        ("catalogued", SET_MEMBER, "A member is listed in the portal's inventory"),
    ]:
        member_kinds = ("usermember", "projectmember") if prefix == "org" else ("usermember",)
        register(
            EventType(
                name=f"{prefix}_member_{verb}",
                group=f"{kind}s",
                description=f"{text} to or from {article} {kind}."
                if verb != "catalogued"
                else f"{text} of {article} {kind} with this role (manage.py import_inventory).",
                subject_type=kind,
                caller="the user who made the change",
                subject=f"the {kind} name",
                target="the member: a username (usermember) or a project name (projectmember)",
                payload={
                    "kind": PayloadKey(STRING, required=True, choices=member_kinds),
                    "role": PayloadKey(
                        STRING,
                        required=verb != "deleted",
                        choices=MEMBER_ROLES,
                        description="the new role",
                    ),
                    "state": PayloadKey(STRING, choices=MEMBER_STATES),
                },
                example={
                    "event_type": f"{prefix}_member_{verb}",
                    "caller": "glawler",
                    "subject": "orgtest" if prefix == "org" else "botnets",
                    "subject_type": kind,
                    "target": "testuser",
                    "success": True,
                    "payload": {"kind": "usermember"}
                    if verb == "deleted"
                    else {"kind": "usermember", "role": "member", "state": "active"},
                },
                membership=action,
            )
        )

# --- experiments -------------------------------------------------------------

_EXPERIMENT_PAYLOAD = {"project": PayloadKey(STRING, required=True, description="owning project")}

for verb, action, text in [
    ("created", CREATE, "An experiment was created."),
    ("deleted", GONE, "An experiment was deleted."),
    (
        "catalogued",
        CATALOGUED,
        "A snapshot from the portal's inventory (manage.py import_inventory): the "
        "experiment exists, as of the event's time.",
    ),
]:
    register(
        EventType(
            name=f"experiment_{verb}",
            group="experiments",
            description=text,
            subject_type="experiment",
            caller=f"the user who {verb} it (empty in some portal versions)",
            subject="the experiment name (unique within its project)",
            payload={
                **_EXPERIMENT_PAYLOAD,
                "description": PayloadKey(STRING, description="experiment description"),
            },
            example={
                "event_type": f"experiment_{verb}",
                "caller": "glawler",
                "subject": "testexp",
                "subject_type": "experiment",
                "success": True,
                "payload": {"project": "glawler"},
            },
            lifecycle=Lifecycle("experiment", action),
        )
    )

register(
    EventType(
        name="experiment_pushed",
        group="experiments",
        description="A new model revision was pushed to an experiment.",
        subject_type="experiment",
        caller="the user who pushed",
        subject="the experiment name",
        payload={
            **_EXPERIMENT_PAYLOAD,
            "model_file": PayloadKey(STRING, required=True, description="the model file pushed"),
            "revision": PayloadKey(STRING, required=True, description="the new revision id"),
        },
        example={
            "event_type": "experiment_pushed",
            "caller": "glawler",
            "subject": "testexp",
            "subject_type": "experiment",
            "success": True,
            "payload": {"project": "glawler", "model_file": "model.py", "revision": "a1b2c3d"},
        },
    )
)

# --- realizations and materializations -----------------------------------------

for noun in ("realization", "materialization"):
    for verb, action, text in [
        ("allocated", CREATE, "resources were allocated"),
        ("freed", GONE, "resources were freed"),
    ]:
        register(
            EventType(
                name=f"{noun}_{verb}",
                group="resources",
                description=f"A {noun}'s {text} at one facility.",
                subject_type=noun,
                caller="the user who asked",
                subject=f"the {noun} name (realization.experiment.project)",
                target="the facility slug",
                payload={
                    **_EXPERIMENT_PAYLOAD,
                    "experiment": PayloadKey(STRING, required=True),
                    "facility": PayloadKey(STRING, required=True, description="facility slug"),
                    "revision": PayloadKey(STRING, description="model revision realized"),
                    "model_file": PayloadKey(STRING),
                    "resources": PayloadKey(
                        STRING_LIST, required=True, description="physical resources (hosts)"
                    ),
                    "nodes": PayloadKey(STRING_LIST, description="virtual nodes"),
                    "lans": PayloadKey(STRING_LIST, description="virtual LANs / links"),
                },
                example={
                    "event_type": f"{noun}_{verb}",
                    "caller": "glawler",
                    "subject": "rlz.testexp.glawler",
                    "subject_type": noun,
                    "target": "isi",
                    "success": True,
                    "payload": {
                        "project": "glawler",
                        "experiment": "testexp",
                        "facility": "isi",
                        "resources": ["n001", "n002"],
                        "nodes": ["a", "b"],
                        "lans": ["lan0"],
                    },
                },
                lifecycle=Lifecycle(noun, action),
            )
        )

# --- facilities ------------------------------------------------------------------

register(
    EventType(
        name="facility_status",
        group="facilities",
        description=(
            "A facility controller's periodic status report. It holds until the "
            "next report, but for at most payload.interval seconds "
            "(FACILITY_STALE_AFTER if that is longer or there is none): after that "
            "the facility is unknown, stopped reporting."
        ),
        subject_type="facility",
        caller="the reporting controller or operator",
        subject="the facility slug",
        payload={
            "status": PayloadKey(STRING, required=True, choices=FACILITY_STATES),
            "message": PayloadKey(STRING, description="why, for anything but up"),
            "interval": PayloadKey(
                INTEGER,
                minimum=1,
                maximum=FACILITY_MAX_INTERVAL,
                description=(
                    "seconds until the controller's next report, with some slack: "
                    f"1 to {FACILITY_MAX_INTERVAL} (7 days); the report holds that "
                    "long, or FACILITY_STALE_AFTER if longer"
                ),
            ),
        },
        example={
            "event_type": "facility_status",
            "caller": "isi-controller",
            "subject": "isi",
            "subject_type": "facility",
            "success": True,
            "payload": {
                "status": "maintenance",
                "message": "switch firmware upgrade",
                "interval": 900,
            },
        },
    )
)


# --- what the aggregates and queries derive from the catalog ------------------------


def types_where(test: Callable[[EventType], bool]) -> tuple[str, ...]:
    """The names of the catalogued types whose entry passes `test`, in catalog order
    (the order the index conditions of audit/models.py were made with)."""
    return tuple(name for name, spec in CATALOG.items() if test(spec))


def lifecycle_types(kind: str = "") -> tuple[str, ...]:
    """The lifecycle event types of one entity kind, or of every kind."""
    return types_where(lambda t: t.lifecycle is not None and (not kind or t.lifecycle.kind == kind))


def membership_types(group: str = "") -> tuple[str, ...]:
    """The membership event types of one group kind, or of both."""
    return types_where(lambda t: bool(t.membership_of) and (not group or t.membership_of == group))


LIFECYCLE_TYPES = lifecycle_types()
MEMBERSHIP_TYPES = membership_types()
MEMBER_REMOVALS = types_where(lambda t: t.membership == REMOVE_MEMBER)
# The events that take and give back a facility's resources (the event's
# target), and the gives among them: what is in use at each facility.
ALLOCATION_TYPES = (
    "realization_allocated",
    "realization_freed",
    "materialization_allocated",
    "materialization_freed",
)
ALLOCATION_FREES = ("realization_freed", "materialization_freed")

for _spec in CATALOG.values():
    # Lifecycle events are about their own entity: subject_type is its kind.
    assert not _spec.lifecycle or _spec.lifecycle.kind == _spec.subject_type, _spec.name
