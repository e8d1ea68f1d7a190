from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import ngettext
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from facilities import maps
from facilities.models import Facility
from facilities.summary import (
    POLL_SECONDS,
    SortError,
    facility_detail,
    facility_rows,
    legend,
    stale_after,
)
from sphere_stats.roles import Role, has_role, role_required
from sphere_stats.windows import WindowError, parse_zone


def _public() -> bool:
    return settings.FACILITIES_PUBLIC


facilities_role = role_required(Role.VIEWER, public=_public)


# The panel lists this many active materializations, newest first.
PANEL_MATERIALIZATIONS = 20


class BadParameter(ValueError):
    pass


def _zone(request: HttpRequest) -> ZoneInfo:
    try:
        return parse_zone(request.GET.get("tz") or "UTC")
    except WindowError as exc:
        raise BadParameter(f"tz: {exc.message}") from None


def _forgiving_zone(request: HttpRequest) -> tuple[ZoneInfo, str]:
    """The display zone, or UTC and why the asked one was refused: the page
    shows the error beside the field and keeps the rest of the view."""
    try:
        return _zone(request), ""
    except BadParameter as exc:
        return ZoneInfo("UTC"), str(exc).removeprefix("tz: ")


def _sort(request: HttpRequest) -> str:
    return request.GET.get("sort") or "name"


def _bad_request(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "facilities/bad_request.html", {"message": message}, status=400)


def _query(**params: str) -> str:
    """A query string of the non-default display parameters."""
    defaults = {"tz": "UTC", "sort": "name"}
    kept = {k: v for k, v in params.items() if v and v != defaults.get(k)}
    return f"?{urlencode(kept)}" if kept else ""


def _duration(seconds: int) -> str:
    """'15 minutes', '1 minute', '30 seconds', '1 minute 30 seconds'."""
    minutes, seconds = divmod(seconds, 60)
    parts = [ngettext("%d minute", "%d minutes", minutes) % minutes] if minutes else []
    if seconds or not minutes:
        parts.append(ngettext("%d second", "%d seconds", seconds) % seconds)
    return " ".join(parts)


def _selected(request: HttpRequest) -> str | None:
    """The facility whose panel the browser shows: an htmx request (the
    table's refresh or a sort click) names the page it was made from."""
    try:
        match = resolve(urlsplit(request.htmx.current_url_abs_path or "").path)
    except Resolver404:
        return None
    return match.kwargs.get("slug") if match.view_name == "facilities:detail" else None


def _page_url(selected: str | None) -> str:
    if selected:
        return reverse("facilities:detail", args=[selected])
    return reverse("facilities:index")


def _panel_context(request: HttpRequest, facility: Facility, zone: ZoneInfo) -> dict:
    detail = facility_detail(
        facility, timezone.now(), zone, materializations=PANEL_MATERIALIZATIONS
    )
    return {
        "detail": detail,
        "facility": facility,
        "status": detail.row.status,
        "counts": detail.row.usage,
        "materializations": detail.usage.materializations,
        "more_materializations": detail.row.usage.materializations
        - len(detail.usage.materializations),
        # The panel's links keep the table's sort, so a reload after closing
        # the panel still has it.
        "panel_query": _query(tz=zone.key, sort=_sort(request)),
    }


SORT_COLUMNS = [
    ("name", "Facility", False),
    ("kind", "Kind", False),
    ("status", "Status", False),
    ("since", "Since", False),
    ("in_use", "Nodes in use", True),
    ("capacity", "Capacity", True),
    ("materializations", "Materializations", True),
]


def _sort_columns(zone: ZoneInfo, sort: str, selected: str | None) -> list[dict]:
    """Header links: a click sorts by that column, a second click reverses.
    Each link's page URL (href, and the URL htmx pushes) keeps the open
    panel, so a reload shows the same facility in the same order."""
    columns = []
    for key, label, numeric in SORT_COLUMNS:
        current = sort.removeprefix("-") == key
        descending = sort.startswith("-")
        target = f"-{key}" if current and not descending else key
        query = _query(tz=zone.key, sort=target)
        columns.append(
            {
                "label": label,
                "numeric": numeric,
                "query": query,
                "href": _page_url(selected) + query,
                "hx": reverse("facilities:status") + query,
                "arrow": (" ▼" if descending else " ▲") if current else "",
                "aria": ("descending" if descending else "ascending") if current else "",
            }
        )
    return columns


def _table_context(request: HttpRequest, zone: ZoneInfo, sort: str, selected: str | None) -> dict:
    rows = facility_rows(timezone.now(), sort)
    statuses = {row.slug: {"status": row.status.status, "label": row.status.label} for row in rows}
    return {
        "rows": rows,
        "legend": legend(rows),
        "statuses": statuses,
        "sort": sort,
        "sort_columns": _sort_columns(zone, sort, selected),
        "status_query": _query(tz=zone.key, sort=sort),
        # A facility picked from the table keeps the sort in the pushed URL.
        "panel_query": _query(tz=zone.key, sort=sort),
    }


def _common(request: HttpRequest, zone: ZoneInfo) -> dict:
    return {
        # Visitors of the public map below the viewer role (anonymous or
        # signed in without it) see no usernames and no error messages.
        "public_view": not has_role(request.user, Role.VIEWER),
        "tz": zone.key,
        "as_of": timezone.now(),
        "stale_after": _duration(settings.FACILITY_STALE_AFTER),
        "poll_seconds": POLL_SECONDS,
    }


@require_GET
@facilities_role
def index(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    """The map page; /facilities/<slug>/ opens with that facility's panel.
    An htmx request gets only the panel (empty for /facilities/). On the
    page, a bad zone or sort shows its error and falls back to its default
    alone."""
    if request.htmx:
        try:
            zone, zone_error = _zone(request), ""
        except BadParameter as exc:
            return _bad_request(request, str(exc))
    else:
        zone, zone_error = _forgiving_zone(request)
    facility = get_object_or_404(Facility, slug=slug) if slug else None
    context = _common(request, zone)
    if facility:
        context.update(_panel_context(request, facility, zone))
    if request.htmx:
        response = render(request, "facilities/_panel.html", context)
    else:
        try:
            context.update(_table_context(request, zone, _sort(request), slug))
        except SortError as exc:
            context.update(_table_context(request, zone, "name", slug))
            context["sort_error"] = str(exc)
        context["zone_error"] = zone_error
        map_query = _query(selected=slug or "")
        context["map_url"] = reverse("facilities:map") + map_query
        response = render(request, "facilities/index.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_GET
@facilities_role
def status(request: HttpRequest) -> HttpResponse:
    """The legend and table, polled every minute by the map page; the statuses
    ride along as JSON for recolouring the markers."""
    try:
        zone = _zone(request)
    except BadParameter as exc:
        return _bad_request(request, str(exc))
    if not request.htmx:
        return redirect(reverse("facilities:index") + _query(**request.GET.dict()))
    try:
        context = {
            **_common(request, zone),
            **_table_context(request, zone, _sort(request), _selected(request)),
        }
    except SortError as exc:
        return _bad_request(request, str(exc))
    response = render(request, "facilities/_status.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_GET
@facilities_role
@xframe_options_sameorigin
def map_document(request: HttpRequest) -> HttpResponse:
    """The folium map as its own document, framed by the map page."""
    facilities = list(Facility.objects.for_map())
    statuses = Facility.objects.for_map().current_statuses(timezone.now(), stale_after())
    selected = request.GET.get("selected") or None
    fmap = maps.facility_map(facilities, statuses, selected)
    return HttpResponse(maps.render_map(fmap))
