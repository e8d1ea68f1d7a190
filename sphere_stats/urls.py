from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from sphere_stats import metrics, views
from sphere_stats.api import api

api.add_router("", "audit.api.router")
api.add_router("", "dashboards.api.router")
api.add_router("", "facilities.api.router")

admin.site.site_header = "sphere_stats administration"
admin.site.site_title = "sphere_stats"
# Its own login page would let a guesser bypass the throttle of accounts/login/.
admin.site.login = views.admin_login

urlpatterns = [
    # First: Django tries patterns in order, and every portal service posts
    # its events here; no page's URL starts with api/v1/. Before ninja's own
    # root view, the getting-started page.
    path("api/v1/", views.api_home),
    path("api/v1/", api.urls),
    path("", include("dashboards.urls")),
    path("", include("audit.urls")),
    path("facilities/", include("facilities.urls")),
    path("alerts/", include("alerts.urls")),
    path("api/", views.api_home, name="api_home"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.scrape, name="metrics"),
    path("accounts/login/", views.ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

handler400 = "sphere_stats.views.bad_request"
handler403 = "sphere_stats.views.permission_denied"
handler404 = "sphere_stats.views.not_found"
handler500 = "sphere_stats.views.server_error"
