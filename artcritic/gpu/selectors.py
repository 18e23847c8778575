"""Reads about GPUs and their active profiles."""

from __future__ import annotations

from django.conf import settings

from artcritic.gpu.models import Gpu
from artcritic.gpu.profiles import Profile, profile_from_data


class NoActiveProfile(Exception):
    """No GPU row (and so no active profile) exists for the requested GPU name."""

    def __init__(self, gpu_name: str) -> None:
        self.gpu_name = gpu_name
        super().__init__(
            f"GPU {gpu_name!r} has no active hardware profile. An admin must run "
            f"`manage.py loadprofiles --activate <profile> --gpu {gpu_name}`."
        )


def profile_active(gpu_name: str | None = None) -> tuple[Gpu, Profile]:
    """The GPU row and its validated active profile (default: settings.ARTCRITIC_GPU)."""
    name = gpu_name or settings.ARTCRITIC_GPU
    gpu = Gpu.objects.select_related("active_profile").filter(name=name).first()
    if gpu is None:
        raise NoActiveProfile(name)
    return gpu, profile_from_data(gpu.active_profile.data)
