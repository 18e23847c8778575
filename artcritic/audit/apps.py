from django.apps import AppConfig


class AuditConfig(AppConfig):
    verbose_name = "Audit"
    name = "artcritic.audit"
    label = "audit"
