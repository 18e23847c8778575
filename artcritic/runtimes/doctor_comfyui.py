"""``runtime_doctor comfyui``: is ComfyUI reachable, what does it have, and does a real run work?

Uses only the public ComfyUI API (no simulator-only routes), so it checks a real
server just as well. It says which hardware profile it checks the server against (the
active one, or ``--profile``), warns when the version is outside the range artcritic was
checked against, is honest about ``--cpu`` servers (their "VRAM" is system RAM), lists
every model file the workflow needs that ComfyUI lacks, then prints every phase of a test
run as it happens; a failure prints ComfyUI's own error explained, with the next step.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from artcritic.gpu.profiles import Profile, ProfileError, profile_read
from artcritic.gpu.selectors import NoActiveProfile, profile_active
from artcritic.runtimes.comfyui import ComfyClient, on_cpu
from artcritic.runtimes.comfyui_errors import MODEL_FOLDERS
from artcritic.runtimes.comfyui_types import ComfyProgress, ExpectedImages, as_dict
from artcritic.runtimes.errors import RuntimeFailure, RuntimeRejected
from artcritic.runtimes.versions import version_check
from artcritic.runtimes.workflows import (
    Graph,
    WorkflowError,
    graph_build,
    graph_check,
    graph_expected_images,
)

MODEL_FOLDER_NAMES = ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras")
TEST_PROMPT = "runtime_doctor test: a matte-black desk lamp on a white table, studio light"
FALLBACK_PROFILE = "sim-32gb.toml"
EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
Say = Callable[[str], None]


def _gb(value: object) -> str:
    return f"{value / 1e9:.1f} GB" if isinstance(value, int | float) else "unknown"


def _say_to(out: TextIO) -> Say:
    def say(line: str) -> None:
        out.write(f"{line}\n")
        out.flush()

    return say


def profile_for_doctor(say: Say, name: str | None = None, url: str | None = None) -> Profile:
    """The profile to check against: ``name`` (database, else profiles/<name>.toml, else a
    path), or this GPU's active one, or the simulated default; it says which, and whether
    the profile's ComfyUI is the one at ``url``."""
    from django.conf import settings
    from django.db import DatabaseError

    from artcritic.gpu.models import HardwareProfile
    from artcritic.gpu.profiles import profile_from_data

    profile: Profile
    if name:
        try:
            row = HardwareProfile.objects.filter(name=name).first()
        except DatabaseError:
            row = None
        if row is not None:
            profile = profile_from_data(row.data)
            say(f"Checking against profile {profile.name!r} (--profile, from the database).")
        else:
            path = Path(settings.ARTCRITIC_PROFILES_DIR) / f"{name}.toml"
            path = path if path.is_file() else Path(name)
            if not path.is_file():
                raise ProfileError(
                    f"--profile {name!r}: no such profile in the database, in "
                    f"{settings.ARTCRITIC_PROFILES_DIR}, or as a file."
                )
            profile = profile_read(path)[0]
            say(f"Checking against profile {profile.name!r} (--profile, from {path}).")
    else:
        try:
            gpu, profile = profile_active()
            say(f"Checking against profile {profile.name!r}, active on GPU {gpu.name!r}.")
        except (NoActiveProfile, DatabaseError) as exc:
            path = Path(settings.ARTCRITIC_PROFILES_DIR) / FALLBACK_PROFILE
            say(f"No active profile ({str(exc).splitlines()[0]}); checking against {path}.")
            profile = profile_read(path)[0]
    configured = profile.runtimes.comfyui.url.rstrip("/")
    if url is not None and configured != url.rstrip("/"):
        say(
            f"  note: profile {profile.name!r} expects its ComfyUI at {configured}, not {url}; "
            "pass --profile NAME to check this server against another profile."
        )
    return profile


def default_workflow(profile: Profile) -> tuple[Graph, ExpectedImages, str]:
    """The first model mode's template with a small test request and a fresh seed."""
    key = profile.limits.model_modes[0]
    model = profile.models[key]
    graph = graph_build(
        model,
        prompt=TEST_PROMPT,
        negative="",
        width=512,
        height=512,
        batch=1,
        # A fresh seed every time, so ComfyUI's cache can never answer instead of a real run.
        seed=secrets.randbelow(2**32),
        steps=min(4, model.default_steps),
        cfg=model.default_cfg,
        sampler=model.default_sampler,
        scheduler=model.default_scheduler,
        lora=None,
        lora_strength=0.0,
        filename_prefix="artcritic/doctor",
    )
    return graph, ExpectedImages(1, 512, 512), f"{model.workflow} for {key} ({model.label})"


def file_workflow(path: Path) -> tuple[Graph, ExpectedImages, str]:
    """A user-given API-format workflow and the images it should produce."""
    try:
        graph: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowError(f"{path} cannot be read: {exc.strerror}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"{path} is not valid JSON: {exc}.") from None
    graph_check(graph, source=str(path))
    expected = graph_expected_images(graph)
    if expected is None:
        raise WorkflowError(
            f"{path}: the number and size of its output images cannot be read from the graph.",
            "Use a workflow whose SaveImage/PreviewImage nodes are fed by VAEDecode from an "
            "empty latent (or EmptyImage/ImageScale), so the doctor can check the result.",
        )
    return graph, expected, str(path)


def _print_stats(stats: dict[str, Any], say: Say) -> None:
    system = as_dict(stats.get("system"))
    marker = " (SIMULATED)" if system.get("simulated") else ""
    reported = str(system.get("comfyui_version") or "")
    say(f"  ComfyUI {reported or 'unknown version'}{marker}")
    check = version_check("comfyui", reported)
    if not check.ok:
        say(f"  WARNING: {check.sentence}")
        say(
            "  next: its answers may differ from what artcritic understands; run the "
            "conformance suite against it (README: Runtime conformance)."
        )
    python = str(system.get("python_version", "?")).split()[0]
    say(f"  Python {python}, PyTorch {system.get('pytorch_version', '?')}")
    cpu = on_cpu(stats)
    for device in stats.get("devices") or []:
        if not isinstance(device, dict):
            continue
        if cpu or device.get("type") == "cpu":
            say(
                f"  device {device.get('name')} (type {device.get('type')}): no VRAM — ComfyUI "
                f"runs with --cpu and reports system RAM: {_gb(device.get('vram_free'))} free "
                f"of {_gb(device.get('vram_total'))} RAM"
            )
        else:
            say(
                f"  device {device.get('index')}: {device.get('name')} — VRAM "
                f"{_gb(device.get('vram_free'))} free of {_gb(device.get('vram_total'))}"
            )
    if cpu:
        say(
            "  WARNING: ComfyUI runs on the CPU (--cpu): generation is very slow and no GPU "
            "memory can be released or verified; artcritic's profiles expect a GPU."
        )
    elif not stats.get("devices"):
        say("  no devices reported (is ComfyUI running with --cpu?)")


def _print_models(client: ComfyClient, say: Say) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for folder in MODEL_FOLDER_NAMES:
        try:
            names = client.models(folder)
        except RuntimeFailure as exc:
            say(f"  models/{folder}: not reported ({exc.reason})")
            continue
        found[folder] = names
        shown = ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")
        say(f"  models/{folder}: {shown or '(empty)'}")
    return found


def _missing_files(graph: Graph, found: dict[str, list[str]], say: Say) -> None:
    """Name every model file the graph needs that ComfyUI lacks; refuse the run if any."""
    missing: list[tuple[str, str]] = []
    for node_id, node in graph.items():
        for name, value in node.get("inputs", {}).items():
            folder = MODEL_FOLDERS.get(name)
            if folder in found and isinstance(value, str) and value not in found[folder]:
                say(
                    f"  missing: node {node_id} ({node['class_type']}) needs {value!r}, which is "
                    f"not in ComfyUI's models/{folder}/"
                )
                if (value, folder) not in missing:
                    missing.append((value, folder))
    if missing:
        files = "; ".join(f"{value!r} in models/{folder}/" for value, folder in missing)
        raise RuntimeRejected(
            f"ComfyUI lacks {len(missing)} model file(s) the workflow needs; the test run was "
            "not submitted.",
            f"Install {files}, then refresh ComfyUI's model list (or restart it) and run the "
            "doctor again. Nothing was substituted.",
        )


def _phase_printer(say: Say) -> Callable[[ComfyProgress], None]:
    start = time.monotonic()

    def on_event(event: ComfyProgress) -> None:
        at = f"  [{time.monotonic() - start:6.1f} s]"
        if event.kind == "queued":
            waiting = (
                "" if event.queue_remaining is None else f" ({event.queue_remaining} in queue)"
            )
            say(f"{at} queued{waiting}")
        elif event.kind == "cached":
            say(f"{at} cached: {len(event.cached_nodes)} node(s) reused")
        elif event.kind == "node":
            what = "loading weights" if event.loading else "running"
            say(f"{at} {what}: node {event.node} ({event.node_type})")
        elif event.kind == "step":
            say(f"{at} {event.node_type} step {event.value}/{event.max}")
        elif event.kind == "executed":
            say(f"{at} node {event.node} saved {', '.join(event.filenames)}")
        else:
            say(f"{at} {event.kind}")

    return on_event


def doctor_comfyui(
    url: str,
    *,
    workflow_path: Path | str | None,
    out: TextIO,
    timeout: float,
    profile: Profile | None = None,
    profile_name: str | None = None,
) -> int:
    """Check ComfyUI at ``url``; 0 when healthy, 1 on a runtime problem, 2 on a bad workflow."""
    say = _say_to(out)
    client = ComfyClient(url, timeout=min(timeout, 30.0))
    say(f"Checking ComfyUI at {url}")
    try:
        if profile is not None:
            say(f"Checking against profile {profile.name!r} (given by the caller).")
        elif not workflow_path:
            profile = profile_for_doctor(say, profile_name, url)
        _print_stats(client.system_stats(), say)
        found = _print_models(client, say)
        if workflow_path:
            graph, expected, source = file_workflow(Path(workflow_path))
        else:
            assert profile is not None  # chosen above when no workflow file was given
            graph, expected, source = default_workflow(profile)
        _missing_files(graph, found, say)
        size = f"{expected.width}×{expected.height}"
        say(f"Submitting {source}: expecting {expected.count} image(s) of {size}")
        images = client.run(graph, on_event=_phase_printer(say), expected=expected, timeout=timeout)
    except WorkflowError as exc:
        say(f"FAILED: {exc.reason}\nNext: {exc.next_action}")
        return EXIT_USAGE
    except (RuntimeFailure, ProfileError) as exc:
        reason = exc.reason if isinstance(exc, RuntimeFailure) else str(exc)
        next_action = exc.next_action if isinstance(exc, RuntimeFailure) else "Fix the profile."
        say(f"FAILED: {reason}\nNext: {next_action}")
        return EXIT_RUNTIME
    for image in images:
        where = f"{image.subfolder}/{image.filename}" if image.subfolder else image.filename
        say(f"  output: {where} ({image.width}×{image.height}, {len(image.data)} bytes, PNG)")
    say("OK: ComfyUI ran the workflow and returned exactly what was asked.")
    return EXIT_OK
