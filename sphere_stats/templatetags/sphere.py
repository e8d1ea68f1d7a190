import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """A payload or example as indented JSON (escaped by the template engine)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@register.simple_tag
def window_choices() -> dict:
    """Periods, resolutions and common zones for templates/_window_controls.html."""
    from sphere_stats import windows

    return {
        "periods": windows.PERIOD_LABELS,
        "resolutions": windows.RESOLUTION_LABELS,
        "zones": windows.COMMON_ZONES,
    }
