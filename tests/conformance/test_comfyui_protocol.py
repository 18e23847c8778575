"""ComfyUI protocol cases: the same assertions against the simulator and a real server.

Nothing here needs model files: the run uses model-free nodes (EmptyImage, ImageScale,
SaveImage), so a real ComfyUI on --cpu without checkpoints passes too.
"""

from __future__ import annotations

import json
import secrets
import uuid

import pytest
import requests

from artcritic.runtimes.comfyui import ComfyClient, ComfyProgress, ExpectedImages, on_cpu
from artcritic.runtimes.errors import RuntimeRejected
from artcritic.runtimes.versions import version_check, version_parse
from artcritic.runtimes.workflows import WORKFLOWS_DIR
from tests.conformance.conftest import Target


def template_classes() -> set[str]:
    """Every node class the shipped templates use, plus the LoRA loader spliced into them."""
    classes = {"LoraLoader"}
    for path in WORKFLOWS_DIR.glob("*.json"):
        classes |= {node["class_type"] for node in json.loads(path.read_text()).values()}
    return classes


def model_free_graph(width: int = 96, height: int = 64) -> dict[str, object]:
    colour = secrets.randbelow(0xFFFFFF)  # a fresh input, so the cache cannot answer
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": colour}},
        "2": {"class_type": "ImageScale",
              "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": width,
                         "height": height, "crop": "disabled"}},
        "3": {"class_type": "SaveImage",
              "inputs": {"images": ["2", 0], "filename_prefix": "artcritic/conformance"}},
    }  # fmt: skip


def test_system_stats_has_the_documented_shape_and_a_readable_version(
    comfy_target: Target,
) -> None:
    stats = ComfyClient(comfy_target.url).system_stats()
    system, devices = stats["system"], stats["devices"]
    for key in ("os", "ram_total", "ram_free", "comfyui_version", "python_version"):
        assert key in system, key
    assert devices
    for key in ("name", "type", "index", "vram_total", "vram_free"):
        assert key in devices[0], key
    version = ComfyClient(comfy_target.url).version()
    assert version_parse(version) is not None, version
    check = version_check("comfyui", version)
    print(f"[{comfy_target.leg}] {check.sentence} on_cpu={on_cpu(stats)}")


def test_object_info_lists_every_node_class_the_templates_and_doctor_use(
    comfy_target: Target,
) -> None:
    known = set(ComfyClient(comfy_target.url).object_info())
    wanted = template_classes() | {"EmptyImage", "ImageScale", "SaveImage"}
    assert wanted <= known, sorted(wanted - known)


def test_an_unknown_node_class_is_refused_as_install_the_custom_node(
    comfy_target: Target,
) -> None:
    graph = model_free_graph()
    graph["2"]["class_type"] = "ArtcriticNoSuchNode"  # type: ignore[index]
    client = ComfyClient(comfy_target.url)
    with pytest.raises(RuntimeRejected, match="no node class 'ArtcriticNoSuchNode'") as caught:
        client.run(graph, on_event=lambda e: None, expected=ExpectedImages(1, 96, 64), timeout=60)
    assert "Install the custom node that provides 'ArtcriticNoSuchNode'" in (
        caught.value.next_action
    )


def test_a_malformed_body_is_refused_and_the_server_keeps_answering(comfy_target: Target) -> None:
    response = requests.post(comfy_target.url + "/prompt", data=b"{not json", timeout=30)
    # ComfyUI 0.3.64 answers 500 text/plain (aiohttp); a newer one may answer 400.
    assert response.status_code in (400, 500)
    assert requests.get(comfy_target.url + "/system_stats", timeout=30).status_code == 200


def test_a_client_chosen_uuid_prompt_id_is_kept(comfy_target: Target) -> None:
    prompt_id = str(uuid.uuid4())
    body = {"prompt": model_free_graph(), "prompt_id": prompt_id, "client_id": "conformance"}
    answer = requests.post(comfy_target.url + "/prompt", json=body, timeout=30).json()
    assert answer["prompt_id"] == prompt_id
    assert answer["node_errors"] == {}


def test_a_model_free_workflow_runs_end_to_end_through_the_client(comfy_target: Target) -> None:
    events: list[ComfyProgress] = []
    images = ComfyClient(comfy_target.url).run(
        model_free_graph(),
        on_event=events.append,
        expected=ExpectedImages(1, 96, 64),
        timeout=120,
    )
    assert len(images) == 1
    assert (images[0].width, images[0].height) == (96, 64)
    assert images[0].data.startswith(b"\x89PNG")
    kinds = [event.kind for event in events]
    assert kinds[0] == "queued"
    assert kinds[-1] == "done"
    assert "executed" in kinds
