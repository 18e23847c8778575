from django.apps import AppConfig


class GpuConfig(AppConfig):
    name = "artcritic.gpu"
    label = "gpu"
