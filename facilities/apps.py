from django.apps import AppConfig


class FacilitiesConfig(AppConfig):
    name = "facilities"

    def ready(self) -> None:
        # GET /metrics reads each facility's status and nodes at each scrape.
        from facilities.metrics import FacilityCollector
        from sphere_stats.metrics import register

        register(FacilityCollector())
