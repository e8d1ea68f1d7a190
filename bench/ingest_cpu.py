"""CPU per single-event POST inside the application, without gunicorn or a client:

    .venv/bin/python bench/ingest_cpu.py [--requests 4000] [--warmup 300]

Calls sphere_stats.wsgi.application (the same WSGI application gunicorn
serves) with one new login event per request against a scratch database, and
prints this process's CPU time and the wall time per request. The CPU time is
what Django, ninja, the ingest code and psycopg cost; the wall time adds the
wait for PostgreSQL. bench/ingest_http.py measures the whole path over HTTP;
this one isolates the part this project's code controls, and varies far less
between runs on a shared machine.
"""

import argparse
import io
import json
import os
import time
import uuid

import _server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=300, help="requests not measured")
    args = parser.parse_args()

    url = _server.scratch_database("bench_ingest_cpu")
    token = _server.token(url)
    os.environ.update(_server.env_for(url), LOG_LEVEL="ERROR")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sphere_stats.settings")
    from sphere_stats.wsgi import application

    def start_response(status: str, headers, exc_info=None) -> None:
        if not status.startswith("201"):
            raise RuntimeError(f"ingest answered {status}")

    def body(i: int) -> bytes:
        user = f"user{i % 2000}"
        return json.dumps(
            {
                "event_uuid": str(uuid.uuid4()),
                "timestamp": f"2026-12-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
                "event_type": "user_login",
                "caller": user,
                "subject": user,
                "subject_type": "user",
                "success": i % 13 != 0,
            }
        ).encode()

    def post(body: bytes) -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/api/v1/events",
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Bearer {token}",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
        }
        b"".join(application(environ, start_response))

    # Bodies made beforehand: the client's work is not the server's CPU.
    warmup = [body(i) for i in range(args.warmup)]
    measured = [body(i) for i in range(args.warmup, args.warmup + args.requests)]
    for each in warmup:
        post(each)
    cpu, wall = time.process_time(), time.perf_counter()
    for each in measured:
        post(each)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        f"in-process single-event POST: {cpu / args.requests * 1e6:.0f} us CPU, "
        f"{wall / args.requests * 1e6:.0f} us wall per request ({args.requests:,} requests)"
    )


if __name__ == "__main__":
    main()
