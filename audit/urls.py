from django.urls import path

from audit import views

urlpatterns = [
    path("catalog/", views.catalog_page, name="catalog"),
]
