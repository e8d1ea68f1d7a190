"""Signed HTTP POSTs to other systems: the alert webhooks (alerts/) and the
audit streams (streams/) send through `post`.

A receiver checks `X-Sphere-Signature`: "sha256=" and the hex HMAC-SHA256
of the exact body bytes with the secret it shares with us (GitHub's and
GitLab's scheme), so a forged or altered body is refused. Every request
names what it carries in `X-Sphere-Delivery`: the same value on each retry
of the same content, so a receiver recognises a duplicate (delivery is at
least once).
"""

import hashlib
import hmac
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Sphere-Signature"
DELIVERY_HEADER = "X-Sphere-Delivery"
USER_AGENT = "sphere-stats"
# A receiver that takes longer is treated as down and retried later; the
# worker never waits on one for longer than this.
TIMEOUT_SECONDS = 10.0


def signature(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def valid_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver checks (and the tests' receivers do)."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None  # the HTTP status, None when no answer came
    error: str  # "" when ok; else what went wrong, for the admin


def post(
    url: str,
    body: bytes,
    *,
    secret: str,
    delivery: str,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> Outcome:
    """POST `body` signed with `secret`; any 2xx is a success, anything else
    (another status, a refused connection, a timeout) a failure to retry."""
    if urlsplit(url).scheme not in ("http", "https"):
        # urllib would also open file: and ftp: URLs; a receiver is a web server.
        return Outcome(False, None, f"not an http(s) URL: {url[:100]}")
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 (checked above)
    request.add_header("Content-Type", content_type)
    request.add_header("User-Agent", USER_AGENT)
    request.add_header(SIGNATURE_HEADER, signature(secret, body))
    request.add_header(DELIVERY_HEADER, delivery)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return Outcome(200 <= response.status < 300, response.status, "")
    except urllib.error.HTTPError as e:
        return Outcome(False, e.code, f"HTTP {e.code}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return Outcome(False, None, f"{type(e).__name__}: {reason}"[:500])
