"""The events explorer (/events/) and an event's page (/events/<uuid>/)."""

import base64
import random
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from audit.filters import EventFilter
from audit.models import Event, HourlyCount
from tests.audit.exp_helpers import BASE, event, odd_event, store, variety

pytestmark = pytest.mark.django_db

NOW = BASE + timedelta(days=1)


def uuids_on(response) -> list[str]:
    return re.findall(r'href="/events/([0-9a-f-]{36})/"', response.content.decode())


def listed(client, query: str) -> list[str]:
    response = client.get(f"/events/?period=all&{query}")
    assert response.status_code == 200, response.content[:300]
    return uuids_on(response)


@pytest.fixture
def history():
    """variety() plus a few events chosen so each filter singles some out."""
    events = variety()
    events += store(
        event(
            timestamp=BASE + timedelta(minutes=5),
            event_type="project_member_updated",
            subject="botnets",
            subject_type="project",
            caller="alice",
            target="bob",
            payload={"kind": "usermember", "role": "maintainer"},
        ),
        event(
            timestamp=BASE + timedelta(minutes=6),
            event_type="experiment_pushed",
            subject="testexp",
            subject_type="experiment",
            target=None,
            payload={"project": "glawler", "model_file": "model.py", "revision": "7"},
        ),
    )
    return {e["event_uuid"]: e for e in events}


def ids(history, **match) -> set[str]:
    return {u for u, e in history.items() if all(e.get(k) == v for k, v in match.items())}


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("event_type=experiment_created", {"event_type": "experiment_created"}),
        ("subject_type=experiment", {"subject_type": "experiment"}),
        ("subject=botnets", {"subject": "botnets"}),
        ("caller=alice", {"caller": "alice"}),
        ("target=isi", {"target": "isi"}),
        ("success=false", {"success": False}),
    ],
)
def test_each_column_filter_alone_finds_exactly_its_events(
    analyst_client, history, query, expected
):
    assert set(listed(analyst_client, query)) == ids(history, **expected)


@time_machine.travel(NOW, tick=False)
def test_several_event_types_are_or_ed(analyst_client, history):
    found = listed(analyst_client, "event_type=user_login&event_type=experiment_pushed")
    assert set(found) == ids(history, event_type="user_login") | ids(
        history, event_type="experiment_pushed"
    )


@time_machine.travel(NOW, tick=False)
def test_payload_key_value_uses_containment(analyst_client, history):
    assert set(listed(analyst_client, "payload=kind=projectmember")) == {
        u for u, e in history.items() if e["payload"].get("kind") == "projectmember"
    }
    # A list element, and a value that reads as a number but is stored as text.
    assert len(listed(analyst_client, "payload=nodes=b")) == 1
    assert len(listed(analyst_client, "payload=revision=7")) == 1
    # Several pairs must all hold.
    both = listed(analyst_client, "payload=kind=usermember&payload=role=maintainer")
    assert [history[u]["event_type"] for u in both] == ["project_member_updated"]


@time_machine.travel(NOW, tick=False)
def test_error_message_contains_ignores_case(analyst_client, history):
    found = listed(analyst_client, "error_contains=QUOTA")
    assert [history[u]["event_type"] for u in found] == ["realization_allocated"]


@time_machine.travel(NOW, tick=False)
def test_filters_combine_with_and(analyst_client, history):
    found = listed(analyst_client, "caller=glawler&success=true&subject_type=organization")
    assert set(found) == ids(history, caller="glawler", success=True, subject_type="organization")
    assert listed(analyst_client, "caller=alice&success=false") == []


@time_machine.travel(NOW, tick=False)
def test_the_time_range_is_the_stats_pages_window(analyst_client, history):
    store(event(timestamp=NOW - timedelta(days=40), caller="ancient"))
    default = analyst_client.get("/events/")
    assert "ancient" not in default.content.decode()  # 30 days by default
    assert len(listed(analyst_client, "caller=ancient")) == 1  # period=all
    custom = analyst_client.get(
        "/events/?period=custom&since=2026-04-23T20:02&until=2026-04-23T20:04&tz=UTC"
    )
    assert {history[u]["event_type"] for u in uuids_on(custom)} == {
        "experiment_created",
        "realization_allocated",
    }
    # Local times in another zone: 16:02–16:04 in New York is 20:02–20:04 UTC.
    ny = analyst_client.get(
        "/events/?period=custom&since=2026-04-23T16:02&until=2026-04-23T16:04&tz=America/New_York"
    )
    assert uuids_on(ny) == uuids_on(custom)
    assert "2026-04-23 16:03:00" in ny.content.decode()


@time_machine.travel(NOW, tick=False)
def test_keyset_pages_cross_many_identical_timestamps_without_gaps_or_repeats(analyst_client):
    same = [event(timestamp=BASE, caller=f"u{i}") for i in range(120)]
    store(*same)
    seen, pages = [], 0
    url = "/events/?period=all"
    while url:
        response = analyst_client.get(url)
        page = uuids_on(response)
        seen += page
        pages += 1
        match = re.search(r'rel="next" href="([^"]+)"', response.content.decode())
        url = "/events/" + match.group(1).replace("&amp;", "&") if match else None
    assert pages == 3
    assert sorted(seen) == sorted(e["event_uuid"] for e in same)
    assert seen == sorted(seen, reverse=True)  # ties broken by event_uuid, descending


@time_machine.travel(NOW, tick=False)
def test_newer_goes_back_to_the_page_before(analyst_client):
    store(*[event(timestamp=BASE + timedelta(seconds=i)) for i in range(120)])
    first = analyst_client.get("/events/?period=all")
    older = re.search(r'rel="next" href="([^"]+)"', first.content.decode()).group(1)
    second = analyst_client.get("/events/" + older.replace("&amp;", "&"))
    newer = re.search(r'rel="prev" href="([^"]+)"', second.content.decode()).group(1)
    back = analyst_client.get("/events/" + newer.replace("&amp;", "&"))
    assert uuids_on(back) == uuids_on(first)
    assert 'rel="prev"' not in back.content.decode()


@time_machine.travel(NOW, tick=False)
def test_no_query_uses_offset_or_counts_the_events_table(
    analyst_client, history, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        analyst_client.get("/events/?period=all&caller=glawler")
    sql = " ".join(q["sql"] for q in ctx.captured_queries).upper()
    assert " OFFSET " not in sql
    assert 'COUNT(*) AS "__COUNT" FROM "EVENTS"' not in sql


@time_machine.travel(NOW, tick=False)
def test_the_count_is_exact_for_type_and_outcome_filters(analyst_client, history):
    response = analyst_client.get("/events/?period=all&success=false")
    text = response.content.decode()
    assert "<strong>2</strong> events" in text and "(exact)" in text


@time_machine.travel(NOW, tick=False)
def test_the_count_of_other_filters_is_labelled_an_estimate(analyst_client, history):
    from django.db import connection

    store(*[event(timestamp=BASE - timedelta(seconds=i), caller="many") for i in range(60)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE events")
    text = analyst_client.get("/events/?period=all&caller=many").content.decode()
    assert re.search(
        r"about <strong>\d+</strong> events <span class=\"muted\">\(planner estimate", text
    )


@time_machine.travel(NOW, tick=False)
def test_a_result_that_fits_on_one_page_is_counted_exactly(analyst_client, history):
    response = analyst_client.get("/events/?period=all&caller=alice")
    assert (
        '<strong>1</strong> event <span class="muted">(exact)</span>' in response.content.decode()
    )


@time_machine.travel(NOW, tick=False)
def test_the_exact_count_adds_the_partial_hours_at_both_edges(history):
    from django.http import QueryDict

    query = QueryDict("period=custom&since=2026-04-23T20:01:30&until=2026-04-23T20:04:30&tz=UTC")
    count, exact = EventFilter.from_query(query, windowed=True).count()
    assert exact and count == 3


@time_machine.travel(NOW, tick=False)
def test_htmx_gets_only_the_results_and_a_vary_header(analyst_client, history):
    response = analyst_client.get("/events/?period=all", HTTP_HX_REQUEST="true")
    assert "<form" not in response.content.decode()
    assert 'class="data explorer-table"' in response.content.decode()
    assert "HX-Request" in response["Vary"]


@time_machine.travel(NOW, tick=False)
def test_the_export_links_carry_the_filters_on_screen(analyst_client, history):
    text = analyst_client.get("/events/?period=7d&caller=alice&payload=role=maintainer").content
    assert (
        b"/events/export?format=csv&amp;period=7d&amp;caller=alice&amp;payload=role%3Dmaintainer"
        in text
    )


@time_machine.travel(NOW, tick=False)
def test_a_bad_filter_is_a_400_naming_it(analyst_client):
    response = analyst_client.get("/events/?payload=novalue")
    assert response.status_code == 400
    assert "<strong>payload</strong>" in response.content.decode()
    assert analyst_client.get("/events/?before=garbage").status_code == 400


@time_machine.travel(NOW, tick=False)
def test_a_refused_filter_keeps_the_window_asked_for(analyst_client):
    text = analyst_client.get("/events/?period=7d&tz=Asia/Tokyo&payload=novalue").content.decode()
    assert '<option value="7d" selected>' in text
    assert 'value="Asia/Tokyo"' in text


@time_machine.travel(NOW, tick=False)
def test_a_bad_time_zone_shows_its_error_beside_the_field_and_keeps_the_filters(
    analyst_client, history
):
    response = analyst_client.get("/events/?period=all&caller=alice&tz=Mars/Olympus")
    text = response.content.decode()
    assert response.status_code == 200
    assert 'aria-invalid="true" aria-describedby="window-tz-error"' in text
    assert re.search(r'id="window-tz-error">unknown time zone &#x27;Mars/Olympus&#x27;', text)
    assert '<option value="all" selected>' in text
    assert uuids_on(response) == sorted(ids(history, caller="alice"))
    assert "times in UTC" in text


@time_machine.travel(NOW, tick=False)
def test_a_time_zone_is_forgiven_its_case_and_a_missing_region(analyst_client, history):
    for asked in ("america/new_york", "New York"):
        text = analyst_client.get(f"/events/?period=all&tz={asked}").content.decode()
        assert "times in America/New_York" in text
        assert "window-tz-error" not in text


@time_machine.travel(NOW, tick=False)
def test_an_unknown_event_type_is_named_with_the_closest_catalogued_one(analyst_client, history):
    text = analyst_client.get("/events/?period=all&event_type=user_creatd").content.decode()
    assert "No event type <code>user_creatd</code> in the" in text
    assert (
        'did you mean <a href="?period=all&amp;event_type=user_created">user_created</a>?' in text
    )
    # Still applied (nothing has that type), but never silently.
    assert "<strong>0</strong> events" in text


@time_machine.travel(NOW, tick=False)
def test_catalogued_types_raise_no_warning(analyst_client, history):
    text = analyst_client.get("/events/?period=all&event_type=user_login").content.decode()
    assert "No event type" not in text


@time_machine.travel(NOW, tick=False)
def test_each_applied_type_is_a_ticked_chip_beside_a_searchable_list(analyst_client, history):
    text = analyst_client.get(
        "/events/?period=all&event_type=user_login&event_type=org_member_added"
    ).content.decode()
    chips = re.findall(r'class="chip-check" name="event_type" value="([^"]+)" checked', text)
    assert chips == ["user_login", "org_member_added"]
    assert '<input class="type-adder" id="explorer-type-input" name="event_type"' in text
    assert '<option value="user_created" label="users">' in text


def count_label(response) -> str:
    span = re.search(
        r'<span class="explorer-count">(.*?)<span class="muted">·', response.content.decode(), re.S
    )
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", span.group(1))).strip()


@time_machine.travel(NOW, tick=False)
def test_every_page_of_one_result_says_the_same_count(analyst_client):
    from django.db import connection

    # The planner's statistics predate the caller's events: its estimate is
    # below a page, so the first page can only say "at least", and the last
    # page, with fewer rows than that, once said something else.
    store(*[event(timestamp=BASE - timedelta(days=1, seconds=i)) for i in range(100)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE events")
    store(*[event(timestamp=BASE - timedelta(seconds=i), caller="many") for i in range(120)])
    first = analyst_client.get("/events/?period=all&caller=many")
    labels = [count_label(first)]
    older = re.search(r'rel="next" href="([^"]+)"', first.content.decode()).group(1)
    response = analyst_client.get("/events/" + older.replace("&amp;", "&"))
    labels.append(count_label(response))
    last = re.search(r'rel="next" href="([^"]+)"', response.content.decode()).group(1)
    response = analyst_client.get("/events/" + last.replace("&amp;", "&"))
    labels.append(count_label(response))
    assert len(uuids_on(response)) == 20  # the last page
    newer = re.search(r'rel="prev" href="([^"]+)"', response.content.decode()).group(1)
    labels.append(count_label(analyst_client.get("/events/" + newer.replace("&amp;", "&"))))
    assert labels == ["at least 51 events (the planner's estimate was lower)"] * 4


@time_machine.travel(NOW, tick=False)
def test_a_shared_link_and_the_downloads_leave_the_carried_count_out(analyst_client):
    store(*[event(timestamp=BASE - timedelta(seconds=i)) for i in range(60)])
    first = analyst_client.get("/events/?period=all").content.decode()
    older = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert "total=exact%3A60" in older or "total=exact:60" in older
    second = analyst_client.get("/events/" + older).content.decode()
    assert "<strong>60</strong> events" in second
    assert re.search(r"/events/export\?format=csv&amp;period=all\"", second)


@time_machine.travel(NOW, tick=False)
def test_a_viewer_gets_403(viewer_client):
    assert viewer_client.get("/events/").status_code == 403


@time_machine.travel(NOW, tick=False)
def test_the_event_page_shows_every_column_and_links_to_entities(analyst_client, history):
    rlz = next(u for u, e in history.items() if e["event_type"] == "realization_allocated")
    text = analyst_client.get(f"/events/{rlz}/").content.decode()
    assert rlz in text
    assert "2026-04-23 20:03:00.000000 UTC" in text
    assert 'href="/users/glawler/"' in text
    assert 'href="/experiments/glawler/testexp/"' in text
    assert 'href="/facilities/isi/"' in text
    assert "&quot;resources&quot;: [\n    &quot;n001&quot;" in text  # pretty-printed
    assert "quota &quot;exceeded&quot;" in text


@time_machine.travel(NOW, tick=False)
def test_a_member_event_links_a_project_member_to_the_project(analyst_client, history):
    pm = next(u for u, e in history.items() if e["target"] == "testproject")
    text = analyst_client.get(f"/events/{pm}/").content.decode()
    assert 'href="/orgs/orgtest/"' in text and 'href="/projects/testproject/"' in text


@time_machine.travel(NOW, tick=False)
def test_an_unknown_event_is_404(analyst_client):
    assert analyst_client.get("/events/7f3e1a52-0000-4000-8000-000000000000/").status_code == 404


def test_the_event_page_needs_the_analyst_role(viewer_client):
    e = store(event())[0]
    assert viewer_client.get(f"/events/{e['event_uuid']}/").status_code == 403
    assert Event.objects.count() == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_analyst_filters_pages_and_downloads_in_the_browser(
    browser_page, live_server, analyst, tmp_path
):
    from django.utils import timezone

    from tests.conftest import browser_login, screenshot

    now = timezone.now()
    store(
        *[
            event(timestamp=now - timedelta(hours=2, minutes=i), caller="alice" if i % 2 else "bob")
            for i in range(130)
        ]
    )
    page = browser_page
    browser_login(page, live_server, analyst)
    page.goto(f"{live_server.url}/events/")
    page.wait_for_selector("table.explorer-table tbody tr")
    screenshot(page, "explorer_all")
    assert page.locator("table.explorer-table tbody tr").count() == 50

    page.fill("input[name=caller]", "alice")
    page.press("input[name=caller]", "Enter")
    page.wait_for_url("**caller=alice**")
    page.wait_for_function(
        "() => ("
        "[...document.querySelectorAll('table.explorer-table tbody td:nth-child(3)')]"
        ".every(td => td.textContent.trim() === 'alice')"
        ")"
    )
    screenshot(page, "explorer_alice")
    assert set(page.locator("table.explorer-table tbody td:nth-child(3)").all_inner_texts()) == {
        "alice"
    }
    page.click("text=Older →")
    page.wait_for_url("**before=**")
    page.wait_for_function(
        "() => (document.querySelectorAll('table.explorer-table tbody tr').length == 15)"
    )
    screenshot(page, "explorer_alice_page2")

    with page.expect_download() as info:
        page.click(".export-buttons >> text=CSV")
    download = info.value
    assert download.suggested_filename.startswith("events_caller-alice_")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    lines = path.read_text().splitlines()
    assert len(lines) == 66  # the header and every alice event, not just this page

    page.click("table.explorer-table tbody tr:first-child a")
    page.wait_for_selector("pre.event-payload")
    screenshot(page, "explorer_event")
    assert page.locator("a[href='/users/alice/']").count() == 1
    assert page.blocked_requests == []


def payload_boxes(html: str) -> list[str]:
    return re.findall(r'<input name="payload"[^>]* value="([^"]*)"', html)


@time_machine.travel(NOW, tick=False)
def test_every_payload_pair_sent_is_applied_and_gets_its_own_box(analyst_client, history):
    query = "payload=kind=usermember&payload=role=maintainer&payload="
    response = analyst_client.get(f"/events/?period=all&{query}")
    found = uuids_on(response)
    assert [history[u]["event_type"] for u in found] == ["project_member_updated"]
    # One box per pair, then one empty box for the next (not one per blank sent).
    assert payload_boxes(response.content.decode()) == ["kind=usermember", "role=maintainer", ""]
    assert "+ another" in response.content.decode()


@time_machine.travel(NOW, tick=False)
def test_an_htmx_answer_brings_the_payload_boxes_out_of_band(analyst_client, history):
    response = analyst_client.get(
        "/events/?period=all&payload=kind=usermember&payload=", HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert 'id="explorer-payload"' in html and 'hx-swap-oob="true"' in html
    assert payload_boxes(html) == ["kind=usermember", ""]
    # The full page has the boxes once, inside the form, not out of band.
    page = analyst_client.get("/events/?period=all&payload=kind=usermember").content.decode()
    assert page.count('id="explorer-payload"') == 1 and "hx-swap-oob" not in page


@time_machine.travel(NOW, tick=False)
def test_the_last_payload_box_is_not_offered_past_the_limit(analyst_client, history):
    query = "&".join(f"payload=k{i}=v" for i in range(8))
    html = analyst_client.get(f"/events/?period=all&{query}").content.decode()
    assert len(payload_boxes(html)) == 8 and "+ another" not in html


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        # target of a project's member event, and never the subject or caller
        ("user:bob", {"project_member_updated"}),
        # by alice (caller) and about her (subject @alice is another user)
        ("user:alice", {"project_member_updated"}),
        # payload.project: the experiment's events and its realization's
        ("project:glawler", {"experiment_created", "realization_allocated", "experiment_pushed"}),
        (
            "experiment:glawler/testexp",
            {"experiment_created", "realization_allocated", "experiment_pushed"},
        ),
        ("organization:orgtest", {"org_member_added"}),
    ],
)
def test_the_entity_filter_finds_what_its_page_lists(analyst_client, history, entity, expected):
    found = listed(analyst_client, f"entity={entity}")
    assert found and {history[u]["event_type"] for u in found} == expected


@time_machine.travel(NOW, tick=False)
def test_failed_and_succeeded_read_as_outcomes(analyst_client, history):
    assert set(listed(analyst_client, "success=failed")) == ids(history, success=False)
    assert set(listed(analyst_client, "success=succeeded")) == ids(history, success=True)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_analyst_adds_payload_pairs_without_reloading(browser_page, live_server, analyst):
    from django.utils import timezone

    from tests.conftest import browser_login, screenshot

    now = timezone.now()
    store(
        event(timestamp=now - timedelta(hours=1)),
        event(
            timestamp=now - timedelta(hours=2),
            payload={"kind": "usermember", "role": "maintainer", "state": "active"},
        ),
        event(
            timestamp=now - timedelta(hours=3),
            payload={"kind": "projectmember", "role": "maintainer", "state": "active"},
        ),
    )
    page = browser_page
    browser_login(page, live_server, analyst)
    page.goto(f"{live_server.url}/events/")
    rows = "table.explorer-table tbody tr"
    page.wait_for_selector(rows)

    page.fill("#explorer-payload-1", "kind=usermember")
    page.press("#explorer-payload-1", "Enter")
    page.wait_for_url("**payload=kind%3Dusermember**")
    # The answer brought a fresh box after the one just used.
    page.wait_for_selector("#explorer-payload-2")
    page.wait_for_function(f"() => (document.querySelectorAll('{rows}').length == 2)")
    page.click("text=+ another")
    assert page.locator("input[name=payload]").count() == 3
    page.fill("#explorer-payload-3", "role=maintainer")
    page.press("#explorer-payload-3", "Enter")
    page.wait_for_url("**role%3Dmaintainer**")
    page.wait_for_function(f"() => (document.querySelectorAll('{rows}').length == 1)")
    screenshot(page, "explorer_payload_pairs")
    assert page.locator("input[name=payload]").evaluate_all("bs => bs.map(b => b.value)") == [
        "kind=usermember",
        "role=maintainer",
        "",
    ]


@time_machine.travel(NOW, tick=False)
def test_a_result_row_shows_every_listed_column_escaped(analyst_client):
    (stored,) = store(
        event(
            timestamp=BASE,
            event_type="user_login",
            caller="",
            subject="<b>mallory</b>",
            subject_type="user",
            target="t&t",
            success=False,
            error_message="x" * 100,
        )
    )
    html = analyst_client.get("/events/?period=all&tz=Asia/Kolkata").content.decode()
    row = re.search(
        rf'<tr><td class="nowrap"><a href="/events/{stored["event_uuid"]}/">.*?</tr>', html
    )
    assert row, "the event's row links to its page"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0))
    local = BASE.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S")
    assert cells[0].endswith(f">{local}</a>")  # in the display zone
    assert cells[1:] == [
        "<code>user_login</code>",
        "—",  # no caller
        '<span class="muted">user</span> &lt;b&gt;mallory&lt;/b&gt;',
        "t&amp;t",
        '<span class="badge bad">failed</span>',
        "x" * 79 + "…",  # long errors are cut to 80 characters
    ]


def test_the_exact_count_equals_the_rows_for_any_window_across_days_and_hours():
    # Events spread over ten days at odd minutes; windows start and end on
    # arbitrary minutes, whole hours and midnights, so every piece of the
    # count (raw edges, hourly, daily) is exercised and must add up.
    rng = random.Random(7)
    types = ["org_member_added", "org_member_updated", "org_member_deleted"]
    store(
        *(
            event(
                timestamp=BASE + timedelta(minutes=rng.randrange(10 * 24 * 60)),
                event_type=rng.choice(types),
                success=rng.random() < 0.8,
            )
            for _ in range(400)
        )
    )
    midnight = BASE.replace(hour=0, minute=0, second=0, microsecond=0)
    edges = [
        midnight + timedelta(days=d, hours=h, minutes=m)
        for d in range(-1, 12)
        for h, m in ((0, 0), (0, 30), (5, 0), (23, 59))
    ]
    for _ in range(60):
        start, end = sorted(rng.sample([*edges, None, None], 2), key=lambda t: t or BASE)
        if start is not None and end is not None and start >= end:
            continue
        event_types = rng.choice([None, types[:1], types[1:]])
        success = rng.choice([None, True, False])
        rows = Event.objects.all()
        if start is not None:
            rows = rows.filter(timestamp__gte=start)
        if end is not None:
            rows = rows.filter(timestamp__lt=end)
        if event_types:
            rows = rows.filter(event_type__in=event_types)
        if success is not None:
            rows = rows.filter(success=success)
        counted = HourlyCount.objects.exact_count(event_types, success, start, end)
        assert counted == rows.count(), (start, end, event_types, success)


@time_machine.travel(NOW, tick=False)
def test_the_links_of_a_plain_submission_leave_its_empty_boxes_out(analyst_client, history):
    query = "period=7d&since=&until=&res=&tz=UTC&event_type=&caller=alice&payload="
    text = analyst_client.get(f"/events/?{query}").content.decode()
    assert 'href="/events/export?format=csv&amp;period=7d&amp;tz=UTC&amp;caller=alice"' in text


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_payload_value_no_json_number_can_be_is_matched_as_text(analyst_client, value):
    store(odd_event(value))
    # Sent to PostgreSQL as a number, it was a 500 (JSONB has no NaN).
    assert len(listed(analyst_client, f"payload=note%3D{value}")) == 1
    assert listed(analyst_client, f"payload=level%3D{value}") == []


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("period=custom&since=0001-01-01", "since"),
        ("period=custom&since=2026-01-01&until=9999-12-31", "until"),
        ("period=custom&since=now-400000d", "since"),
    ],
)
def test_a_time_out_of_range_shows_its_error_beside_the_field(analyst_client, query, field):
    response = analyst_client.get(f"/events/?caller=alice&{query}")
    text = response.content.decode()
    assert response.status_code == 200
    assert f'id="window-{field}-error">is out of range' in text


@time_machine.travel(NOW, tick=False)
def test_a_cursor_this_server_never_wrote_is_a_400_naming_it(analyst_client):
    forged = base64.urlsafe_b64encode(b'["2026-04-23T20:00:00+00:00", 5]').decode()
    response = analyst_client.get(f"/events/?before={forged}")
    assert response.status_code == 400
    assert "<strong>before</strong>" in response.content.decode()
