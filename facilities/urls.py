from django.urls import path

from facilities import views

app_name = "facilities"

urlpatterns = [
    path("", views.index, name="index"),
    path("map/", views.map_document, name="map"),
    path("status/", views.status, name="status"),
    path("<slug:slug>/", views.index, name="detail"),
]
