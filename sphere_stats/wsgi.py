import gc
import os

import django

from sphere_stats.embedded_db import ensure_database_url

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sphere_stats.settings")
# Before Django reads the settings: the embedded PostgreSQL of `make run`,
# started when DATABASE_URL is unset.
ensure_database_url()
django.setup(set_prefix=False)

from django.urls import get_resolver  # noqa: E402  (needs settings loaded)

from sphere_stats.handlers import Application  # noqa: E402
from sphere_stats.security import check_startup  # noqa: E402

# POST /api/v1/events through the API handler, the rest through Django's.
application = Application()


check_startup()
# Import every view and API module now (plotly, folium, the OpenAPI routers),
# not on each worker's first request: that request would wait seconds, and
# with `gunicorn --preload` the workers share the loaded code.
get_resolver().url_patterns  # noqa: B018

# What is loaded by now lives as long as the process: out of the collector's
# reach, the full collections that requests' objects set off now and then no
# longer walk its 150,000 objects (40-70 ms each time on a 2-CPU machine,
# landing on whichever request was running). With `gunicorn --preload` the
# workers also keep sharing those pages: a collection writes to each object
# it visits.
gc.freeze()
