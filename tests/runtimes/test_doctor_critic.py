"""doctor_critic checks a live vLLM step by step and explains the runtime's own error."""

from __future__ import annotations

import io
import time

import requests

from artcritic.runtimes.critic_prompt import png_size
from artcritic.runtimes.doctor_critic import doctor_critic, doctor_image
from tests.sim.test_sim_critic import MODEL, CriticSim, Launcher, fault
from tests.sim.test_sim_critic import launch as launch  # noqa: PLC0414 - re-exported fixture
from tests.simproc import free_port


def run_doctor(url: str, model: str | None = None, timeout: float = 30) -> tuple[int, str]:
    out = io.StringIO()
    code = doctor_critic(url, model=model, out=out, timeout=timeout)
    return code, out.getvalue()


def test_a_healthy_critic_passes_with_latency_tokens_and_the_parsed_verdict(
    launch: Launcher,
) -> None:
    sim = launch()
    code, text = run_doctor(sim.url)
    assert code == 0, text
    assert "health       ok" in text
    assert f"models       {MODEL} (max_model_len 8192)" in text
    assert "sleep mode   enabled; awake" in text
    assert "review       ok in " in text
    assert " prompt + " in text
    assert " completion tokens" in text
    assert "verdict      approve — " in text or "verdict      reject — " in text
    assert text.rstrip().endswith("Critic OK")


def test_it_uses_only_vllms_own_routes(launch: Launcher) -> None:
    sim = launch()
    assert run_doctor(sim.url)[0] == 0
    routes = ("GET /health", "GET /v1/models", "GET /is_sleeping", "POST /v1/chat/completions")
    # aiohttp writes an access line after the response went out: give the last one a moment.
    deadline = time.monotonic() + 10
    while not all(route in sim.output() for route in routes) and time.monotonic() < deadline:
        time.sleep(0.05)
    log = sim.output()
    for route in routes:
        assert route in log
    assert "/_sim/" not in log


def test_an_unreachable_critic_fails_and_says_the_connection_was_refused() -> None:
    code, text = run_doctor(f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "health       FAILED: Cannot reach the Critic" in text
    assert "connection refused" in text
    assert "next: Start the Critic" in text
    assert text.rstrip().endswith("Critic NOT OK")


def test_a_model_that_is_not_served_fails_naming_what_is_served(launch: Launcher) -> None:
    sim = launch()
    code, text = run_doctor(sim.url, model="Qwen/Qwen3-VL-8B-Instruct")
    assert code == 1
    assert "'Qwen/Qwen3-VL-8B-Instruct' is not served here; vLLM serves: " + MODEL in text


def test_without_sleep_mode_it_says_how_to_enable_it_and_still_reviews(launch: Launcher) -> None:
    sim = launch(dev_mode=False)
    code, text = run_doctor(sim.url)
    assert code == 0, text
    assert "not enabled (needs --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1)" in text


def test_a_sleeping_critic_fails_without_crashing_its_engine(launch: Launcher) -> None:
    sim = launch()
    requests.post(sim.url + "/sleep", params={"level": 1}, timeout=10)
    code, text = run_doctor(sim.url)
    assert code == 1
    assert "The Critic is asleep; no review was sent" in text
    assert requests.get(sim.url + "/health", timeout=5).status_code == 200


def test_an_invalid_answer_fails_with_what_was_wrong(launch: Launcher) -> None:
    sim = launch()
    fault(sim, "invalid_json_schema")
    code, text = run_doctor(sim.url)
    assert code == 1
    assert "review       FAILED: The Critic's answer was rejected: " in text
    assert "scores.taste is 11, out of range 0–10" in text


def test_a_dead_engine_fails_at_the_health_step(launch: Launcher) -> None:
    sim = launch()
    requests.post(sim.url + "/sleep", params={"level": 1}, timeout=10)
    requests.post(
        sim.url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    code, text = run_doctor(sim.url)
    assert code == 1
    assert "health       FAILED: The Critic at " in text
    assert "HTTP 503" in text


def test_a_hung_review_fails_with_the_seconds_waited(launch: Launcher) -> None:
    sim: CriticSim = launch("--fault", "hang")
    code, text = run_doctor(sim.url, timeout=1)
    assert code == 1
    assert "did not answer POST /v1/chat/completions within 1 s" in text


def test_the_doctor_image_is_a_small_png() -> None:
    assert png_size(doctor_image()) == (384, 384)
