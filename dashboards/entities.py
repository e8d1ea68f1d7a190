"""Entity kinds, their page URLs and the navigation search."""

from django.urls import reverse

from audit.models import Entity

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
