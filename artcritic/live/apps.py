from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "artcritic.live"
    label = "live"
