"""schemathesis hooks for scripts/fuzz_api.py (loaded via SCHEMATHESIS_HOOKS)."""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    # The schema gives NDJSON bodies as a string; anything else is sent as one
    # JSON line, so the ingest path sees both well-formed and broken lines.
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode() + b"\n"
