"""ComfyClient against the simulated ComfyUI over real sockets: every call and every failure."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from artcritic.gpu.profiles import Profile, profile_read
from artcritic.runtimes.comfyui import ComfyClient, ComfyProgress, ExpectedImages, OutputImage
from artcritic.runtimes.comfyui_errors import rejection_from_response
from artcritic.runtimes.comfyui_events import RunWatch
from artcritic.runtimes.errors import (
    RuntimeFailure,
    RuntimeHung,
    RuntimeInterrupted,
    RuntimeOutOfMemory,
    RuntimeOutputInvalid,
    RuntimeRejected,
    RuntimeUnavailable,
)
from artcritic.runtimes.workflows import graph_build
from artcritic.sim.gpu import BASELINE_BYTES, SimGpu
from tests.simproc import SimProcess, free_port, start_sim

ROOT = Path(__file__).resolve().parent.parent.parent
PROFILE: Profile = profile_read(ROOT / "profiles" / "sim-32gb.toml")[0]
FLUX_FP8_WEIGHTS = round((11.9 + 4.76 + 0.123 * 2 + 0.084 * 2) * 1e9)


@dataclass
class Comfy:
    sim: SimProcess
    gpu: SimGpu
    client: ComfyClient

    def fault(self, name: str, on: bool = True) -> None:
        response = requests.post(
            f"{self.sim.url}/_sim/fault", json={"name": name, "on": on}, timeout=5
        )
        assert response.status_code == 200


@pytest.fixture
def comfy_start(tmp_path: Path) -> Iterator[Callable[..., Comfy]]:
    started: list[SimProcess] = []

    def start(*args: str) -> Comfy:
        name = f"c-{uuid.uuid4().hex[:8]}"
        env = {"ARTCRITIC_SIM_DIR": str(tmp_path), "ARTCRITIC_SIM_TIME_SCALE": "0.01"}
        sim = start_sim("comfyui", "--gpu", name, *args, env=env)
        started.append(sim)
        return Comfy(sim, SimGpu(name, root=tmp_path), ComfyClient(sim.url, timeout=5))

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def comfy(comfy_start: Callable[..., Comfy]) -> Comfy:
    return comfy_start()


def graph(
    mode: str = "flux-dev-fp8",
    *,
    prompt: str = "a walnut desk organiser",
    seed: int = 11,
    steps: int = 3,
    width: int = 256,
    height: int = 256,
    batch: int = 1,
    prefix: str = "client/run",
    lora: str | None = None,
) -> dict[str, Any]:
    model = PROFILE.models[mode]
    return graph_build(
        model,
        prompt=prompt,
        negative="blurry",
        width=width,
        height=height,
        batch=batch,
        seed=seed,
        steps=steps,
        cfg=model.default_cfg,
        sampler=model.default_sampler,
        scheduler=model.default_scheduler,
        lora=PROFILE.loras[lora] if lora else None,
        lora_strength=0.7,
        filename_prefix=prefix,
    )


def run(
    comfy: Comfy,
    g: dict[str, Any],
    expected: ExpectedImages | None = None,
    *,
    timeout: float = 30.0,
    cancel_check: Callable[[], bool] | None = None,
    on_event: Callable[[ComfyProgress], None] | None = None,
) -> tuple[list[OutputImage], list[ComfyProgress]]:
    events: list[ComfyProgress] = []

    def record(event: ComfyProgress) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    images = comfy.client.run(
        g,
        on_event=record,
        expected=expected or ExpectedImages(1, 256, 256),
        timeout=timeout,
        cancel_check=cancel_check,
    )
    return images, events


def idle(comfy: Comfy) -> bool:
    queue = comfy.client.queue()
    return not queue["queue_running"] and not queue["queue_pending"]


def wait_for(condition: Callable[[], bool], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


# -- a successful run ---------------------------------------------------------------------


def test_run_returns_exactly_the_expected_images(comfy: Comfy) -> None:
    images, _ = run(comfy, graph(batch=2, width=320, height=192), ExpectedImages(2, 320, 192))
    assert [(i.filename, i.subfolder, i.type) for i in images] == [
        ("run_00001_.png", "client", "output"),
        ("run_00002_.png", "client", "output"),
    ]
    for image in images:
        decoded = Image.open(io.BytesIO(image.data))
        assert decoded.format == "PNG"
        assert decoded.size == (image.width, image.height) == (320, 192)


def test_progress_is_reported_in_order_with_node_types_and_steps(comfy: Comfy) -> None:
    _, events = run(comfy, graph(steps=4))
    kinds = [e.kind for e in events]
    assert kinds[0] == "queued"
    assert kinds.index("started") < kinds.index("cached") < kinds.index("node")
    assert kinds.index("step") < kinds.index("executed") < kinds.index("done") == len(kinds) - 1
    steps = [(e.value, e.max, e.node, e.node_type) for e in events if e.kind == "step"]
    assert steps == [(n, 4, "8", "KSampler") for n in (1, 2, 3, 4)]
    nodes = {e.node: e.node_type for e in events if e.kind == "node"}
    assert nodes["1"] == "UNETLoader"
    assert nodes["10"] == "SaveImage"
    loading = {e.node_type for e in events if e.loading}
    assert loading == {"UNETLoader", "DualCLIPLoader", "VAELoader"}
    executed = next(e for e in events if e.kind == "executed")
    assert executed.filenames == ("run_00001_.png",)
    assert {e.prompt_id for e in events} == {events[0].prompt_id}


def test_binary_preview_frames_are_ignored(comfy_start: Callable[..., Comfy]) -> None:
    comfy = comfy_start("--preview-method", "latent2rgb")
    images, events = run(comfy, graph(steps=3))
    assert len(images) == 1
    assert [e.value for e in events if e.kind == "step"] == [1, 2, 3]


def test_an_sdxl_graph_with_a_lora_runs(comfy: Comfy) -> None:
    images, events = run(comfy, graph("sdxl", lora="clay-sketch"))
    assert len(images) == 1
    assert "LoraLoader" in {e.node_type for e in events if e.kind == "node"}


def test_an_identical_graph_is_answered_from_comfyuis_cache(comfy: Comfy) -> None:
    g = graph()
    first, _ = run(comfy, g)
    second, events = run(comfy, g)
    cached = next(e for e in events if e.kind == "cached")
    assert len(cached.cached_nodes) == len(g)
    assert [e for e in events if e.kind in ("node", "step")] == []
    assert second[0].filename == first[0].filename
    assert second[0].data == first[0].data


def test_hostile_prompt_text_round_trips(comfy: Comfy) -> None:
    text = ('He said "no"; it\'s {json} \\n ✓ 東京 🚀 <b>&amp;</b> ' * 120)[:4000]
    images, _ = run(comfy, graph(prompt=text))
    chunk = json.loads(Image.open(io.BytesIO(images[0].data)).text["prompt"])
    assert chunk["4"]["inputs"]["text"] == text


# -- simple calls ---------------------------------------------------------------------------


def test_the_simple_calls_answer_with_comfyuis_shapes(comfy: Comfy) -> None:
    client = comfy.client
    stats = client.system_stats()
    assert stats["devices"][0]["vram_total"] == 32_000_000_000
    assert client.vram_free_bytes() == 32_000_000_000 - BASELINE_BYTES
    assert client.queue() == {"queue_running": [], "queue_pending": []}
    assert "KSampler" in client.object_info()
    assert list(client.object_info("VAELoader")) == ["VAELoader"]
    assert client.object_info("Nope") == {}
    assert client.models("diffusion_models") == ["flux1-dev.safetensors"]
    assert client.history(str(uuid.uuid4())) == {}
    client.interrupt()
    client.interrupt(str(uuid.uuid4()))
    client.free(unload_models=True, free_memory=False)
    with pytest.raises(RuntimeRejected, match="no model folder 'spells'"):
        client.models("spells")


def test_view_returns_bytes_and_maps_missing_or_refused_files(comfy: Comfy) -> None:
    images, _ = run(comfy, graph())
    assert comfy.client.view(images[0].filename, "client", "output") == images[0].data
    with pytest.raises(RuntimeOutputInvalid, match="no such file"):
        comfy.client.view("ghost_00001_.png", "client")
    with pytest.raises(RuntimeRejected, match="HTTP 400"):
        comfy.client.view("../escape.png")


def test_free_releases_vram_that_the_caller_can_watch_come_back(comfy: Comfy) -> None:
    run(comfy, graph())
    before = comfy.client.vram_free_bytes()
    comfy.client.free()
    wait_for(lambda: comfy.client.vram_free_bytes() >= before + FLUX_FP8_WEIGHTS)
    assert comfy.client.vram_free_bytes() == 32_000_000_000 - BASELINE_BYTES


# -- unreachable -------------------------------------------------------------------------------


def test_a_refused_connection_is_unavailable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = ComfyClient(url, timeout=2)
    with pytest.raises(RuntimeUnavailable, match=f"{url} refused the connection") as caught:
        client.system_stats()
    assert "runtime_doctor" in caught.value.next_action
    with pytest.raises(RuntimeUnavailable, match="websocket"):
        client.run(
            graph(), on_event=lambda e: None, expected=ExpectedImages(1, 256, 256), timeout=5
        )


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_a_server_that_never_answers_times_out_with_the_seconds(silent_server: str) -> None:
    client = ComfyClient(silent_server, timeout=0.5)
    with pytest.raises(RuntimeUnavailable, match=r"did not answer GET /queue within 0\.5 s"):
        client.queue()


# -- refusals ------------------------------------------------------------------------------


def test_a_missing_model_file_is_refused_naming_node_input_and_file(
    comfy_start: Callable[..., Comfy],
) -> None:
    comfy = comfy_start("--without-model", "flux1-dev.safetensors")
    with pytest.raises(RuntimeRejected) as caught:
        run(comfy, graph())
    assert caught.value.reason == (
        "ComfyUI refused the workflow: node 1 (UNETLoader) input unet_name: "
        "'flux1-dev.safetensors' is not in ComfyUI's list (value_not_in_list)."
    )
    assert "models/diffusion_models/" in caught.value.next_action


def test_an_unknown_sampler_and_an_unknown_node_are_refused(comfy: Comfy) -> None:
    g = graph()
    g["8"]["inputs"]["sampler_name"] = "warp_drive"
    with pytest.raises(RuntimeRejected, match="node 8 \\(KSampler\\) input sampler_name") as caught:
        run(comfy, g)
    assert "object_info/KSampler" in caught.value.next_action
    g = graph()
    g["8"]["class_type"] = "KSamplerTurbo"
    with pytest.raises(RuntimeRejected, match="no node class 'KSamplerTurbo'") as unknown:
        run(comfy, g)
    assert "Install the custom node that provides 'KSamplerTurbo'" in unknown.value.next_action


def test_a_partly_valid_graph_is_refused_and_nothing_keeps_running(comfy: Comfy) -> None:
    g = graph()
    g["20"] = {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0]}}
    g["21"] = {"class_type": "PreviewImage", "inputs": {"images": ["20", 0]}}
    with pytest.raises(
        RuntimeRejected, match="node 20 \\(VAEDecode\\) is missing its required input vae"
    ):
        run(comfy, g)
    wait_for(lambda: idle(comfy))
    history = requests.get(f"{comfy.sim.url}/history", timeout=5).json()
    assert all(e["status"]["status_str"] == "error" for e in history.values())


# -- failures during the run ---------------------------------------------------------------------


def fill(comfy: Comfy, leave: int) -> None:
    comfy.gpu.allocate("critic", "weights", comfy.gpu.snapshot().free - leave, runtime="critic")


def test_a_full_gpu_is_out_of_memory_naming_the_loader(comfy: Comfy) -> None:
    fill(comfy, 5_000_000_000)
    with pytest.raises(RuntimeOutOfMemory) as caught:
        run(comfy, graph())
    assert caught.value.reason == (
        "ComfyUI ran out of GPU memory in UNETLoader (node 1). "
        "Nothing was retried at lower settings."
    )
    assert "smaller batch" in caught.value.next_action


def test_no_room_for_activations_is_out_of_memory_naming_ksampler(comfy: Comfy) -> None:
    fill(comfy, 11_900_000_000 + 400_000_000)
    with pytest.raises(RuntimeOutOfMemory, match=r"in KSampler \(node 8\)"):
        run(comfy, graph())
    comfy.gpu.release("critic")
    images, _ = run(comfy, graph(seed=12))
    assert len(images) == 1


def test_a_node_exception_is_a_runtime_failure_with_its_type_and_message(comfy: Comfy) -> None:
    with pytest.raises(RuntimeFailure) as caught:
        run(comfy, graph(prefix="../../outside/run"))
    assert type(caught.value) is RuntimeFailure
    assert caught.value.reason.startswith("ComfyUI failed in SaveImage (node 10): Exception:")
    assert "Saving image outside the output folder is not allowed" in caught.value.reason


def test_cancel_check_interrupts_the_running_prompt(comfy: Comfy) -> None:
    seen_steps: list[int] = []
    with pytest.raises(RuntimeInterrupted, match=r"interrupted the run in KSampler \(node 8\)"):
        run(
            comfy,
            graph(steps=400, width=1024, height=1024, batch=4),
            ExpectedImages(4, 1024, 1024),
            cancel_check=lambda: len(seen_steps) >= 2,
            on_event=lambda e: seen_steps.append(e.value or 0) if e.kind == "step" else None,
        )
    assert 2 <= len(seen_steps) < 400
    wait_for(lambda: idle(comfy))
    images, _ = run(comfy, graph(seed=2))
    assert len(images) == 1


def test_cancel_check_drops_a_prompt_that_has_not_started(comfy: Comfy) -> None:
    blocker = graph("sdxl", steps=400, width=1024, height=1024, batch=4, prefix="blocker")
    requests.post(f"{comfy.sim.url}/prompt", json={"prompt": blocker}, timeout=5)
    wait_for(lambda: bool(comfy.client.queue()["queue_running"]))
    queued: list[ComfyProgress] = []
    with pytest.raises(RuntimeInterrupted, match="before ComfyUI started"):
        run(comfy, graph(), cancel_check=lambda: bool(queued), on_event=queued.append)
    pending = comfy.client.queue()["queue_pending"]
    assert pending == []
    comfy.client.interrupt()


def test_a_dropped_websocket_falls_back_to_polling_history(comfy: Comfy) -> None:
    comfy.fault("drop_ws")
    images, events = run(comfy, graph(steps=8))
    assert len(images) == 1
    assert [e.value for e in events if e.kind == "step"] == [1, 2, 3]
    assert events[-1].kind == "done"


def test_a_crash_mid_run_is_unavailable_during_the_run(comfy_start: Callable[..., Comfy]) -> None:
    comfy = comfy_start("--fault", "crash_mid_run")
    with pytest.raises(
        RuntimeUnavailable,
        match=r"stopped answering during the run \(last event: KSampler step 2/6\)",
    ):
        run(comfy, graph(steps=6))


def test_a_hung_run_times_out_and_is_found_hung_when_the_interrupt_does_not_take(
    comfy: Comfy,
) -> None:
    comfy.fault("hang")
    with pytest.raises(RuntimeHung, match=r"did not finish the workflow within 1\.5 s") as hung:
        run(comfy, graph(steps=6), timeout=1.5)
    assert "after /interrupt prompt" in hung.value.reason
    assert "ComfyUI is hung" in hung.value.reason
    assert (hung.value.runtime, hung.value.cancelled) == ("comfyui", False)


def test_a_slow_run_past_its_deadline_is_interrupted_and_stops(comfy: Comfy) -> None:
    with pytest.raises(RuntimeUnavailable, match="it was interrupted and stopped") as slow:
        run(comfy, graph(steps=400, width=1024, height=1024), timeout=0.5)
    assert not isinstance(slow.value, RuntimeHung)
    wait_for(lambda: idle(comfy))


def test_a_failing_progress_callback_interrupts_the_run(comfy: Comfy) -> None:
    def explode(event: ComfyProgress) -> None:
        if event.kind == "step":
            raise KeyError("the caller broke")

    with pytest.raises(KeyError, match="the caller broke"):
        run(comfy, graph(steps=400, width=1024, height=1024, batch=4), on_event=explode)
    wait_for(lambda: idle(comfy))


# -- output checks --------------------------------------------------------------------------------


def test_fewer_images_than_expected_are_refused(comfy: Comfy) -> None:
    with pytest.raises(RuntimeOutputInvalid, match="ComfyUI delivered 1 images; 2 were asked for"):
        run(comfy, graph(), ExpectedImages(2, 256, 256))


def test_images_of_another_size_are_refused(comfy: Comfy) -> None:
    with pytest.raises(RuntimeOutputInvalid, match=r"run_00001_.png is 256×256; 512×256 was asked"):
        run(comfy, graph(), ExpectedImages(1, 512, 256))
    comfy.fault("wrong_size")
    with pytest.raises(RuntimeOutputInvalid, match=r"is 128×128; 256×256 was asked for"):
        run(comfy, graph(seed=5))


def test_corrupt_png_output_is_refused(comfy: Comfy) -> None:
    comfy.fault("garbage_output")
    with pytest.raises(RuntimeOutputInvalid, match="is not a decodable PNG") as caught:
        run(comfy, graph())
    assert "Nothing was stored" in caught.value.next_action


# -- message handling without a server ------------------------------------------------------------


def test_unknown_malformed_and_foreign_messages_are_ignored() -> None:
    events: list[ComfyProgress] = []
    watch = RunWatch({"8": {"class_type": "KSampler"}}, "mine", events.append)
    junk = [
        "not json",
        "[1, 2]",
        json.dumps({"type": "progress", "data": "nope"}),
        json.dumps({"type": "crystools.monitor", "data": {"gpu": 99}}),
        json.dumps({"type": "progress_state", "data": {"prompt_id": "mine", "nodes": {}}}),
        json.dumps({"type": "progress", "data": {"prompt_id": "theirs", "value": 1, "max": 2}}),
        json.dumps({"type": "executing", "data": {"node": None, "prompt_id": "theirs"}}),
        json.dumps({"type": "executing", "data": {"node": "8"}}),
        json.dumps({"type": "status", "data": {"status": {"exec_info": {}}, "sid": "x"}}),
        json.dumps({"type": "progress", "data": {"prompt_id": "mine", "node": "8", "value": "1"}}),
    ]
    assert not any(watch.text(raw) for raw in junk)
    assert events == []
    assert watch.text(
        json.dumps({"type": "executing", "data": {"node": None, "prompt_id": "mine"}})
    )


def test_legacy_and_odd_refusals_still_name_what_comfyui_said() -> None:
    legacy = rejection_from_response({"error": "no prompt", "node_errors": []})
    text = rejection_from_response("<html>502 Bad Gateway</html>")
    assert legacy.reason == "ComfyUI refused the workflow: 'no prompt'."
    assert text.reason.startswith("ComfyUI refused the workflow and said: '<html>502")
