"""What the triggers on `events` cost an INSERT, on an existing database.

    .venv/bin/python bench/insert_cost.py --database-url postgresql://postgres@127.0.0.1:5432/bench_dash_1m

Each INSERT runs in a transaction that is rolled back, so the database is
left as it was: one facility report after the last one, one login, 1,000
facility reports in one statement, 1,000 mixed events (half reports, half
logins) and one facility report three days back, inside a run (the case
that refolds a facility's runs). Prints the median and p95 ms of each. Run
it before and after a change of the triggers on the same database.
"""

import argparse
import json
import random
import statistics
import time
import uuid
from datetime import timedelta

import psycopg

COLUMNS = (
    "event_uuid, timestamp, event_type, caller, subject, subject_type, target, success,"
    " error_message, payload"
)


def rows(n: int, start, facilities: list[str], mixed: bool) -> list[tuple]:
    out = []
    for i in range(n):
        at = start + timedelta(seconds=i)
        if mixed and i % 2:
            user = f"u{i % 50}"
            out.append((uuid.uuid4(), at, "user_login", user, user, "user", None, True, None, "{}"))
        else:
            slug = facilities[i % len(facilities)]
            status = random.choice(["up"] * 9 + ["down"])
            payload = json.dumps({"status": status, "interval": 600})
            report = ("facility_status", f"{slug}-ctl", slug, "facility", None, True, None)
            out.append((uuid.uuid4(), at, *report, payload))
    return out


def timed(conn: psycopg.Connection, batch: list[tuple], repeat: int) -> tuple[float, float]:
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"] * len(batch))
    flat = [v for r in batch for v in r]
    samples = []
    for _ in range(repeat + 1):  # the first is a warm-up
        with conn.transaction(force_rollback=True):
            started = time.perf_counter()
            conn.execute(f"INSERT INTO events ({COLUMNS}) VALUES {values}", flat)
            samples.append((time.perf_counter() - started) * 1000)
    kept = sorted(samples[1:])
    return statistics.median(kept), kept[round(0.95 * (len(kept) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    with psycopg.connect(args.database_url) as conn:
        last = conn.execute("SELECT max(timestamp) FROM events").fetchone()[0]
        facilities = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT subject FROM events"
                " WHERE event_type = 'facility_status' AND subject_type = 'facility' LIMIT 20"
            )
        ]
        start = last + timedelta(seconds=1)
        cases = (
            ("1 facility report after the last", rows(1, start, facilities, False), 50),
            ("1 login", rows(2, start, facilities, True)[1:2], 50),
            ("1,000 facility reports, one INSERT", rows(1000, start, facilities, False), 10),
            ("1,000 mixed events, one INSERT", rows(1000, start, facilities, True), 10),
            (
                "1 facility report 3 days back",
                rows(1, last - timedelta(days=3), facilities[:1], False),
                20,
            ),
        )
        for label, batch, repeat in cases:
            median, p95 = timed(conn, batch, repeat)
            print(f"{label:40} median {median:7.2f} ms  p95 {p95:7.2f} ms")


if __name__ == "__main__":
    main()
