"""Adopting a portal database: `migrate` on N rows, and what the triggers cost the portal.

    .venv/bin/python bench/adopt.py [--rows 1000000] [--days 365] [--lag-samples 20]
                                    [--inserts 3000] [--copy-rows 200000] [--no-verify]

1. A fresh database made by psql with the SPHERE request's DDL (the portal's
   `events` as it is), filled by COPY with N rows of demo.history.generate (users,
   orgs, projects, memberships, logins, experiments, realizations over `--days`
   ending now), then ANALYZE. A copy of it (CREATE DATABASE … TEMPLATE) stays
   as the portal left it: the baseline without our indexes and triggers.
2. `manage.py migrate` on the first, timed: wall time, each migration (the
   indexes on `events`, CONCURRENTLY), and the backfill of each pre-aggregate
   (post_migrate), from the time its output arrives.
3. Then, on the adopted database and the baseline, with fresh rows of the
   same simulation:
   (a) lag: a direct INSERT (psycopg, autocommit) committed, then another
       connection polls event_counts_hourly and entities until they count it;
   (b) 3,000 single-row autocommit INSERTs (prepared): rows/s, p50, p99;
   (c) COPY of 200,000 rows;
   each in three set-ups: the baseline (seed DDL alone), the adopted table
   with our triggers disabled (our indexes only), and the adopted table.
   Each round has new events and alternates the order; rows written with the
   triggers disabled are deleted with them disabled (the pre-aggregates stay
   exact), and the table is vacuumed before the next round.
4. verify_aggregates on the adopted database (unless --no-verify), timed.

Runs on the server of DATABASE_URL (the embedded one without it); both
scratch databases are dropped at the end.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import _server  # sets sys.path so the project imports below resolve
import django
import psycopg

COLUMNS = (
    "event_uuid",
    "timestamp",
    "event_type",
    "caller",
    "subject",
    "subject_type",
    "target",
    "success",
    "error_message",
    "payload",
)
COPY_SQL = f"COPY events ({', '.join(COLUMNS)}) FROM STDIN"
INSERT_SQL = (
    f"INSERT INTO events ({', '.join(COLUMNS)}) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
)
SETUPS = ("seed DDL only", "adopted, triggers off", "adopted")


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sphere_stats.settings")
    django.setup()


def row(event: dict, fresh: bool = False) -> tuple:
    values = [event[c] for c in COLUMNS]
    values[-1] = json.dumps(event["payload"])
    if fresh:  # the same event under a new uuid: a round of its own
        values[0] = str(uuid.uuid4())
    return tuple(values)


def url_for(name: str) -> str:
    return urlunsplit(urlsplit(_server.base_url())._replace(path=f"/{name}"))


def admin(sql: str) -> None:
    with psycopg.connect(_server.psycopg_url(url_for("postgres")), autocommit=True) as conn:
        conn.execute(sql)


def psql(url: str, sql: str) -> None:
    # The client an operator has: libpq reads a socket directory
    # percent-encoded as the URL's host.
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url],
        input=sql,
        text=True,
        check=True,
        capture_output=True,
    )


def fill(url: str, rows: int, days: int) -> tuple[float, float]:
    """COPY `rows` generated events into `events`; (generate+COPY s, ANALYZE s)."""
    from demo.history import generate

    start = time.perf_counter()
    with psycopg.connect(_server.psycopg_url(url), autocommit=True) as conn:
        with conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            for event in generate(rows, days=days, seed=41):
                copy.write_row(row(event))
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        conn.execute("ANALYZE events")
    return loaded, time.perf_counter() - start


# --- migrate, timed from its output ---------------------------------------------------------


def timed_migrate(url: str) -> dict:
    """Run `manage.py migrate`; wall time, per migration, per pre-aggregate."""
    env = {**_server.env_for(url), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "migrate", "--no-input"],
        cwd=_server.ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    chunks: dict[str, list[tuple[float, str]]] = {"out": [], "err": []}

    def read(stream, key: str) -> None:
        while data := os.read(stream.fileno(), 65536):
            chunks[key].append((time.perf_counter() - start, data.decode(errors="replace")))

    readers = [
        threading.Thread(target=read, args=(proc.stdout, "out")),
        threading.Thread(target=read, args=(proc.stderr, "err")),
    ]
    for reader in readers:
        reader.start()
    proc.wait()
    for reader in readers:
        reader.join()
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError("migrate failed:\n" + "".join(t for _, t in chunks["err"])[-3000:])

    # Each migration ends with " OK" on stdout: it took from the previous end.
    migrations, previous, text = [], 0.0, ""
    for at, data in chunks["out"]:
        text += data
        while match := re.search(r"Applying (\S+)\.\.\. OK", text):
            migrations.append((match.group(1), at - previous))
            previous = at
            text = text[match.end() :]
    # The backfill's progress bars (stderr), one per pre-aggregate: each ran
    # from its bar's first output to the next one's.
    starts: list[tuple[str, float]] = []
    for at, data in chunks["err"]:
        for match in re.finditer(r"([a-z_]+):\s+\d+%", data):
            if match.group(1) not in {name for name, _ in starts}:
                starts.append((match.group(1), at))
    backfill = [
        (name, (starts[i + 1][1] if i + 1 < len(starts) else wall) - at)
        for i, (name, at) in enumerate(starts)
    ]
    return {
        "wall": wall,
        "migrations": migrations,
        "migrations_total": previous,
        "backfill": backfill,
        "before_backfill": (starts[0][1] - previous) if starts else 0.0,
    }


# --- what the triggers cost a writer -------------------------------------------------------


def lag(url: str, samples: int) -> list[tuple[float, float, int]]:
    """(ms from commit to the hourly count, to the entity, reads needed) per sample."""
    found = []
    with (
        psycopg.connect(_server.psycopg_url(url), autocommit=True) as writer,
        psycopg.connect(_server.psycopg_url(url), autocommit=True) as reader,
    ):
        for i in range(samples):
            name = f"lag_{uuid.uuid4().hex[:10]}"
            hour = writer.execute("SELECT date_trunc('hour', now(), 'UTC')").fetchone()[0]
            count_sql = (
                "SELECT coalesce((SELECT n FROM event_counts_hourly WHERE bucket = %s "
                "AND event_type = 'user_created' AND success), 0), "
                "EXISTS (SELECT 1 FROM entities WHERE kind = 'user' AND scope = '' AND name = %s)"
            )
            before = reader.execute(count_sql, [hour, name]).fetchone()[0]
            writer.execute(
                f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES (%(uuid)s, now(), "
                "'user_created', %(name)s, %(name)s, 'user', NULL, true, NULL, '{}')",
                {"uuid": str(uuid.uuid4()), "name": name},
            )
            committed = time.perf_counter()
            counted = entity = None
            reads = 0
            while counted is None or entity is None:
                reads += 1
                n, exists = reader.execute(count_sql, [hour, name]).fetchone()
                now = time.perf_counter()
                if counted is None and n >= before + 1:
                    counted = now - committed
                if entity is None and exists:
                    entity = now - committed
                if now - committed > 10:
                    raise RuntimeError(f"sample {i}: not counted after 10 s")
            found.append((counted * 1000, entity * 1000, reads))
    return found


@contextmanager
def triggers_off(url: str, uuids: list[str]):
    """Our triggers disabled while the block writes; its rows deleted after,
    still without them, so the pre-aggregates never saw them."""
    with psycopg.connect(_server.psycopg_url(url), autocommit=True) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        try:
            yield
        finally:
            conn.execute("DELETE FROM events WHERE event_uuid = ANY(%s::uuid[])", [uuids])
            conn.execute("ALTER TABLE events ENABLE TRIGGER USER")


def single_inserts(url: str, rows: list[tuple]) -> tuple[float, float, float]:
    """rows/s, p50 ms, p99 ms of one prepared autocommit INSERT per row."""
    latencies = []
    with psycopg.connect(_server.psycopg_url(url), autocommit=True) as conn:
        cursor = conn.cursor()
        start = time.perf_counter()
        for values in rows:
            t0 = time.perf_counter()
            cursor.execute(INSERT_SQL, values, prepare=True)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    return (
        len(rows) / elapsed,
        _server.percentile(latencies, 50) * 1000,
        _server.percentile(latencies, 99) * 1000,
    )


def copy_rows(url: str, rows: list[tuple]) -> float:
    """Seconds to COPY the rows in (one statement, one commit)."""
    with psycopg.connect(_server.psycopg_url(url), autocommit=True) as conn:
        start = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
            for values in rows:
                copy.write_row(values)
        return time.perf_counter() - start


def measure(setup: str, urls: dict[str, str], events: list[dict], how) -> object:
    """`how` (single_inserts or copy_rows) of `events` in one set-up."""
    rows = [row(e, fresh=True) for e in events]
    if setup == "adopted, triggers off":
        with triggers_off(urls[setup], [r[0] for r in rows]):
            return how(urls[setup], rows)
    return how(urls[setup], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--lag-samples", type=int, default=20)
    parser.add_argument("--inserts", type=int, default=3000)
    parser.add_argument("--copy-rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args()
    setup_django()
    from demo.history import generate
    from tests.audit.adopt_helpers import SEED_DDL

    adopted, baseline = "bench_adopt", "bench_adopt_seed"
    urls = {"seed DDL only": url_for(baseline), "adopted": url_for(adopted)}
    urls["adopted, triggers off"] = urls["adopted"]
    began = time.perf_counter()
    for name in (adopted, baseline):
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{adopted}"')
    try:
        psql(urls["adopted"], SEED_DDL)
        loaded, analyzed = fill(urls["adopted"], args.rows, args.days)
        start = time.perf_counter()
        admin(f'CREATE DATABASE "{baseline}" TEMPLATE "{adopted}" STRATEGY FILE_COPY')
        cloned = time.perf_counter() - start
        print(f"server: {urlsplit(_server.base_url()).netloc or 'embedded'}")
        print(
            f"{args.rows:,} rows over {args.days} days: generated + COPY {loaded:.1f} s "
            f"({args.rows / loaded:,.0f} rows/s), ANALYZE {analyzed:.1f} s; "
            f"baseline copy {cloned:.1f} s"
        )

        timing = timed_migrate(urls["adopted"])
        print(f"\nmanage.py migrate: {timing['wall']:.1f} s wall")
        print(
            f"  migrations (tables; indexes on events, CONCURRENTLY): "
            f"{timing['migrations_total']:.1f} s"
        )
        for name, seconds in timing["migrations"]:
            if seconds >= 0.5:
                print(f"    {name:40} {seconds:7.1f} s")
        print(f"  triggers + ANALYZE before the backfill:  {timing['before_backfill']:.1f} s")
        print(f"  pre-aggregate backfill: {sum(s for _, s in timing['backfill']):.1f} s")
        for name, seconds in timing["backfill"]:
            print(f"    {name:40} {seconds:7.1f} s")

        samples = lag(urls["adopted"], args.lag_samples)
        counted = sorted(s[0] for s in samples)
        entity = sorted(s[1] for s in samples)
        first_read = sum(1 for s in samples if s[2] == 1)
        print(
            f"\n(a) commit -> visible to another connection, {len(samples)} samples: "
            f"event_counts_hourly p50 {counted[len(counted) // 2]:.2f} ms, "
            f"max {counted[-1]:.2f} ms; entities p50 {entity[len(entity) // 2]:.2f} ms, "
            f"max {entity[-1]:.2f} ms; counted at the first read in {first_read}/{len(samples)}"
        )

        results: dict[str, dict[str, list]] = {s: {"insert": [], "copy": []} for s in SETUPS}
        for round_ in range(args.rounds):
            # New events each round (another run of the simulation over the
            # same days): the same rows for each set-up within it.
            extra = list(generate(args.inserts + args.copy_rows, days=args.days, seed=43 + round_))
            inserts, copies = extra[: args.inserts], extra[args.inserts :]
            order = SETUPS if round_ % 2 == 0 else tuple(reversed(SETUPS))
            for setup in order:
                results[setup]["insert"].append(measure(setup, urls, inserts, single_inserts))
            for setup in order:
                results[setup]["copy"].append(measure(setup, urls, copies, copy_rows))
            # The rows deleted after "triggers off" leave dead tuples in
            # every index of the adopted table: gone before the next round.
            with psycopg.connect(_server.psycopg_url(urls["adopted"]), autocommit=True) as conn:
                conn.execute("VACUUM (ANALYZE) events")
        print(f"\n(b) {args.inserts:,} single-row autocommit INSERTs (prepared), per round:")
        print(f"    {'':24} {'rows/s':>16} {'p50 ms':>12} {'p99 ms':>12}")
        for setup in SETUPS:
            runs = results[setup]["insert"]
            print(
                f"    {setup:24} {' / '.join(f'{r[0]:,.0f}' for r in runs):>16} "
                f"{' / '.join(f'{r[1]:.2f}' for r in runs):>12} "
                f"{' / '.join(f'{r[2]:.2f}' for r in runs):>12}"
            )
        print(f"\n(c) COPY of {args.copy_rows:,} rows, per round:")
        for setup in SETUPS:
            runs = results[setup]["copy"]
            print(
                f"    {setup:24} "
                + " / ".join(f"{s:.1f} s ({args.copy_rows / s:,.0f} rows/s)" for s in runs)
            )

        if not args.no_verify:
            start = time.perf_counter()
            out = _server.manage("verify_aggregates", database_url=urls["adopted"])
            print(
                f"\nverify_aggregates: {time.perf_counter() - start:.1f} s: "
                f"{out.strip().splitlines()[-1]}"
            )
        print(f"\ntotal {time.perf_counter() - began:.0f} s")
    finally:
        for name in (adopted, baseline):
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
