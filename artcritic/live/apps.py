from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "artcritic.live"
    label = "live"

    def ready(self) -> None:
        from artcritic.live import signals  # noqa: F401  (connects the access-change signals)
