"""The event catalog: a static schema for every event type the portal sends.

One registry, one entry per type, each of the same shape: what the caller,
subject and target mean, the payload keys with their types, one example.
A known type is validated against its entry; an unknown type is stored as is
and counted as uncatalogued (the portal evolves and nothing may be dropped).
"""

from dataclasses import dataclass, field
from typing import Any

# Payload value types, as JSON sees them.
STRING, INTEGER, BOOLEAN, STRING_LIST, OBJECT = "string", "integer", "boolean", "string[]", "object"

FACILITY_STATES = ("up", "degraded", "down", "maintenance")
MEMBER_ROLES = ("creator", "maintainer", "member")
MEMBER_STATES = ("pending", "active")


@dataclass(frozen=True)
class PayloadKey:
    type: str
    required: bool = False
    description: str = ""
    choices: tuple[str, ...] = ()

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
        return None


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


def names_in_group(group: str) -> list[str]:
    return [t.name for t in CATALOG.values() if t.group == group]


# --- users -----------------------------------------------------------------

_ADMIN = "the portal user or service that made the change (may be empty for automation)"

for verb, text in [
    ("created", "A user account was created (registration); it starts pending."),
    ("activated", "A pending or frozen user was activated."),
    ("frozen", "A user was frozen: the account exists but cannot log in."),
    ("declined", "A pending registration was declined."),
    ("deleted", "A user account was deleted."),
]:
    register(
        EventType(
            name=f"user_{verb}",
            group="users",
            description=text,
            subject_type="user",
            caller=_ADMIN,
            subject="the username",
            payload={
                "institution": PayloadKey(STRING, description="the user's institution"),
                "country": PayloadKey(STRING, description="ISO country name or code"),
            },
            example={
                "event_type": f"user_{verb}",
                "caller": "ops" if verb != "created" else "alice",
                "subject": "alice",
                "subject_type": "user",
                "success": True,
                "payload": {"institution": "USC/ISI"} if verb == "created" else {},
            },
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

# --- organizations and projects --------------------------------------------

for kind, subject_type, prefix in [
    ("organization", "organization", "org"),
    ("project", "project", "project"),
]:
    for verb in ("created", "deleted"):
        register(
            EventType(
                name=f"{prefix}_{verb}",
                group=f"{subject_type}s",
                description=f"An {kind} was {verb}."
                if kind[0] in "ao"
                else f"A {kind} was {verb}.",
                subject_type=subject_type,
                caller=f"the user who {verb} the {kind}",
                subject=f"the {kind} name",
                payload={
                    "category": PayloadKey(
                        STRING, required=verb == "created", description=f"{kind} category"
                    ),
                    "description": PayloadKey(STRING, description=f"{kind} description"),
                },
                example={
                    "event_type": f"{prefix}_{verb}",
                    "caller": "alice",
                    "subject": "isi" if prefix == "org" else "botnets",
                    "subject_type": subject_type,
                    "success": True,
                    "payload": {"category": "Research", "description": "Botnet studies"}
                    if verb == "created"
                    else {},
                },
            )
        )
    for verb, text in [
        ("added", "A member was added"),
        ("updated", "A member's role or state changed"),
        ("deleted", "A member was removed"),
    ]:
        member_kinds = ("usermember", "projectmember") if prefix == "org" else ("usermember",)
        register(
            EventType(
                name=f"{prefix}_member_{verb}",
                group=f"{subject_type}s",
                description=f"{text} to or from an {kind}."
                if kind[0] in "ao"
                else f"{text} to or from a {kind}.",
                subject_type=subject_type,
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
                    "subject_type": subject_type,
                    "target": "testuser",
                    "success": True,
                    "payload": {"kind": "usermember"}
                    if verb == "deleted"
                    else {"kind": "usermember", "role": "member", "state": "active"},
                },
            )
        )

# --- experiments -------------------------------------------------------------

_EXPERIMENT_PAYLOAD = {"project": PayloadKey(STRING, required=True, description="owning project")}

for verb, text in [
    ("created", "An experiment was created."),
    ("deleted", "An experiment was deleted."),
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
    for verb, text in [
        ("allocated", "resources were allocated"),
        ("freed", "resources were freed"),
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
            )
        )

# --- facilities ------------------------------------------------------------------

register(
    EventType(
        name="facility_status",
        group="facilities",
        description="A facility controller's periodic status report.",
        subject_type="facility",
        caller="the reporting controller or operator",
        subject="the facility slug",
        payload={
            "status": PayloadKey(STRING, required=True, choices=FACILITY_STATES),
            "message": PayloadKey(STRING, description="why, for anything but up"),
        },
        example={
            "event_type": "facility_status",
            "caller": "isi-controller",
            "subject": "isi",
            "subject_type": "facility",
            "success": True,
            "payload": {"status": "maintenance", "message": "switch firmware upgrade"},
        },
    )
)
