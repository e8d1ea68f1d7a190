"""Every parser of query input, driven with arbitrary text: no value a client
sends may end as a 5xx, and the API names the refused parameter in its JSON
400. Exports are read to their last byte, so a value that only fails once
the stream has started (PostgreSQL reading it) fails here too.

Each test draws one parameter of an endpoint and a value for it: any text
(NUL and lone surrogates included: a surrogate is sent as the invalid UTF-8
it encodes to) or one of the values that once reached PostgreSQL and broke
(NaN, Infinity and 1e999 as payload numbers, times past Python's range,
huge integers, very long strings).
"""

import base64
import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.audit.exp_helpers import variety
from tests.factories import facility

FUZZ = settings(
    max_examples=6,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _cursor(document) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


UUID = "7d8f0e0a-8c7e-4c53-9f3e-0c1c3a6f3b11"
TARGETED = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1e-999",
    "9999999999999999999999",
    "-9999999999999999999999",
    "9" * 5000,
    "0001-01-01",
    "0001-01-01T00:00",
    "0001-01-01T00:00+14:00",
    "9999-12-31",
    "9999-12-31T23:59",
    "9999-12-31T23:59:59-14:00",
    "99999-01-01T00:00",
    "now-999999999w",
    "now-1d",
    "now+1d",
    "\x00",
    "a\x00b",
    "\ud800",
    "x" * 5000,
    "Europe/Berlin" * 100,
    _cursor(["2026-04-23T20:00:00+00:00", 5]),
    _cursor(["2026-04-23T20:00:00", UUID]),
    _cursor(["0001-01-01T00:00:00+14:00", UUID]),
    _cursor([["x"], UUID]),
    _cursor({"a": 1, "b": 2}),
    _cursor("x" * 300),
]
ANY_VALUE = st.one_of(st.text(), st.sampled_from(TARGETED))
# Tried first on every parameter: the values that reached PostgreSQL and broke.
FIRST = [
    "NaN",
    "1e999",
    "9999999999999999999999",
    "0001-01-01T00:00+14:00",
    "9999-12-31T23:59",
    "x" * 5000,
    _cursor(["2026-04-23T20:00:00+00:00", 5]),
]


def fuzz(test):
    """Hypothesis over `value`: the FIRST values, then arbitrary ones."""
    for value in reversed(FIRST):
        test = example(value=value)(test)
    return FUZZ(given(value=ANY_VALUE)(test))


def _query(param: str, value: str) -> tuple[str, str]:
    """(parameter, query string) setting `param` to `value`. `custom:since`
    is since with period=custom; `payload:k=` a payload whose value (after
    the key k) is `value`, so that the value is parsed too."""
    extra = ""
    if param.startswith("custom:"):
        name, extra = param.removeprefix("custom:"), "&period=custom"
    else:
        name, _, prefix = param.partition(":")
        value = prefix + value
    return name, f"{name}={quote(value, safe='', errors='surrogatepass')}{extra}"


def _drain(response) -> bytes:
    """The whole body; a streamed one is read to its end."""
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def _assert_api_answer(response, name: str, value: str, params: tuple[str, ...]) -> None:
    body = _drain(response)
    assert response.status_code < 500, body[:500]
    if response.status_code != 400:
        return
    answer = json.loads(body)
    assert answer["error"]
    if "\x00" in value:
        # Refused before any view (sphere_stats.middleware.RejectNulMiddleware).
        assert "NUL" in answer["error"]
        return
    fields = {str(detail.get("field") or "").split(".")[0] for detail in answer["details"]}
    assert fields, answer
    assert fields <= set(params), (name, answer)


def _assert_page_answer(response, value: str, params: tuple[str, ...]) -> None:
    """Below 500; a 400 page says which parameter it refused ("since: ...")."""
    body = _drain(response)
    assert response.status_code < 500, body[:500]
    if response.status_code == 400:
        text = body.decode()
        named = re.search(rf"\b({'|'.join(params)})(</strong>)?: ", text)
        assert named or ("\x00" in value and "NUL" in text), text[:2000]


@pytest.fixture
def stored(db, settings):
    # Thirty exports a minute is the default limit for a token; a fuzz run sends more.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "export": None}
    variety()
    facility("isi")


@pytest.fixture
def api(client, read_token, stored):
    def get(url: str, **headers):
        return client.get(url, headers={"Authorization": f"Bearer {read_token}", **headers})

    return get


FILTER_PARAMS = (
    "event_type",
    "subject_type",
    "subject",
    "caller",
    "target",
    "success",
    "entity",
    "payload",
    "payload:k=",
    "payload:a.b=",
    "error_contains",
    "since",
    "until",
    "custom:since",
    "custom:until",
    "period",
    "tz",
)
WINDOW_PARAMS = ("period", "since", "until", "custom:since", "custom:until", "res", "tz")


def _names(params: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p.removeprefix("custom:").partition(":")[0] for p in params)


LIST_PARAMS = (*FILTER_PARAMS, "limit", "cursor", "format")


@pytest.mark.parametrize("param", LIST_PARAMS)
@fuzz
def test_the_events_api_answers_any_filter_value_without_a_5xx(api, param, value):
    name, query = _query(param, value)
    _assert_api_answer(api(f"/api/v1/events?{query}"), name, value, _names(LIST_PARAMS))


EXPORT_PARAMS = (*FILTER_PARAMS, "fields", "cursor", "format")


@pytest.mark.parametrize("param", EXPORT_PARAMS)
@fuzz
def test_the_export_api_refuses_any_bad_value_before_it_streams(api, param, value):
    name, query = _query(param, value)
    fmt = "" if name == "format" else "&format=ndjson"
    response = api(f"/api/v1/events/export?{query}{fmt}")
    _assert_api_answer(response, name, value, _names(EXPORT_PARAMS))


# Each stat's parameters besides the window's, and the query it needs.
STATS = {
    "events_by_type": (("event_type", "success", "format", "source"), ""),
    "top_projects": (("n", "by"), ""),
    "entity_events": (("kind", "name", "project"), "kind=user&name=glawler"),
}
# The window is every stat's: fuzzed on one that needs more parameters.
STAT_CASES = [
    *((stat, param) for stat, (params, _) in STATS.items() for param in params),
    *(("entity_events", param) for param in WINDOW_PARAMS),
]


@pytest.mark.parametrize(("stat", "param"), STAT_CASES)
@fuzz
def test_the_stats_api_answers_any_parameter_value_without_a_5xx(api, stat, param, value):
    params, base = STATS[stat]
    name, query = _query(param, value)
    # The drawn value replaces the base's, not joins it.
    kept = "&".join(p for p in base.split("&") if p and not p.startswith(f"{name}="))
    url = f"/api/v1/stats/{stat}?{query}" + (f"&{kept}" if kept else "")
    _assert_api_answer(api(url), name, value, (*params, *_names(WINDOW_PARAMS)))


ENTITY_PARAMS = ("project", "period", "since", "until", "custom:since", "tz")


@pytest.mark.parametrize("param", ENTITY_PARAMS)
@fuzz
def test_the_entities_api_answers_any_parameter_value_without_a_5xx(api, param, value):
    name, query = _query(param, value)
    base = "" if name == "project" else "project=glawler&"
    for kind in ("user", "experiment"):
        url = f"/api/v1/entities/{kind}/glawler?{base}{query}"
        _assert_api_answer(api(url), name, value, _names(ENTITY_PARAMS))


@fuzz
def test_the_entity_and_facility_apis_answer_any_name_without_a_5xx(api, value):
    quoted = quote(value, safe="", errors="surrogatepass")
    if quoted:
        _assert_api_answer(api(f"/api/v1/entities/user/{quoted}"), "name", value, ("name",))
        _assert_api_answer(api(f"/api/v1/facilities/{quoted}"), "slug", value, ("slug",))
    _assert_api_answer(api(f"/api/v1/facilities/isi?tz={quoted}"), "tz", value, ("tz",))
    _assert_api_answer(api(f"/api/v1/facilities?format={quoted}"), "format", value, ("format",))


EXPLORER_PARAMS = (*FILTER_PARAMS, "res", "before", "after", "total")


@pytest.mark.parametrize("param", EXPLORER_PARAMS)
@fuzz
def test_the_explorer_answers_any_filter_value_without_a_5xx(admin_client, stored, param, value):
    _, query = _query(param, value)
    # htmx asks for the results alone, parsed the same way.
    headers = {"HX-Request": "true"} if len(value) % 2 else {}
    response = admin_client.get(f"/events/?{query}", headers=headers)
    _assert_page_answer(response, value, _names(EXPLORER_PARAMS))


EXPLORER_EXPORT_PARAMS = (*FILTER_PARAMS, "res", "format", "fields", "gzip")


@pytest.mark.parametrize("param", EXPLORER_EXPORT_PARAMS)
@fuzz
def test_the_explorer_export_refuses_any_bad_value_before_it_streams(
    admin_client, stored, param, value
):
    _, query = _query(param, value)
    response = admin_client.get(f"/events/export?{query}")
    _assert_page_answer(response, value, _names(EXPLORER_EXPORT_PARAMS))


# The pages that read each parameter: every stats page parses the window
# the same way (Window.forgiving), so two of them stand for the rest.
PAGES = {
    **dict.fromkeys(WINDOW_PARAMS, ("/", "/users/glawler/")),
    "compare": ("/",),
    "n": ("/top/",),
    "by": ("/top/",),
    "cursor": ("/users/glawler/timeline/",),
}


@pytest.mark.parametrize("param", PAGES)
@fuzz
def test_the_stats_pages_answer_any_window_value_without_a_5xx(admin_client, stored, param, value):
    _, query = _query(param, value)
    for page in PAGES[param]:
        response = admin_client.get(f"{page}?{query}")
        body = _drain(response)
        # A timeline's bad cursor is a 404 (a link this server never wrote).
        assert response.status_code < 500, (page, body[:500])


@pytest.mark.parametrize("param", ("tz", "sort", "selected"))
@fuzz
def test_the_facilities_pages_answer_any_value_without_a_5xx(admin_client, stored, param, value):
    _, query = _query(param, value)
    for page, headers in [
        ("/facilities/", {}),
        ("/facilities/isi/", {}),
        ("/facilities/isi/", {"HX-Request": "true"}),
        ("/facilities/status/", {"HX-Request": "true"}),
        ("/facilities/map/", {}),
    ]:
        response = admin_client.get(f"{page}?{query}", headers=headers)
        body = _drain(response)
        assert response.status_code < 500, (page, body[:500])


EDGE_RANGES = [
    "since=0001-01-02&until=0001-02-01",
    "since=1000-01-01&until=1000-02-01",
    "since=8999-11-01&until=8999-12-31",
    "since=9999-11-01&until=9999-12-31",
    "since=1000-01-01T00:00%2B14:00&until=1000-01-02",
]


@pytest.mark.parametrize("edge", EDGE_RANGES)
def test_a_short_range_at_the_edges_of_time_is_drawn_or_refused_never_a_5xx(
    admin_client, api, edge
):
    # The period before it (compare) and its last bucket's end reach past
    # the range a bound may name by a whole window.
    for url in (
        f"/?period=custom&{edge}&compare=previous",
        f"/users/glawler/?period=custom&{edge}",
        f"/events/?period=custom&{edge}",
    ):
        response = admin_client.get(url)
        assert response.status_code < 500, url
    for url in (
        f"/api/v1/stats/events_by_type?period=custom&{edge}",
        f"/api/v1/events?period=custom&{edge}",
    ):
        response = api(url)
        assert response.status_code in (200, 400), url
