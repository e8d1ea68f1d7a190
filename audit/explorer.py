"""The events explorer (/events/), an event's page and the page exports.

Filters live in the query string (audit.filters.EventFilter, with the stats
pages' window), pages are keyset pages on (timestamp, event_uuid), and the
count shown is exact from the hourly pre-aggregate or the planner's estimate,
never a COUNT(*) over the range. A result's first page decides how its count
reads; its paging links carry that (`total`), so every page of one result
says the same.
"""

import difflib
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.html import format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator
from django.views.decorators.http import require_GET

from audit import catalog
from audit.export import FORMATS, Export, ExportError, parse_fields
from audit.filters import (
    MAX_PAYLOAD_PAIRS,
    EventFilter,
    FilterError,
    decode_cursor,
    encode_cursor,
)
from audit.models import Event, EventQuerySet
from sphere_stats.roles import Role, role_required

PAGE_SIZE = 50
PAGING_PARAMS = ("before", "after", "total")
# How a count reads: "12 events (exact)", "at least 51 events", "about 9,000
# events (planner estimate)"; `total=<kind>:<n>` in a paging link.
COUNT_KINDS = ("exact", "at_least", "estimate")
# The results table shows these; the payload (often the largest column) is
# only on an event's own page, so a page of results never fetches or parses it.
ROW_COLUMNS = tuple(c for c in Event.COLUMNS if c != "payload")
SUBJECT_TYPES = sorted({spec.subject_type for spec in catalog.CATALOG.values()})
WINDOW_PARAMS = ("period", "since", "until", "res", "tz")


@dataclass
class KeysetPage:
    events: list  # rows with at least timestamp and event_uuid, newest first
    older: str | None  # cursor for the next older page
    newer: str | None  # cursor for the next newer page


def keyset_page(
    qs: EventQuerySet,
    *,
    before: tuple[datetime, uuid.UUID] | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    size: int = PAGE_SIZE,
) -> KeysetPage:
    """One page of `qs`, newest first, from a cursor: no OFFSET, no COUNT.

    `before` gives the page just older than a row, `after` the page just
    newer (read oldest-first on the same index, then reversed).
    """
    if after is not None:
        rows = list(qs.after(*after).oldest_first()[: size + 1])
        has_newer = len(rows) > size
        rows = rows[:size][::-1]
        if not rows:
            return keyset_page(qs, size=size)
        has_older = qs.before(rows[-1].timestamp, rows[-1].event_uuid).exists()
    else:
        page = qs.newest_first()
        if before is not None:
            page = page.before(*before)
        rows = list(page[: size + 1])
        has_older = len(rows) > size
        rows = rows[:size]
        has_newer = bool(
            before is not None and rows and qs.after(rows[0].timestamp, rows[0].event_uuid).exists()
        )
    return KeysetPage(
        events=rows,
        older=encode_cursor(rows[-1].timestamp, rows[-1].event_uuid) if has_older else None,
        newer=encode_cursor(rows[0].timestamp, rows[0].event_uuid) if has_newer else None,
    )


ROW_HTML = (
    '<tr><td class="nowrap"><a href="{}">{}</a></td><td><code>{}</code></td>'
    '<td>{}</td><td><span class="muted">{}</span> {}</td><td>{}</td><td>{}</td>'
    '<td class="explorer-error">{}</td></tr>'
)
OUTCOME_HTML = {
    True: mark_safe('<span class="badge ok">ok</span>'),
    False: mark_safe('<span class="badge bad">failed</span>'),
}


def result_rows(rows, zone) -> SafeString:
    """The results table's rows, escaped, times in the display zone.

    Built here, not with template tags and filters: fifty rows of those
    (zone conversion, date format, truncation, a dozen lookups each) took
    most of the page's server time, and this takes a millisecond.
    """
    # One reverse() for the page, not one per row: the uuid is the path's end.
    sample = uuid.UUID(int=0)
    event_url = reverse("event", args=[sample]).replace(str(sample), "{}")
    return format_html_join(
        "",
        ROW_HTML,
        (
            (
                event_url.format(row.event_uuid),
                row.timestamp.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
                row.event_type,
                row.caller or "—",
                row.subject_type,
                row.subject,
                row.target or "",
                OUTCOME_HTML[row.success],
                Truncator(row.error_message or "").chars(80),
            )
            for row in rows
        ),
    )


def _url(name: str, *args: str) -> str | None:
    """The page's URL, or None for a name no page can have (a '/' in it, or
    a facility that is not a slug)."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def _experiment_path(name: str, payload: dict) -> str | None:
    project = payload.get("project")
    return _url("experiment", project, name) if isinstance(project, str) and project else None


def _realization_path(name: str, payload: dict) -> str | None:
    project, experiment = payload.get("project"), payload.get("experiment")
    if isinstance(project, str) and isinstance(experiment, str) and project and experiment:
        return _url("experiment", project, experiment)
    return None


# The entity page of a caller, subject or target of each kind (dashboards'
# and facilities' URL names; audit reverses them and imports neither app).
ENTITY_PATHS = {
    "user": lambda name, payload: _url("user", name),
    "organization": lambda name, payload: _url("org", name),
    "project": lambda name, payload: _url("project", name),
    "facility": lambda name, payload: _url("facilities:detail", name),
    "experiment": _experiment_path,
    "realization": _realization_path,
    "materialization": _realization_path,
}


def entity_links(event: Event) -> dict[str, str | None]:
    """Pages of the event's caller, subject and target, where such pages exist."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    subject_path = ENTITY_PATHS.get(event.subject_type)
    target = None
    if event.target:
        group = spec.membership_of if (spec := catalog.get(event.event_type)) else ""
        if group == "organization":
            kind = "project" if payload.get("kind") == "projectmember" else "user"
            target = ENTITY_PATHS[kind](event.target, payload)
        elif group == "project":
            target = ENTITY_PATHS["user"](event.target, payload)
        elif event.subject_type in ("realization", "materialization"):
            target = ENTITY_PATHS["facility"](event.target, payload)
    return {
        "caller": ENTITY_PATHS["user"](event.caller, payload) if event.caller else None,
        "subject": subject_path(event.subject, payload) if subject_path else None,
        "target": target,
    }


def _filter_query(query: QueryDict) -> QueryDict:
    """The query string without paging and without empty fields (a plain GET
    sends every box): what a shared link or an export keeps."""
    kept = QueryDict(mutable=True)
    for name, values in query.lists():
        if name not in (*PAGING_PARAMS, "format", "gzip", "fields"):
            kept.setlist(name, [v for v in values if v.strip()])
    return kept


def _bad_request(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "400.html", {"message": message}, status=400)


def _count(event_filter: EventFilter, page: KeysetPage, first: bool) -> tuple[int, str]:
    """(count, kind) of a result, from the page on screen (`first`: its
    first page, which a paging link without `total` is not)."""
    count, exact = event_filter.count()
    if exact:
        return count, "exact"
    if first and page.older is None:
        # The whole result is on this one page: its length is the count.
        return len(page.events), "exact"
    if count <= len(page.events):
        # The estimate is below what is on screen: say what is known.
        return len(page.events) + 1, "at_least"
    return count, "estimate"


def _carried_count(raw: str) -> tuple[int, str] | None:
    """The (count, kind) a paging link carries, or None when it carries none
    (or something this server did not write)."""
    kind, _, digits = raw.partition(":")
    if kind in COUNT_KINDS and digits.isdigit() and len(digits) <= 18:
        return int(digits), kind
    return None


def unknown_types(event_types: list[str]) -> list[dict[str, str]]:
    """The event types not in the catalog, each with the closest catalogued
    name, if any: a typo finds nothing, and the page says so."""
    unknown = []
    for name in event_types:
        if name in catalog.CATALOG:
            continue
        close = difflib.get_close_matches(name.lower(), list(catalog.CATALOG), n=1, cutoff=0.6)
        unknown.append({"name": name, "suggestion": close[0] if close else ""})
    return unknown


def _replaced_type(query: QueryDict, old: str, new: str) -> str:
    """The filter query with event type `old` replaced by `new` (a "did you
    mean" link)."""
    fixed = query.copy()
    fixed.setlist("event_type", [new if t == old else t for t in query.getlist("event_type")])
    return fixed.urlencode()


@require_GET
@role_required(Role.ANALYST)
def explorer_page(request: HttpRequest) -> HttpResponse:
    query = _filter_query(request.GET)
    error: FilterError | None = None
    try:
        event_filter = EventFilter.from_query(request.GET, windowed=True, forgiving=True)
        page, count, count_kind = _results(request.GET, event_filter)
    except FilterError as exc:
        error = exc
        event_filter = _window_filter(request.GET)
        page, count, count_kind = KeysetPage([], None, None), 0, "exact"
    query_string = query.urlencode()
    paging = f"?{query_string}&total={count_kind}:{count}"
    context = {
        "filter": event_filter,
        "query": query,
        "query_string": query_string,
        "page": page,
        "rows": result_rows(page.events, event_filter.zone),
        "count": count,
        "count_exact": count_kind == "exact",
        "count_at_least": count_kind == "at_least",
        "unknown_types": _unknown_types_fixed(query, event_filter.event_types),
        "error": error,
        "older_url": f"{paging}&{urlencode({'before': page.older})}" if page.older else None,
        "newer_url": f"{paging}&{urlencode({'after': page.newer})}" if page.newer else None,
        "catalog_groups": _catalog_groups(),
        "subject_types": SUBJECT_TYPES,
        **_payload_boxes(request),
        "formats": list(FORMATS),
    }
    template = "audit/_explorer_results.html" if request.htmx else "audit/explorer.html"
    response = render(request, template, context, status=400 if error else 200)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _results(query: QueryDict, event_filter: EventFilter) -> tuple[KeysetPage, int, str]:
    """The page of results the paging cursors ask for, with its (count,
    kind): carried by a paging link, else counted; FilterError for a
    cursor this server did not write."""
    before = decode_cursor(query["before"], "before") if "before" in query else None
    after = decode_cursor(query["after"], "after") if "after" in query else None
    rows = event_filter.apply(Event.objects.all()).values_list(*ROW_COLUMNS, named=True)
    page = keyset_page(rows, before=before, after=after)
    carried = _carried_count(query.get("total", "")) if before or after else None
    if carried is not None:
        return page, *carried
    return page, *_count(event_filter, page, first=not (before or after))


def _window_filter(query: QueryDict) -> EventFilter:
    """The filter of the query's window alone, for a page whose other
    filters were refused: the window still shows what was asked, so only
    the refused filter needs fixing."""
    try:
        return EventFilter.from_query(
            QueryDict(urlencode({k: query.get(k, "") for k in WINDOW_PARAMS})),
            windowed=True,
            forgiving=True,
        )
    except FilterError:
        return EventFilter()


def _unknown_types_fixed(query: QueryDict, event_types: list[str]) -> list[dict[str, str]]:
    """unknown_types, each suggestion with the filter query that takes it."""
    unknown = unknown_types(event_types)
    for item in unknown:
        if item["suggestion"]:
            item["fixed_query"] = _replaced_type(query, item["name"], item["suggestion"])
    return unknown


def _payload_boxes(request: HttpRequest) -> dict[str, object]:
    """One box per pair sent, then an empty one for the next (while there is room)."""
    pairs = [p for p in request.GET.getlist("payload") if p.strip()]
    payload_room = len(pairs) < MAX_PAYLOAD_PAIRS
    return {
        "payload_pairs": [*pairs, ""] if payload_room else pairs,
        "payload_room": payload_room,
        "payload_max": MAX_PAYLOAD_PAIRS,
        # htmx swaps only the results: the payload boxes come along out of
        # band, so the box just filled gets an empty one after it.
        "payload_oob": bool(request.htmx),
    }


def _catalog_groups() -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for name, spec in catalog.CATALOG.items():
        groups.setdefault(spec.group, []).append(name)
    return list(groups.items())


@require_GET
@role_required(Role.ANALYST)
def event_page(request: HttpRequest, event_uuid: uuid.UUID) -> HttpResponse:
    event = Event.objects.filter(event_uuid=event_uuid).first()
    if event is None:
        raise Http404(f"No event {event_uuid}.")
    spec = catalog.get(event.event_type)
    links = entity_links(event)
    explorer = reverse("explorer") + "?"
    context = {
        "event": event,
        "spec": spec,
        "links": links,
        "related": {
            "subject": explorer
            + urlencode(
                {"period": "all", "subject_type": event.subject_type, "subject": event.subject}
            ),
            "caller": explorer + urlencode({"period": "all", "caller": event.caller})
            if event.caller
            else None,
            "type": explorer + urlencode({"period": "all", "event_type": event.event_type}),
        },
    }
    return render(request, "audit/explorer_event.html", context)


@require_GET
@role_required(Role.ANALYST)
def export_download(request: HttpRequest) -> HttpResponse:
    """The explorer's download buttons: exactly the filters on screen, no row cap."""
    try:
        event_filter = EventFilter.from_query(request.GET, windowed=True)
        export = Export(
            event_filter.apply(Event.objects.all()),
            format=request.GET.get("format", "csv"),
            zone=event_filter.zone,
            fields=parse_fields(request.GET.getlist("fields")),
            gzip=request.GET.get("gzip", "") in ("1", "true", "yes"),
        )
        export.check()
    except (FilterError, ExportError) as exc:
        return _bad_request(request, str(exc))
    return export.response(event_filter.file_stem(now=timezone.now()))
