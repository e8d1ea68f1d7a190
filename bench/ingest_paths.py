"""The two ways audit.ingest.store writes a batch, against a scratch database:

    .venv/bin/python bench/ingest_paths.py [--events 100000] [--sizes 300,1000,10000]
                                           [--rounds 2]

For each batch size, stores `events` seed_demo events (validated beforehand)
in batches of that size through store(), once with every batch forced
through the binary COPY and once through INSERT_SQL (audit.ingest_copy.
COPY_MIN_ROWS set to 1 or out of reach), in alternating rounds on an
emptied `events`, with the triggers on; then the largest size again without the
insert trigger (the rows alone). Prints each path's seconds and events/s and
the COPY's gain. COPY_MIN_ROWS is where the gain begins.
"""

import argparse
import os
import statistics
import time

import _server  # sets sys.path so the project imports below resolve

INSERT_TRIGGER = "sphere_stats_events_insert"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sizes", default="300,1000,10000")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    url = _server.scratch_database("bench_ingest_paths")
    os.environ.update(_server.env_for(url), LOG_LEVEL="ERROR")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sphere_stats.settings")
    import django

    django.setup()
    from django.db import connection

    from audit import ingest, ingest_copy, triggers
    from demo.history import generate

    rows = ingest.validate(list(generate(args.events, days=365, seed=11)))

    def timed(size: int, path: str) -> float:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE events")
        ingest_copy.COPY_MIN_ROWS = 1 if path == "COPY" else len(rows) + 1
        start = time.perf_counter()
        for i in range(0, len(rows), size):
            ingest.store(rows[i : i + size])
        return time.perf_counter() - start

    sizes = [int(s) for s in args.sizes.split(",")]
    cases = [(size, True) for size in sizes] + [(max(sizes), False)]
    for size, with_triggers in cases:
        if not with_triggers:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TRIGGER {INSERT_TRIGGER} ON events")
        seconds: dict[str, list[float]] = {"COPY": [], "INSERT": []}
        for _ in range(args.rounds):
            for path in seconds:
                seconds[path].append(timed(size, path))
        copy, insert = (statistics.median(seconds[p]) for p in ("COPY", "INSERT"))
        label = f"{size:,}-event batches, {'triggers on' if with_triggers else 'no insert trigger'}"
        print(
            f"{label}: COPY {copy:.2f} s ({len(rows) / copy:,.0f}/s),"
            f" INSERT {insert:.2f} s ({len(rows) / insert:,.0f}/s):"
            f" COPY {100 * (insert - copy) / insert:+.0f} %",
            flush=True,
        )
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE events")
        cursor.execute(triggers.TRIGGERS_SQL)


if __name__ == "__main__":
    main()
