"""Browser benchmark: every page's load event in Chromium, cold and warm.

    .venv/bin/python bench/pages_browser.py                  # 60,000 demo events, as `make run`
    .venv/bin/python bench/pages_browser.py --reuse          # keep the loaded database

Seeds a scratch database `bench_pages` (the demo data of `make run`: events,
facilities and their reports), collects the static files as `make run` does
(hashed, gzip and brotli, into var/staticfiles), and serves it with gunicorn
as `make run` does (deploy/gunicorn.conf.py, 2 workers, DEBUG off) on a free
loopback port. Chromium (the flags of bench/servers.py) logs in as an
administrator, so every page and link shows, and loads each page:

- cold: a new browser context, so an empty HTTP cache and no compiled code,
  carrying only the session cookie;
- warm: the same page again in that context; the median of --runs loads
  after one that lets Chromium keep its compiled code, as it does for a
  page someone opens every day.

The time is the navigation's loadEventEnd (PerformanceNavigationTiming),
from the start of navigation until the load event's handlers return: the
server's answer, every script, stylesheet and font, and the charts in view
(static/js/charts.js draws those at DOMContentLoaded). The charts out of
view are drawn after the load event, when the browser is idle; the "all
charts" columns give the time until the last of them is drawn (the
performance mark charts.js sets), with no limit of its own. Requests to any other host are aborted, as in the
browser tests; a failed request or an error response on a page is printed.
Goals (issue 15): 500 ms cold, 200 ms warm, on loopback.
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench._server import ROOT, gunicorn, manage, psycopg_url, scratch_database
from bench.servers import CHROMIUM, CHROMIUM_FLAGS

COLD_LIMIT_MS = 500
WARM_LIMIT_MS = 200
USERNAME, PASSWORD = "bench", "bench-pages-password"
LOAD_END = "performance.getEntriesByType('navigation')[0].loadEventEnd"
CHARTS_DRAWN = "(performance.getEntriesByName('charts-drawn')[0] || {}).startTime"


def pick_pages(url: str) -> list[tuple[str, str, bool]]:
    """(label, path, logged in) of every kind of page, on entities the demo
    data has plenty of events for."""
    with psycopg.connect(psycopg_url(url)) as conn:

        def one(sql: str) -> tuple:
            row = conn.execute(sql).fetchone()
            if row is None:
                raise RuntimeError(f"no demo row for: {sql}")
            return row

        def busiest(kind: str, where: str = "") -> tuple:
            # The existing entity that is the subject of the most events:
            # the heaviest page of its kind.
            return one(
                "SELECT e.scope, e.name FROM entities e JOIN events v"
                f" ON v.subject_type = e.kind AND v.subject = e.name {where}"
                f" WHERE e.kind = '{kind}' AND e.state <> 'gone'"
                " GROUP BY e.scope, e.name ORDER BY count(*) DESC, e.name LIMIT 1"
            )

        _, user = busiest("user")
        _, org = busiest("organization")
        _, project = busiest("project")
        scope, experiment = busiest("experiment", "AND v.payload ->> 'project' = e.scope")
        (event,) = one("SELECT event_uuid FROM events ORDER BY timestamp DESC LIMIT 1")
        (slug,) = one("SELECT slug FROM facilities_facility ORDER BY slug LIMIT 1")
    prefix = user[:2]
    return [
        ("overview", "/", True),
        ("top", "/top/", True),
        ("user", f"/users/{user}/", True),
        ("organization", f"/orgs/{org}/", True),
        ("project", f"/projects/{project}/", True),
        ("experiment", f"/experiments/{scope}/{experiment}/", True),
        ("timeline", f"/users/{user}/timeline/", True),
        ("search (list)", f"/search/?q={prefix}", True),
        ("search (one match)", f"/search/?q={project}", True),
        ("explorer", "/events/", True),
        ("event", f"/events/{event}/", True),
        ("catalog", "/catalog/", True),
        ("facilities", "/facilities/", True),
        ("facility", f"/facilities/{slug}/", True),
        ("facilities map document", "/facilities/map/", True),
        ("API docs", "/api/v1/docs", True),
        ("login", "/accounts/login/", False),
        ("404", "/no-such-page/", True),
    ]


def prepare(events: int, reuse: bool) -> str:
    url = scratch_database("bench_pages", fresh=not reuse)
    if not reuse:
        # seed_demo also places the demo facilities; demo_reporter makes
        # their reports current, as `make run` does.
        manage("seed_demo", "--events", str(events), "-v", "0", database_url=url)
    manage("demo_reporter", "--once", "-v", "0", database_url=url)
    os.environ["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD
    try:
        manage("createsuperuser", "--no-input", "--username", USERNAME,
               "--email", "bench@example.org", database_url=url)  # fmt: skip
    except RuntimeError as exc:
        if "already taken" not in str(exc):
            raise
    manage("collectstatic", "--no-input", "-v", "0", database_url=url)
    return url


def load(page, url: str) -> tuple[float, float | None, list[str]]:
    """Navigate; (loadEventEnd in ms, every chart drawn in ms or None for a
    page without charts, problems seen on the way)."""
    problems: list[str] = []

    def failed(request):
        # ERR_ABORTED: cancelled by the next navigation (the API docs' own
        # fetch of the schema after the load event), not a failure.
        if "ERR_ABORTED" not in (request.failure or ""):
            problems.append(f"failed {request.url} ({request.failure})")

    def answered(response):
        if response.status >= 400 and response.url != url:
            problems.append(f"{response.status} {response.url}")

    page.on("requestfailed", failed)
    page.on("response", answered)
    try:
        page.goto(url, wait_until="load")
        page.wait_for_function(f"() => {LOAD_END} > 0")
        drawn = None
        if page.locator(".chart-figure").count():
            page.wait_for_function(f"() => {CHARTS_DRAWN} > 0")
            drawn = page.evaluate(CHARTS_DRAWN)
        return page.evaluate(LOAD_END), drawn, problems
    finally:
        page.remove_listener("requestfailed", failed)
        page.remove_listener("response", answered)


def new_context(browser, base: str, state=None):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, storage_state=state)
    context.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith(base) else route.abort(),
    )
    return context


def measure(browser, base: str, pages, state, runs: int) -> list[dict]:
    results = []
    for label, path, logged_in in pages:
        context = new_context(browser, base, state if logged_in else None)
        page = context.new_page()
        cold, cold_drawn, problems = load(page, base + path)
        load(page, base + path)  # lets Chromium cache the compiled scripts
        warm_runs, drawn_runs = [], []
        for _ in range(runs):
            ms, drawn, more = load(page, base + path)
            warm_runs.append(ms)
            drawn_runs.append(drawn)
            problems += more
        context.close()
        warm = statistics.median(warm_runs)
        warm_drawn = None if cold_drawn is None else statistics.median(drawn_runs)
        ratio = max(cold / COLD_LIMIT_MS, warm / WARM_LIMIT_MS)
        results.append(
            {
                "page": label,
                "path": path,
                "cold": cold,
                "warm": warm,
                "cold_drawn": cold_drawn,
                "warm_drawn": warm_drawn,
                "ratio": ratio,
                "problems": sorted(set(problems)),
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="demo events (make run's)")
    parser.add_argument("--reuse", action="store_true", help="keep an already seeded bench_pages")
    parser.add_argument("--runs", type=int, default=5, help="warm loads per page (median)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (make run's)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    url = prepare(args.events, args.reuse)
    pages = pick_pages(url)
    config = ("--config", str(ROOT / "deploy" / "gunicorn.conf.py"))
    with (
        gunicorn(url, workers=args.workers, threads=4, extra_args=config) as (base, _),
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = new_context(browser, base)
        page = context.new_page()
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=username]", USERNAME)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        state = context.storage_state()
        context.close()
        # One untimed pass: the workers' first requests import and plan.
        measure(browser, base, pages, state, runs=1)
        results = measure(browser, base, pages, state, args.runs)
        browser.close()

    width = max(len(r["page"]) for r in results)
    print(
        f"\n{'page':<{width}}  {'cold ms':>8}  {'limit':>5}  {'warm ms':>8}  {'limit':>5}"
        f"  {'ratio':>5}  result  {'all charts cold/warm ms':>23}"
    )
    for r in results:
        verdict = "pass" if r["ratio"] <= 1 else "FAIL"
        drawn = "" if r["cold_drawn"] is None else f"{r['cold_drawn']:.0f} / {r['warm_drawn']:.0f}"
        print(
            f"{r['page']:<{width}}  {r['cold']:>8.0f}  {COLD_LIMIT_MS:>5}  {r['warm']:>8.0f}"
            f"  {WARM_LIMIT_MS:>5}  {r['ratio']:>5.2f}  {verdict:<6}  {drawn:>23}"
        )
    print(
        "\nratio: the larger of cold/limit and warm/limit (<= 1 passes); "
        f"warm: median of {args.runs} loads."
    )
    for r in results:
        for problem in r["problems"]:
            print(f"  {r['page']} ({r['path']}): {problem}")
    failed = sum(r["ratio"] > 1 for r in results)
    print(f"{len(results) - failed} of {len(results)} pages within both limits.")


if __name__ == "__main__":
    main()
