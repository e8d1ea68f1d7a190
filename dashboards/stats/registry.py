"""The stats registry: one small class per stat, all of the same shape.

Each stat has a name, title, description, its own parameters (besides the
shared window: period, since, until, res, tz) and `compute(window, filters,
source)` returning columns and rows. The same definition feeds the chart on
a page (`figure`, which ChartOptions extends with the previous period's
overlay, facility bands and each point's explorer URL), `GET
/api/v1/stats/<name>` (JSON or CSV, its query schema generated from every
stat's `params`) and the CSV/JSON links under every chart.

The stats live in one module per family beside this one (dashboards/stats/),
each with the SQL it runs. Adding a stat means adding one class there, with
`@register`, and its test in tests/dashboards/test_stats.py.

`source="raw"` computes from the `events` table alone, bypassing every
pre-aggregate; the default uses them where they pay. Both give equal answers
(tests/dashboards/test_preaggregates.py).
"""

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from audit.buckets import fetch
from audit.export import neutralise
from sphere_stats.windows import Window

ENTITY_KINDS = ("user", "organization", "project", "experiment")
SOURCES = ("auto", "raw")


def first_event_time() -> datetime | None:
    """The oldest event's timestamp (idx_events_timestamp): where period=all begins."""
    return fetch("SELECT min(timestamp) FROM events")[0][0]


class StatError(ValueError):
    """A bad stat parameter; `field` names it for the 400 answer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# A text parameter's longest value (names are shorter), and a repeatable
# one's most values: anything past these is no question a page asks.
MAX_TEXT = 255
MAX_VALUES = 200


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    type: str = "string"  # string, integer, boolean, string[]
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    required: bool = False

    def parse(self, query) -> Any:
        if self.type == "string[]":
            values = [v for v in query.getlist(self.name) if v]
            if len(values) > MAX_VALUES:
                raise StatError(self.name, f"at most {MAX_VALUES} values")
            for value in values:
                if self.choices and value not in self.choices:
                    raise StatError(self.name, f"unknown value {value[:40]!r}")
                if len(value) > MAX_TEXT:
                    raise StatError(self.name, f"is longer than {MAX_TEXT} characters")
            return values
        raw = (query.get(self.name) or "").strip()
        if not raw:
            if self.required:
                raise StatError(self.name, "is required")
            return self.default
        if self.type == "integer":
            try:
                value = int(raw)
            except ValueError:
                raise StatError(self.name, "must be an integer") from None
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                raise StatError(self.name, f"must be between {self.minimum} and {self.maximum}")
            return value
        if self.type == "boolean":
            if raw.lower() in ("true", "1", "yes"):
                return True
            if raw.lower() in ("false", "0", "no"):
                return False
            raise StatError(self.name, "must be true or false")
        if self.choices and raw not in self.choices:
            raise StatError(self.name, f"must be one of {', '.join(self.choices)}")
        if len(raw) > MAX_TEXT:
            raise StatError(self.name, f"is longer than {MAX_TEXT} characters")
        return raw

    def describe(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "description": self.description,
            "default": self.default,
            "choices": list(self.choices),
            "required": self.required,
            "minimum": self.minimum,
            "maximum": self.maximum,
        }


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"  # string, integer, number, datetime
    # Entity kind the values name, so pages can link them.
    link: str = ""

    @property
    def numeric(self) -> bool:
        """Shown right-aligned, in tables and reports."""
        return self.type in ("integer", "number")


@dataclass
class Result:
    columns: list[Column]
    rows: list[list[Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def dicts(self) -> list[dict[str, Any]]:
        names = [c.name for c in self.columns]
        return [dict(zip(names, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class ChartOptions:
    """What a page adds to a stat's figure besides its result.

    `previous`: the same stat over the period just before, drawn dashed and
    aligned on this period's buckets. `explore`: each bar or point carries
    the explorer URL of exactly its bucket in `customdata`, which
    static/js/charts.js opens on a click (only for those who may open the
    explorer). `bands`: facility outages and maintenance (dashboards.bands).
    `filters`: the stat's parameters, which the explorer URLs keep.
    """

    previous: Result | None = None
    explore: bool = False
    bands: tuple = ()
    filters: dict[str, Any] = field(default_factory=dict)


NO_OPTIONS = ChartOptions()


def _cell(value: Any, window: Window) -> Any:
    if isinstance(value, datetime):
        return window.local(value).isoformat()
    return value


def serialize_rows(result: Result, window: Window) -> list[list[Any]]:
    """Rows with datetimes as ISO 8601 in the display zone."""
    return [[_cell(v, window) for v in row] for row in result.rows]


def to_csv(result: Result, window: Window) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c.name for c in result.columns])
    for row in serialize_rows(result, window):
        # Names come from events, so from anyone who can cause one: a text
        # cell a spreadsheet would run as a formula gets the export's quote.
        writer.writerow(
            ["" if v is None else neutralise(v) if isinstance(v, str) else v for v in row]
        )
    return out.getvalue()


N = Param("n", "how many rows (top-N)", "integer", 10, minimum=1, maximum=100)
# "How many logins failed and for whom" wants every user, not a top-N: 0
# lifts the cap (the download links on /top/ ask for it).
N_OR_ALL = Param(
    "n",
    "how many users, most failures first; 0 for every user",
    "integer",
    10,
    minimum=0,
    maximum=100,
)
ENTITY_PARAMS = (
    Param("kind", "entity kind", choices=ENTITY_KINDS, required=True),
    Param("name", "entity name", required=True),
    Param("project", "the experiment's project (experiments only)", default=""),
)


class Stat:
    name = ""
    title = ""
    description = ""
    chart = "table"  # line, bar, heatmap, table, cards
    params: tuple[Param, ...] = ()
    uses_preaggregates = False
    # A chart over time, per bucket: it takes the previous period's overlay
    # and the facility bands (ChartOptions).
    timeseries = False

    def compute(self, window: Window, filters: dict[str, Any], source: str = "auto") -> Result:
        raise NotImplementedError

    def result(self, window: Window, filters: dict[str, Any], source: str = "auto") -> Result:
        """compute(), kept in Django's cache for STATS_CACHE_SECONDS.

        Pages, the JSON and the CSV of a stat read it through here, so a
        dashboard that several people (or one auto-refreshing tab) look at
        costs one computation per window per TTL. `source=raw`, the check
        against the table, is never cached.
        """
        ttl = settings.STATS_CACHE_SECONDS
        if source != "auto" or ttl <= 0:
            return self.compute(window, filters, source)
        key = _cache_key(self.name, window, filters, ttl)
        found = cache.get(key)
        if found is None:
            found = self.compute(window, filters, source)
            cache.set(key, found, ttl)
        return found

    def figure(
        self, result: Result, window: Window, options: ChartOptions = NO_OPTIONS
    ) -> dict | None:
        """The Plotly figure (a dict) of a result, or None for a table."""
        return None

    def parse(self, query) -> dict[str, Any]:
        filters = {p.name: p.parse(query) for p in self.params}
        if filters.get("kind") == "experiment" and not filters.get("project"):
            raise StatError("project", "is required for an experiment")
        return filters

    def describe(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "chart": self.chart,
            "parameters": [p.describe() for p in self.params],
            "uses_preaggregates": self.uses_preaggregates,
        }


class TableStat(Stat):
    """A stat whose result is a query's rows under fixed columns (the top-N
    tables): declare `columns` and `rows`, and compute() pairs them."""

    columns: tuple[Column, ...] = ()

    def rows(self, window: Window, filters: dict[str, Any], source: str) -> Iterable[Sequence]:
        raise NotImplementedError

    def compute(self, window: Window, filters: dict[str, Any], source: str = "auto") -> Result:
        return Result(list(self.columns), [list(r) for r in self.rows(window, filters, source)])


def _cache_key(name: str, window: Window, filters: dict[str, Any], ttl: int) -> str:
    # A relative window ("last 30 days") moves with the clock: its key names
    # the period and a TTL-long time slot, so an answer is never older than
    # the TTL. A custom range is keyed by both its ends, always: two ranges
    # from one `since` to different `until`s have different buckets. One
    # that ends in the future or within the last TTL can still gain events,
    # so it takes the slot as well. (A range without `until` ends at its
    # request's clock, so it is in effect computed afresh every time.)
    now = timezone.now()
    slot = int(now.timestamp() // ttl)
    if window.period == "custom":
        span = [window.start.isoformat(), window.end.isoformat()]
        if window.end > now - timedelta(seconds=ttl):
            span.append(slot)
    else:
        span = [window.period, slot]
    parts = [name, *span, window.resolution, window.zone.key, sorted(filters.items())]
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
    return f"stat:{digest}"


STATS: dict[str, Stat] = {}


def register(cls: type[Stat]) -> type[Stat]:
    assert cls.name and cls.name not in STATS, cls.name
    STATS[cls.name] = cls()
    return cls


def get(name: str) -> Stat | None:
    return STATS.get(name)
