from django.urls import path

from dashboards import views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("top/", views.top, name="top"),
    path("search/", views.search, name="search"),
    path("search/suggest/", views.search_suggest, name="search-suggest"),
    path("users/<str:name>/", views.user_page, name="user"),
    path("users/<str:name>/timeline/", views.timeline, {"kind": "user"}, name="user-timeline"),
    path("orgs/<str:name>/", views.org_page, name="org"),
    path(
        "orgs/<str:name>/timeline/",
        views.timeline,
        {"kind": "organization"},
        name="org-timeline",
    ),
    path("projects/<str:name>/", views.project_page, name="project"),
    path(
        "projects/<str:name>/timeline/",
        views.timeline,
        {"kind": "project"},
        name="project-timeline",
    ),
    path("experiments/<str:project>/<str:name>/", views.experiment_page, name="experiment"),
    path(
        "experiments/<str:project>/<str:name>/timeline/",
        views.timeline,
        {"kind": "experiment"},
        name="experiment-timeline",
    ),
]
