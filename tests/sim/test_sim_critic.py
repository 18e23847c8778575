"""The simulated vLLM Critic speaks vLLM's HTTP protocol and accounts its VRAM like vLLM."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator
from PIL import Image, ImageDraw

from artcritic.sim.gpu import SimGpu
from tests.simproc import SimProcess, sim_wait, start_sim

MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
GB = 1_000_000_000
TOTAL = 32 * GB
BASE_FLAGS = (
    "--gpu-memory-utilization", "0.7",
    "--max-model-len", "8192",
    "--max-num-seqs", "4",
    "--enable-sleep-mode",
)  # fmt: skip
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scores": {
            "type": "object",
            "properties": {
                "taste": {"type": "integer", "minimum": 0, "maximum": 10},
                "consistency": {"type": "integer", "minimum": 0, "maximum": 10},
            },
            "required": ["taste", "consistency"],
            "additionalProperties": False,
        },
        "verdict": {"type": "string", "enum": ["approve", "reject"]},
        "rationale": {
            "type": "object",
            "properties": {"taste": {"type": "string", "maxLength": 300}},
            "required": ["taste"],
            "additionalProperties": False,
        },
    },
    "required": ["scores", "verdict", "rationale"],
    "additionalProperties": False,
}


# -- a launcher for the simulator as its own process (shared with the client tests) ---------


@dataclass
class CriticSim:
    """One ``python -m artcritic.sim critic`` process on its own simulated GPU."""

    proc: SimProcess
    gpu: SimGpu

    @property
    def url(self) -> str:
        return self.proc.url

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.proc.log()

    def held(self) -> dict[str, int]:
        """The simulated VRAM this Critic holds, by label."""
        return {a.label: a.bytes for a in self.gpu.snapshot().allocations if a.runtime == "critic"}

    def wait_ready(self) -> None:
        """The simulator opens its port only once loaded, as vLLM does."""
        sim_wait(self.proc, timeout=60)

    def wait_exit(self, limit_s: float = 60) -> int:
        return self.proc.process.wait(timeout=limit_s)

    def stop(self) -> int | None:
        """SIGTERM by PID, as a driver would."""
        return self.proc.stop(timeout=20)


def critic_launch(
    tmp_path: Path, *flags: str, dev_mode: bool = True, base: tuple[str, ...] = BASE_FLAGS
) -> CriticSim:
    """Start the simulator on a fresh simulated 32 GB GPU; do not wait for it."""
    name = f"critic-{uuid.uuid4().hex[:8]}"
    sim_dir = tmp_path / "sim"
    gpu = SimGpu(name, root=sim_dir)
    gpu.reset(TOTAL)
    env = {
        "ARTCRITIC_SIM_DIR": str(sim_dir),
        "ARTCRITIC_SIM_TIME_SCALE": "0.01",
        "VLLM_SERVER_DEV_MODE": "1" if dev_mode else "0",
    }
    proc = start_sim("critic", "--gpu", name, "--model", MODEL, *base, *flags, env=env, wait=False)
    return CriticSim(proc, gpu)


Launcher = Callable[..., CriticSim]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """Start simulators (ready unless ``ready=False``); all are stopped by PID afterwards."""
    started: list[CriticSim] = []

    def start(*flags: str, dev_mode: bool = True, ready: bool = True) -> CriticSim:
        sim = critic_launch(tmp_path, *flags, dev_mode=dev_mode)
        started.append(sim)
        if ready:
            sim.wait_ready()
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def critic(launch: Launcher) -> CriticSim:
    return launch()


def png(color: tuple[int, int, int] = (30, 140, 140), size: tuple[int, int] = (256, 256)) -> bytes:
    img = Image.new("RGB", size, (245, 245, 242))
    ImageDraw.Draw(img).ellipse((size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1]), fill=color)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def chat_body(text: str = '{"prompt": "a teal ceramic kettle"}', **extra: Any) -> dict[str, Any]:
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are an image critic. Answer JSON."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            },
        ],
        "temperature": 0.0,
        "max_completion_tokens": 500,
        **extra,
    }


def json_schema_format(schema: dict[str, Any] = SCHEMA) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "critique", "schema": schema}}


def chat(sim: CriticSim, body: Any, timeout: float = 30) -> requests.Response:
    if isinstance(body, bytes):
        return requests.post(sim.url + "/v1/chat/completions", data=body, timeout=timeout)
    return requests.post(sim.url + "/v1/chat/completions", json=body, timeout=timeout)


def fault(sim: CriticSim, name: str, on: bool = True) -> None:
    response = requests.post(sim.url + "/_sim/fault", json={"name": name, "on": on}, timeout=5)
    assert response.status_code == 200, response.text


def error_of(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == response.status_code
    error: dict[str, Any] = body["error"]
    return error


# -- start-up ----------------------------------------------------------------------------------


def test_health_connections_are_refused_until_the_engine_is_ready_then_200_empty(
    launch: Launcher,
) -> None:
    sim = launch("--fault", "slow_start", ready=False)
    with pytest.raises(requests.ConnectionError):
        requests.get(sim.url + "/health", timeout=2)
    sim.wait_ready()
    response = requests.get(sim.url + "/health", timeout=5)
    assert response.status_code == 200
    assert response.content == b""


def test_ready_engine_claims_utilization_times_total_as_context_weights_and_kv(
    critic: CriticSim,
) -> None:
    held = critic.held()
    assert set(held) == {"cuda_context", "weights", "kv_cache"}
    assert sum(held.values()) == int(0.7 * TOTAL)
    assert held["weights"] == round((15.24 + 1.36) * GB)


def test_startup_is_refused_with_vllms_message_when_the_gpu_is_too_full(
    launch: Launcher,
) -> None:
    sim = launch(ready=False)
    sim.gpu.allocate("comfy", "flux", 20 * GB, runtime="comfyui", pid=os.getpid())
    assert sim.wait_exit() != 0
    out = sim.output()
    match = re.search(
        r"ValueError: Free memory on device \((\d+\.\d+)/(\d+\.\d+) GiB\) on startup is less than "
        r"desired GPU memory utilization \(0\.7, (\d+\.\d+) GiB\)\. Decrease GPU memory "
        r"utilization or reduce GPU memory used by other processes\.",
        out,
    )
    assert match, out
    free, total, wanted = (float(g) for g in match.groups())
    assert total == pytest.approx(TOTAL / 2**30, abs=0.01)
    assert wanted == pytest.approx(0.7 * TOTAL / 2**30, abs=0.01)
    assert free < wanted
    assert sim.held() == {}


def test_startup_fails_like_vllm_when_the_kv_cache_for_max_model_len_does_not_fit(
    launch: Launcher,
) -> None:
    sim = launch("--max-model-len", "128000", ready=False)
    assert sim.wait_exit() == 1
    out = sim.output()
    assert "To serve at least one request with the models's max seq len (128000)" in out
    assert re.search(
        r"\((\d+\.\d+) GiB KV cache is needed, which is larger than the available", out
    )
    assert "Try increasing `gpu_memory_utilization` or decreasing `max_model_len`" in out
    assert sim.held() == {}


def test_startup_refuses_when_max_num_seqs_full_sequences_do_not_fit(launch: Launcher) -> None:
    sim = launch("--max-num-seqs", "64", ready=False)
    assert sim.wait_exit() == 1
    assert "To serve max_num_seqs (64) requests" in sim.output()


def test_startup_refuses_a_model_the_profile_does_not_describe(tmp_path: Path) -> None:
    sim = critic_launch(tmp_path, "--model", "Qwen/Qwen3-VL-8B-Instruct")
    assert sim.wait_exit() == 1
    assert "Qwen/Qwen3-VL-8B-Instruct is not a model this simulator knows" in sim.output()


def test_sigterm_releases_the_simulated_vram(critic: CriticSim) -> None:
    assert critic.held()
    assert critic.stop() == 0
    assert critic.held() == {}
    assert "Released" in critic.output()


def test_sigterm_while_loading_releases_what_was_already_taken(launch: Launcher) -> None:
    sim = launch("--fault", "slow_start", ready=False)
    deadline = time.monotonic() + 30
    while "cuda_context" not in sim.held() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "cuda_context" in sim.held(), sim.output()
    assert sim.stop() == 0
    assert sim.held() == {}


# -- OpenAI routes --------------------------------------------------------------------------


def test_models_lists_the_served_name_with_max_model_len(launch: Launcher) -> None:
    sim = launch("--served-model-name", "critic")
    body = requests.get(sim.url + "/v1/models", timeout=5).json()
    assert body["object"] == "list"
    (card,) = body["data"]
    assert card["id"] == "critic"
    assert card["root"] == MODEL
    assert card["max_model_len"] == 8192
    assert card["owned_by"] == "vllm"
    assert card["parent"] is None
    assert card["permission"][0]["object"] == "model_permission"


def test_a_json_schema_request_gets_a_schema_valid_answer_in_vllms_response_shape(
    critic: CriticSim,
) -> None:
    response = chat(critic, chat_body(response_format=json_schema_format()))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    (choice,) = body["choices"]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason", "stop_reason"}
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["reasoning"] is None
    answer = json.loads(choice["message"]["content"])
    Draft202012Validator(SCHEMA).validate(answer)
    usage = body["usage"]
    assert set(usage) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
    }
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # 256×256 px at 1,276 tokens per megapixel is 84 image tokens, plus the text.
    assert usage["prompt_tokens"] > 84


def test_the_verdict_follows_the_scores_and_the_rationale_names_prompt_words_and_colour(
    critic: CriticSim,
) -> None:
    response = chat(critic, chat_body(response_format=json_schema_format()))
    answer = json.loads(response.json()["choices"][0]["message"]["content"])
    scores = answer["scores"]
    assert answer["verdict"] == ("approve" if sum(scores.values()) / 2 >= 6 else "reject")
    assert "teal ceramic kettle" in answer["rationale"]["taste"]
    assert "white" in answer["rationale"]["taste"]  # the background dominates the test image


def test_structured_outputs_json_is_honoured_like_response_format(critic: CriticSim) -> None:
    response = chat(critic, chat_body(structured_outputs={"json": SCHEMA}))
    Draft202012Validator(SCHEMA).validate(
        json.loads(response.json()["choices"][0]["message"]["content"])
    )


def test_greedy_answers_are_identical_and_seeds_make_sampling_reproducible(
    critic: CriticSim,
) -> None:
    def content(**extra: Any) -> str:
        body = chat_body(response_format=json_schema_format(), **extra)
        return str(chat(critic, body).json()["choices"][0]["message"]["content"])

    assert content() == content()
    assert content(temperature=0.8, seed=1) == content(temperature=0.8, seed=1)
    assert content(temperature=0.8, seed=1) != content(temperature=0.8, seed=2)


def test_a_different_image_gets_a_different_verdict_text(critic: CriticSim) -> None:
    first = chat_body(response_format=json_schema_format())
    second = chat_body(response_format=json_schema_format())
    other = "data:image/png;base64," + base64.b64encode(png((200, 40, 40), (320, 200))).decode()
    second["messages"][1]["content"][1]["image_url"]["url"] = other
    a = chat(critic, first).json()["choices"][0]["message"]["content"]
    b = chat(critic, second).json()["choices"][0]["message"]["content"]
    assert a != b


def test_guided_json_is_ignored_and_the_answer_is_unconstrained_prose(critic: CriticSim) -> None:
    response = chat(critic, chat_body(guided_json=SCHEMA))
    assert response.status_code == 200
    content = response.json()["choices"][0]["message"]["content"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)
    assert "```json" in content
    assert "fields were present in the request but ignored: ['guided_json']" in critic.output()


def test_before_0_16_a_prompt_over_max_model_len_is_a_400_with_vllms_numbers(
    launch: Launcher,
) -> None:
    old = launch("--vllm-version", "0.11.0")
    response = chat(old, chat_body(text="word " * 8000, max_completion_tokens=700))
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "BadRequestError"
    assert error["param"] is None
    match = re.fullmatch(
        r"This model's maximum context length is 8192 tokens\. However, you requested (\d+) "
        r"tokens \((\d+) in the messages, 700 in the completion\)\. Please reduce the length "
        r"of the messages or completion\.",
        error["message"],
    )
    assert match, error["message"]
    assert int(match.group(1)) == int(match.group(2)) + 700 > 8192


def test_a_malformed_json_body_is_a_400(critic: CriticSim) -> None:
    response = chat(critic, b'{"model": "x", "messages": [')
    assert response.status_code == 400
    assert error_of(response)["type"] == "BadRequestError"


def test_missing_messages_is_a_400(critic: CriticSim) -> None:
    response = chat(critic, {"model": MODEL})
    assert response.status_code == 400
    assert "messages" in error_of(response)["message"]


def test_a_bad_image_data_url_is_a_400(critic: CriticSim) -> None:
    body = chat_body()
    body["messages"][1]["content"][1]["image_url"]["url"] = "data:image/png;base64,not-an-image!"
    response = chat(critic, body)
    assert response.status_code == 400
    assert "base64" in error_of(response)["message"]
    body["messages"][1]["content"][1]["image_url"]["url"] = (
        "data:image/png;base64," + base64.b64encode(b"GIF89a but not really").decode()
    )
    assert chat(critic, body).status_code == 400


def test_an_invalid_json_schema_is_a_400(critic: CriticSim) -> None:
    response = chat(critic, chat_body(response_format=json_schema_format({"type": "fancy"})))
    assert response.status_code == 400
    assert "not a valid JSON schema" in error_of(response)["message"]


def test_a_wrong_model_name_is_a_404_not_found_error(critic: CriticSim) -> None:
    response = chat(critic, {**chat_body(), "model": "gpt-4o"})
    assert response.status_code == 404
    error = error_of(response)
    assert error == {
        "message": "The model `gpt-4o` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }


def test_a_small_completion_limit_cuts_the_answer_with_finish_reason_length(
    critic: CriticSim,
) -> None:
    body = chat_body(response_format=json_schema_format(), max_completion_tokens=10)
    data = chat(critic, body).json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 10
    with pytest.raises(json.JSONDecodeError):
        json.loads(data["choices"][0]["message"]["content"])


def test_metrics_exports_vllm_gauges_and_counters(critic: CriticSim) -> None:
    usage = chat(critic, chat_body(response_format=json_schema_format())).json()["usage"]
    text = requests.get(critic.url + "/metrics", timeout=5).text
    label = f'engine="0",model_name="{MODEL}"'
    assert f"vllm:num_requests_running{{{label}}} 0" in text
    assert f"vllm:num_requests_waiting{{{label}}} 0" in text
    assert f"vllm:prompt_tokens_total{{{label}}} {usage['prompt_tokens']}" in text
    assert f"vllm:generation_tokens_total{{{label}}} {usage['completion_tokens']}" in text
    assert f'vllm:request_success_total{{{label},finished_reason="stop"}} 1' in text
    assert "# TYPE vllm:kv_cache_usage_perc gauge" in text


def test_requests_beyond_max_num_seqs_wait_and_the_gauges_say_so(launch: Launcher) -> None:
    sim = launch("--max-num-seqs", "1", "--fault", "hang")

    def send() -> None:
        with contextlib.suppress(requests.RequestException):
            chat(sim, chat_body(), timeout=20)

    senders = [threading.Thread(target=send, daemon=True) for _ in range(2)]
    for sender in senders:
        sender.start()
    label = f'engine="0",model_name="{MODEL}"'
    wanted = (f"vllm:num_requests_running{{{label}}} 1", f"vllm:num_requests_waiting{{{label}}} 1")
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        text = requests.get(sim.url + "/metrics", timeout=5).text
        if all(line in text for line in wanted):
            break
        time.sleep(0.05)
    assert all(line in text for line in wanted), text
    assert sim.stop() == 0
    for sender in senders:
        sender.join(timeout=20)


# -- sleep mode ------------------------------------------------------------------------------


def test_sleep_routes_do_not_exist_without_dev_mode(launch: Launcher) -> None:
    sim = launch(dev_mode=False)
    for method, path in (
        ("POST", "/sleep"),
        ("POST", "/wake_up"),
        ("GET", "/is_sleeping"),
        ("POST", "/collective_rpc"),
        ("POST", "/reset_prefix_cache"),
    ):
        assert requests.request(method, sim.url + path, timeout=5).status_code == 404, path


def test_without_enable_sleep_mode_the_routes_answer_but_a_sleep_frees_nothing(
    tmp_path: Path,
) -> None:
    # vLLM attaches the sleep routes with VLLM_SERVER_DEV_MODE=1 alone, so /is_sleeping
    # answering proves dev mode only, not --enable-sleep-mode.
    sim = critic_launch(tmp_path, base=BASE_FLAGS[:-1])
    try:
        sim.wait_ready()
        held = sum(sim.held().values())
        assert requests.get(sim.url + "/is_sleeping", timeout=5).json() == {"is_sleeping": False}
        assert requests.post(sim.url + "/sleep", timeout=5).json() == {
            "status": "sleeping",
            "level": 1,
        }
        assert requests.get(sim.url + "/is_sleeping", timeout=5).json() == {"is_sleeping": True}
        assert sum(sim.held().values()) == held
    finally:
        sim.stop()


def test_level_1_sleep_frees_weights_and_kv_and_wake_up_takes_them_back(critic: CriticSim) -> None:
    before = critic.held()
    assert requests.post(critic.url + "/sleep", params={"level": 1}, timeout=10).status_code == 200
    assert requests.get(critic.url + "/is_sleeping", timeout=5).json() == {"is_sleeping": True}
    assert critic.held() == {"cuda_context": 512 * 1024**2}
    assert requests.post(critic.url + "/wake_up", timeout=10).status_code == 200
    assert requests.get(critic.url + "/is_sleeping", timeout=5).json() == {"is_sleeping": False}
    assert critic.held() == before
    response = chat(critic, chat_body(response_format=json_schema_format()))
    Draft202012Validator(SCHEMA).validate(
        json.loads(response.json()["choices"][0]["message"]["content"])
    )


def test_waking_by_tags_stays_asleep_until_every_tag_is_awake(critic: CriticSim) -> None:
    requests.post(critic.url + "/sleep", params={"level": 2}, timeout=10)
    requests.post(critic.url + "/wake_up", params={"tags": "weights"}, timeout=10)
    assert set(critic.held()) == {"cuda_context", "weights"}
    assert requests.get(critic.url + "/is_sleeping", timeout=5).json() == {"is_sleeping": True}
    reload = requests.post(
        critic.url + "/collective_rpc", json={"method": "reload_weights"}, timeout=10
    )
    assert reload.json() == {"results": [None]}
    requests.post(critic.url + "/wake_up", params={"tags": "kv_cache"}, timeout=10)
    assert requests.get(critic.url + "/is_sleeping", timeout=5).json() == {"is_sleeping": False}


def test_after_a_level_2_wake_answers_are_garbage_until_reload_weights(critic: CriticSim) -> None:
    requests.post(critic.url + "/sleep", params={"level": 2}, timeout=10)
    requests.post(critic.url + "/wake_up", timeout=10)
    body = chat_body(response_format=json_schema_format(), max_completion_tokens=50)
    garbage = chat(critic, body).json()["choices"][0]
    assert garbage["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(garbage["message"]["content"])
    assert requests.post(
        critic.url + "/collective_rpc", json={"method": "reload_weights"}, timeout=10
    ).ok
    assert requests.post(critic.url + "/reset_prefix_cache", timeout=10).ok
    body["max_completion_tokens"] = 500
    healed = chat(critic, body).json()["choices"][0]
    assert healed["finish_reason"] == "stop"
    Draft202012Validator(SCHEMA).validate(json.loads(healed["message"]["content"]))


def test_before_0_34_a_chat_request_while_sleeping_kills_the_engine_like_issue_15483(
    launch: Launcher,
) -> None:
    critic = launch("--vllm-version", "0.16.0")
    requests.post(critic.url + "/sleep", params={"level": 1}, timeout=10)
    response = chat(critic, chat_body())
    assert response.status_code == 500
    assert "EngineDeadError" in error_of(response)["message"]
    assert requests.get(critic.url + "/health", timeout=5).status_code == 503
    assert chat(critic, chat_body()).status_code == 500
    assert critic.held() == {}  # the engine core process is gone, and its memory with it


def test_wake_up_runs_out_of_memory_when_comfyui_took_the_room(critic: CriticSim) -> None:
    requests.post(critic.url + "/sleep", params={"level": 1}, timeout=10)
    critic.gpu.allocate("comfy", "flux", 25 * GB, runtime="comfyui", pid=os.getpid())
    response = requests.post(critic.url + "/wake_up", timeout=10)
    assert response.status_code == 500
    assert "torch.OutOfMemoryError: CUDA out of memory" in error_of(response)["message"]
    assert requests.get(critic.url + "/health", timeout=5).status_code == 503
    assert critic.held() == {}


# -- faults ----------------------------------------------------------------------------------


def test_fault_garbage_output_answers_text_that_is_not_json(critic: CriticSim) -> None:
    fault(critic, "garbage_output")
    content = chat(critic, chat_body(response_format=json_schema_format())).json()["choices"][0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(content["message"]["content"])


def test_fault_invalid_json_schema_answers_json_with_a_score_of_11_and_a_missing_field(
    critic: CriticSim,
) -> None:
    fault(critic, "invalid_json_schema")
    content = chat(critic, chat_body(response_format=json_schema_format())).json()
    answer = json.loads(content["choices"][0]["message"]["content"])
    assert answer["scores"]["taste"] == 11
    assert "taste" not in answer["rationale"]
    fault(critic, "invalid_json_schema", on=False)
    healed = chat(critic, chat_body(response_format=json_schema_format())).json()
    Draft202012Validator(SCHEMA).validate(json.loads(healed["choices"][0]["message"]["content"]))


def test_fault_truncate_cuts_the_json_with_finish_reason_length(critic: CriticSim) -> None:
    fault(critic, "truncate")
    choice = chat(critic, chat_body(response_format=json_schema_format())).json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"].startswith('{"scores"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice["message"]["content"])


def test_fault_crash_mid_run_drops_the_connection_and_the_memory_is_reaped(
    critic: CriticSim,
) -> None:
    fault(critic, "crash_mid_run")
    with pytest.raises(requests.ConnectionError):
        chat(critic, chat_body())
    assert critic.wait_exit() != 0
    assert critic.held() == {}


def test_fault_hang_never_answers_a_chat_but_health_still_does(launch: Launcher) -> None:
    sim = launch("--fault", "hang")
    with pytest.raises(requests.Timeout):
        chat(sim, chat_body(), timeout=1)
    assert requests.get(sim.url + "/health", timeout=5).status_code == 200


def test_an_unknown_fault_name_is_refused(critic: CriticSim) -> None:
    response = requests.post(
        critic.url + "/_sim/fault", json={"name": "melt", "on": True}, timeout=5
    )
    assert response.status_code == 400


# ---- the Critic describes the image it was sent (artcritic.sim.critic_vision) ----


def _two_tone(main: tuple[int, int, int], accent: tuple[int, int, int]) -> bytes:
    """A 256×256 PNG: a main colour with a block of an accent colour in its middle."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    img = PILImage.new("RGB", (256, 256), main)
    ImageDraw.Draw(img).rectangle((80, 60, 180, 200), fill=accent)
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def test_a_bright_orange_and_green_image_is_described_as_orange_and_green_not_grey() -> None:
    from artcritic.sim.critic_answer import image_read

    url = "data:image/png;base64," + base64.b64encode(
        _two_tone((240, 140, 30), (60, 170, 70))
    ).decode()
    look = image_read(url).look
    assert look is not None
    assert look.dominant == "orange"
    assert look.hues[:2] == ["orange", "green"]
    assert "grey" not in look.palette_words()
    assert look.brightness in ("bright", "mid-toned")
    assert look.placement.startswith("centred")


def test_the_rationale_names_the_measured_colours_and_where_the_subject_sits(
    critic: CriticSim,
) -> None:
    body = chat_body(response_format=json_schema_format())
    image = _two_tone((240, 140, 30), (60, 170, 70))
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    body["messages"][1]["content"][1]["image_url"]["url"] = url
    answer = json.loads(chat(critic, body).json()["choices"][0]["message"]["content"])
    taste = answer["rationale"]["taste"]
    assert "orange" in taste, taste
    assert "green" in taste, taste
    assert "grey" not in json.dumps(answer["rationale"])


def test_asked_for_colours_that_are_missing_lower_the_prompt_match() -> None:
    from PIL import Image as PILImage

    from artcritic.sim.critic_vision import look_at, scores_for

    orange = look_at(PILImage.open(io.BytesIO(_two_tone((240, 140, 30), (60, 170, 70)))))
    steady = {"taste": 0, "manufacturability": 0, "prompt_intent": 0, "consistency": 0}
    asked_shown = scores_for(orange, "an orange lamp with a green switch", steady)
    asked_missing = scores_for(orange, "a blue and purple lamp", steady)
    assert asked_shown["prompt_intent"] > asked_missing["prompt_intent"]
    assert asked_shown["prompt_intent"] >= 8


def test_the_simulated_critic_approves_a_fair_share_of_drawn_images_not_almost_none() -> None:
    from artcritic.sim.critic_vision import look_at, scores_for
    from artcritic.sim.draw import image_draw

    prompt = "a brushed aluminium desk lamp, warm orange shade, studio light"
    verdicts = []
    for seed in range(40):
        look = look_at(image_draw(prompt, seed, 0, 256, 256))
        scores = scores_for(look, prompt, {})
        verdicts.append(sum(scores.values()) / 4 >= 6)
    share = sum(verdicts) / len(verdicts)
    assert 0.25 <= share <= 0.95, share
