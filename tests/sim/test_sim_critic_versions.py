"""The simulated Critic answers as the vLLM version it reproduces (default 0.34.0).

0.34.0 behaviour, read from its wheel: /pause makes new requests answer 503 "Generation is
paused"; a request reaching a sleeping engine waits in the queue until it is woken; /sleep
(mode=abort) ends running requests with finish_reason "abort"; a dead engine answers a
generic 500 while /health says 503; only a prompt too long by itself is refused, an output
budget over the context is silently shrunk; sleep, wake and prefix-cache resets answer JSON.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from tests.sim.test_sim_critic import (
    CriticSim,
    Launcher,
    chat,
    chat_body,
    error_of,
    fault,
    json_schema_format,
)
from tests.sim.test_sim_critic import launch as launch  # noqa: PLC0414 - re-exported fixture


@pytest.fixture
def critic(launch: Launcher) -> CriticSim:
    return launch()


def post(sim: CriticSim, path: str, **kwargs: Any) -> requests.Response:
    return requests.post(sim.url + path, timeout=30, **kwargs)


def test_get_version_reports_the_reproduced_release(launch: Launcher) -> None:
    assert requests.get(launch().url + "/version", timeout=5).json() == {"version": "0.34.0+sim"}
    old = launch("--vllm-version", "0.16.0")
    assert requests.get(old.url + "/version", timeout=5).json() == {"version": "0.16.0+sim"}


def test_pause_makes_new_requests_answer_503_generation_is_paused(critic: CriticSim) -> None:
    assert post(critic, "/pause").json() == {"status": "paused"}
    response = chat(critic, chat_body())
    assert response.status_code == 503
    assert error_of(response) == {
        "message": "Generation is paused. Please retry after it resumes.",
        "type": "ServiceUnavailableError",
        "param": None,
        "code": 503,
    }
    assert requests.get(critic.url + "/health", timeout=5).status_code == 200
    post(critic, "/resume")
    assert chat(critic, chat_body()).status_code == 200


def test_a_request_to_a_sleeping_0_34_engine_waits_until_it_is_woken(critic: CriticSim) -> None:
    assert post(critic, "/sleep", params={"level": 1}).json() == {"status": "sleeping", "level": 1}
    result: dict[str, requests.Response] = {}
    worker = threading.Thread(target=lambda: result.update(r=chat(critic, chat_body())))
    worker.start()
    time.sleep(0.5)
    assert "r" not in result  # queued, not crashed and not refused
    assert post(critic, "/wake_up").json() == {"status": "awake", "tags": None}
    worker.join(20)
    assert result["r"].status_code == 200
    assert requests.get(critic.url + "/health", timeout=5).status_code == 200


def _running(sim: CriticSim) -> int:
    for line in requests.get(sim.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("vllm:num_requests_running{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


@pytest.mark.parametrize("route", ["/sleep", "/pause"])
def test_a_sleep_or_pause_during_a_request_ends_it_with_finish_reason_abort(
    critic: CriticSim, route: str
) -> None:
    fault(critic, "slow_review")  # the request runs for seconds, not milliseconds
    result: dict[str, requests.Response] = {}
    body = chat_body(response_format=json_schema_format())
    worker = threading.Thread(target=lambda: result.update(r=chat(critic, body)))
    worker.start()
    deadline = time.monotonic() + 10
    while _running(critic) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _running(critic) == 1
    assert post(critic, route).status_code == 200  # mode=abort is the default of both
    worker.join(20)
    response = result["r"]
    assert response.status_code == 200
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "abort"
    assert choice["message"]["content"] == ""


def test_a_dead_0_34_engine_answers_the_generic_500_and_health_503(critic: CriticSim) -> None:
    fault(critic, "engine_dead")
    response = chat(critic, chat_body())
    assert response.status_code == 500
    assert error_of(response)["message"] == "The server had an error while processing your request."
    assert error_of(response)["type"] == "InternalServerError"
    assert requests.get(critic.url + "/health", timeout=5).status_code == 503


def test_0_34_refuses_a_text_prompt_over_the_context_with_its_token_count(
    critic: CriticSim,
) -> None:
    response = chat(critic, chat_body(text="word " * 8000, max_completion_tokens=700))
    error = error_of(response)
    assert response.status_code == 400
    assert error["param"] == "input_tokens"
    assert error["message"].startswith(
        "This model's maximum context length is 8192 tokens. However, your prompt contains "
    )
    assert "input tokens, which exceeds this limit even without any output tokens." in error[
        "message"
    ]


def test_0_34_refuses_text_plus_image_over_the_context_as_input_length(launch: Launcher) -> None:
    sim = launch("--max-model-len", "300")
    # ~270 text tokens fit alone; the 256² image (81 + 2 tokens) pushes it over.
    response = chat(sim, chat_body(text="w" * 1000, max_completion_tokens=5))
    assert response.status_code == 400
    message = error_of(response)["message"]
    assert message.startswith("Input length (")
    assert message.endswith(") exceeds model's maximum context length (300).")


def test_0_34_refuses_a_completion_limit_over_the_whole_context(critic: CriticSim) -> None:
    response = chat(critic, chat_body(max_completion_tokens=9000))
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "max_completion_tokens=9000 cannot be greater than max_model_len=8192. Please request "
        "fewer output tokens. (parameter=max_completion_tokens, value=9000)"
    )


def test_0_34_silently_shrinks_the_output_budget_and_cuts_the_answer(launch: Launcher) -> None:
    sim = launch("--max-model-len", "160")
    body = chat_body(response_format=json_schema_format(), max_completion_tokens=150)
    response = chat(sim, body)
    assert response.status_code == 200  # no error: the budget was cut to what was left
    data = response.json()
    room = 160 - data["usage"]["prompt_tokens"]
    assert data["usage"]["completion_tokens"] == room < 150
    assert data["choices"][0]["finish_reason"] == "length"


def test_0_16_words_the_overflow_as_you_passed(launch: Launcher) -> None:
    sim = launch("--vllm-version", "0.16.0", "--max-model-len", "400")
    response = chat(sim, chat_body(max_completion_tokens=350))
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("You passed ")
    assert "requested 350 output tokens. However, the model's context length is only 400" in (
        error_of(response)["message"]
    )


def test_0_16_answers_sleep_wake_and_reset_with_empty_200s(launch: Launcher) -> None:
    sim = launch("--vllm-version", "0.16.0")
    for path in ("/sleep", "/wake_up", "/reset_prefix_cache"):
        response = post(sim, path)
        assert (response.status_code, response.text) == (200, ""), path


def test_0_34_reset_prefix_cache_says_whether_it_worked(critic: CriticSim) -> None:
    assert post(critic, "/reset_prefix_cache").json() == {"success": True}
    fault(critic, "prefix_reset_fails")
    assert post(critic, "/reset_prefix_cache").json() == {"success": False}


def test_0_34_wake_up_by_tag_says_sleeping_until_every_tag_is_back(critic: CriticSim) -> None:
    post(critic, "/sleep", params={"level": 1})
    assert post(critic, "/wake_up", params={"tags": "weights"}).json() == {
        "status": "sleeping",
        "tags": ["weights"],
    }
    assert post(critic, "/wake_up", params={"tags": "kv_cache"}).json()["status"] == "awake"


def test_tokenize_counts_what_the_chat_route_bills(critic: CriticSim) -> None:
    body = chat_body()
    counted = post(critic, "/tokenize", json={"model": body["model"], "messages": body["messages"]})
    billed = chat(critic, body).json()["usage"]["prompt_tokens"]
    assert counted.json()["count"] == billed
    assert counted.json()["max_model_len"] == 8192


def test_0_34_refuses_a_prompt_that_leaves_no_room_for_one_output_token(
    launch: Launcher,
) -> None:
    body = chat_body(max_completion_tokens=5)
    probe = launch()
    count = post(probe, "/tokenize", json={"messages": body["messages"]}).json()["count"]
    exact = launch("--max-model-len", str(count))
    response = chat(exact, body)
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        f"The decoder prompt (length {count}) plus the number of requested output tokens (at "
        f"least 1) is longer than the maximum model length of {count}. Make sure that "
        "`max_model_len` is no smaller than the number of text tokens (prompt + requested "
        "output tokens)."
    )
