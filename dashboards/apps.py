from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    name = "dashboards"

    def ready(self) -> None:
        # Registers the weekly report with the background worker.
        from dashboards import jobs  # noqa: F401
