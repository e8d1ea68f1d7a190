import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """A payload or example as indented JSON (escaped by the template engine)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
