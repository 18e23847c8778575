"""graph_build fills a template with exactly the request's settings; templates run on ComfyUI."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from artcritic.gpu.profiles import DiffusionModel, Profile, profile_read
from artcritic.runtimes.comfyui_types import ExpectedImages
from artcritic.runtimes.workflows import (
    WorkflowError,
    graph_build,
    graph_check,
    graph_expected_images,
    template_load,
)
from tests.simproc import start_sim

ROOT = Path(__file__).resolve().parent.parent.parent
PROFILE: Profile = profile_read(ROOT / "profiles" / "sim-32gb.toml")[0]
FLUX_FP8 = PROFILE.models["flux-dev-fp8"]
FLUX_BF16 = PROFILE.models["flux-dev-bf16"]
SDXL = PROFILE.models["sdxl"]


def build(model: DiffusionModel = FLUX_FP8, **overrides: Any) -> dict[str, Any]:
    settings_: dict[str, Any] = {
        "prompt": "a ceramic pour-over coffee set",
        "negative": "text, watermark",
        "width": 832,
        "height": 1216,
        "batch": 3,
        "seed": 123456789,
        "steps": 28,
        "cfg": 3.0,
        "sampler": "dpmpp_2m",
        "scheduler": "beta",
        "lora": None,
        "lora_strength": 0.65,
        "filename_prefix": "artcritic/job-42",
    }
    settings_.update(overrides)
    return graph_build(model, **settings_)


def changed_inputs(template: dict[str, Any], graph: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """(node, input) → new value, for every input that differs from the template."""
    return {
        (node_id, name): value
        for node_id, node in graph.items()
        for name, value in node["inputs"].items()
        if node_id not in template or template[node_id]["inputs"].get(name) != value
    }


def test_every_flux_setting_lands_on_its_node_and_nothing_else_changes() -> None:
    template = template_load("flux_t2i.json")
    graph = build(FLUX_FP8, guidance=4.25)
    assert changed_inputs(template, graph) == {
        ("1", "weight_dtype"): "fp8_e4m3fn",
        ("2", "clip_name1"): "t5xxl_fp8_e4m3fn.safetensors",
        ("4", "text"): "a ceramic pour-over coffee set",
        ("5", "guidance"): 4.25,
        ("6", "text"): "text, watermark",
        ("7", "width"): 832,
        ("7", "height"): 1216,
        ("7", "batch_size"): 3,
        ("8", "seed"): 123456789,
        ("8", "steps"): 28,
        ("8", "cfg"): 3.0,
        ("8", "sampler_name"): "dpmpp_2m",
        ("8", "scheduler"): "beta",
        ("10", "filename_prefix"): "artcritic/job-42",
    }
    assert graph["1"]["inputs"]["unet_name"] == "flux1-dev.safetensors"
    assert graph["2"]["inputs"]["clip_name2"] == "clip_l.safetensors"
    assert graph["2"]["inputs"]["type"] == "flux"
    assert graph["3"]["inputs"]["vae_name"] == "ae.safetensors"


def test_flux_cfg_is_kept_as_requested_and_guidance_is_its_own_setting() -> None:
    graph = build(FLUX_BF16, cfg=1.0)
    assert graph["8"]["inputs"]["cfg"] == 1.0
    assert graph["5"]["inputs"]["guidance"] == 3.5
    assert graph["1"]["inputs"]["weight_dtype"] == "default"
    assert graph["2"]["inputs"]["clip_name1"] == "t5xxl_fp16.safetensors"


def test_every_sdxl_setting_lands_on_its_node() -> None:
    template = template_load("sdxl_t2i.json")
    graph = build(
        SDXL, width=1024, height=768, batch=1, cfg=6.5, sampler="euler", scheduler="karras"
    )
    assert changed_inputs(template, graph) == {
        ("6", "text"): "a ceramic pour-over coffee set",
        ("7", "text"): "text, watermark",
        ("5", "height"): 768,
        ("3", "seed"): 123456789,
        ("3", "steps"): 28,
        ("3", "cfg"): 6.5,
        ("3", "sampler_name"): "euler",
        ("9", "filename_prefix"): "artcritic/job-42",
    }
    assert graph["4"]["inputs"]["ckpt_name"] == "sd_xl_base_1.0.safetensors"


def test_an_sdxl_lora_is_spliced_into_model_and_clip_paths() -> None:
    graph = build(SDXL, lora=PROFILE.loras["clay-sketch"], lora_strength=0.65)
    lora = graph["10"]
    assert lora["class_type"] == "LoraLoader"
    assert lora["inputs"] == {
        "model": ["4", 0],
        "clip": ["4", 1],
        "lora_name": "clay_sketch_sdxl.safetensors",
        "strength_model": 0.65,
        "strength_clip": 0.65,
    }
    assert graph["3"]["inputs"]["model"] == ["10", 0]
    assert graph["6"]["inputs"]["clip"] == ["10", 1]
    assert graph["7"]["inputs"]["clip"] == ["10", 1]
    assert graph["8"]["inputs"]["vae"] == ["4", 2]


def test_a_flux_lora_touches_only_the_model_path() -> None:
    graph = build(FLUX_FP8, lora=PROFILE.loras["product-render"], lora_strength=1.2)
    lora = graph["11"]
    assert lora["class_type"] == "LoraLoaderModelOnly"
    assert lora["inputs"] == {
        "model": ["1", 0],
        "lora_name": "product_render_v1.safetensors",
        "strength_model": 1.2,
    }
    assert graph["8"]["inputs"]["model"] == ["11", 0]
    assert graph["4"]["inputs"]["clip"] == ["2", 0]
    assert graph["6"]["inputs"]["clip"] == ["2", 0]


def test_a_lora_of_another_family_is_refused_not_dropped() -> None:
    with pytest.raises(WorkflowError, match="made for sdxl, not flux") as caught:
        build(FLUX_FP8, lora=PROFILE.loras["clay-sketch"])
    assert "not dropped silently" in caught.value.next_action


def test_a_weight_dtype_the_template_cannot_apply_is_refused() -> None:
    odd = SDXL.model_copy(update={"weight_dtype": "fp8_e4m3fn"})
    with pytest.raises(WorkflowError, match="weight_dtype fp8_e4m3fn"):
        build(odd)


def test_a_model_without_a_matching_template_node_is_refused() -> None:
    odd = SDXL.model_copy(update={"workflow": "flux_t2i.json"})
    with pytest.raises(WorkflowError, match="exactly one CheckpointLoaderSimple"):
        build(odd)


def test_building_never_changes_the_template_on_disk_or_in_memory() -> None:
    before = (ROOT / "artcritic/runtimes/workflows/flux_t2i.json").read_text()
    first = build(FLUX_FP8, prompt="one", lora=PROFILE.loras["product-render"])
    second = build(FLUX_FP8, prompt="two")
    assert first["4"]["inputs"]["text"] == "one"
    assert second["4"]["inputs"]["text"] == "two"
    assert "11" not in second
    assert (ROOT / "artcritic/runtimes/workflows/flux_t2i.json").read_text() == before


@settings(max_examples=60, deadline=None)
@given(
    prompt=st.text(max_size=300),
    seed=st.integers(min_value=0, max_value=2**64 - 1),
    steps=st.integers(min_value=1, max_value=200),
    cfg=st.floats(min_value=0, max_value=30, allow_nan=False),
    width=st.integers(min_value=8, max_value=8192),
    batch=st.integers(min_value=1, max_value=64),
)
def test_values_are_never_rounded_clamped_or_changed(
    *, prompt: str, seed: int, steps: int, cfg: float, width: int, batch: int
) -> None:
    graph = build(
        FLUX_FP8, prompt=prompt, seed=seed, steps=steps, cfg=cfg, width=width, batch=batch
    )
    sampler = graph["8"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (seed, steps, cfg)
    assert graph["7"]["inputs"]["width"] == width
    assert graph["7"]["inputs"]["batch_size"] == batch
    assert json.loads(json.dumps(graph))["4"]["inputs"]["text"] == prompt


def test_expected_images_are_read_from_the_graph() -> None:
    assert graph_expected_images(build(FLUX_FP8)) == ExpectedImages(3, 832, 1216)
    smoke = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 1},
        },
        "2": {
            "class_type": "ImageBlend",
            "inputs": {
                "image1": ["1", 0],
                "image2": ["1", 0],
                "blend_factor": 0.5,
                "blend_mode": "normal",
            },
        },
        "3": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["2", 0],
                "upscale_method": "bilinear",
                "width": 96,
                "height": 80,
                "crop": "disabled",
            },
        },
        "4": {
            "class_type": "SaveImage",
            "inputs": {"images": ["3", 0], "filename_prefix": "smoke"},
        },
    }
    assert graph_expected_images(smoke) == ExpectedImages(2, 96, 80)
    smoke["3"]["inputs"]["width"] = 0
    assert graph_expected_images(smoke) is None


def test_ui_format_and_shapeless_workflows_are_refused() -> None:
    with pytest.raises(WorkflowError, match="UI-format") as caught:
        graph_check({"nodes": [], "links": []}, source="export.json")
    assert "Save (API Format)" in caught.value.next_action
    with pytest.raises(WorkflowError, match="has no class_type"):
        graph_check({"1": {"inputs": {}}}, source="broken.json")
    with pytest.raises(WorkflowError, match="cannot be read"):
        template_load("no_such_template.json")


def test_every_profile_template_is_accepted_by_comfyui(tmp_path: Path) -> None:
    env = {"ARTCRITIC_SIM_DIR": str(tmp_path), "ARTCRITIC_SIM_TIME_SCALE": "0"}
    sim = start_sim("comfyui", "--gpu", f"w-{uuid.uuid4().hex[:8]}", env=env)
    ids: list[str] = []
    try:
        for key, model in PROFILE.models.items():
            loras = [None, *(lo for lo in PROFILE.loras.values() if model.family in lo.families)]
            for lora in loras:
                graph = build(model, lora=lora, width=512, height=512, batch=1, steps=2)
                body = {"prompt": graph, "prompt_id": str(uuid.uuid4())}
                answer = requests.post(f"{sim.url}/prompt", json=body, timeout=10)
                assert answer.status_code == 200, (key, lora, answer.text)
                assert answer.json()["node_errors"] == {}, (key, lora)
                ids.append(answer.json()["prompt_id"])
        deadline = time.monotonic() + 30
        while len(requests.get(f"{sim.url}/history", timeout=10).json()) < len(ids):
            assert time.monotonic() < deadline, "the templates did not all finish"
            time.sleep(0.05)
        history = requests.get(f"{sim.url}/history", timeout=10).json()
        assert {history[i]["status"]["status_str"] for i in ids} == {"success"}
    finally:
        sim.stop()
