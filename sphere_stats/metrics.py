"""GET /metrics: the figures Prometheus scrapes, in its text format (docs/metrics.md).

Two kinds of figures, written by prometheus_client:

- Read from the database at each scrape, by the collectors the apps
  register from their AppConfig.ready() (audit: events and entities from
  the pre-aggregates; facilities: status and nodes). They are computed for
  the scrape and stored nowhere, so every worker and replica answers alike.
- Counted by the process serving POST /api/v1/events (INGEST_*). Under
  gunicorn, PROMETHEUS_MULTIPROC_DIR is set: each worker writes its counts
  to files there and a scrape, whichever worker answers it, sums every
  worker's files (prometheus_client's multiprocess mode). Unset (tests,
  runserver), they live in this process's default registry.

A scrape is let in by a token with the `metrics` scope or by a client
address inside METRICS_ALLOWED_NETWORKS; anyone else gets the API's 401 or
403, and a database outage the API's 503.
"""

import ipaddress
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from ninja.errors import AuthenticationError
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from sphere_stats.api import ApiError, api, token_auth
from sphere_stats.middleware import DATABASE_DOWN
from sphere_stats.ratelimit import client_ip

SCOPE = "metrics"

# --- the ingest's own figures, counted as it serves ------------------------------------

INGEST_REQUESTS = Counter(
    "sphere_ingest_requests",
    "POST /api/v1/events requests answered, by HTTP status.",
    ["status"],
)
INGEST_EVENTS = Counter(
    "sphere_ingest_events",
    "Events sent to POST /api/v1/events by what became of them: accepted (stored), "
    "duplicate, conflict (its uuid is stored with other content), rejected (in a batch "
    "refused because some of its events were invalid).",
    ["result"],
)
INGEST_SECONDS = Histogram(
    "sphere_ingest_request_seconds",
    "Time to answer POST /api/v1/events, from the WSGI call to the response.",
    # A single event takes milliseconds, a batch of 10,000 about a second.
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STATEMENT_REQUESTS = Histogram(
    "sphere_ingest_statement_requests",
    "Requests whose events one INSERT stored (audit/coalesce.py): small POSTs that "
    "arrive together at one worker share a statement.",
    buckets=(1, 2, 3, 4, 6, 8, 16, 32),
)
INGEST_RESULTS = ("accepted", "duplicate", "conflict", "rejected")
# Every result is exposed from the start (at 0), so rate() has a series to
# read before the first conflict; bound once, as these run on every POST.
_events_by_result = {result: INGEST_EVENTS.labels(result) for result in INGEST_RESULTS}
_requests_by_status: dict[str, Counter] = {}


def ingest_answered(status: str, seconds: float) -> None:
    """Count one answer of POST /api/v1/events (sphere_stats.handlers)."""
    counter = _requests_by_status.get(status)
    if counter is None:
        counter = _requests_by_status.setdefault(status, INGEST_REQUESTS.labels(status))
    counter.inc()
    INGEST_SECONDS.observe(seconds)


def count_ingested(
    accepted: int = 0, duplicate: int = 0, conflict: int = 0, rejected: int = 0
) -> None:
    """Count what became of the events of one POST (audit.api.ingest_events)."""
    for result, n in zip(INGEST_RESULTS, (accepted, duplicate, conflict, rejected), strict=True):
        if n:
            _events_by_result[result].inc(n)


# --- the figures read at scrape time ----------------------------------------------------

_collectors: list[Collector] = []


def register(*collectors: Collector) -> None:
    """Read these at every scrape (an app's collectors, from its AppConfig.ready).
    A collector of a class registered already is left out."""
    for collector in collectors:
        if not any(type(known) is type(collector) for known in _collectors):
            _collectors.append(collector)


class Exposition(Collector):
    """Everything one scrape answers: the ingest figures of every worker
    (or of this process alone), then each registered collector's."""

    def collect(self) -> Iterator[Metric]:
        if settings.PROMETHEUS_MULTIPROC_DIR:
            workers = MultiProcessCollector(None, path=settings.PROMETHEUS_MULTIPROC_DIR)
            yield from workers.collect()
        else:
            yield from REGISTRY.collect()
        for collector in _collectors:
            yield from collector.collect()


# --- the view ---------------------------------------------------------------------------

_TOKEN_CHECKS = token_auth(SCOPE)


def from_allowed_network(request: HttpRequest) -> bool:
    """Whether the client's address (CLIENT_IP_HEADER's, when set) is inside
    METRICS_ALLOWED_NETWORKS."""
    networks = settings.METRICS_ALLOWED_NETWORKS
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:10.0.0.5 from a dual-stack socket
    return any(address in network for network in networks)


def _admit(request: HttpRequest) -> None:
    """Return for a client allowed by address or token; raise the API's
    AuthenticationError (401) or ApiError (403, a token without the scope)."""
    if from_allowed_network(request):
        return
    for check in _TOKEN_CHECKS:
        if check(request) is not None:
            return
    raise AuthenticationError()


@require_GET
@never_cache
def scrape(request: HttpRequest) -> HttpResponse:
    try:
        _admit(request)
        body = generate_latest(Exposition())
    except (AuthenticationError, ApiError, *DATABASE_DOWN) as exc:
        # The API's own answers: its 401, its 403 and its 503 with Retry-After
        # (the 503 middleware would answer this URL, outside /api/, with a page).
        return api.on_exception(request, exc)
    return HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)
