"""gunicorn's settings for sphere_stats: `make run`, the container (Dockerfile) and
bench/ingest_http.py start it with this file.

    gunicorn --config deploy/gunicorn.conf.py sphere_stats.wsgi

Threaded workers (gthread), which keep connections alive: the sync worker
closes each one after a single request, so nginx's upstream keep-alive
(docker-compose.yml) and ingest clients would reconnect every time, and one
long export would hold a whole worker. About one worker per CPU: the GIL
lets one thread of a process run Python at a time, so more processes than
CPUs only add switching; four threads each overlap what a request waits for
(PostgreSQL's commit flush, 4 ms on this VM's disk). On 2 vCPUs 2 x 4 gave
the best single-event rate and p99 of the configurations tried (README,
"Benchmarks"); sync workers gave half the rate.
"""

import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
# Longer than nginx keeps an idle upstream connection (60 s): were gunicorn to
# close it first, nginx could send a POST into the closing connection and,
# as a POST is not retried, answer 502.
keepalive = 75
