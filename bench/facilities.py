"""Server time of the facility map, its panel, its refresh and its API.

    .venv/bin/python bench/facilities.py [--events 1000000] [--requests 30] [--reuse]

Loads `events` of seed_demo history (365 days, the six demo facilities) into
a scratch database, then times each URL `requests` times against gunicorn and
prints p50/p95 in milliseconds. --reuse keeps an already loaded database.
Goal: the page, its minute refresh and the panel under 300 ms p95 at 1M events (the table is
polled by every open map once a minute).
"""

import argparse
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


if __name__ == "__main__":
    main()
