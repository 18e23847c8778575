"""The admin, staff's tool: every model's page and the queue and profile actions.

Django's admin autodiscovery imports this module (``artcritic.staff`` is an installed
app); each submodule registers the pages of one domain.
"""

from artcritic.staff.admin import audit, critic, gpu, jobs, studio

__all__ = ["audit", "critic", "gpu", "jobs", "studio"]
