"""``manage.py runtime_doctor {comfyui|critic} --url URL``: check a runtime end to end."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError

from artcritic.runtimes.doctor_comfyui import doctor_comfyui
from artcritic.runtimes.doctor_critic import doctor_critic


class Command(BaseCommand):
    help = (
        "Check a runtime end to end: reachable, versions and VRAM, models, and a real request "
        "(ComfyUI: a small test workflow; Critic: a review). Exits non-zero with the reason."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        runtimes = parser.add_subparsers(dest="runtime", required=True)
        comfy = runtimes.add_parser("comfyui", help="check a ComfyUI server")
        comfy.add_argument(
            "--url", required=True, help="ComfyUI base URL, e.g. http://127.0.0.1:8188"
        )
        comfy.add_argument(
            "--workflow",
            default=None,
            help="API-format workflow JSON to run (default: the active profile's first model "
            "mode, 512×512, a few steps, a fresh seed)",
        )
        comfy.add_argument("--timeout", type=float, default=300.0, help="seconds for the test run")
        critic = runtimes.add_parser("critic", help="check a vLLM Critic server")
        critic.add_argument(
            "--url", required=True, help="vLLM base URL, e.g. http://127.0.0.1:8000"
        )
        critic.add_argument(
            "--model", default=None, help="served model name (default: the server's)"
        )
        critic.add_argument(
            "--timeout", type=float, default=120.0, help="seconds for the test review"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        out = cast(TextIO, self.stdout)
        runtime = options["runtime"]
        if runtime == "comfyui":

            code = doctor_comfyui(
                options["url"],
                workflow_path=options["workflow"],
                out=out,
                timeout=options["timeout"],
            )
        else:
            # Imported lazily: the Critic's doctor lives in its own module.

            code = doctor_critic(
                options["url"], model=options["model"], out=out, timeout=options["timeout"]
            )
        if code:
            raise CommandError(
                f"runtime_doctor {runtime}: check failed (exit {code}).", returncode=code
            )
