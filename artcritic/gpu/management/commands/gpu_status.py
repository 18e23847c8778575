"""`manage.py gpu_status [--gpu NAME] [--sim]`: memory, power and processes of each GPU (NVML)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from artcritic.gpu.models import Gpu
from artcritic.gpu.nvml import NvmlUnavailable, probe_for, reading_lines
from artcritic.gpu.profiles import ProfileError, profile_from_data


@dataclass(frozen=True)
class Target:
    """One GPU to read and how: its name, profile, NVML index and whether it is simulated."""

    name: str
    profile: str
    index: int
    simulated: bool


class Command(BaseCommand):
    help = "Show each GPU's memory, utilisation, power, energy and processes (NVML)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--gpu", help="only this GPU (it need not have a row with --sim)")
        parser.add_argument(
            "--sim", action="store_true", help="read the simulated GPU of that name"
        )
        parser.add_argument(
            "--index", type=int, default=0, help="NVML index for a --gpu without a row"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        failures: list[str] = []
        for target in _targets(options["gpu"], sim=options["sim"], index=options["index"]):
            kind = "SIMULATED" if target.simulated else "real"
            self.stdout.write(f"GPU {target.name} — profile {target.profile} ({kind})")
            try:
                reading = probe_for(
                    target.name, simulated=target.simulated, index=target.index
                ).read()
            except NvmlUnavailable as failure:
                # The reason is printed once, as the command's error, after every GPU is shown.
                self.stdout.write("  not readable through NVML (reason below)")
                failures.append(f"GPU {target.name}: {failure.reason} Next: {failure.next_action}")
                continue
            self.stdout.write("\n".join(reading_lines(reading)))
        if failures:
            raise CommandError("\n".join(failures))


def _targets(gpu: str | None, *, sim: bool, index: int) -> list[Target]:
    """The GPUs to read: the named one (row or not), else every GPU row."""
    rows = Gpu.objects.select_related("active_profile").order_by("name")
    if gpu:
        rows = rows.filter(name=gpu)
        if not rows.exists():
            return [Target(gpu, "none", index, simulated=sim)]
    targets = [_target(row, sim=sim) for row in rows]
    if not targets:
        raise CommandError(
            "No GPUs are configured. Next: `manage.py loadprofiles --activate <profile> --gpu "
            "<name>`, or name one with `--gpu NAME [--sim]`."
        )
    return targets


def _target(row: Gpu, *, sim: bool) -> Target:
    try:
        simulated = profile_from_data(row.active_profile.data).simulated
    except ProfileError as exc:
        raise CommandError(f"GPU {row.name}: its active profile is invalid: {exc}") from None
    return Target(row.name, row.active_profile.name, row.nvml_index, simulated=sim or simulated)
