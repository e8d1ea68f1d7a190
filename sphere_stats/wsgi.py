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
