"""`manage.py whatif --days N --profile NAME --gpus N --roles shared|dedicated`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from artcritic.jobs.whatif import ROLES, comparison_rows
from artcritic.jobs.whatif_history import MAX_DAYS, WhatIfRefused, whatif_run


class Command(BaseCommand):
    help = (
        "Replay the jobs done in the last N days through the real placement and scheduler on "
        "another setup (profile, number of GPUs, roles) and compare with what happened."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=7, help=f"1 to {MAX_DAYS} (default 7)")
        parser.add_argument("--profile", required=True, help="a loaded profile's name")
        parser.add_argument("--gpus", type=int, default=1, help="GPUs in the scenario (1-16)")
        parser.add_argument("--roles", choices=ROLES, default="shared")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = whatif_run(
                days=options["days"],
                profile=options["profile"],
                gpus=options["gpus"],
                roles=options["roles"],
            )
        except WhatIfRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"What if the last {result.days} day(s) had run on {result.gpus} × "
            f"{result.profile} ({result.roles} roles)?"
        )
        self.stdout.write(f"{'':16}{'happened':>16}{'predicted':>16}")
        for label, actual, predicted in comparison_rows(result.actual, result.predicted):
            self.stdout.write(f"{label:16}{actual:>16}{predicted:>16}")
        if result.predicted.per_gpu:
            per_gpu = ", ".join(f"{n} {c}" for n, c in result.predicted.per_gpu.items())
            self.stdout.write(f"jobs per GPU: {per_gpu}")
        for note in result.notes:
            self.stdout.write(f"note: {note}")
