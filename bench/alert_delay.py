"""The delay from a facility report's commit to its alert's delivery.

    .venv/bin/python bench/alert_delay.py [--rounds 6] [--evaluate 15] [--send 5]

Against a database of its own on the local server (DATABASE_URL's server,
database `bench_alert_delay`, migrated here): one facility, one webhook
channel to a receiver on loopback, one rule "facility is down" with no
cooldown, and `manage.py run_worker` started as a process with
ALERT_EVALUATE_SECONDS=--evaluate and OUTBOX_SEND_SECONDS=--send (the
defaults are the settings' defaults). Each round commits a 'down' report
with plain SQL, as the portal would, and times until the receiver holds the
signed firing message; then an 'up' report and its recovery message. Prints
every delay, their median and maximum, beside the issue's bound (60 s).
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.receivers import WebhookReceiver  # noqa: E402

BOUND = 60.0
SERVER = os.environ.get("BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432")


def sql(dsn: str, statement: str, params: dict | None = None) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(statement, params or {})


def prepare(dsn: str, receiver: WebhookReceiver) -> None:
    sql(f"{SERVER}/postgres", "DROP DATABASE IF EXISTS bench_alert_delay WITH (FORCE)")
    sql(f"{SERVER}/postgres", "CREATE DATABASE bench_alert_delay")
    env = {**os.environ, "DATABASE_URL": dsn}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    setup = f"""
from facilities.models import Facility
from notify.models import Channel
from alerts.models import AlertRule
Facility.objects.create(slug="utah", name="Utah", latitude=40.7, longitude=-111.9,
                        kind="compute", capacity_nodes=10)
channel = Channel.objects.create(name="ops", kind="webhook", url={receiver.url!r},
                                 secret={receiver.secret!r})
rule = AlertRule.objects.create(name="down", kind="facility_status", statuses=["down"],
                                cooldown=0)
rule.channels.add(channel)
"""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", setup], cwd=ROOT, env=env, check=True
    )


def report(dsn: str, status: str) -> float:
    sql(
        dsn,
        "INSERT INTO events (event_uuid, timestamp, event_type, caller, subject, subject_type,"
        " success, payload) VALUES (%(u)s, %(at)s, 'facility_status', 'utah-controller', 'utah',"
        " 'facility', true, %(p)s)",
        {"u": uuid.uuid4(), "at": datetime.now(UTC), "p": json.dumps({"status": status})},
    )
    return time.monotonic()  # after the commit


def wait_for(receiver: WebhookReceiver, count: int, since: float) -> float:
    while len(receiver.received) < count:
        if time.monotonic() - since > 3 * BOUND:
            raise SystemExit(f"no message after {3 * BOUND:.0f} s")
        time.sleep(0.02)
    return time.monotonic() - since


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--evaluate", type=int, default=15, help="ALERT_EVALUATE_SECONDS")
    parser.add_argument("--send", type=int, default=5, help="OUTBOX_SEND_SECONDS")
    args = parser.parse_args()
    dsn = f"{SERVER}/bench_alert_delay"
    receiver = WebhookReceiver(secret="bench-secret").start()
    prepare(dsn, receiver)
    report(dsn, "up")
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "ALERT_EVALUATE_SECONDS": str(args.evaluate),
        "OUTBOX_SEND_SECONDS": str(args.send),
    }
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    delays = {"firing": [], "resolved": []}
    try:
        time.sleep(args.evaluate + 1)  # the first evaluation sees the 'up'
        for _ in range(args.rounds):
            for status, topic in (("down", "firing"), ("up", "resolved")):
                # A report comes at any moment of the evaluation cycle.
                time.sleep(random.uniform(0, args.evaluate))
                count = len(receiver.received) + 1
                delays[topic].append(wait_for(receiver, count, report(dsn, status)))
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        receiver.stop()
    print(f"ALERT_EVALUATE_SECONDS={args.evaluate} OUTBOX_SEND_SECONDS={args.send}")
    for topic, values in delays.items():
        print(
            f"  commit -> {topic} message delivered: median {statistics.median(values):.1f} s,"
            f" max {max(values):.1f} s (bound {BOUND:.0f} s, ratio {max(values) / BOUND:.2f});"
            f" each: {', '.join(f'{v:.1f}' for v in values)}"
        )
    print(f"  signed: {all(r.signed for r in receiver.received)}")


if __name__ == "__main__":
    main()
