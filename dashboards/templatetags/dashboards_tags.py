from datetime import datetime
from typing import Any

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from dashboards.entities import entity_url
from dashboards.stats import Column
from sphere_stats.windows import RESOLUTION_LABELS, Window

register = template.Library()


@register.filter
def signed(value: Any) -> str:
    """+5, −3 or ±0; an empty string for None."""
    if value is None:
        return ""
    if value > 0:
        return f"+{value:,}" if isinstance(value, int) else f"+{value}"
    if value < 0:
        return f"−{-value:,}" if isinstance(value, int) else f"−{-value}"
    return "±0"


@register.filter
def number(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return "" if value is None else str(value)


@register.filter
def header(name: str) -> str:
    """A column name as a table header: failure_rate_percent -> Failure rate %."""
    return name.replace("_percent", " %").replace("_", " ").capitalize()


@register.simple_tag
def entity_href(kind: str, name: str, project: str = "") -> str:
    return entity_url(kind, name, project)


@register.simple_tag
def local_time(moment: datetime | None, window: Window | None) -> str:
    if moment is None:
        return ""
    if window is not None:
        moment = window.local(moment)
    return f"{moment:%Y-%m-%d %H:%M:%S %Z}"


def _cell(value: Any, column: Column, window: Window) -> str:
    """One table cell: entity names link to their page, times show in the zone."""
    if column.type == "datetime" and isinstance(value, datetime):
        return format_html("{}", f"{window.local(value):%Y-%m-%d %H:%M}")
    if column.link and value:
        try:
            url = entity_url(column.link, value)
        except Exception:
            return format_html("{}", value)
        return format_html('<a href="{}">{}</a>', url, value)
    return format_html("{}", number(value))


NUMERIC = mark_safe(' class="num"')


def _row(row: list[Any], columns: list[Column], window: Window) -> str:
    """One body row's cells; numbers right-aligned."""
    return format_html_join(
        "",
        "<td{}>{}</td>",
        (
            (NUMERIC if column.numeric else "", _cell(value, column, window))
            for value, column in zip(row, columns, strict=True)
        ),
    )


@register.simple_tag
def stat_rows(rows: list[list[Any]], columns: list[Column], window: Window) -> str:
    """A table's body rows. One tag for the whole body: the template's loops
    and tags cost some 30 us a cell, and a top-N page shows 240 of them. The
    rows are paired with their columns here, for the tables a page shows
    only: a chart's rows (a year of days by type) are never cells."""
    return format_html_join("", "<tr>{}</tr>", ((_row(row, columns, window),) for row in rows))


@register.simple_tag
def resolution_label(window: Window) -> str:
    return RESOLUTION_LABELS[window.resolution]
