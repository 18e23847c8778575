"""The ComfyUI client and doctor handle what real servers answer (0.3.64 recorded, newer read).

The simulator reproduces ComfyUI 0.3.64 by default and the newer shapes with
``--comfyui-version 0.3.68``; ``--cpu`` shapes /system_stats as a ``--cpu`` server's.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.core.management import call_command

from artcritic.runtimes.comfyui import ComfyClient, ExpectedImages, on_cpu
from artcritic.runtimes.comfyui_errors import rejection_from_response, unknown_node_class
from artcritic.runtimes.doctor_comfyui import _print_stats, doctor_comfyui
from artcritic.runtimes.errors import RuntimeFailure, RuntimeRejected
from tests.runtimes.test_comfyui_client import Comfy, graph, run
from tests.runtimes.test_comfyui_client import comfy as comfy  # noqa: PLC0414 - fixture
from tests.runtimes.test_comfyui_client import comfy_start as comfy_start  # noqa: PLC0414
from tests.runtimes.test_runtime_doctor_comfyui import PROFILE
from tests.sim.test_sim_comfyui import flux_graph, types, ws_collect, ws_open

# ComfyUI 0.3.64 execution.py validate_prompt, recorded from a real server on CPU.
UNKNOWN_0_3_64 = {
    "error": {
        "type": "invalid_prompt",
        "message": "Cannot execute because node KSamplerTurbo does not exist.",
        "details": "Node ID '#8'",
        "extra_info": {},
    },
    "node_errors": {},
}
# Newer servers (execution.py of late 2025): missing_node_type with the class named.
UNKNOWN_NEWER = {
    "error": {
        "type": "missing_node_type",
        "message": "Node 'KSamplerTurbo' not found. The custom node may not be installed.",
        "details": "Node ID '#8'",
        "extra_info": {"node_id": "8", "class_type": "KSamplerTurbo", "node_title": "Turbo"},
    },
    "node_errors": {},
}


@pytest.mark.parametrize("body", [UNKNOWN_0_3_64, UNKNOWN_NEWER], ids=["0.3.64", "newer"])
def test_both_unknown_node_shapes_say_install_the_custom_node(body: dict[str, Any]) -> None:
    assert unknown_node_class(body["error"]) == "KSamplerTurbo"
    rejection = rejection_from_response(body)
    assert "ComfyUI has no node class 'KSamplerTurbo' (Node ID '#8')" in rejection.reason
    assert rejection.next_action.startswith(
        "Install the custom node that provides 'KSamplerTurbo' in ComfyUI"
    )
    assert "template" not in rejection.next_action


def test_a_node_without_class_type_is_a_corrupted_workflow_not_a_custom_node() -> None:
    body = {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because a node is missing the class_type property.",
            "details": "Node ID '#3'",
            "extra_info": {},
        },
        "node_errors": {},
    }
    rejection = rejection_from_response(body)
    assert "corrupted" in rejection.next_action
    assert "custom node" not in rejection.next_action


@pytest.mark.parametrize("version", ["0.3.64", "0.3.68"])
def test_the_client_names_the_custom_node_to_install_on_either_server(
    comfy_start: Callable[..., Comfy], version: str
) -> None:
    sim = comfy_start("--comfyui-version", version)
    g = graph()
    g["8"]["class_type"] = "KSamplerTurbo"
    with pytest.raises(RuntimeRejected, match="no node class 'KSamplerTurbo'") as caught:
        run(sim, g)
    assert "Install the custom node that provides 'KSamplerTurbo'" in caught.value.next_action


def test_the_0_3_64_simulator_answers_an_unknown_node_as_the_real_server_did(
    comfy: Comfy,
) -> None:
    g = flux_graph()
    g["8"]["class_type"] = "KSamplerTurbo"
    response = requests.post(comfy.sim.url + "/prompt", json={"prompt": g}, timeout=10)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because node KSamplerTurbo does not exist.",
            "details": "Node ID '#8'",
            "extra_info": {},
        },
        "node_errors": {},
    }


def test_the_0_3_64_simulator_accepts_any_prompt_id_as_the_real_server(comfy: Comfy) -> None:
    for given, kept in (("job-1", "job-1"), (12, "12"), (uuid.uuid4().hex, None)):
        body = {"prompt": flux_graph(), "prompt_id": given}
        answer = requests.post(comfy.sim.url + "/prompt", json=body, timeout=10).json()
        assert answer["prompt_id"] == (kept or given)
        assert answer["node_errors"] == {}


def test_progress_state_frames_carry_every_started_node_as_the_real_registry(
    comfy: Comfy,
) -> None:
    ws = ws_open(comfy.sim.url, "watcher")
    try:
        body = {"prompt": flux_graph(steps=2), "client_id": "watcher"}
        answer = requests.post(comfy.sim.url + "/prompt", json=body, timeout=10).json()
        prompt_id = answer["prompt_id"]
        messages = ws_collect(
            ws, lambda m: m["type"] == "executing" and m["data"]["node"] is None
        )
    finally:
        ws.close()
    frames = [m["data"] for m in messages if m["type"] == "progress_state"]
    assert frames
    assert all(frame["prompt_id"] == prompt_id for frame in frames)
    sizes = [len(frame["nodes"]) for frame in frames]
    assert sizes == sorted(sizes)  # the registry only grows during a prompt
    last = frames[-1]["nodes"]
    assert set(last) == {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}
    for node_id, entry in last.items():
        assert entry["state"] == "finished"
        assert entry["value"] == entry["max"]
        assert isinstance(entry["value"], float)
        assert entry["node_id"] == entry["display_node_id"] == entry["real_node_id"] == node_id
        assert entry["parent_node_id"] is None
    assert "progress_state" in types(messages)


def official_flux_custom_sampler_graph() -> dict[str, Any]:
    """The structure of ComfyUI's FLUX example: SamplerCustomAdvanced and its helpers."""
    return {
        "1": {"class_type": "UNETLoader",
              "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "fp8_e4m3fn"}},
        "2": {"class_type": "DualCLIPLoader",
              "inputs": {"clip_name1": "t5xxl_fp8_e4m3fn.safetensors",
                         "clip_name2": "clip_l.safetensors", "type": "flux"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": "a lamp"}},
        "5": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0], "guidance": 3.5}},
        "6": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["5", 0]}},
        "7": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "8": {"class_type": "BasicScheduler",
              "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": 3, "denoise": 1.0}},
        "9": {"class_type": "RandomNoise", "inputs": {"noise_seed": 42}},
        "10": {"class_type": "EmptySD3LatentImage",
               "inputs": {"width": 256, "height": 256, "batch_size": 1}},
        "11": {"class_type": "SamplerCustomAdvanced",
               "inputs": {"noise": ["9", 0], "guider": ["6", 0], "sampler": ["7", 0],
                          "sigmas": ["8", 0], "latent_image": ["10", 0]}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["3", 0]}},
        "13": {"class_type": "SaveImage", "inputs": {"images": ["12", 0], "filename_prefix": "x"}},
    }  # fmt: skip


def test_the_official_flux_custom_sampler_workflow_runs_on_the_simulator(comfy: Comfy) -> None:
    info = requests.get(comfy.sim.url + "/object_info/SamplerCustomAdvanced", timeout=10).json()
    assert info["SamplerCustomAdvanced"]["output_name"] == ["output", "denoised_output"]
    events: list[str] = []
    client = ComfyClient(comfy.sim.url)
    images = client.run(
        official_flux_custom_sampler_graph(),
        on_event=lambda e: events.append(e.kind),
        expected=ExpectedImages(1, 256, 256),
        timeout=60,
    )
    assert len(images) == 1
    assert images[0].data.startswith(b"\x89PNG")
    assert events.count("step") == 3


# -- --cpu servers ---------------------------------------------------------------------------


@pytest.fixture
def cpu_comfy(comfy_start: Callable[..., Comfy]) -> Comfy:
    return comfy_start("--cpu")


def test_a_cpu_server_reports_one_cpu_device_whose_vram_is_ram(cpu_comfy: Comfy) -> None:
    stats = requests.get(cpu_comfy.sim.url + "/system_stats", timeout=10).json()
    (device,) = stats["devices"]
    assert (device["name"], device["type"], device["index"]) == ("cpu", "cpu", None)
    assert device["vram_total"] == stats["system"]["ram_total"]
    assert on_cpu(stats)


def test_vram_free_bytes_refuses_to_pass_ram_off_as_vram(cpu_comfy: Comfy) -> None:
    with pytest.raises(RuntimeFailure, match=r"runs on the CPU \(--cpu\).*system RAM") as caught:
        ComfyClient(cpu_comfy.sim.url).vram_free_bytes()
    assert "without --cpu" in caught.value.next_action


def test_the_doctor_is_honest_about_a_cpu_server(cpu_comfy: Comfy) -> None:
    out = io.StringIO()
    doctor_comfyui(cpu_comfy.sim.url, workflow_path=None, out=out, timeout=30, profile=PROFILE)
    text = out.getvalue()
    assert "device cpu (type cpu): no VRAM — ComfyUI runs with --cpu and reports system RAM:" in (
        text
    )
    assert "GB RAM" in text
    assert "WARNING: ComfyUI runs on the CPU (--cpu)" in text
    assert "VRAM" not in text.split("device cpu")[1].split("\n")[0].replace("no VRAM", "")


def test_a_cpu_shaped_system_stats_of_a_real_server_is_recognised_from_argv() -> None:
    # ComfyUI 0.3.64 started with --cpu (recorded shape, numbers shortened).
    stats = {
        "system": {"os": "posix", "ram_total": 67_000_000_000, "ram_free": 50_000_000_000,
                   "comfyui_version": "0.3.64", "python_version": "3.12.3",
                   "pytorch_version": "2.8.0+cpu", "embedded_python": False,
                   "argv": ["main.py", "--cpu", "--listen"]},
        "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 67_000_000_000,
                     "vram_free": 50_000_000_000, "torch_vram_total": 67_000_000_000,
                     "torch_vram_free": 50_000_000_000}],
    }  # fmt: skip
    lines: list[str] = []
    _print_stats(stats, lines.append)
    assert lines[0] == "  ComfyUI 0.3.64"
    assert "no VRAM — ComfyUI runs with --cpu and reports system RAM: 50.0 GB free of 67.0 GB" in (
        lines[2]
    )
    assert lines[3].startswith("  WARNING: ComfyUI runs on the CPU (--cpu)")


def test_a_version_outside_the_checked_range_is_warned_about_with_the_next_step() -> None:
    lines: list[str] = []
    _print_stats({"system": {"comfyui_version": "0.2.7"}, "devices": []}, lines.append)
    assert lines[1] == (
        "  WARNING: ComfyUI 0.2.7 is OUTSIDE the range artcritic was checked against "
        "(ComfyUI 0.3.64 to 0.3.68)."
    )
    assert "run the conformance suite against it" in lines[2]


# -- the doctor's profile and missing files --------------------------------------------------


def test_every_missing_model_file_is_named_and_the_next_step_lists_them_all(
    comfy_start: Callable[..., Comfy],
) -> None:
    sim = comfy_start(
        "--without-model", "flux1-dev.safetensors", "--without-model", "ae.safetensors"
    )
    out = io.StringIO()
    code = doctor_comfyui(sim.sim.url, workflow_path=None, out=out, timeout=30, profile=PROFILE)
    text = out.getvalue()
    assert code == 1
    assert "FAILED: ComfyUI lacks 2 model file(s) the workflow needs" in text
    assert (
        "Next: Install 'flux1-dev.safetensors' in models/diffusion_models/; 'ae.safetensors' in "
        "models/vae/, then refresh ComfyUI's model list"
    ) in text
    assert "Submitting" not in text


@pytest.mark.django_db
def test_the_command_names_the_profile_it_checks_and_takes_profile(comfy: Comfy) -> None:
    out = io.StringIO()
    call_command("runtime_doctor", "comfyui", "--url", comfy.sim.url, "--profile", "sim-32gb",
                 "--timeout", "30", stdout=out)  # fmt: skip
    text = out.getvalue()
    assert "Checking against profile 'sim-32gb' (--profile, from " in text
    expected = (
        f"profile 'sim-32gb' expects its ComfyUI at http://127.0.0.1:18188, not {comfy.sim.url}"
    )
    assert expected in text
    assert "OK: ComfyUI ran the workflow" in text


@pytest.mark.django_db
def test_an_unknown_profile_name_is_a_clear_failure(comfy: Comfy) -> None:
    from django.core.management.base import CommandError

    out = io.StringIO()
    with pytest.raises(CommandError, match="exit 1"):
        call_command("runtime_doctor", "comfyui", "--url", comfy.sim.url, "--profile", "nope",
                     stdout=out)  # fmt: skip
    assert "FAILED: --profile 'nope': no such profile in the database" in out.getvalue()


def test_the_client_reads_comfyuis_version(comfy: Comfy) -> None:
    assert ComfyClient(comfy.sim.url).version() == "0.3.64-sim"
