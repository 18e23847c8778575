from django.apps import AppConfig


class StaffConfig(AppConfig):
    """Staff's side: the admin for every model and the deployment's system checks."""

    name = "artcritic.staff"
    label = "staff"
    verbose_name = "Staff"

    def ready(self) -> None:
        from artcritic.staff import checks  # noqa: F401  (registers the system checks)
