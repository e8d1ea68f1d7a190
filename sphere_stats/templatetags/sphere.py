import json
from functools import cache

from django import template
from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from sphere_stats import db, windows

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """A payload or example as indented JSON (escaped by the template engine)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@cache
def _zone_options() -> SafeString:
    # ~600 <option>s, the same on every page: built once per process (a
    # template loop over them took ~10 ms of every render).
    return format_html_join("", '<option value="{}">', ((z,) for z in windows.zone_choices()))


@register.simple_tag
def window_choices() -> dict:
    """Periods, resolutions, refresh intervals and every zone (the common
    ones first) for templates/_window_controls.html and _zone_field.html."""
    return {
        "periods": windows.PERIOD_LABELS,
        "resolutions": windows.RESOLUTION_LABELS,
        "refresh": windows.REFRESH_CHOICES,
        "zones": windows.zone_choices(),
        "zone_options": _zone_options(),
        "common_zones": len(windows.COMMON_ZONES),
    }


@register.simple_tag(takes_context=True)
def live_status(context, window) -> dict:
    """The page's auto-refresh interval (`refresh` in the URL; a value not
    offered is refused, with its error) and when its figures were computed.

    "As of" is the time this page was rendered, in the window's zone: the
    stats it shows may have come from the cache, and so be up to
    STATS_CACHE_SECONDS older (the registry does not record when it
    computed a cached result). A page read from a read replica that is
    behind (sphere_stats.db.REPLICA_NOTE_SECONDS or more) is as of that much
    earlier, and says so: `replica_behind` is the lag in whole seconds."""
    request = context.get("request")
    raw = request.GET.get("refresh", "") if request is not None else ""
    refresh, error = raw, ""
    if raw not in windows.REFRESH_CHOICES:
        refresh = ""
        error = f"must be off, 60 or 300 seconds, not {raw[:20]!r}"
    zone = window.zone if window is not None else timezone.get_current_timezone()
    as_of, behind = timezone.now(), None
    note = db.replica_lag_note()
    if note is not None:
        as_of, behind = note[0], round(note[1])
    as_of = as_of.astimezone(zone)
    return {
        "refresh": refresh,
        "refresh_error": error,
        # Formatted here: the template's time filter would convert it back to
        # the server's zone.
        "as_of": as_of.strftime("%H:%M"),
        "as_of_iso": as_of.isoformat(),
        "zone": getattr(zone, "key", str(zone)),
        "cache_seconds": settings.STATS_CACHE_SECONDS,
        "replica_behind": behind,
    }
