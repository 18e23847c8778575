from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "artcritic.jobs"
    label = "jobs"
