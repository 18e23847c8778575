from django.apps import AppConfig


class StudioConfig(AppConfig):
    name = "artcritic.studio"
    label = "studio"
