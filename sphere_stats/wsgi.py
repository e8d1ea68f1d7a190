import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sphere_stats.settings")

application = get_wsgi_application()

from sphere_stats.security import check_startup  # noqa: E402  (needs settings loaded)

check_startup()
