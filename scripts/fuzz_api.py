"""Fuzz the running API with schemathesis against its own OpenAPI schema.

    .venv/bin/python scripts/fuzz_api.py [--max-examples 25] [--max-time 150]

Starts gunicorn on a loopback port against a fresh scratch database (never
the development one), with a token holding both scopes, then runs
`schemathesis run http://127.0.0.1:PORT/api/v1/openapi.json` with bounded
examples. Fails (exit 1) on any 5xx, any response that does not match the
schema, an undocumented status code or content type. CI runs it after the
tests.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import _server  # noqa: E402  (bench plumbing: scratch database, gunicorn, token)

CHECKS = ",".join(
    [
        "not_a_server_error",
        "response_schema_conformance",
        "status_code_conformance",
        "content_type_conformance",
    ]
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=25)
    parser.add_argument("--max-time", type=int, default=150, help="seconds for the whole run")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()

    # Only errors in the server log: 4xx answers are the point of fuzzing.
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    url = _server.scratch_database("fuzz_api")
    token = _server.token(url, "fuzz")
    _server.manage("seed_demo", "--events", "2000", database_url=url)
    # Pages, the HTML 404 included, name their static files by the hashes in
    # collectstatic's manifest; without it a probe of a path outside the API
    # gets a 500 from the error page itself.
    _server.manage("collectstatic", "--no-input", "-v", "0", database_url=url)
    # Fuzzed query strings reach several KB; gunicorn's own request-line cap
    # (4 KB) would answer them with an HTML 414 before the app sees them.
    # In production nginx caps URLs in front; here the app is under test.
    unlimited = ("--limit-request-line", "0")
    with _server.gunicorn(url, workers=args.workers, extra_args=unlimited) as (base, _):
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{base}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(args.max_examples),
            "--max-time",
            str(args.max_time),
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "30",
            "--workers",
            "2",
            "--suppress-health-check",
            "all",
            "--no-color",
        ]
        print(
            "$", " ".join(c if "Bearer" not in c else "Authorization: Bearer ***" for c in command)
        )
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "fuzz_hooks"}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT / "scripts"), env.get("PYTHONPATH")])
        )
        return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
