from django.apps import AppConfig


class RuntimesConfig(AppConfig):
    name = "artcritic.runtimes"
    label = "runtimes"
