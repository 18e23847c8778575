"""The simulated ComfyUI speaks protocols.md Part 1: routes, validation, events, VRAM, faults."""

from __future__ import annotations

import copy
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from PIL import Image

from artcritic.sim.gpu import BASELINE_BYTES, SimGpu
from tests.simproc import SimProcess, sim_wait, start_sim

FLUX_FP8_WEIGHTS = round((11.9 + 4.76 + 0.123 * 2 + 0.084 * 2) * 1e9)


@dataclass
class Comfy:
    sim: SimProcess
    gpu: SimGpu

    @property
    def url(self) -> str:
        return self.sim.url

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=10, **kwargs)

    def comfy_allocations(self) -> int:
        return sum(a.bytes for a in self.gpu.snapshot().allocations if a.runtime == "comfyui")


@pytest.fixture
def comfy_start(tmp_path: Path) -> Iterator[Callable[..., Comfy]]:
    """Start simulated ComfyUIs on their own GPU name and sim dir; stop them afterwards."""
    started: list[SimProcess] = []

    def start(*args: str, scale: str = "0.01", wait: bool = True) -> Comfy:
        name = f"t-{uuid.uuid4().hex[:8]}"
        env = {"ARTCRITIC_SIM_DIR": str(tmp_path), "ARTCRITIC_SIM_TIME_SCALE": scale}
        sim = start_sim("comfyui", "--gpu", name, *args, env=env, wait=wait)
        started.append(sim)
        return Comfy(sim, SimGpu(name, root=tmp_path))

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def comfy(comfy_start: Callable[..., Comfy]) -> Comfy:
    return comfy_start()


def flux_graph(
    text: str = "a brushed-steel kettle",
    *,
    seed: int = 7,
    steps: int = 3,
    width: int = 256,
    height: int = 256,
    batch: int = 1,
    prefix: str = "sim/run",
) -> dict[str, Any]:
    """The FLUX split-file graph of protocols.md 1.7, with the sim profile's file names."""
    return {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "fp8_e4m3fn"},
        },
        "2": {
            "class_type": "DualCLIPLoader",
            "inputs": {
                "clip_name1": "t5xxl_fp8_e4m3fn.safetensors",
                "clip_name2": "clip_l.safetensors",
                "type": "flux",
            },
        },
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": text}},
        "5": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0], "guidance": 3.5}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": ""}},
        "7": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": width, "height": height, "batch_size": batch},
        },
        "8": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["5", 0],
                "negative": ["6", 0],
                "latent_image": ["7", 0],
                "seed": seed,
                "steps": steps,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
            },
        },
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["3", 0]}},
        "10": {
            "class_type": "SaveImage",
            "inputs": {"images": ["9", 0], "filename_prefix": prefix},
        },
    }


def ws_open(url: str, client_id: str) -> websocket.WebSocket:
    return websocket.create_connection(
        url.replace("http://", "ws://") + f"/ws?clientId={client_id}", timeout=20
    )


def ws_collect(
    ws: websocket.WebSocket, until: Callable[[dict[str, Any]], bool], limit: float = 20.0
) -> list[dict[str, Any]]:
    """Messages (binary ones as {"type": "binary"}) until ``until`` matches or the socket closes."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketConnectionClosedException, OSError):
            messages.append({"type": "closed", "data": {}})
            return messages
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            messages.append({"type": "closed", "data": {}})
            return messages
        if opcode == websocket.ABNF.OPCODE_BINARY:
            messages.append({"type": "binary", "data": {}, "bytes": data})
            continue
        message = json.loads(data)
        messages.append(message)
        if until(message):
            return messages
    raise AssertionError(f"no end message within {limit} s; got {[m['type'] for m in messages]}")


def ws_drain(ws: websocket.WebSocket, quiet: float) -> list[dict[str, Any]]:
    """Every text message until the socket stays silent for ``quiet`` seconds."""
    ws.settimeout(quiet)
    messages: list[dict[str, Any]] = []
    while True:
        try:
            messages.append(json.loads(ws.recv()))
        except websocket.WebSocketTimeoutException:
            return messages


def done_of(prompt_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: (
        m["type"] == "executing"
        and m["data"].get("node") is None
        and m["data"].get("prompt_id") == prompt_id
    )


def submit(comfy: Comfy, graph: dict[str, Any], **body: Any) -> requests.Response:
    return comfy.post("/prompt", {"prompt": graph, **body})


def run_raw(comfy: Comfy, graph: dict[str, Any], **body: Any) -> tuple[str, list[dict[str, Any]]]:
    """Open /ws, submit with that client id, collect every message until the prompt is done."""
    client_id = uuid.uuid4().hex
    ws = ws_open(comfy.url, client_id)
    try:
        response = submit(comfy, graph, client_id=client_id, **body)
        assert response.status_code == 200, response.text
        prompt_id = response.json()["prompt_id"]
        return prompt_id, ws_collect(ws, done_of(prompt_id))
    finally:
        ws.close()


def history_wait(comfy: Comfy, prompt_id: str, limit: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        entry = comfy.get(f"/history/{prompt_id}").json()
        if entry:
            return entry[prompt_id]
        time.sleep(0.05)
    raise AssertionError(f"prompt {prompt_id} did not finish within {limit} s")


def types(messages: list[dict[str, Any]]) -> list[str]:
    return [m["type"] for m in messages]


def image_of(comfy: Comfy, ref: dict[str, str]) -> Image.Image:
    response = comfy.get("/view", params=ref)
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


# -- routes -----------------------------------------------------------------------------------


def test_every_route_is_also_served_under_the_api_prefix(comfy: Comfy) -> None:
    assert (
        comfy.get("/api/system_stats").json()["devices"]
        == comfy.get("/system_stats").json()["devices"]
    )
    assert comfy.get("/api/prompt").json() == {"exec_info": {"queue_remaining": 0}}
    assert comfy.get("/api/queue").json() == {"queue_running": [], "queue_pending": []}


def test_system_stats_reports_the_simulated_gpu_and_says_it_is_simulated(comfy: Comfy) -> None:
    stats = comfy.get("/system_stats").json()
    device = stats["devices"][0]
    assert stats["system"]["simulated"] is True
    assert stats["system"]["comfyui_version"].endswith("-sim")
    assert "--gpu" in stats["system"]["argv"]
    assert device["vram_total"] == 32_000_000_000
    assert device["vram_free"] == comfy.gpu.snapshot().free == 32_000_000_000 - BASELINE_BYTES


def test_object_info_lists_model_files_samplers_and_schedulers(comfy: Comfy) -> None:
    unet = comfy.get("/object_info/UNETLoader").json()["UNETLoader"]
    sampler = comfy.get("/object_info/KSampler").json()["KSampler"]["input"]["required"]
    everything = comfy.get("/object_info").json()
    assert unet["input"]["required"]["unet_name"][0] == ["flux1-dev.safetensors"]
    assert unet["output"] == ["MODEL"]
    assert "euler" in sampler["sampler_name"][0]
    assert "karras" in sampler["scheduler"][0]
    assert sampler["steps"] == ["INT", {"default": 20, "min": 1, "max": 10000, "step": 1}]
    assert everything["SaveImage"]["output_node"] is True
    assert {"EmptyImage", "ImageScale", "ImageBlend", "LoraLoaderModelOnly"} <= set(everything)
    assert comfy.get("/object_info/NoSuchNode").json() == {}


def test_model_folders_list_the_profile_files_and_unknown_folders_are_404(
    comfy_start: Callable[..., Comfy],
) -> None:
    comfy = comfy_start("--without-model", "ae.safetensors")
    assert comfy.get("/models/diffusion_models").json() == ["flux1-dev.safetensors"]
    assert comfy.get("/models/checkpoints").json() == ["sd_xl_base_1.0.safetensors"]
    assert "product_render_v1.safetensors" in comfy.get("/models/loras").json()
    assert comfy.get("/models/vae").json() == []
    assert "text_encoders" in comfy.get("/models").json()
    assert comfy.get("/models/nonsense").status_code == 404


def test_a_foreign_origin_on_a_loopback_host_is_forbidden(comfy: Comfy) -> None:
    assert comfy.get("/prompt", headers={"Origin": "http://evil.example"}).status_code == 403
    host = comfy.url.removeprefix("http://")
    assert comfy.get("/prompt", headers={"Origin": f"http://{host}"}).status_code == 200


# -- a run ----------------------------------------------------------------------------------


def test_a_prompt_produces_the_real_message_order(comfy: Comfy) -> None:
    prompt_id, messages = run_raw(comfy, flux_graph(steps=3))
    seen = types(messages)
    assert seen[0] == "status"
    assert "sid" in messages[0]["data"]
    order = [
        seen.index("execution_start"),
        seen.index("execution_cached"),
        seen.index("executing"),
        seen.index("progress"),
        seen.index("executed"),
        seen.index("execution_success"),
        len(seen) - 1 - seen[::-1].index("status"),
        len(seen) - 1,
    ]
    assert order == sorted(order)
    assert messages[-1]["data"] == {"node": None, "prompt_id": prompt_id}
    progress = [m["data"] for m in messages if m["type"] == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [
        (1, 3, "8"),
        (2, 3, "8"),
        (3, 3, "8"),
    ]
    executing = [m["data"]["node"] for m in messages if m["type"] == "executing"][:-1]
    assert sorted(executing, key=int) == [str(n) for n in range(1, 11)]
    assert executing.index("8") < executing.index("9") < executing.index("10")


def test_history_is_empty_until_the_prompt_is_done_then_records_it(comfy: Comfy) -> None:
    prompt_id = str(uuid.uuid4())
    graph = flux_graph(steps=40, width=1024, height=1024, batch=4)
    assert submit(comfy, graph, prompt_id=prompt_id).json()["prompt_id"] == prompt_id
    assert comfy.get(f"/history/{prompt_id}").json() == {}
    entry = history_wait(comfy, prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    assert entry["prompt"][1] == prompt_id
    assert entry["prompt"][4] == ["10"]
    assert len(entry["outputs"]["10"]["images"]) == 4
    assert entry["meta"]["10"]["node_id"] == "10"
    assert prompt_id in comfy.get("/history", params={"max_items": 1}).json()


def test_saved_images_have_the_requested_size_count_name_and_prompt_chunk(comfy: Comfy) -> None:
    graph = flux_graph(width=320, height=192, batch=2, prefix="shop/kettle")
    prompt_id, _ = run_raw(comfy, graph)
    refs = history_wait(comfy, prompt_id)["outputs"]["10"]["images"]
    assert refs == [
        {"filename": "kettle_00001_.png", "subfolder": "shop", "type": "output"},
        {"filename": "kettle_00002_.png", "subfolder": "shop", "type": "output"},
    ]
    first, second = (image_of(comfy, ref) for ref in refs)
    assert first.format == "PNG"
    assert first.size == (320, 192)
    assert second.size == (320, 192)
    assert json.loads(first.text["prompt"]) == graph
    assert first.tobytes() != second.tobytes()


def test_images_depend_only_on_prompt_seed_index_and_size(comfy: Comfy) -> None:
    def pixels(text: str, seed: int, prefix: str) -> bytes:
        prompt_id, _ = run_raw(comfy, flux_graph(text, seed=seed, prefix=prefix))
        ref = history_wait(comfy, prompt_id)["outputs"]["10"]["images"][0]
        return image_of(comfy, ref).tobytes()

    kettle = pixels("a kettle", 1, "a")
    assert pixels("a kettle", 1, "b") == kettle
    assert pixels("a kettle", 2, "c") != kettle
    assert pixels("a lamp", 1, "d") != kettle


def test_an_identical_resubmission_is_served_from_cache(comfy: Comfy) -> None:
    graph = flux_graph()
    first_id, _ = run_raw(comfy, graph)
    second_id, messages = run_raw(comfy, graph)
    cached = next(m for m in messages if m["type"] == "execution_cached")
    executed = next(m for m in messages if m["type"] == "executed")
    assert sorted(cached["data"]["nodes"], key=int) == [str(n) for n in range(1, 11)]
    assert [m for m in messages if m["type"] in ("executing", "progress")] == [messages[-1]]
    first = history_wait(comfy, first_id)["outputs"]["10"]
    assert executed["data"]["output"] == first
    assert history_wait(comfy, second_id)["outputs"]["10"] == first
    assert comfy.get("/view", params={**first["images"][0]}).status_code == 200
    assert (
        comfy.get("/view", params={"filename": "run_00002_.png", "subfolder": "sim"}).status_code
        == 404
    )


def test_events_go_only_to_the_client_that_submitted(comfy: Comfy) -> None:
    other = ws_open(comfy.url, "bystander")
    try:
        prompt_id, _ = run_raw(comfy, flux_graph())
        seen = ws_drain(other, quiet=0.5)
    finally:
        other.close()
    assert seen
    assert set(types(seen)) == {"status"}
    assert history_wait(comfy, prompt_id)["status"]["status_str"] == "success"


def test_binary_preview_frames_are_sent_with_a_preview_method(
    comfy_start: Callable[..., Comfy],
) -> None:
    comfy = comfy_start("--preview-method", "latent2rgb")
    _, messages = run_raw(comfy, flux_graph(steps=2))
    frames = [m["bytes"] for m in messages if m["type"] == "binary"]
    assert len(frames) == 2
    assert all(
        f[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x02" and f[8:12] == b"\x89PNG" for f in frames
    )


def test_clients_announcing_preview_metadata_get_type_4_frames(
    comfy_start: Callable[..., Comfy],
) -> None:
    comfy = comfy_start("--preview-method", "latent2rgb")
    ws = ws_open(comfy.url, "modern")
    try:
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        flags = ws_collect(ws, lambda m: m["type"] == "feature_flags")[-1]
        prompt_id = submit(comfy, flux_graph(steps=1), client_id="modern").json()["prompt_id"]
        messages = ws_collect(ws, done_of(prompt_id))
    finally:
        ws.close()
    assert flags["data"]["supports_preview_metadata"] is True
    frame = next(m["bytes"] for m in messages if m["type"] == "binary")
    length = int.from_bytes(frame[4:8], "big")
    meta = json.loads(frame[8 : 8 + length])
    assert frame[:4] == b"\x00\x00\x00\x04"
    assert meta["prompt_id"] == prompt_id
    assert meta["node_id"] == "8"
    assert meta["image_type"] == "image/png"
    assert frame[8 + length : 12 + length] == b"\x89PNG"


def test_hostile_prompt_text_round_trips_into_the_png(comfy: Comfy) -> None:
    text = "quotes \" ' `; unicode ✓ 東京 🚀; backslash \\ null-free " * 80
    assert len(text) > 4000
    prompt_id, _ = run_raw(comfy, flux_graph(text[:4000]))
    ref = history_wait(comfy, prompt_id)["outputs"]["10"]["images"][0]
    chunk = json.loads(image_of(comfy, ref).text["prompt"])
    assert chunk["4"]["inputs"]["text"] == text[:4000]


# -- validation -------------------------------------------------------------------------------


def _mutated(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    graph = copy.deepcopy(flux_graph())
    change(graph)
    return graph


INVALID = [
    ("missing input", lambda g: g["8"]["inputs"].pop("steps"), "8", "required_input_missing"),
    ("wrong type", lambda g: g["8"]["inputs"].update(steps="many"), "8", "invalid_input_type"),
    ("below min", lambda g: g["8"]["inputs"].update(steps=0), "8", "value_smaller_than_min"),
    ("above max", lambda g: g["8"]["inputs"].update(cfg=100.5), "8", "value_bigger_than_max"),
    (
        "unknown model",
        lambda g: g["1"]["inputs"].update(unet_name="x.gguf"),
        "1",
        "value_not_in_list",
    ),
    (
        "unknown sampler",
        lambda g: g["8"]["inputs"].update(sampler_name="turbo"),
        "8",
        "value_not_in_list",
    ),
    ("short link", lambda g: g["8"]["inputs"].update(positive=["5"]), "8", "bad_linked_input"),
    (
        "wrong link type",
        lambda g: g["8"]["inputs"].update(positive=["1", 0]),
        "8",
        "return_type_mismatch",
    ),
]


def test_invalid_inputs_are_refused_with_comfyuis_error_shape(comfy: Comfy) -> None:
    for case, change, node, kind in INVALID:
        response = submit(comfy, _mutated(change))
        body = response.json()
        assert response.status_code == 400, case
        assert body["error"]["type"] == "prompt_outputs_failed_validation", case
        assert set(body["error"]) == {"type", "message", "details", "extra_info"}
        entry = body["node_errors"][node]
        assert entry["class_type"] == flux_graph()[node]["class_type"], case
        assert entry["dependent_outputs"] == ["10"], case
        assert entry["errors"][0]["type"] == kind, case
        assert set(entry["errors"][0]) == {"type", "message", "details", "extra_info"}, case
    assert comfy.get("/queue").json() == {"queue_running": [], "queue_pending": []}


def test_a_value_not_in_list_names_the_input_and_the_received_value(comfy: Comfy) -> None:
    body = submit(comfy, _mutated(lambda g: g["1"]["inputs"].update(unet_name="x.gguf"))).json()
    extra = body["node_errors"]["1"]["errors"][0]["extra_info"]
    assert extra["input_name"] == "unet_name"
    assert extra["received_value"] == "x.gguf"
    assert extra["input_config"] == [["flux1-dev.safetensors"], {}]


def test_long_combo_lists_are_not_echoed_back(comfy: Comfy) -> None:
    body = submit(comfy, _mutated(lambda g: g["8"]["inputs"].update(sampler_name="turbo"))).json()
    error = body["node_errors"]["8"]["errors"][0]
    assert error["extra_info"]["input_config"] is None
    assert error["details"].startswith("sampler_name: 'turbo' not in (list of length")


def test_newer_servers_refuse_unknown_node_types_as_missing_node_type(
    comfy_start: Callable[..., Comfy],
) -> None:
    comfy = comfy_start("--comfyui-version", "0.3.68")
    unknown = submit(comfy, _mutated(lambda g: g["8"].update(class_type="KSamplerTurbo"))).json()
    no_outputs = submit(comfy, _mutated(lambda g: g.pop("10"))).json()
    dangling = submit(comfy, _mutated(lambda g: g["8"]["inputs"].update(model=["99", 0]))).json()
    assert unknown["error"]["type"] == "missing_node_type"
    assert unknown["error"]["extra_info"]["class_type"] == "KSamplerTurbo"
    assert unknown["node_errors"] == {}
    assert no_outputs["error"]["type"] == "prompt_no_outputs"
    # As in execution.py: the KeyError surfaces in the validation of the node linking to it.
    assert dangling["node_errors"]["8"]["errors"][0]["type"] == "exception_during_inner_validation"


def test_newer_servers_require_prompt_ids_to_be_canonical_lowercase_uuids(
    comfy_start: Callable[..., Comfy],
) -> None:
    comfy = comfy_start("--comfyui-version", "0.3.68")
    for bad in ("job-1", str(uuid.uuid4()).upper(), uuid.uuid4().hex, 12):
        body = submit(comfy, flux_graph(), prompt_id=bad).json()
        assert body["error"]["type"] == "invalid_prompt_id", bad
    assert comfy.post("/prompt", {}).json()["error"]["type"] == "no_prompt"


def test_widget_values_are_coerced_like_the_real_server(comfy: Comfy) -> None:
    prompt_id, _ = run_raw(comfy, _mutated(lambda g: g["8"]["inputs"].update(seed="42")))
    entry = history_wait(comfy, prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert entry["prompt"][2]["8"]["inputs"]["seed"] == 42


def test_a_partly_valid_prompt_is_accepted_and_reports_the_dropped_output(comfy: Comfy) -> None:
    graph = flux_graph()
    graph["11"] = {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0]}}
    graph["12"] = {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}}
    response = submit(comfy, graph)
    body = response.json()
    assert response.status_code == 200
    assert body["node_errors"]["11"]["errors"][0]["type"] == "required_input_missing"
    assert body["node_errors"]["11"]["dependent_outputs"] == ["12"]
    entry = history_wait(comfy, body["prompt_id"])
    assert list(entry["outputs"]) == ["10"]


def test_malformed_json_bodies_get_the_real_servers_500_text_plain(comfy: Comfy) -> None:
    # Recorded from ComfyUI 0.3.64: `await request.json()` raises and aiohttp answers.
    for path in ("/prompt", "/api/prompt", "/queue", "/free", "/history"):
        for raw in (b"{not json", b"\xff\xfe", b""):
            response = requests.post(comfy.url + path, data=raw, timeout=10)
            assert response.status_code == 500, (path, raw)
            assert response.headers["Content-Type"].startswith("text/plain"), (path, raw)
            assert response.text == "500 Internal Server Error\n\nServer got itself in trouble"
    # JSON that is not an object: the handlers' `in` tests find nothing, .get() fails.
    assert requests.post(comfy.url + "/prompt", data=b"[1, 2]", timeout=10).json()["error"][
        "type"
    ] == "no_prompt"
    assert requests.post(comfy.url + "/queue", data=b"[1, 2]", timeout=10).status_code == 200
    assert requests.post(comfy.url + "/free", data=b"[1, 2]", timeout=10).status_code == 500
    assert requests.post(comfy.url + "/prompt", data=b"12", timeout=10).status_code == 500
    # The simulator's own routes keep a typed 400.
    response = requests.post(comfy.url + "/_sim/fault", data=b"{not json", timeout=10)
    assert response.json()["error"]["type"] == "invalid_json"
    assert comfy.get("/system_stats").status_code == 200


def test_prompts_that_are_not_api_graphs_get_400(comfy: Comfy) -> None:
    for prompt in ([], "text", {"1": "node"}, {"1": {"class_type": "SaveImage", "inputs": []}}):
        body = submit(comfy, prompt).json()
        assert body["error"]["type"] == "invalid_prompt", prompt
    assert comfy.post("/prompt", {"prompt": flux_graph(), "number": "soon"}).status_code == 400


def test_view_refuses_escapes_and_reports_missing_files(comfy: Comfy) -> None:
    prompt_id, _ = run_raw(comfy, flux_graph(prefix="safe/run"))
    ref = history_wait(comfy, prompt_id)["outputs"]["10"]["images"][0]

    def status(**params: str) -> int:
        return comfy.get("/view", params=params).status_code

    assert status(**ref) == 200
    assert status(filename=f"{ref['filename']} [output]", subfolder="safe") == 200
    assert status(filename="../secrets.png") == 400
    assert status(filename="/etc/passwd") == 400
    assert status(filename=ref["filename"], subfolder="../../..") == 403
    assert status(filename=ref["filename"], subfolder="safe", type="elsewhere") == 400
    assert status(filename="nothing_00001_.png", subfolder="safe") == 404
    assert comfy.get("/view").status_code == 404


# -- queue, interrupt, free ------------------------------------------------------------------


def blocker(comfy: Comfy) -> str:
    """A long prompt without a client id, to keep the worker busy."""
    graph = flux_graph("blocker", steps=400, width=1024, height=1024, batch=4, prefix="block")
    prompt_id: str = submit(comfy, graph).json()["prompt_id"]
    deadline = time.monotonic() + 10
    while not comfy.get("/queue").json()["queue_running"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return prompt_id


def test_the_queue_runs_lowest_number_first_and_front_jumps_ahead(comfy: Comfy) -> None:
    running = blocker(comfy)
    ws = ws_open(comfy.url, "orderly")
    try:
        plain = submit(comfy, flux_graph("plain"), client_id="orderly").json()
        front = submit(comfy, flux_graph("front"), client_id="orderly", front=True).json()
        early = submit(comfy, flux_graph("early"), client_id="orderly", number=-100).json()
        queue = comfy.get("/queue").json()
        assert comfy.get("/prompt").json()["exec_info"]["queue_remaining"] == 4
        assert queue["queue_running"][0][1] == running
        assert len(queue["queue_running"][0]) == 5
        assert {item[1] for item in queue["queue_pending"]} == {
            plain["prompt_id"],
            front["prompt_id"],
            early["prompt_id"],
        }
        assert comfy.post("/interrupt", {"prompt_id": running}).status_code == 200
        messages = ws_collect(ws, done_of(plain["prompt_id"]))
    finally:
        ws.close()
    starts = [m["data"]["prompt_id"] for m in messages if m["type"] == "execution_start"]
    assert starts == [early["prompt_id"], front["prompt_id"], plain["prompt_id"]]
    assert history_wait(comfy, running)["status"]["status_str"] == "error"


def test_pending_prompts_can_be_deleted_or_cleared(comfy: Comfy) -> None:
    running = blocker(comfy)
    first = submit(comfy, flux_graph("one")).json()["prompt_id"]
    second = submit(comfy, flux_graph("two")).json()["prompt_id"]
    assert comfy.post("/queue", {"delete": [first]}).status_code == 200
    assert [i[1] for i in comfy.get("/queue").json()["queue_pending"]] == [second]
    assert comfy.post("/queue", {"clear": True}).status_code == 200
    queue = comfy.get("/queue").json()
    assert queue["queue_pending"] == []
    assert queue["queue_running"][0][1] == running
    comfy.post("/interrupt", {})
    assert history_wait(comfy, running)["status"]["status_str"] == "error"
    assert comfy.get(f"/history/{first}").json() == {}


def test_interrupt_stops_only_the_named_running_prompt(comfy: Comfy) -> None:
    graph = flux_graph(steps=400, width=1024, height=1024, batch=4)
    ws = ws_open(comfy.url, "stopper")
    try:
        prompt_id = submit(comfy, graph, client_id="stopper").json()["prompt_id"]
        ws_collect(ws, lambda m: m["type"] == "progress")
        assert comfy.post("/interrupt", {"prompt_id": str(uuid.uuid4())}).status_code == 200
        ws_collect(ws, lambda m: m["type"] == "progress" and m["data"]["value"] > 3)
        comfy.post("/interrupt", {"prompt_id": prompt_id})
        messages = ws_collect(ws, done_of(prompt_id))
    finally:
        ws.close()
    interrupted = next(m["data"] for m in messages if m["type"] == "execution_interrupted")
    entry = history_wait(comfy, prompt_id)
    assert interrupted["node_id"] == "8"
    assert interrupted["node_type"] == "KSampler"
    assert "1" in interrupted["executed"]
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    # Loaded models stay resident after an interrupt (the VAE was not needed yet).
    assert comfy.comfy_allocations() == FLUX_FP8_WEIGHTS - round(0.084 * 2 * 1e9)


def test_reconnecting_during_a_run_is_told_the_current_node(comfy: Comfy) -> None:
    graph = flux_graph(steps=400, width=1024, height=1024, batch=4)
    first = ws_open(comfy.url, "phoenix")
    prompt_id = submit(comfy, graph, client_id="phoenix").json()["prompt_id"]
    ws_collect(first, lambda m: m["type"] == "progress")
    first.close()
    again = ws_open(comfy.url, "phoenix")
    try:
        hello = ws_collect(again, lambda m: m["type"] == "executing")
    finally:
        again.close()
        comfy.post("/interrupt", {"prompt_id": prompt_id})
    assert hello[0]["type"] == "status"
    assert hello[0]["data"]["sid"] == "phoenix"
    assert hello[-1]["data"] == {"node": "8"}


def poll_allocations(comfy: Comfy, target: Callable[[int], bool], limit: float = 10.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = comfy.comfy_allocations()
        if target(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"simulated ComfyUI still holds {comfy.comfy_allocations()} bytes")


def test_free_releases_the_weights_after_answering_and_resets_the_cache(comfy: Comfy) -> None:
    run_raw(comfy, flux_graph())
    assert comfy.comfy_allocations() == FLUX_FP8_WEIGHTS
    assert comfy.post("/free", {"unload_models": True, "free_memory": True}).status_code == 200
    poll_allocations(comfy, lambda held: held == 0)
    assert comfy.get("/system_stats").json()["devices"][0]["vram_free"] == 32e9 - BASELINE_BYTES
    _, messages = run_raw(comfy, flux_graph())
    assert next(m for m in messages if m["type"] == "execution_cached")["data"]["nodes"] == []


def test_unload_models_alone_keeps_the_cache(comfy: Comfy) -> None:
    run_raw(comfy, flux_graph())
    comfy.post("/free", {"unload_models": True})
    poll_allocations(comfy, lambda held: held == 0)
    _, messages = run_raw(comfy, flux_graph())
    assert len(next(m for m in messages if m["type"] == "execution_cached")["data"]["nodes"]) == 10
    _, messages = run_raw(comfy, flux_graph(seed=99))
    assert "progress" in types(messages)
    assert comfy.comfy_allocations() == round((11.9 + 0.084 * 2) * 1e9)


# -- VRAM and faults -----------------------------------------------------------------------


def fill(comfy: Comfy, leave: int) -> None:
    """Take all but ``leave`` bytes of the simulated GPU, as another runtime would."""
    comfy.gpu.allocate("other", "resident", comfy.gpu.snapshot().free - leave, runtime="critic")


def test_a_full_gpu_gives_torchs_oom_in_the_loader_and_the_server_stays_up(comfy: Comfy) -> None:
    fill(comfy, 5_000_000_000)
    prompt_id, messages = run_raw(comfy, flux_graph())
    error = next(m["data"] for m in messages if m["type"] == "execution_error")
    assert error["exception_type"] == "torch.OutOfMemoryError"
    assert error["exception_message"].startswith(
        "Allocation on device \nThis error means you ran out of memory on your GPU.\n\nTIPS:"
    )
    assert (error["node_id"], error["node_type"]) == ("1", "UNETLoader")
    assert history_wait(comfy, prompt_id)["status"]["status_str"] == "error"
    assert comfy.comfy_allocations() == 0
    comfy.gpu.release("other")
    prompt_id, _ = run_raw(comfy, flux_graph(seed=3))
    assert history_wait(comfy, prompt_id)["status"]["status_str"] == "success"


def test_no_room_for_activations_fails_in_ksampler_and_unloads_the_models(comfy: Comfy) -> None:
    # Room for the transformer only: the text encoders get evicted to make room, as ComfyUI
    # does, and then the activations still do not fit.
    fill(comfy, 11_900_000_000 + 400_000_000)
    _, messages = run_raw(comfy, flux_graph())
    error = next(m["data"] for m in messages if m["type"] == "execution_error")
    assert (error["node_id"], error["node_type"]) == ("8", "KSampler")
    assert error["current_inputs"]["steps"] == [3]
    assert comfy.comfy_allocations() == 0


def test_the_oom_fault_fails_only_the_next_sampling_run(comfy: Comfy) -> None:
    assert comfy.post("/_sim/fault", {"name": "oom", "on": True}).json()["faults"] == ["oom"]
    _, failing = run_raw(comfy, flux_graph())
    _, passing = run_raw(comfy, flux_graph(seed=2))
    assert (
        next(m for m in failing if m["type"] == "execution_error")["data"]["node_type"]
        == "KSampler"
    )
    assert "execution_success" in types(passing)
    assert comfy.post("/_sim/fault", {"name": "melt", "on": True}).status_code == 400


def test_models_not_needed_are_evicted_to_make_room_for_another_mode(comfy: Comfy) -> None:
    fill(comfy, 20_000_000_000)
    run_raw(comfy, flux_graph())
    sdxl = {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "a chair"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": ""}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 512, "height": 512, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
                "seed": 1,
                "steps": 2,
                "cfg": 7.0,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "sdxl"}},
    }
    prompt_id, _ = run_raw(comfy, sdxl)
    assert history_wait(comfy, prompt_id)["status"]["status_str"] == "success"
    labels = {a.label for a in comfy.gpu.snapshot().allocations if a.runtime == "comfyui"}
    assert "checkpoints/sd_xl_base_1.0.safetensors@default" in labels
    # The least recently used model (T5, last used before sampling) made room; that sufficed.
    assert "text_encoders/t5xxl_fp8_e4m3fn.safetensors@default" not in labels
    assert "diffusion_models/flux1-dev.safetensors@fp8_e4m3fn" in labels


def test_sigterm_releases_the_simulated_vram(comfy: Comfy) -> None:
    run_raw(comfy, flux_graph())
    assert comfy.comfy_allocations() > 0
    assert comfy.sim.stop() == 0
    assert comfy.comfy_allocations() == 0
    assert comfy.gpu.events()[-1]["event"] == "release"


def test_a_killed_process_has_its_vram_reaped(comfy: Comfy) -> None:
    run_raw(comfy, flux_graph())
    comfy.sim.kill()
    assert comfy.comfy_allocations() == 0
    assert comfy.gpu.events()[-1]["event"] == "reaped"


def test_crash_mid_run_exits_during_sampling(comfy_start: Callable[..., Comfy]) -> None:
    comfy = comfy_start("--fault", "crash_mid_run")
    ws = ws_open(comfy.url, "doomed")
    try:
        submit(comfy, flux_graph(steps=6), client_id="doomed")
        messages = ws_collect(ws, lambda m: False)
    finally:
        ws.close()
    assert comfy.sim.process.wait(10) == 70
    assert messages[-1]["type"] == "closed"
    assert [m["data"]["value"] for m in messages if m["type"] == "progress"] == [1, 2]
    assert comfy.comfy_allocations() == 0


def test_drop_ws_closes_sockets_mid_run_while_the_run_finishes(comfy: Comfy) -> None:
    comfy.post("/_sim/fault", {"name": "drop_ws", "on": True})
    ws = ws_open(comfy.url, "dropped")
    try:
        prompt_id = submit(comfy, flux_graph(steps=6), client_id="dropped").json()["prompt_id"]
        messages = ws_collect(ws, lambda m: False)
    finally:
        ws.close()
    assert messages[-1]["type"] == "closed"
    assert "execution_success" not in types(messages)
    assert history_wait(comfy, prompt_id)["status"]["status_str"] == "success"


def test_hang_stops_events_mid_run_but_http_still_answers(comfy: Comfy) -> None:
    comfy.post("/_sim/fault", {"name": "hang", "on": True})
    ws = ws_open(comfy.url, "stuck")
    try:
        prompt_id = submit(comfy, flux_graph(steps=6), client_id="stuck").json()["prompt_id"]
        ws_collect(ws, lambda m: m["type"] == "progress" and m["data"]["value"] == 2)
        later = ws_drain(ws, quiet=1.0)
    finally:
        ws.close()
    assert types(later) in ([], ["progress_state"])
    assert comfy.get(f"/history/{prompt_id}").json() == {}
    assert comfy.get("/queue").json()["queue_running"][0][1] == prompt_id


def test_garbage_and_wrong_size_faults_corrupt_the_saved_file(comfy: Comfy) -> None:
    comfy.post("/_sim/fault", {"name": "garbage_output", "on": True})
    garbage_id, _ = run_raw(comfy, flux_graph(prefix="g"))
    comfy.post("/_sim/fault", {"name": "garbage_output", "on": False})
    comfy.post("/_sim/fault", {"name": "wrong_size", "on": True})
    small_id, _ = run_raw(comfy, flux_graph(prefix="w"))
    garbage = history_wait(comfy, garbage_id)["outputs"]["10"]["images"][0]
    small = history_wait(comfy, small_id)["outputs"]["10"]["images"][0]
    with pytest.raises(OSError, match=r"(?i)truncat|broken|cannot identify"):
        image_of(comfy, garbage)
    assert image_of(comfy, small).size == (128, 128)


def test_slow_start_opens_the_port_late(comfy_start: Callable[..., Comfy]) -> None:
    comfy = comfy_start("--fault", "slow_start", scale="0.05", wait=False)
    time.sleep(1.5)
    assert comfy.sim.alive()
    with pytest.raises(requests.ConnectionError):
        comfy.get("/system_stats")
    sim_wait(comfy.sim)
    assert comfy.get("/system_stats").status_code == 200
