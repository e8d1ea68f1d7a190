"""The overview's and entity pages' charts as Plotly gets them: axis titles,
one small chart per kind of entity, a click target on every bar and point
(the explorer with exactly that bucket's filters, counting what the bar
shows), the previous period's overlay, facility bands and the heatmap's key."""

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import time_machine

from audit.catalog import CATALOG
from audit.ingest import ingest
from dashboards.bands import facility_bands
from dashboards.stats import explorer_bound
from dashboards.views import chart_json
from sphere_stats.windows import Window
from tests.dashboards.conftest import NOW, NY, event

HTMX = {"HTTP_HX_REQUEST": "true"}
TIME_CHARTS = ("entity_growth", "events_by_type", "logins", "active_users")
# Mar 6 to Mar 10 local in New York: every event of the dataset, across the
# start of daylight saving time (Mar 8).
DAYS = f"since=2026-03-06&until=2026-03-10&tz={NY}&res=1d"


@pytest.fixture(autouse=True)
def _frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


def figures(body: str) -> dict[str, dict]:
    """Each chart's figure on a page by stat name, as the page hands it to
    static/js/charts.js (a JSON script element inside the chart's box)."""
    found = {}
    pattern = r'<div class="chart" id="chart-([a-z_]+)">.*?<script type="application/json" class="chart-figure">(.*?)</script>'
    for match in re.finditer(pattern, body, re.S):
        found[match.group(1)] = json.loads(match.group(2))
    return found


def query(url: str) -> dict[str, list[str]]:
    parts = urlsplit(url)
    assert parts.path == "/events/"
    return parse_qs(parts.query)


def explorer_count(client, url: str) -> int:
    response = client.get(url)
    assert response.status_code == 200, url
    counted = response.content.decode().split('class="explorer-count"', 1)[1]
    return int(re.search(r"<strong>([\d,]+)</strong>", counted).group(1).replace(",", ""))


def test_a_chart_without_a_point_spans_the_period_not_the_year_2000(analyst_client, dataset):
    # A week of 2025, before any event of the dataset: no login, no event.
    period = f"since=2025-01-01&until=2025-01-07&tz={NY}&res=1d"
    window = Window.from_query({k: v[0] for k, v in parse_qs(period).items()}, now=NOW)
    charts = figures(analyst_client.get(f"/?{period}").content.decode())
    span = [f"{window.local(moment):%Y-%m-%d %H:%M}" for moment in (window.start, window.end)]
    assert span == ["2025-01-01 00:00", "2025-01-08 00:00"]
    empty = [
        name
        for name in TIME_CHARTS
        if not any(x is not None for trace in charts[name]["data"] for x in trace["x"])
    ]
    assert {"events_by_type", "active_users"} <= set(empty)
    for name in empty:
        assert charts[name]["layout"]["xaxis"]["range"] == span, name
    # A chart with points keeps Plotly's own range around them.
    week = figures(analyst_client.get(f"/?{DAYS}").content.decode())
    assert all("range" not in week[name]["layout"]["xaxis"] for name in TIME_CHARTS)


def test_every_chart_titles_its_axes_with_their_units(analyst_client, dataset):
    charts = figures(analyst_client.get(f"/?{DAYS}").content.decode())
    assert set(TIME_CHARTS) <= set(charts)
    layout = {name: charts[name]["layout"] for name in TIME_CHARTS}
    assert layout["events_by_type"]["yaxis"]["title"]["text"] == "Events per day"
    assert layout["logins"]["yaxis"]["title"]["text"] == "Logins per day"
    assert layout["active_users"]["yaxis"]["title"]["text"] == "Users who logged in (distinct)"
    for name in ("events_by_type", "logins", "active_users"):
        assert layout[name]["xaxis"]["title"]["text"] == f"Time ({NY})"
    hourly = figures(analyst_client.get(f"/?{DAYS.replace('res=1d', 'res=1h')}").content.decode())
    assert hourly["events_by_type"]["layout"]["yaxis"]["title"]["text"] == "Events per hour"


def test_the_growth_chart_gives_each_kind_its_own_titled_chart_and_y_axis(analyst_client, dataset):
    growth = figures(analyst_client.get(f"/?{DAYS}").content.decode())["entity_growth"]
    layout = growth["layout"]
    lines = [
        t for t in growth["data"] if t.get("line", {}).get("dash") is None and t["y"] != [None]
    ]
    assert [(t["name"], t["xaxis"], t["yaxis"]) for t in lines] == [
        ("users", "x", "y"),
        ("organizations", "x2", "y2"),
        ("projects", "x3", "y3"),
        ("experiments", "x4", "y4"),
    ]
    # Four y axes in four places: the two experiments do not flatten the one
    # organization, and no axis is shared.
    domains = {
        (tuple(layout[f"xaxis{n}"]["domain"]), tuple(layout[f"yaxis{n}"]["domain"]))
        for n in ("", "2", "3", "4")
    }
    assert len(domains) == 4
    assert all("matches" not in layout[f"yaxis{n}"] for n in ("", "2", "3", "4"))
    titles = [a["text"] for a in layout["annotations"]]
    assert titles == [
        "<b>Users</b> 1 at the end",
        "<b>Organizations</b> 1 at the end",
        # botnets, and iot, first seen in exp1's payload.
        "<b>Projects</b> 2 at the end",
        "<b>Experiments</b> 2 at the end",
    ]
    assert [t["y"][-1] for t in lines] == [1, 1, 2, 2]
    # Its points open the explorer on the kind's lifecycle events of the day.
    experiments = query(lines[3]["customdata"][2])
    assert experiments["event_type"] == [
        n for n, spec in CATALOG.items() if spec.lifecycle and spec.lifecycle[0] == "experiment"
    ]
    assert experiments["since"] == ["2026-03-08T00:00"]
    assert experiments["until"] == ["2026-03-09T00:00"]


@pytest.mark.parametrize("res", ["1d", "1h"])
def test_each_bar_opens_the_explorer_on_exactly_its_bucket_and_counts_the_same(
    analyst_client, dataset, res
):
    url = f"/?{DAYS.replace('res=1d', f'res={res}')}"
    charts = figures(analyst_client.get(url).content.decode())
    checked = 0
    for name in ("events_by_type", "logins"):
        for trace in charts[name]["data"]:
            if trace["type"] != "bar":
                continue
            for x, y, target in zip(trace["x"], trace["y"], trace["customdata"], strict=True):
                if not y:
                    continue
                filters = query(target)
                start = datetime.strptime(x, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(NY))
                if res == "1h":
                    end = (start.astimezone(UTC) + timedelta(hours=1)).astimezone(ZoneInfo(NY))
                else:
                    end = start + timedelta(days=1)
                # The bucket's start and end in the page's zone, its types, its outcome.
                assert filters["since"] == [start.strftime("%Y-%m-%dT%H:%M")]
                assert filters["until"] == [end.strftime("%Y-%m-%dT%H:%M")]
                assert filters["tz"] == [NY]
                if name == "logins":
                    assert filters["event_type"] == ["user_login"]
                    assert filters["success"] == [
                        "true" if trace["name"] == "succeeded" else "false"
                    ]
                elif trace["name"] == "other":
                    named = {t["name"] for t in charts[name]["data"]}
                    assert len(filters["event_type"]) > 1
                    assert not named & set(filters["event_type"])
                else:
                    assert filters["event_type"] == [trace["name"]]
                if name == "events_by_type":
                    assert "success" not in filters
                assert explorer_count(analyst_client, target) == y, (name, trace["name"], x)
                checked += 1
    assert checked >= 10


def test_the_day_daylight_saving_starts_is_a_23_hour_bucket(analyst_client, dataset):
    charts = figures(analyst_client.get(f"/?{DAYS}").content.decode())
    trace = next(t for t in charts["events_by_type"]["data"] if t["name"] == "user_created")
    march_8 = query(trace["customdata"][trace["x"].index("2026-03-08 00:00")])
    assert (march_8["since"], march_8["until"]) == (["2026-03-08T00:00"], ["2026-03-09T00:00"])
    # carol, created at 01:30 EST, the one user_created of that day.
    assert (
        explorer_count(analyst_client, trace["customdata"][trace["x"].index("2026-03-08 00:00")])
        == 1
    )


def test_a_relative_periods_first_bucket_starts_where_the_period_does(analyst_client, dataset):
    # 7 days back from 12:00 UTC on March 10: the first UTC day is cut at 12:00.
    charts = figures(analyst_client.get("/?period=7d&tz=UTC").content.decode())
    logins = charts["logins"]["data"][0]
    first = query(logins["customdata"][0])
    assert (first["since"], first["until"]) == (["2026-03-03T12:00"], ["2026-03-04T00:00"])
    last = query(logins["customdata"][-1])
    assert (last["since"], last["until"]) == (["2026-03-10T00:00"], ["2026-03-10T12:00"])


def test_an_ambiguous_wall_time_carries_its_offset_and_reads_back_exactly():
    window = Window.from_query({"tz": NY, "since": "2026-10-30", "until": "2026-11-03"}, now=NOW)
    # 01:30 on November 1 happens twice in New York: first EDT, then EST.
    first, second = (
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
    )
    assert explorer_bound(first, window) == "2026-11-01T01:30"
    assert explorer_bound(second, window) == "2026-11-01T01:30:00-05:00"
    assert explorer_bound(datetime(2026, 11, 1, 4, 0, 7, tzinfo=UTC), window) == (
        "2026-11-01T00:00:07"
    )
    for moment in (first, second):
        since = explorer_bound(moment, window)
        read = Window.from_query({"tz": NY, "since": since, "until": "2026-11-03"}, now=NOW)
        assert read.start == moment


def test_viewers_get_no_click_targets_since_the_explorer_is_for_analysts(viewer_client, dataset):
    body = viewer_client.get(f"/?{DAYS}").content.decode()
    for name, figure in figures(body).items():
        assert all("customdata" not in t for t in figure["data"]), name
    assert "Click a bar or point" not in body


def test_the_previous_period_is_a_dashed_line_on_this_periods_dates(analyst_client, dataset):
    # March 8 and 9 (UTC) against March 6 and 7: alice's two logins of
    # March 7 lie over March 9.
    url = "/?since=2026-03-08&until=2026-03-09&tz=UTC&res=1d&compare=previous"
    body = analyst_client.get(url).content.decode()
    charts = figures(body)
    logins = charts["logins"]["data"]
    previous = [t for t in logins if t.get("line", {}).get("dash") == "dash"]
    assert len(previous) == 1
    assert previous[0]["x"] == logins[0]["x"] == ["2026-03-08 00:00", "2026-03-09 00:00"]
    assert previous[0]["y"] == [0, 2]
    assert previous[0]["text"] == ["2026-03-06 00:00", "2026-03-07 00:00"]
    march_7 = query(previous[0]["customdata"][1])
    assert (march_7["since"], march_7["until"]) == (["2026-03-07T00:00"], ["2026-03-08T00:00"])
    assert explorer_count(analyst_client, previous[0]["customdata"][1]) == 2
    for name in TIME_CHARTS:
        assert any(t.get("line", {}).get("dash") == "dash" for t in charts[name]["data"]), name
    # The toggle is on, and belongs to the window controls' form, which
    # keeps it when the period changes.
    assert re.search(
        r'name="compare" value="previous" id="compare-previous" form="window-controls" checked',
        body,
    )
    without = analyst_client.get(url.replace("&compare=previous", "")).content.decode()
    for name, figure in figures(without).items():
        assert all(t.get("line", {}).get("dash") != "dash" for t in figure["data"]), name
    assert 'id="compare-previous" form="window-controls" checked' not in without


def test_an_htmx_body_keeps_the_overlay_its_url_asks_for(analyst_client, dataset):
    body = analyst_client.get(f"/?{DAYS}&compare=previous", **HTMX).content.decode()
    assert "<html" not in body
    assert 'id="compare-previous" form="window-controls" checked' in body
    logins = figures(body)["logins"]["data"]
    assert any(t.get("line", {}).get("dash") == "dash" for t in logins)


def status(ts: str, slug: str, state: str, interval: int | None = None) -> dict:
    payload = {"status": state} | ({"interval": interval} if interval else {})
    return event(ts, "facility_status", slug, "facility", caller=f"{slug}-ctl", payload=payload)


def test_facility_outages_and_maintenance_are_bands_on_every_time_chart(analyst_client, dataset):
    ingest(
        [
            status("2026-03-07T10:00:00Z", "utah", "up"),
            status("2026-03-07T10:10:00Z", "utah", "down"),
            status("2026-03-07T10:20:00Z", "utah", "down"),
            status("2026-03-07T10:30:00Z", "utah", "up"),
            # Maintenance whose reports stop: it ends when the last one goes
            # stale (15 minutes), as on the uptime bar.
            status("2026-03-08T20:00:00Z", "isi", "maintenance"),
            status("2026-03-08T20:10:00Z", "isi", "maintenance"),
        ],
        now=NOW,
    )
    charts = figures(analyst_client.get(f"/?{DAYS}").content.decode())
    for name in ("events_by_type", "logins", "active_users"):
        layout = charts[name]["layout"]
        bands = [
            (s["x0"], s["x1"], s["fillcolor"].startswith("rgba(220"), s["yref"])
            for s in layout["shapes"]
        ]
        # In New York time: 05:10-05:30 EST, 16:00-16:25 EDT.
        assert bands == [
            ("2026-03-08 16:00:00", "2026-03-08 16:25:00", False, "paper"),
            ("2026-03-07 05:10:00", "2026-03-07 05:30:00", True, "paper"),
        ], name
        legend = [t["name"] for t in charts[name]["data"] if t["y"] == [None]]
        assert legend == ["Facility maintenance: isi", "Facility down: utah"]
    growth = charts["entity_growth"]["layout"]["shapes"]
    assert {(s["xref"], s["yref"]) for s in growth} == {
        ("x", "y domain"),
        ("x2", "y2 domain"),
        ("x3", "y3 domain"),
        ("x4", "y4 domain"),
    }


def test_bands_merge_facilities_and_take_the_report_in_force_at_the_start(db):
    ingest(
        [
            status("2026-03-07T09:55:00Z", "utah", "down"),
            status("2026-03-07T10:05:00Z", "utah", "down"),
            status("2026-03-07T10:10:00Z", "wisc", "down"),
            status("2026-03-07T10:15:00Z", "utah", "up"),
            status("2026-03-07T10:20:00Z", "wisc", "up"),
        ],
        now=NOW,
    )
    start = datetime(2026, 3, 7, 10, tzinfo=UTC)
    (band,) = facility_bands(start, datetime(2026, 3, 8, tzinfo=UTC))
    assert (band.start, band.end) == (start, datetime(2026, 3, 7, 10, 20, tzinfo=UTC))
    assert (band.status, band.facilities) == ("down", ("utah", "wisc"))


def test_a_band_lasts_as_long_as_its_reports_interval_as_on_the_uptime_bar(db):
    # A maintenance report that promises the next one within 6 hours holds 6
    # hours, even when the band's period starts 2 hours after it; one
    # without an interval holds FACILITY_STALE_AFTER (15 minutes).
    ingest(
        [
            status("2026-03-07T08:00:00Z", "isi", "maintenance", interval=6 * 3600),
            status("2026-03-07T12:00:00Z", "utah", "down"),
        ],
        now=NOW,
    )
    start = datetime(2026, 3, 7, 10, tzinfo=UTC)
    bands = facility_bands(start, datetime(2026, 3, 8, tzinfo=UTC))
    assert [(b.status, b.facilities, b.start, b.end) for b in bands] == [
        ("maintenance", ("isi",), start, datetime(2026, 3, 7, 14, tzinfo=UTC)),
        (
            "down",
            ("utah",),
            datetime(2026, 3, 7, 12, tzinfo=UTC),
            datetime(2026, 3, 7, 12, 15, tzinfo=UTC),
        ),
    ]


def test_the_heatmap_follows_the_period_and_has_a_colour_key(analyst_client, dataset):
    body = analyst_client.get(f"/users/alice/?{DAYS}").content.decode()
    heatmap = figures(body)["entity_activity"]["data"][0]
    assert heatmap["colorbar"]["title"]["text"] == "Events per day"
    # March 6 (a Friday) to March 9 (Monday): the weeks of March 2 and 9.
    assert heatmap["x"] == ["2026-03-02", "2026-03-09"]
    days = {
        text.split(":")[0]: (z, url)
        for zs, texts, urls in zip(
            heatmap["z"], heatmap["text"], heatmap["customdata"], strict=True
        )
        for z, text, url in zip(zs, texts, urls, strict=True)
        if text
    }
    # March 10 too: a date as `until` includes that whole day.
    assert set(days) == {
        "Fri 2026-03-06",
        "Sat 2026-03-07",
        "Sun 2026-03-08",
        "Mon 2026-03-09",
        "Tue 2026-03-10",
    }
    # Her six events of UTC's March 6 and the login at 23:30 EST.
    assert days["Fri 2026-03-06"][0] == 7
    filters = query(days["Fri 2026-03-06"][1])
    assert filters["entity"] == ["user:alice"]
    assert (filters["since"], filters["until"]) == (["2026-03-06T00:00"], ["2026-03-07T00:00"])
    assert explorer_count(analyst_client, days["Fri 2026-03-06"][1]) == 7
    # Over a year, 53 or 54 columns of weeks, not a fixed year.
    year = figures(analyst_client.get("/users/alice/?period=1y").content.decode())
    assert len(year["entity_activity"]["data"][0]["x"]) in (53, 54)
    week = figures(analyst_client.get("/users/alice/?period=7d").content.decode())
    assert len(week["entity_activity"]["data"][0]["x"]) == 2


def test_a_chart_naming_script_tags_cannot_end_its_script_element():
    # A name from the events (an error message, a user) goes into the page
    # inside <script type="application/json">: it must not close it.
    hostile = '</script><script>alert("x")</script> & <!--'
    text = chart_json({"data": [{"name": hostile, "x": [1], "y": [2]}], "layout": {}})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["data"][0]["name"] == hostile
