"""`manage.py loadprofiles [PATH ...] [--activate NAME [--gpu GPU]]`: load profile files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from artcritic.gpu.profiles import GB, ProfileError, profile_from_data
from artcritic.gpu.services import profiles_load
from artcritic.jobs.profile_switch import ActivationRefused, gpu_activate


class Command(BaseCommand):
    help = (
        "Validate hardware profile files and load them all, or none. Without paths, every "
        "*.toml in ARTCRITIC_PROFILES_DIR. --activate makes one the active profile of a GPU."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="*", type=Path, help="profile files (.toml)")
        parser.add_argument("--activate", metavar="NAME", help="profile to make active")
        parser.add_argument(
            "--gpu", metavar="GPU", help="GPU to activate it on (default: ARTCRITIC_GPU)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        paths: list[Path] = options["paths"] or self._default_paths()
        activate: str | None = options["activate"]
        gpu_name: str | None = options["gpu"]
        if gpu_name is not None and activate is None:
            raise CommandError("--gpu needs --activate NAME; nothing was loaded.")
        try:
            # One transaction: a refused activation leaves no profile half-loaded either.
            with transaction.atomic():
                rows = profiles_load(paths)
                gpu = (
                    gpu_activate(gpu_name or settings.ARTCRITIC_GPU, activate) if activate else None
                )
        except (ProfileError, ActivationRefused) as exc:
            raise CommandError(str(exc)) from None
        for row in rows:
            profile = profile_from_data(row.data)
            kind = "simulated" if profile.simulated else "real hardware"
            self.stdout.write(
                f"Loaded {row.name}: {profile.usable_bytes / GB:.1f} GB usable of "
                f"{profile.vram_total_gb:.1f} GB, {kind} ({row.source_path})"
            )
        if gpu is not None:
            self.stdout.write(f"GPU {gpu.name} now uses profile {gpu.active_profile.name}.")

    def _default_paths(self) -> list[Path]:
        directory = Path(settings.ARTCRITIC_PROFILES_DIR)
        paths = sorted(directory.glob("*.toml"))
        if not paths:
            raise CommandError(
                f"No *.toml profile files in {directory} (ARTCRITIC_PROFILES_DIR); "
                "nothing was loaded. Next: pass paths, or fix the setting."
            )
        return paths
