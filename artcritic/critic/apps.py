from django.apps import AppConfig


class CriticConfig(AppConfig):
    name = "artcritic.critic"
    label = "critic"
    verbose_name = "Critic"
