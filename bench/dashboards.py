"""Dashboards benchmark: server time of every page and of every stat, from
the pre-aggregates and straight from `events`.

    .venv/bin/python bench/dashboards.py --events 10000000      # the issue's size
    .venv/bin/python bench/dashboards.py --events 1000000 --reuse  # keep the loaded db
    .venv/bin/python bench/dashboards.py --compare bench_dash_1m bench_dash  # growth

Loads N events with `seed_demo --bulk` (COPY, then one rebuild) into a
scratch database (`--database`, bench_dash by default) on the configured
PostgreSQL server (the embedded one unless DATABASE_URL is set), then times
requests in-process through Django's test client (server time, no network)
after one warm-up, and prints p50/p95 in milliseconds.

Goals at 10M events (issue 18): every page p95 <= 100 ms cold (the stat
cache off), every stat <= 50 ms; pages flat from 1M to 10M (p95 within
20 %). Stats are timed through `compute()` (never cached); pages cold
(STATS_CACHE_SECONDS=0) and warm (the 30-second stat cache as deployed).
`--compare SMALL LARGE` times the pages cold on two loaded databases and
prints one table: each page's p95 at both sizes, its limit and the ratio.
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._server import manage, scratch_database

NY = "America/New_York"
KOLKATA = "Asia/Kolkata"
PAGE_LIMIT_MS = 100
STAT_LIMIT_MS = 50
GROWTH_LIMIT = 1.2


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up: plans, caches, imports
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return percentiles(samples)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per page or stat")
    parser.add_argument(
        "--raw-repeat", type=int, default=5, help="timed runs cold and from raw events"
    )
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded database")
    parser.add_argument("--database", default="bench_dash", help="the scratch database's name")
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("SMALL", "LARGE"),
        help="time the pages cold on two loaded databases and print one table",
    )
    parser.add_argument(
        "--no-raw", action="store_true", help="skip the raw-table timings (minutes at 10M)"
    )
    parser.add_argument("--stats-only", action="store_true", help="skip the page timings")
    parser.add_argument("--pages-only", action="store_true", help="skip the stat timings")
    parser.add_argument("--stat", action="append", help="time only this stat (repeatable)")
    return parser.parse_args()


def load(args: argparse.Namespace, name: str, reuse: bool) -> str:
    url = scratch_database(name, fresh=not reuse)
    if not reuse:
        started = time.perf_counter()
        manage(
            "seed_demo",
            "--events",
            str(args.events),
            "--days",
            str(args.days),
            "--bulk",
            "-v",
            "0",
            database_url=url,
        )
        print(f"loaded {args.events:,} events in {time.perf_counter() - started:.0f} s")
    return url


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sphere_stats.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
    # As a gunicorn worker loads it: settings, views and the collector's
    # frozen start-up objects (sphere_stats/wsgi.py).
    import sphere_stats.wsgi  # noqa: F401


def use_database(name: str) -> None:
    """Point every connection at database `name` (after setup_django), the
    stats pool's threads' too (dashboards/parallel.py): they would otherwise
    go on reading the database they first connected to."""
    from django.db import connections

    from dashboards import parallel

    parallel.close_connections()
    for conn in connections.all():
        conn.close()
        conn.settings_dict["NAME"] = name


def describe_database():
    from django.db import connection

    from audit.models import Entity, EntityInterval, Event, HourlyCount

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    events = Event.objects.count()
    print(
        f"events: {events:,}  hourly rows: {HourlyCount.objects.count():,}  "
        f"entities: {Entity.objects.count():,}  intervals: {EntityInterval.objects.count():,}",
        flush=True,
    )
    return events


def subjects() -> dict[str, str]:
    """The busiest user, the busiest project, an org, an experiment and a facility."""
    from audit.models import Entity
    from dashboards.stats import top
    from facilities.models import Facility
    from sphere_stats.windows import Window

    month = Window.from_query({"period": "30d"})
    project = top.top_projects(month, 1, "events")[0][0]
    experiment = Entity.objects.current().filter(kind="experiment", scope=project).first()
    experiment = experiment or Entity.objects.current().filter(kind="experiment").first()
    facility = Facility.objects.filter(slug="wisc").first() or Facility.objects.first()
    return {
        "user": top.top_callers(month, 1)[0][0],
        "project": project,
        "org": Entity.objects.current().filter(kind="organization").order_by("name").first().name,
        "experiment": f"{experiment.scope}/{experiment.name}",
        "facility": facility.slug,
    }


def pages(names: dict[str, str]) -> dict[str, tuple[str, dict]]:
    """label: (path, extra headers): every page a person clicks."""
    found = {}
    for period in ("24h", "7d", "30d", "90d", "1y", "all"):
        found[f"overview ({period})"] = (f"/?period={period}", {})
    for period in ("30d", "90d", "1y"):
        found[f"overview ({period}, {KOLKATA})"] = (f"/?period={period}&tz={KOLKATA}", {})
    found[f"overview (90d, {NY})"] = (f"/?period=90d&tz={NY}", {})
    found["top-N (30d)"] = ("/top/", {})
    found["top-N (1y)"] = ("/top/?period=1y", {})
    found["user page (the busiest)"] = (f"/users/{names['user']}/", {})
    found[f"user page (the busiest, {KOLKATA})"] = (f"/users/{names['user']}/?tz={KOLKATA}", {})
    found["user page (the busiest, 1y)"] = (f"/users/{names['user']}/?period=1y", {})
    found[f"user page (the busiest, 1y, {KOLKATA})"] = (
        f"/users/{names['user']}/?period=1y&tz={KOLKATA}",
        {},
    )
    found["org page"] = (f"/orgs/{names['org']}/", {})
    found["project page (the busiest)"] = (f"/projects/{names['project']}/", {})
    found["experiment page"] = (f"/experiments/{names['experiment']}/", {})
    found["facility panel (htmx)"] = (
        f"/facilities/{names['facility']}/",
        {"HTTP_HX_REQUEST": "true"},
    )
    return found


def time_pages(client, found: dict, repeat: int, cold_repeat: int, warm: bool = True) -> dict:
    """{label: (cold p50, cold p95, warm p50, warm p95)}."""
    from django.core.cache import cache
    from django.db import connections
    from django.test import override_settings

    from dashboards import parallel
    from sphere_stats import db

    # Each page is served as gunicorn's workers serve it (sphere_stats.wsgi):
    # as a web request, whose new connections take the web's session
    # settings (sphere_stats.db), so the connections opened before are closed.
    parallel.close_connections()
    connections.close_all()
    timings = {}
    for label, (path, headers) in found.items():

        def get(path=path, headers=headers):
            with db.web_request():
                response = client.get(path, **headers)
            assert response.status_code == 200, (path, response.status_code)

        # Cold: every stat computed on every request (STATS_CACHE_SECONDS=0).
        # Warm: the stat cache as deployed (an answer at most 30 s old).
        with override_settings(STATS_CACHE_SECONDS=0):
            cold = timed(get, cold_repeat)
        cache.clear()
        timings[label] = (*cold, *(timed(get, repeat) if warm else (float("nan"),) * 2))
    return timings


def logged_in_client():
    from django.contrib.auth.models import User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True})
    user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def stat_cases(names: dict[str, str]) -> list[tuple]:
    from django.http import QueryDict

    from dashboards.stats import STATS, first_event_time
    from sphere_stats.windows import Window

    def window(**query):
        data = QueryDict(mutable=True)
        data.update(query)
        return Window.from_query(data, earliest=first_event_time)

    busiest = {"kind": "user", "name": names["user"], "project": ""}
    cases = []
    for name, stat in STATS.items():
        filters = {p.name: p.default for p in stat.params}
        if "kind" in filters:
            filters |= busiest
        cases.append((name, "30d", window(period="30d"), filters))
    cases.append(("logins", "90d daily", window(period="90d", res="1d"), {}))
    cases.append(("events_by_type", "all, monthly", window(period="all", res="30d"), {}))
    cases.append(("failures_by_type", "all", window(period="all"), {"n": 10}))
    cases.append(("entity_growth", "1y daily", window(period="1y", res="1d"), {}))
    cases.append(("events_by_type", f"90d daily {KOLKATA}", window(period="90d", tz=KOLKATA), {}))
    cases.append(("active_users", f"90d {NY}", window(period="90d", tz=NY), {}))
    cases.append(("active_users", f"1y {KOLKATA}", window(period="1y", tz=KOLKATA), {}))
    for name in ("top_users", "top_projects", "top_facilities", "top_errors", "failed_logins"):
        filters = {p.name: p.default for p in STATS[name].params}
        cases.append((name, "1y", window(period="1y"), filters))
    for tz in (NY, KOLKATA):
        cases.append(("entity_activity", f"busiest, {tz}", window(period="30d", tz=tz), busiest))
    return cases


def time_stats(args: argparse.Namespace, names: dict[str, str]) -> None:
    from django.db import connections

    from dashboards.stats import STATS
    from sphere_stats import db

    cases = stat_cases(names)
    connections.close_all()  # the next one is a web request's, as for the pages
    if args.stat:
        cases = [c for c in cases if c[0] in args.stat]
    print(f"\n{'stat':44} {'auto p50':>9} {'auto p95':>9} {'raw p50':>9} {'raw p95':>9}")
    for name, label, win, filters in cases:
        stat = STATS[name]

        def auto(stat=stat, win=win, filters=filters):
            with db.web_request():
                stat.compute(win, filters, "auto")

        def raw(stat=stat, win=win, filters=filters):
            # Not a web request's session: its statement timeout would cut
            # a scan of millions of rows short. The next one is reopened.
            connections.close_all()
            try:
                stat.compute(win, filters, "raw")
            finally:
                connections.close_all()

        a50, a95 = timed(auto, args.repeat)
        raw_times = "" if args.no_raw else "{:9.1f} {:9.1f}".format(*timed(raw, args.raw_repeat))
        flag = "" if a95 <= STAT_LIMIT_MS else f"  > {STAT_LIMIT_MS} ms"
        print(f"{name + ' (' + label + ')':44} {a50:9.1f} {a95:9.1f} {raw_times}{flag}", flush=True)


def compare(args: argparse.Namespace) -> None:
    """One table of the pages' cold p95 at two sizes, with the limits."""
    small, large = args.compare
    setup_django(load(args, small, reuse=True))
    load(args, large, reuse=True)  # migrated as well
    sized = {}
    for name in (small, large):
        use_database(name)
        events = describe_database()
        client = logged_in_client()
        sized[name] = (events, time_pages(client, pages(subjects()), 0, args.raw_repeat, False))
    (n_small, t_small), (n_large, t_large) = sized[small], sized[large]
    head = f"p95 ms at {n_small:,}"
    print(
        f"\n{'page, cold (stat cache off)':44} {head:>18} {f'at {n_large:,}':>15}"
        f" {'limit':>6} {'ratio':>6}  goal: p95 <= {PAGE_LIMIT_MS} ms, ratio <= {GROWTH_LIMIT}"
    )
    for label, timing in t_small.items():
        p95_small, p95_large = timing[1], t_large[label][1]
        ratio = p95_large / p95_small
        misses = [
            *(["slow"] if p95_large > PAGE_LIMIT_MS else []),
            *(["grows"] if ratio > GROWTH_LIMIT else []),
        ]
        print(
            f"{label:44} {p95_small:18.1f} {p95_large:15.1f} {PAGE_LIMIT_MS:6} {ratio:6.2f}"
            f"  {' '.join(misses) or 'ok'}",
            flush=True,
        )


def main() -> None:
    args = parse_args()
    if args.compare:
        compare(args)
        return
    setup_django(load(args, args.database, args.reuse))
    describe_database()
    names = subjects()
    print("pages' subjects:", names)
    if not args.stats_only:
        found = pages(names)
        timings = time_pages(logged_in_client(), found, args.repeat, args.raw_repeat)
        print(f"\n{'page':50} {'cold p50':>9} {'cold p95':>9} {'warm p50':>9} {'warm p95':>9}")
        for label, (c50, c95, w50, w95) in timings.items():
            flag = "" if c95 <= PAGE_LIMIT_MS else f"  > {PAGE_LIMIT_MS} ms cold"
            print(f"{label:50} {c50:9.1f} {c95:9.1f} {w50:9.1f} {w95:9.1f}{flag}", flush=True)
    if not args.pages_only:
        time_stats(args, names)


if __name__ == "__main__":
    main()
