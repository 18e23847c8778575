"""runtime_doctor comfyui: a healthy run prints its phases; each kind of problem is explained."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from artcritic.gpu.profiles import Profile, profile_read
from artcritic.runtimes.doctor_comfyui import doctor_comfyui
from artcritic.sim.gpu import SimGpu
from tests.simproc import SimProcess, free_port, start_sim

ROOT = Path(__file__).resolve().parent.parent.parent
PROFILE: Profile = profile_read(ROOT / "profiles" / "sim-32gb.toml")[0]


@pytest.fixture
def comfy_start(tmp_path: Path) -> Iterator[Callable[..., tuple[SimProcess, SimGpu]]]:
    started: list[SimProcess] = []

    def start(*args: str) -> tuple[SimProcess, SimGpu]:
        name = f"d-{uuid.uuid4().hex[:8]}"
        env = {"ARTCRITIC_SIM_DIR": str(tmp_path), "ARTCRITIC_SIM_TIME_SCALE": "0.01"}
        sim = start_sim("comfyui", "--gpu", name, *args, env=env)
        started.append(sim)
        return sim, SimGpu(name, root=tmp_path)

    yield start
    for sim in started:
        sim.stop()


def doctor(url: str, workflow: Path | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = doctor_comfyui(url, workflow_path=workflow, out=out, timeout=30, profile=PROFILE)
    return code, out.getvalue()


def test_a_healthy_comfyui_passes_and_every_phase_is_printed_in_order(
    comfy_start: Callable[..., tuple[SimProcess, SimGpu]],
) -> None:
    sim, _ = comfy_start()
    code, text = doctor(sim.url)
    assert code == 0
    expected_in_order = [
        "Checking against profile 'sim-32gb' (given by the caller).",
        "ComfyUI 0.3.64-sim (SIMULATED)",
        "VRAM 31.7 GB free of 32.0 GB",
        "models/diffusion_models: flux1-dev.safetensors",
        "models/loras: clay_sketch_sdxl.safetensors, product_render_v1.safetensors",
        "Submitting flux_t2i.json for flux-dev-fp8 (FLUX.1-dev fp8): expecting 1 image(s)",
        "] queued",
        "] started",
        "loading weights: node 1 (UNETLoader)",
        "KSampler step 1/4",
        "KSampler step 4/4",
        "node 10 saved doctor_00001_.png",
        "] done",
        "output: artcritic/doctor_00001_.png (512×512,",
        "OK: ComfyUI ran the workflow and returned exactly what was asked.",
    ]
    positions = [text.index(line) for line in expected_in_order]
    assert positions == sorted(positions)


def test_each_doctor_run_uses_a_fresh_seed_so_the_cache_cannot_answer(
    comfy_start: Callable[..., tuple[SimProcess, SimGpu]],
) -> None:
    sim, _ = comfy_start()
    doctor(sim.url)
    code, text = doctor(sim.url)
    assert code == 0
    assert "KSampler step 4/4" in text
    assert "saved doctor_00002_.png" in text


def test_a_missing_model_file_fails_naming_the_file_and_where_it_belongs(
    comfy_start: Callable[..., tuple[SimProcess, SimGpu]],
) -> None:
    sim, _ = comfy_start("--without-model", "flux1-dev.safetensors")
    code, text = doctor(sim.url)
    assert code == 1
    assert "models/diffusion_models: (empty)" in text
    assert (
        "missing: node 1 (UNETLoader) needs 'flux1-dev.safetensors', which is not in "
        "ComfyUI's models/diffusion_models/"
    ) in text
    assert (
        "FAILED: ComfyUI lacks 1 model file(s) the workflow needs; the test run was not submitted."
    ) in text
    assert "Next: Install 'flux1-dev.safetensors' in models/diffusion_models/, then refresh" in text
    assert "Submitting" not in text


def test_an_unreachable_url_fails_with_a_clear_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, text = doctor(url)
    assert code == 1
    assert f"FAILED: ComfyUI at {url} refused the connection for GET /system_stats." in text
    assert "Next: Start ComfyUI or check the profile's URL" in text
    assert "Submitting" not in text


def test_an_out_of_memory_run_is_explained(
    comfy_start: Callable[..., tuple[SimProcess, SimGpu]],
) -> None:
    sim, gpu = comfy_start()
    gpu.allocate("critic", "weights", gpu.snapshot().free - 4_000_000_000, runtime="critic")
    code, text = doctor(sim.url)
    assert code == 1
    assert "FAILED: ComfyUI ran out of GPU memory in UNETLoader (node 1)." in text
    assert "VRAM 4.0 GB free of 32.0 GB" in text


def test_a_given_api_workflow_is_run_and_its_outputs_checked(
    comfy_start: Callable[..., tuple[SimProcess, SimGpu]], tmp_path: Path
) -> None:
    sim, _ = comfy_start()
    workflow = tmp_path / "smoke.json"
    workflow.write_text(
        json.dumps(
            {
                "1": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": 512, "height": 512, "batch_size": 2, "color": 16711680},
                },
                "2": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": 256, "height": 256, "batch_size": 1, "color": 255},
                },
                "4": {
                    "class_type": "ImageBlend",
                    "inputs": {
                        "image1": ["1", 0],
                        "image2": ["2", 0],
                        "blend_factor": 0.5,
                        "blend_mode": "normal",
                    },
                },
                "5": {
                    "class_type": "ImageScale",
                    "inputs": {
                        "image": ["4", 0],
                        "upscale_method": "bilinear",
                        "width": 640,
                        "height": 384,
                        "crop": "disabled",
                    },
                },
                "6": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["5", 0], "filename_prefix": "selftest/blend"},
                },
            }
        )
    )
    code, text = doctor(sim.url, workflow)
    assert code == 0
    assert f"Submitting {workflow}: expecting 2 image(s) of 640×384" in text
    assert "output: selftest/blend_00002_.png (640×384," in text


def test_unusable_workflow_files_exit_2_with_the_reason(
    comfy_start: Callable[..., tuple[SimProcess, SimGpu]], tmp_path: Path
) -> None:
    sim, _ = comfy_start()
    ui_export = tmp_path / "ui.json"
    ui_export.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    not_json = tmp_path / "broken.json"
    not_json.write_text("{'single': 'quotes'}")
    assert doctor(sim.url, ui_export)[0] == 2
    assert "UI-format workflow" in doctor(sim.url, ui_export)[1]
    code, text = doctor(sim.url, not_json)
    assert code == 2
    assert "is not valid JSON" in text
    assert doctor(sim.url, tmp_path / "absent.json")[0] == 2


@pytest.mark.django_db
def test_the_management_command_runs_the_check_and_fails_loudly(
    comfy_start: Callable[..., tuple[SimProcess, SimGpu]],
) -> None:
    sim, _ = comfy_start()
    out = io.StringIO()
    call_command("runtime_doctor", "comfyui", "--url", sim.url, "--timeout", "30", stdout=out)
    assert "No active profile" in out.getvalue()
    assert "OK: ComfyUI ran the workflow" in out.getvalue()
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(CommandError, match="runtime_doctor comfyui: check failed") as caught:
        call_command("runtime_doctor", "comfyui", "--url", url, stdout=io.StringIO())
    assert caught.value.returncode == 1


def test_the_critic_check_is_dispatched_to_the_critic_doctor() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = io.StringIO()
    with pytest.raises(CommandError, match="runtime_doctor critic: check failed"):
        call_command("runtime_doctor", "critic", "--url", url, "--timeout", "2", stdout=out)
    assert f"Critic at {url}" in out.getvalue()
