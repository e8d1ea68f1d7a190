"""Entity kinds, their page URLs, the events that began and ended one, and
the navigation search."""

from django.db.models import Q
from django.urls import reverse

from audit import catalog
from audit.catalog import GONE
from audit.models import Entity, Event

KINDS = {
    "user": {"label": "User", "url": "user"},
    "organization": {"label": "Organization", "url": "org"},
    "project": {"label": "Project", "url": "project"},
    "experiment": {"label": "Experiment", "url": "experiment"},
}
SEARCH_KINDS = tuple(KINDS)
SUGGESTIONS = 10


def entity_url(kind: str, name: str, project: str = "") -> str:
    """The page of one user, org, project or experiment."""
    if kind == "experiment":
        return reverse("experiment", kwargs={"project": project, "name": name})
    if kind == "facility":
        return reverse("facilities:detail", kwargs={"slug": name})
    return reverse(KINDS[kind]["url"], kwargs={"name": name})


# The lifecycle event types that end an entity of each kind (declined, deleted).
ENDINGS = {
    kind: catalog.types_where(lambda t, kind=kind: t.lifecycle == (kind, GONE)) for kind in KINDS
}


def first_event(entity: Entity) -> Event | None:
    """The successful event `entity` was first seen in (at its first_seen,
    idx_events_timestamp): for one that predates the log, the event that
    tells it existed."""
    return (
        Event.objects.filter(timestamp=entity.first_seen, success=True)
        .mentioning(entity.kind, entity.scope, entity.name)
        .order_by("event_uuid")
        .first()
    )


def ending_event(entity: Entity) -> Event | None:
    """The declined or deleted event that ended `entity` (at its until), or None."""
    if entity.until is None or not ENDINGS.get(entity.kind):
        return None
    return (
        Event.objects.filter(
            timestamp=entity.until,
            success=True,
            subject_type=entity.kind,
            subject=entity.name,
            event_type__in=ENDINGS[entity.kind],
        )
        .filter(Q(payload__project=entity.scope) if entity.kind == "experiment" else Q())
        .order_by("-event_uuid")
        .first()
    )


def _match(entity: Entity) -> dict:
    label = f"{entity.scope}/{entity.name}" if entity.kind == "experiment" else entity.name
    return {
        "kind": entity.kind,
        "label": label,
        "kind_label": KINDS[entity.kind]["label"],
        "gone": entity.state == Entity.GONE,
        "url": entity_url(entity.kind, entity.name, entity.scope),
    }


def _candidates(text: str):
    # "project/experiment" names an experiment; anything else is a name prefix.
    qs = Entity.objects.filter(kind__in=SEARCH_KINDS)
    if "/" in text:
        project, _, name = text.partition("/")
        return qs.filter(kind="experiment", scope=project).matching(name)
    return qs.matching(text)


def suggestions(text: str) -> list[dict]:
    """Up to ten entities whose name starts with `text`, existing ones first."""
    found = _candidates(text).order_by("lower_name", "kind", "scope")[:50]
    matches = sorted((_match(e) for e in found), key=lambda m: (m["gone"], len(m["label"])))
    return matches[:SUGGESTIONS]


def find(text: str) -> tuple[list[dict], list[dict]]:
    """(exact matches, prefix matches) for the search page."""
    exact = []
    if "/" in text:
        project, _, name = text.partition("/")
        qs = Entity.objects.filter(kind="experiment", scope=project, name=name)
    else:
        qs = Entity.objects.filter(kind__in=("user", "organization", "project"), name=text)
    exact = [_match(e) for e in qs]
    partial = [_match(e) for e in _candidates(text).order_by("lower_name", "kind")[:50]]
    return exact, partial
