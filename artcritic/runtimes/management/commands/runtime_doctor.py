"""``manage.py runtime_doctor {comfyui|critic} --url URL``: check a runtime end to end."""

from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Callable
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError

from artcritic.gpu.nvml import probe_for
from artcritic.gpu.selectors import NoActiveProfile, profile_active
from artcritic.runtimes.doctor_comfyui import doctor_comfyui
from artcritic.runtimes.doctor_critic import doctor_critic


def _free_bytes(gpu_name: str) -> Callable[[], int]:
    """NVML's free bytes of ``gpu_name`` (its active profile says real or simulated)."""
    try:
        gpu, profile = profile_active(gpu_name)
    except NoActiveProfile as exc:
        raise CommandError(str(exc)) from None
    probe = probe_for(
        gpu_name, simulated=profile.simulated, index=gpu.nvml_index, total_bytes=profile.total_bytes
    )
    return lambda: probe.read().free_bytes


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
        comfy.add_argument(
            "--profile",
            default=None,
            help="hardware profile to check against: a loaded profile's name, a file in the "
            "profiles folder, or a path (default: the active profile of ARTCRITIC_GPU)",
        )
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
        critic.add_argument(
            "--verify-sleep",
            action="store_true",
            help="consent to one real sleep (level 1) and wake of the Critic to prove "
            "--enable-sleep-mode; without it sleep mode is reported as unverified",
        )
        critic.add_argument(
            "--gpu",
            default=None,
            help="with --verify-sleep: the GPU (as in ARTCRITIC_GPU) the Critic runs on, to "
            "measure the memory the sleep frees with NVML on this host",
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
                profile_name=options["profile"],
            )
        else:
            code = doctor_critic(
                options["url"],
                model=options["model"],
                out=out,
                timeout=options["timeout"],
                verify_sleep=options["verify_sleep"],
                free_bytes=_free_bytes(options["gpu"]) if options["gpu"] else None,
            )
        if code:
            raise CommandError(
                f"runtime_doctor {runtime}: check failed (exit {code}).", returncode=code
            )
