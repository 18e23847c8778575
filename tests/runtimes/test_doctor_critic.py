"""doctor_critic checks a live vLLM step by step and explains the runtime's own error."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import requests

from artcritic.runtimes.critic_prompt import png_size
from artcritic.runtimes.doctor_critic import doctor_critic, doctor_image
from tests.sim.test_sim_critic import (
    BASE_FLAGS,
    MODEL,
    CriticSim,
    Launcher,
    critic_launch,
    fault,
)
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
    assert "version      vLLM 0.34.0+sim is within the range artcritic was checked against" in text
    assert "sleep mode   UNVERIFIED: the dev-mode routes answer" in text
    assert "next: run again with --verify-sleep" in text
    assert "tokens (" in text
    assert "text counted by the Critic's tokenizer (POST /tokenize)" in text
    assert "review       ok in " in text
    assert " prompt + " in text
    assert " completion tokens" in text
    assert "verdict      approve — " in text or "verdict      reject — " in text
    assert text.rstrip().endswith("Critic OK")


def test_it_uses_only_vllms_own_routes(launch: Launcher) -> None:
    sim = launch()
    assert run_doctor(sim.url)[0] == 0
    routes = (
        "GET /health",
        "GET /version",
        "GET /v1/models",
        "GET /is_sleeping",
        "POST /tokenize",
        "POST /v1/chat/completions",
    )
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
    assert "not available: no dev-mode routes (needs VLLM_SERVER_DEV_MODE=1" in text


def test_a_sleeping_critic_fails_without_crashing_its_engine(launch: Launcher) -> None:
    sim = launch()
    requests.post(sim.url + "/sleep", params={"level": 1}, timeout=10)
    code, text = run_doctor(sim.url)
    assert code == 1
    assert "The Critic is asleep or paused (GET /is_sleeping says true); no review was sent" in text
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
    fault(sim, "engine_dead")
    code, text = run_doctor(sim.url)
    assert code == 1
    assert "health       FAILED: The Critic at " in text
    assert "answers GET /health with 503: its engine is dead" in text
    assert "recreates the Critic" in text


def run_verify(url: str, free_bytes: object = None) -> tuple[int, str]:
    out = io.StringIO()
    code = doctor_critic(
        url, model=None, out=out, timeout=30, verify_sleep=True, free_bytes=free_bytes  # type: ignore[arg-type]
    )
    return code, out.getvalue()


def test_verify_sleep_sleeps_and_wakes_once_and_measures_what_was_freed(
    launch: Launcher,
) -> None:
    sim = launch()
    code, text = run_verify(sim.url, lambda: sim.gpu.snapshot().free)
    assert code == 0, text
    assert re.search(
        r"sleep mode   verified: slept \(level 1\) in \d+\.\d s and woke in \d+\.\d s, freeing "
        r"\d+\.\d\d GiB \(NVML\)",
        text,
    ), text
    assert requests.get(sim.url + "/is_sleeping", timeout=5).json() == {"is_sleeping": False}


def test_verify_sleep_without_a_gpu_reading_says_the_memory_was_not_measured(
    launch: Launcher,
) -> None:
    code, text = run_verify(launch().url)
    assert code == 0, text
    assert "the memory it freed was not measured (pass --gpu NAME" in text


def test_verify_sleep_catches_a_server_started_without_enable_sleep_mode(
    tmp_path: Path,
) -> None:
    sim = critic_launch(tmp_path, base=BASE_FLAGS[:-1])  # dev mode, no --enable-sleep-mode
    try:
        sim.wait_ready()
        plain = io.StringIO()
        assert doctor_critic(sim.url, model=None, out=plain, timeout=30) == 0
        assert "sleep mode   UNVERIFIED" in plain.getvalue()
        code, text = run_verify(sim.url, lambda: sim.gpu.snapshot().free)
        assert code == 1
        assert "freed only 0.00 GiB of GPU memory: it was started without --enable-sleep-mode" in (
            text
        )
    finally:
        sim.stop()



def test_a_hung_review_fails_with_the_seconds_waited(launch: Launcher) -> None:
    sim: CriticSim = launch("--fault", "hang")
    code, text = run_doctor(sim.url, timeout=1)
    assert code == 1
    assert "did not answer POST /v1/chat/completions within 1 s" in text


def test_the_doctor_image_is_a_small_png() -> None:
    assert png_size(doctor_image()) == (384, 384)
