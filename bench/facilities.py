"""Server time of the facility map, its panel, its refresh and its API.

    .venv/bin/python bench/facilities.py [--events 1000000] [--requests 30] [--reuse]

Loads `events` of seed_demo history (365 days, the six demo facilities) into
a scratch database, then times each URL `requests` times against gunicorn and
prints p50/p95 in milliseconds. --reuse keeps an already loaded database.
Goal: the page, its minute refresh and the panel under 300 ms p95 at 1M events (the table is
polled by every open map once a minute).

Through gunicorn the page and its refresh mostly hit the cached usage counts,
and gunicorn's per-process cache cannot be emptied from outside. So both are
timed once more in this process, through Django's test client, with the cache
emptied before every sample (each one a miss: what a poll costs when the
counts have expired) and kept (each one a hit).
"""

import argparse
import os
import re
import time

import _server
import requests

PAGES = [
    ("page /facilities/", "/facilities/", {}),
    (
        "panel /facilities/wisc/ (htmx)",
        "/facilities/wisc/?tz=America/Chicago",
        {"HX-Request": "true"},
    ),
    ("status fragment (htmx)", "/facilities/status/", {"HX-Request": "true"}),
    ("map document", "/facilities/map/", {}),
]
API = [
    ("GET /api/v1/facilities", "/api/v1/facilities"),
    ("GET /api/v1/facilities/wisc", "/api/v1/facilities/wisc?tz=America/Chicago"),
]


def login(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{base}/accounts/login/").text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    response = session.post(
        f"{base}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{base}/accounts/login/"},
    )
    response.raise_for_status()
    return session


def timed(session: requests.Session, url: str, headers: dict, n: int) -> list[float]:
    session.get(url, headers=headers).raise_for_status()  # warm up
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = session.get(url, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return times


def cache_paths(database_url: str, n: int) -> None:
    """The page and its refresh in this process, each sample a cache hit,
    then each a miss; prints p50/p95 in milliseconds for both."""
    os.environ.update(_server.env_for(database_url))
    os.environ["DJANGO_SETTINGS_MODULE"] = "sphere_stats.settings"
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.cache import cache
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username="benchadmin"))
    print(
        f"\n{'in-process, usage cache':<36} {'hit p50':>8} {'hit p95':>8} {'miss p50':>9} {'miss p95':>9}"
    )
    for label, path, headers in (PAGES[0], PAGES[2]):
        meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        client.get(path, **meta)  # warm up
        row = []
        for miss in (False, True):
            times = []
            for _ in range(n):
                if miss:
                    cache.clear()
                start = time.perf_counter()
                response = client.get(path, **meta)
                times.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, response.status_code
            row += [_server.percentile(times, 50), _server.percentile(times, 95)]
        print(f"{label:<36} {row[0]:8.1f} {row[1]:8.1f} {row[2]:9.1f} {row[3]:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()

    url = _server.scratch_database("bench_facilities", fresh=not args.reuse)
    if not args.reuse:
        start = time.perf_counter()
        _server.manage("seed_facilities", database_url=url)
        _server.manage("seed_demo", "--events", str(args.events), "-v", "0", database_url=url)
        print(f"loaded {args.events:,} events in {time.perf_counter() - start:.0f} s")
    _server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User;"
        "User.objects.filter(username='benchadmin').delete();"
        "User.objects.create_superuser('benchadmin', password='bench-password')",
        database_url=url,
    )
    token = _server.token(url)
    with _server.gunicorn(url, workers=2) as (base, _proc):
        session = login(base, "benchadmin", "bench-password")
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        print(f"{'url':<36} {'p50 ms':>8} {'p95 ms':>8}")
        for label, path, headers in PAGES:
            times = timed(session, base + path, headers, args.requests)
            print(
                f"{label:<36} {_server.percentile(times, 50):8.1f} {_server.percentile(times, 95):8.1f}"
            )
        for label, path in API:
            times = timed(api, base + path, {}, args.requests)
            print(
                f"{label:<36} {_server.percentile(times, 50):8.1f} {_server.percentile(times, 95):8.1f}"
            )
    cache_paths(url, args.requests)


if __name__ == "__main__":
    main()
