"""The explorer in a browser: the event-type picker with chips, the warning
for an unknown type, and shared URLs without empty fields."""

from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.utils import timezone

from tests.audit.exp_helpers import event, store
from tests.conftest import browser_login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ROWS = "table.explorer-table tbody tr"


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


@pytest.fixture
def events(analyst):
    now = timezone.now()
    return store(
        event(
            timestamp=now - timedelta(hours=1),
            event_type="user_login",
            subject="alice",
            subject_type="user",
            target=None,
            payload={},
        ),
        event(
            timestamp=now - timedelta(hours=2),
            event_type="user_login",
            subject="bob",
            subject_type="user",
            target=None,
            payload={},
        ),
        event(timestamp=now - timedelta(hours=3)),
    )


def test_an_analyst_picks_types_as_chips_and_removes_them(
    browser_page, live_server, analyst, events
):
    page = browser_page
    browser_login(page, live_server, analyst)
    page.goto(f"{live_server.url}/events/")
    page.wait_for_selector(ROWS)
    assert page.locator(ROWS).count() == 3

    # Type part of a name: the list offers the catalogue's types; the one
    # chosen becomes a chip and filters the results.
    page.fill("#explorer-type-input", "user_log")
    options = page.eval_on_selector_all("#explorer-type-list option", "os => os.map(o => o.value)")
    assert "user_login" in options and "org_member_added" in options
    page.fill("#explorer-type-input", "user_login")
    page.press("#explorer-type-input", "Enter")
    page.wait_for_url("**event_type=user_login**")
    page.wait_for_function(f"() => (document.querySelectorAll('{ROWS}').length == 2)")
    chip = page.get_by_role("button", name="Remove event type user_login")
    assert chip.is_visible()
    assert page.input_value("#explorer-type-input") == ""
    # The address bar holds only what was set.
    assert all(value for _, value in query_of(page.url))
    assert [v for k, v in query_of(page.url) if k == "event_type"] == ["user_login"]

    page.fill("#explorer-type-input", "org_member_added")
    page.press("#explorer-type-input", "Enter")
    page.wait_for_function(f"() => (document.querySelectorAll('{ROWS}').length == 3)")
    assert page.locator(".type-picker .chip").count() == 2
    screenshot(page, "explorer_type_chips")

    # Removing a chip drops its type from the filter and the URL.
    chip.click()
    page.wait_for_function(f"() => (document.querySelectorAll('{ROWS}').length == 1)")
    assert [v for k, v in query_of(page.url) if k == "event_type"] == ["org_member_added"]
    assert page.locator(".type-picker .chip").count() == 1
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
        "Remove event type org_member_added"
    )
    assert page.blocked_requests == []


def test_a_mistyped_type_is_named_with_the_closest_one(browser_page, live_server, analyst, events):
    page = browser_page
    browser_login(page, live_server, analyst)
    page.goto(f"{live_server.url}/events/")
    page.wait_for_selector(ROWS)
    page.fill("#explorer-type-input", "user_lgin")
    page.press("#explorer-type-input", "Enter")
    warning = page.wait_for_selector(".type-warnings")
    assert "No event type user_lgin in the catalog" in warning.inner_text()
    screenshot(page, "explorer_unknown_type")
    page.click(".type-warnings >> text=user_login")
    page.wait_for_function(f"() => (document.querySelectorAll('{ROWS}').length == 2)")
    assert page.locator(".type-warnings").count() == 0
    assert page.get_by_role("button", name="Remove event type user_login").is_visible()


def test_without_javascript_a_chip_is_a_checkbox_to_untick(chromium, live_server, analyst, events):
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        browser_login(page, live_server, analyst)
        page.goto(
            f"{live_server.url}/events/?period=7d&event_type=user_login&event_type=org_member_added"
        )
        assert page.locator(ROWS).count() == 3
        page.uncheck("input.chip-check[value=org_member_added]")
        page.click("#window-controls button[type=submit]")
        page.wait_for_load_state()
        assert page.locator(ROWS).count() == 2
        assert [v for k, v in query_of(page.url) if k == "event_type" and v] == ["user_login"]
    finally:
        context.close()
