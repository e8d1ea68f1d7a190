"""The periodic report: what the overview shows for one window and zone,
as a mail.

`build_report(period, zone, now)` computes, for the window the overview
shows at `now` with `?period=<period>&tz=<zone>` ([now - period, now)):

- the period's figures (logins, users who logged in, events, failure rate)
  beside the previous period of the same length, and the entities existing
  at its end with their change over it (the overview's cards);
- events and logins per bucket of the overview's charts (days for 7d, cut at
  midnight in the zone);
- the top-N tables of /top/;
- each facility's uptime over the window, its days cut in the zone.

Every number comes from the same stat code the page runs
(dashboards/stats/), and the uptime from the rule of the facility panel
(facilities/status.py), so the report and the page cannot disagree.
`render_email(report)` makes the mail: plain text, an HTML alternative with
inline styles only (no images, no links: there is no setting naming the
portal's address), and the CSV of every section attached (docs/reports.md).
"""

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from audit.export import neutralise
from dashboards.stats import STATS, Result
from dashboards.templatetags.dashboards_tags import header, number, signed
from dashboards.views import PERCENT_METRICS, SUMMARY_LABELS, TOP_STATS, entity_cards
from facilities import status as facility_status
from facilities.models import Facility
from facilities.summary import stale_after
from sphere_stats.windows import PERIOD_LABELS, PERIODS, Window, WindowError

# Every relative period but "all", which has no previous period to compare.
REPORT_PERIODS = tuple(p for p in PERIODS if p != "all")
TOP_N = 10


class ReportError(ValueError):
    """A period or zone no report can be made for."""


@dataclass
class Table:
    """One section of the report: the CSV's block and the mail's table."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    # Columns that hold numbers (aligned right in the mail).
    numeric: set[str] = field(default_factory=set)


@dataclass
class Report:
    window: Window
    figures: Table  # period_summary: metric, value, previous, change, change_percent
    entities: Table  # current_counts: kind, state, count, at_period_start, change
    activity: Table  # per bucket: events, logins succeeded and failed
    tops: list[Table]
    uptime: Table  # per facility over the window
    uptime_days: Table  # per facility and local day

    @property
    def zone(self) -> str:
        return self.window.tz_name

    @property
    def start(self) -> datetime:
        return self.window.local(self.window.start)

    @property
    def end(self) -> datetime:
        return self.window.local(self.window.end)

    @property
    def title(self) -> str:
        return f"sphere_stats report, {PERIOD_LABELS[self.window.period].lower()}"

    @property
    def span(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} {self.zone}"

    @property
    def subject(self) -> str:
        return f"{self.title}: {self.span}"

    @property
    def filename(self) -> str:
        return f"sphere-stats-report-{self.start:%Y-%m-%d}-{self.end:%Y-%m-%d}.csv"

    def about(self) -> Table:
        previous = self.window.previous()
        columns = ["period", "time_zone", "start", "end", "previous_start", "previous_end"]
        row = [self.window.period, self.zone, self.window.start, self.window.end]
        return Table("report", "Report", columns, [[*row, previous.start, previous.end]])

    def sections(self) -> list[Table]:
        """The CSV's blocks, in order."""
        return [
            self.about(),
            self.figures,
            self.entities,
            self.activity,
            *self.tops,
            self.uptime,
            self.uptime_days,
        ]


def report_window(period: str, zone: str, now: datetime) -> Window:
    """The overview's window for `?period=<period>&tz=<zone>` at `now`."""
    if period not in REPORT_PERIODS:
        raise ReportError(f"period must be one of {', '.join(REPORT_PERIODS)}")
    try:
        return Window.from_query({"period": period, "tz": zone}, now=now)
    except WindowError as exc:
        raise ReportError(f"{exc.field}: {exc.message}") from None


def _compute(name: str, window: Window, **filters: Any) -> Result:
    # compute(), not result(): the stats cache keys a relative window by its
    # period and the clock, not by its end, so a report of a past slot could
    # be handed the page's current answer. A report is computed once anyway.
    stat = STATS[name]
    for param in stat.params:
        filters.setdefault(param.name, param.default)
    return stat.compute(window, filters)


def _table(key: str, title: str, result: Result) -> Table:
    numeric = {c.name for c in result.columns if c.numeric}
    return Table(key, title, [c.name for c in result.columns], result.rows, numeric)


def _activity(window: Window) -> Table:
    """Events and logins per bucket of the overview's charts."""
    per_bucket: dict[datetime, list[int]] = {}
    for bucket, succeeded, failed in _compute("logins", window).rows:
        per_bucket[bucket] = [0, succeeded, failed]
    for bucket, _, n in _compute("events_by_type", window).rows:
        per_bucket.setdefault(bucket, [0, 0, 0])[0] += n
    rows = [[bucket, *counts] for bucket, counts in sorted(per_bucket.items())]
    columns = [window.unit, "events", "logins_succeeded", "logins_failed"]
    title = f"Per {window.unit} ({window.tz_name})"
    return Table("activity", title, columns, rows, set(columns[1:]))


def _facility_uptime(window: Window) -> tuple[Table, Table]:
    """Each facility's uptime over the window and per local day, by the
    panel's rule: a report holds until the next or its hold time, silence
    is unknown, and up % is of the time with a known state."""
    zone = window.zone
    days = (window.local(window.end).date() - window.local(window.start).date()).days + 1
    states = facility_status.STATES
    columns = ["facility", "name", "up_percent", *[f"{s}_hours" for s in states]]
    rows, day_rows = [], []
    for facility in Facility.objects.for_map():
        reports = facility.reports(window.start, window.end)
        segments = facility_status.segments(reports, window.start, window.end, stale_after())
        uptime = facility_status.daily_uptime(segments, zone, window.end, days)
        # The days of the zone the window touches; a window ending at a
        # local midnight leaves an empty day after it.
        uptime = facility_status.Uptime([d for d in uptime.days if d.seconds], zone)
        hours = [round(sum(d.seconds.get(s, 0) for d in uptime.days) / 3600, 2) for s in states]
        rows.append([facility.slug, facility.name, uptime.up_percent, *hours])
        day_rows += [[facility.slug, d.date, d.status, d.up_percent] for d in uptime.days]
    numeric = set(columns[2:])
    return (
        Table("facility_uptime", "Facility uptime", columns, rows, numeric),
        Table(
            "facility_uptime_days",
            f"Facility uptime per day ({zone.key})",
            ["facility", "date", "worst_status", "up_percent"],
            day_rows,
            {"up_percent"},
        ),
    )


def build_report(period: str, zone: str, now: datetime) -> Report:
    """The report of the window the overview shows at `now` for `period`
    and `zone`; ReportError for a period or zone it cannot show."""
    window = report_window(period, zone, now)
    summary = _compute("period_summary", window)
    tops = []
    for name in TOP_STATS:
        stat = STATS[name]
        tops.append(_table(name, stat.title, _compute(name, window, n=TOP_N)))
    uptime, uptime_days = _facility_uptime(window)
    return Report(
        window=window,
        figures=_table("figures", "In the period", summary),
        entities=_table(
            "entities", "Existing at the end of the period", _compute("current_counts", window)
        ),
        activity=_activity(window),
        tops=tops,
        uptime=uptime,
        uptime_days=uptime_days,
    )


# --- the CSV ------------------------------------------------------------------------


def _csv_cell(value: Any, window: Window) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return window.local(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    # Names come from events, so from anyone who can cause one: a text cell
    # a spreadsheet would run as a formula gets the export's quote.
    return neutralise(value) if isinstance(value, str) else value


def to_csv(report: Report) -> str:
    """Every section as a block: a row with its name alone, its header row,
    its rows; a blank row between blocks (docs/reports.md)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for i, table in enumerate(report.sections()):
        if i:
            writer.writerow([])
        writer.writerow([table.key])
        writer.writerow(table.columns)
        for row in table.rows:
            writer.writerow([_csv_cell(v, report.window) for v in row])
    return out.getvalue()


# --- the mail -----------------------------------------------------------------------


def _shown(value: Any, window: Window) -> str:
    """A cell as the mail shows it: times in the zone, numbers grouped."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        moment = window.local(value)
        if window.unit != "hour" and moment.time() == datetime.min.time():
            return f"{moment:%a %Y-%m-%d}"
        return f"{moment:%Y-%m-%d %H:%M}"
    if isinstance(value, date):
        return f"{value:%a %Y-%m-%d}"
    if isinstance(value, bool):
        return str(value).lower()
    return number(value)


def _figure_cards(report: Report) -> list[dict[str, Any]]:
    """The overview's period cards: each figure, its previous value and the
    change as the page words it (points for a percentage)."""
    cards = []
    for metric, value, previous, difference, change in report.figures.rows:
        label, higher_is_better = SUMMARY_LABELS[metric]
        moved = difference if metric in PERCENT_METRICS else change
        if metric in PERCENT_METRICS:
            delta = f"{signed(difference)} pp vs {number(previous)}%"
        elif change is None:
            delta = f"previous {number(previous)}"
        else:
            delta = f"{signed(change)}% vs {number(previous)}"
        trend = "flat" if not moved else "up" if (moved > 0) == higher_is_better else "down"
        cards.append({"label": label, "value": number(value), "delta": delta, "trend": trend})
    return cards


def _shown_table(
    table: Table, window: Window, note: str = "", empty: str = "Nothing in this period."
) -> dict[str, Any]:
    headers = [header(c) for c in table.columns]
    widths = [len(h) for h in headers]
    cells = [[_shown(v, window) for v in row] for row in table.rows]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    numeric = [c in table.numeric for c in table.columns]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return {
        "title": table.title,
        "note": note,
        "empty": empty,
        "headers": list(zip(headers, numeric, strict=True)),
        "rows": [list(zip(row, numeric, strict=True)) for row in cells],
        "lines": [line(headers), *[line(row) for row in cells]],
    }


UPTIME_NOTE = (
    "Up % is of the time with a known state (a report holding); the hours of each "
    "state add up to the period."
)


def _activity_note(report: Report) -> str:
    window = report.window
    if window.unit == "hour":
        return ""
    return f"Cut at midnight {window.tz_name}; the first and last {window.unit} may be partial."


def render_email(report: Report, to: list[str] | tuple[str, ...] = ()) -> EmailMultiAlternatives:
    """The report as a mail to `to`: text, an HTML alternative and the CSV."""
    window = report.window
    cards = entity_cards(report.entities.rows)
    context = {
        "report": report,
        # "Last 7 days" -> "the 7 days before".
        "previous_label": f"the {PERIOD_LABELS[window.period].removeprefix('Last ')} before",
        "figures": _figure_cards(report),
        "entities": [{**card, "change_shown": signed(card["change"])} for card in cards],
        "tables": [
            _shown_table(report.activity, window, _activity_note(report)),
            *[_shown_table(t, window) for t in report.tops],
            _shown_table(report.uptime, window, UPTIME_NOTE, "No facilities are registered."),
        ],
    }
    message = EmailMultiAlternatives(
        subject=report.subject,
        body=render_to_string("dashboards/report_email.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=list(to),
        # Automatic mail: out-of-office replies and the like stay away (RFC 3834).
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(
        render_to_string("dashboards/report_email.html", context), "text/html"
    )
    message.attach(report.filename, to_csv(report), "text/csv")
    return message
