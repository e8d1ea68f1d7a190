"""Dashboards benchmark: server time of the overview, top-N and entity pages
and of every stat, from the pre-aggregates and straight from `events`.

    .venv/bin/python bench/dashboards.py --events 10000000      # the issue's size
    .venv/bin/python bench/dashboards.py --events 1000000 --reuse  # keep the loaded db

Loads N events with `seed_demo --bulk` (COPY, then one rebuild) into a
scratch database `bench_dash` on the configured PostgreSQL server (the
embedded one unless DATABASE_URL is set), then times requests in-process
through Django's test client (server time, no network) after one warm-up, and prints p50/p95 in milliseconds.
Goals at 10M events: overview p95 <= 100 ms warm, every stat <= 200 ms.
Stats are timed through `compute()` (never cached); pages cold (cache off)
and warm (the 30-second stat cache as deployed).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per page or stat")
    parser.add_argument("--raw-repeat", type=int, default=5, help="timed runs from raw events")
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded bench_dash")
    parser.add_argument(
        "--no-raw", action="store_true", help="skip the raw-table timings (minutes at 10M)"
    )
    parser.add_argument("--stats-only", action="store_true", help="skip the page timings")
    parser.add_argument("--pages-only", action="store_true", help="skip the stat timings")
    parser.add_argument("--stat", action="append", help="time only this stat (repeatable)")
    args = parser.parse_args()

    url = scratch_database("bench_dash", fresh=not args.reuse)
    if not args.reuse:
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

    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sphere_stats.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.cache import cache
    from django.db import connection
    from django.http import QueryDict
    from django.test import Client, override_settings

    from audit.models import Entity, EntityInterval, Event, HourlyCount
    from dashboards.stats import STATS, first_event_time, top
    from sphere_stats.windows import Window

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    events = Event.objects.count()
    print(
        f"events: {events:,}  hourly rows: {HourlyCount.objects.count():,}  "
        f"entities: {Entity.objects.count():,}  intervals: {EntityInterval.objects.count():,}"
    )

    user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True})
    user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)

    busiest = top.top_callers(Window.from_query({"period": "30d"}), 1)[0][0]
    project = top.top_projects(Window.from_query({"period": "30d"}), 1, "events")[0][0]
    org = Entity.objects.current().filter(kind="organization").order_by("name").first().name
    experiment = Entity.objects.current().filter(kind="experiment", scope=project).first()
    experiment = experiment or Entity.objects.current().filter(kind="experiment").first()

    pages = {
        "overview (30d)": "/",
        "overview (90d, America/New_York)": "/?period=90d&tz=America/New_York",
        "overview (1y)": "/?period=1y",
        "top-N (30d)": "/top/",
        f"user page ({busiest}, busiest)": f"/users/{busiest}/",
        f"org page ({org})": f"/orgs/{org}/",
        f"project page ({project})": f"/projects/{project}/",
        f"experiment page ({experiment.scope}/{experiment.name})": (
            f"/experiments/{experiment.scope}/{experiment.name}/"
        ),
    }
    # Cold: every stat computed on every request (STATS_CACHE_SECONDS=0).
    # Warm: the stat cache as deployed (an answer at most 30 s old).
    print(f"\n{'page':50} {'cold p50':>9} {'cold p95':>9} {'warm p50':>9} {'warm p95':>9}")
    for label, path in pages.items() if not args.stats_only else ():

        def get(path=path):
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)

        with override_settings(STATS_CACHE_SECONDS=0):
            c50, c95 = timed(get, args.raw_repeat)
        cache.clear()
        w50, w95 = timed(get, args.repeat)
        print(f"{label:50} {c50:9.1f} {c95:9.1f} {w50:9.1f} {w95:9.1f}", flush=True)

    def window(**query):
        data = QueryDict(mutable=True)
        data.update(query)
        return Window.from_query(data, earliest=first_event_time)

    cases = []
    for name, stat in STATS.items():
        filters = {p.name: p.default for p in stat.params}
        if "kind" in filters:
            filters |= {"kind": "user", "name": busiest, "project": ""}
        cases.append((name, "30d", window(period="30d"), filters))
    cases.append(("logins", "90d daily", window(period="90d", res="1d"), {}))
    cases.append(("events_by_type", "all, monthly", window(period="all", res="30d"), {}))
    cases.append(("failures_by_type", "all", window(period="all"), {"n": 10}))
    cases.append(("entity_growth", "1y daily", window(period="1y", res="1d"), {}))
    cases.append(
        ("events_by_type", "90d daily Asia/Kolkata", window(period="90d", tz="Asia/Kolkata"), {})
    )
    cases.append(("active_users", "90d America/New_York", window(period="90d", tz=NY), {}))
    cases.append(("active_users", "1y Asia/Kolkata", window(period="1y", tz="Asia/Kolkata"), {}))
    heatmap = {"kind": "user", "name": busiest, "project": ""}
    for tz in (NY, "Asia/Kolkata"):
        cases.append(("entity_activity", f"{busiest}, {tz}", window(period="30d", tz=tz), heatmap))
    if args.stat:
        cases = [c for c in cases if c[0] in args.stat]

    print(f"\n{'stat':44} {'auto p50':>9} {'auto p95':>9} {'raw p50':>9} {'raw p95':>9}")
    for name, label, win, filters in cases if not args.pages_only else ():
        stat = STATS[name]

        def auto(stat=stat, win=win, filters=filters):
            stat.compute(win, filters, "auto")

        def raw(stat=stat, win=win, filters=filters):
            stat.compute(win, filters, "raw")

        a50, a95 = timed(auto, args.raw_repeat)
        raw_times = "" if args.no_raw else "{:9.1f} {:9.1f}".format(*timed(raw, args.raw_repeat))
        print(f"{name + ' (' + label + ')':44} {a50:9.1f} {a95:9.1f} {raw_times}", flush=True)


if __name__ == "__main__":
    main()
