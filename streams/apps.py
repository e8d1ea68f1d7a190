from django.apps import AppConfig


class StreamsConfig(AppConfig):
    name = "streams"
    verbose_name = "Audit streams"

    def ready(self) -> None:
        from streams import jobs  # noqa: F401 (registers the worker job)
