from django.apps import AppConfig


class GpuConfig(AppConfig):
    name = "artcritic.gpu"
    label = "gpu"

    def ready(self) -> None:
        from artcritic import checks  # noqa: F401  (registers the system checks)
