from django.urls import path

from audit import explorer, views

urlpatterns = [
    path("catalog/", views.catalog_page, name="catalog"),
    path("events/", explorer.explorer_page, name="explorer"),
    path("events/export", explorer.export_download, name="events_export"),
    path("events/<uuid:event_uuid>/", explorer.event_page, name="event"),
]
