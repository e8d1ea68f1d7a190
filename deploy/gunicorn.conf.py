"""gunicorn's settings for sphere_stats: `make run`, the container (Dockerfile) and
bench/ingest_http.py start it with this file.

    gunicorn --config deploy/gunicorn.conf.py sphere_stats.wsgi

Threaded workers (gthread), which keep connections alive: the sync worker
closes each one after a single request, so nginx's upstream keep-alive
(docker-compose.yml) and ingest clients would reconnect every time, and one
long export would hold a whole worker. About one worker per CPU: the GIL
lets one thread of a process run Python at a time, so more processes than
CPUs only add switching; eight threads each overlap what a request waits for
(PostgreSQL's commit flush, 4 ms on this VM's disk), and the small ingest
requests that wait together share one INSERT (audit/coalesce.py), so more
threads mean fewer statements. On 2 vCPUs, single-event POSTs, medians of
six interleaved rounds: 993/s with 2 x 8 against 863/s with 2 x 4
(docs/benchmarks.md); sync workers gave half the rate of 2 x 4. Each thread
keeps its own database connection: 2 x 8 is 16 per instance.
"""

import glob
import os

from gunicorn.http import wsgi

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
worker_class = "gthread"
# Loopback unless told otherwise (`-b`; the container's entrypoint binds
# 0.0.0.0:8000 behind nginx): gunicorn's own default turns to 0.0.0.0 when
# PORT is set. Served alone it has no timeout for reading a request, so each
# client that trickles its headers or body holds one of the workers x threads
# (8) until it ends; nginx in front (deploy/nginx/sphere_stats.conf) reads
# requests whole first.
bind = [f"127.0.0.1:{os.environ.get('PORT', '8000')}"]
# Longer than nginx keeps an idle upstream connection (60 s): were gunicorn to
# close it first, nginx could send a POST into the closing connection and,
# as a POST is not retried, answer 502.
keepalive = 75


# No "Server: gunicorn/<version>" header: it tells a scanner which release's
# bugs to try. gunicorn has no setting for it, and always writes the header
# (gunicorn.http.wsgi.Response.default_headers); the master reads this file
# before it forks, so every worker answers without it. Behind nginx (compose)
# the header never reaches a client anyway: `make run` is bare gunicorn.
_default_headers = wsgi.Response.default_headers


def _headers_without_server(response) -> list[str]:
    return [line for line in _default_headers(response) if not line.startswith("Server:")]


wsgi.Response.default_headers = _headers_without_server


# GET /metrics sums the ingest counts of every worker from the files each
# writes to PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode;
# `make run` and deploy/web-entrypoint.sh set it). See docs/metrics.md.


def on_starting(server) -> None:
    """An empty directory at each start: files of the previous run's workers
    would otherwise be summed into this run's counts."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)


def child_exit(server, worker) -> None:
    """A worker has exited: its live gauges go (its counters and histograms
    stay in the sums, as a counter must never go down)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
