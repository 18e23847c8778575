"""Every vLLM wording the Critic client must understand, old and new, through the client.

Each fixture is the exact text a real vLLM answers, quoted with its version and the file
it comes from (paths inside the ``vllm`` package of the 0.34.0 wheel; older ones from the
issues that printed them). The simulator replays each once (``POST /_sim/reply``) on the
route the client calls, so the client reads it over a real socket, exactly as sent.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from artcritic.runtimes.critic import (
    VERDICT_MAX_TOKENS,
    ContextOverflow,
    CriticAnswerCut,
    CriticAsleep,
    CriticClient,
    CriticEngineDead,
    CriticReviewAborted,
    context_overflow_parse,
)
from artcritic.runtimes.errors import (
    CriticContextTooLong,
    RuntimeFailure,
    RuntimeUnavailable,
)
from tests.runtimes.test_critic_client import context
from tests.sim.test_sim_critic import MODEL, CriticSim, Launcher, png
from tests.sim.test_sim_critic import launch as launch  # noqa: PLC0414 - re-exported fixture

# vLLM 0.34.0 v1/engine/core.py _reject_add_while_paused (RequestError retryable → 503).
V034_PAUSED = "Generation is paused. Please retry after it resumes."
# vLLM 0.34.0 v1/engine/exceptions.py EngineDeadError.CLIENT_MESSAGE.
V034_DEAD = "The server had an error while processing your request."
# Before 0.34: the exception text itself (vllm/v1/engine/exceptions.py of 0.8–0.33).
OLD_DEAD = (
    "EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root cause."
)

# (fixture, where it comes from, the ContextOverflow it must parse to)
CONTEXT_WORDINGS: list[tuple[str, str, ContextOverflow]] = [
    (
        "This model's maximum context length is 8192 tokens. However, your prompt contains 9876 "
        "input tokens, which exceeds this limit even without any output tokens. Please reduce "
        "the length of the input prompt. (parameter=input_tokens, value=9876)",
        "0.34.0 renderers/params.py _token_len_check",
        ContextOverflow(8192, 9876, None),
    ),
    (
        "This model's maximum context length is 8192 tokens. However, your prompt contains at "
        "least 8193 input tokens, which exceeds this limit even without any output tokens. "
        "Please reduce the length of the input prompt. (parameter=input_tokens, value=8193)",
        "0.34.0 renderers/params.py _token_len_check (tokenizer-truncated count)",
        ContextOverflow(8192, 8193, None),
    ),
    (
        "Input length (9000) exceeds model's maximum context length (8192).",
        "0.34.0 entrypoints/serve/utils/api_utils.py get_max_tokens",
        ContextOverflow(8192, 9000, None),
    ),
    (
        "The decoder prompt (length 9001) is longer than the maximum model length of 8192. "
        "Make sure that `max_model_len` is no smaller than the number of text tokens plus "
        "multimodal tokens. For image inputs, the number of image tokens depends on the number "
        "of images, and possibly their aspect ratios as well.",
        "0.34.0 v1/engine/input_processor.py",
        ContextOverflow(8192, 9001, None),
    ),
    (
        "The decoder prompt (length 8192) plus the number of requested output tokens (at least "
        "1) is longer than the maximum model length of 8192. Make sure that `max_model_len` is "
        "no smaller than the number of text tokens (prompt + requested output tokens).",
        "0.34.0 v1/engine/input_processor.py",
        ContextOverflow(8192, 8192, None),
    ),
    (
        "max_completion_tokens=9000 cannot be greater than max_model_len=8192. Please request "
        "fewer output tokens. (parameter=max_completion_tokens, value=9000)",
        "0.34.0 renderers/params.py TokenizeParams.__post_init__",
        ContextOverflow(8192, None, 9000),
    ),
    (
        "This model's maximum context length is 8192 tokens. However, your prompt contains "
        "40000 characters (more than 32768 characters, which is the upper bound for 8192 input "
        "tokens). Please reduce the length of the input prompt. (parameter=input_text, "
        "value=40000)",
        "0.34.0 renderers/params.py (character pre-check)",
        ContextOverflow(8192, None, None),
    ),
    (
        "You passed 1015 input tokens and requested 10 output tokens. However, the model's "
        "context length is only 1024 tokens, resulting in a maximum input length of 1014 "
        "tokens. Please reduce the length of the input prompt. (parameter=input_tokens, "
        "value=1015)",
        "0.16 to 0.33 (harbor-framework/harbor PR #996)",
        ContextOverflow(1024, 1015, 10),
    ),
    (
        "This model's maximum context length is 16384 tokens. However, you requested 122946 "
        "tokens (112946 in the messages, 10000 in the completion). Please reduce the length of "
        "the messages or completion.",
        "before 0.16 (vllm-project/vllm issue #20409)",
        ContextOverflow(16384, 112946, 10000),
    ),
    (
        "This model's maximum context length is 1024 tokens. However, your request has 2507 "
        "input tokens. Please reduce the length of the input messages.",
        "before 0.16, no completion limit given",
        ContextOverflow(1024, 2507, None),
    ),
]


def error_body(message: str, kind: str, code: int, param: str | None = None) -> dict[str, Any]:
    """vLLM's ErrorResponse (entrypoints/serve/engine/protocol.py)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def reply(sim: CriticSim, path: str, status: int, **body: Any) -> None:
    response = requests.post(
        sim.url + "/_sim/reply", json={"path": path, "status": status, **body}, timeout=5
    )
    assert response.status_code == 200, response.text


def chat_reply(content: str, finish: str, prompt_tokens: int, completion: int) -> dict[str, Any]:
    """A chat completion as vLLM 0.34 answers it (openai/chat_completion/protocol.py)."""
    return {
        "id": "chatcmpl-recorded",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "reasoning": None},
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": None,
        },
    }


@pytest.fixture
def critic(launch: Launcher) -> CriticSim:
    return launch()


def client_for(sim: CriticSim) -> CriticClient:
    return CriticClient(sim.url, model=MODEL, timeout=30)


@pytest.mark.parametrize(
    ("message", "source", "expected"), CONTEXT_WORDINGS, ids=[c[1] for c in CONTEXT_WORDINGS]
)
def test_every_context_wording_is_parsed_with_its_numbers(
    message: str, source: str, expected: ContextOverflow
) -> None:
    assert context_overflow_parse(message) == expected, source


@pytest.mark.parametrize(
    ("message", "source", "expected"), CONTEXT_WORDINGS, ids=[c[1] for c in CONTEXT_WORDINGS]
)
def test_every_context_wording_through_the_client_is_context_too_long_with_numbers(
    critic: CriticSim, message: str, source: str, expected: ContextOverflow
) -> None:
    reply(critic, "/v1/chat/completions", 400, json=error_body(message, "BadRequestError", 400))
    with pytest.raises(CriticContextTooLong) as caught:
        client_for(critic).review(png(), context())
    reason = caught.value.reason
    assert f"vLLM said: {message}" in reason or reason.endswith(message), source
    assert str(expected.max_context) in reason
    if expected.prompt_tokens is not None:
        assert f"{expected.prompt_tokens}" in reason.split("vLLM said")[0]
    assert "max_model_len" in caught.value.next_action


def test_a_paused_engines_503_is_critic_asleep_so_the_worker_wakes_it(critic: CriticSim) -> None:
    reply(
        critic,
        "/v1/chat/completions",
        503,
        json=error_body(V034_PAUSED, "ServiceUnavailableError", 503),
    )
    with pytest.raises(CriticAsleep, match=r"is paused \(HTTP 503 .*Generation is paused") as e:
        client_for(critic).review(png(), context())
    assert "Wake the Critic" in e.value.next_action
    assert "restart" not in e.value.next_action.lower()


def test_0_34s_generic_500_with_health_503_is_a_dead_engine_to_recreate(
    critic: CriticSim,
) -> None:
    dead = error_body(V034_DEAD, "InternalServerError", 500)
    reply(critic, "/v1/chat/completions", 500, json=dead)
    reply(critic, "/health", 503, text="")
    with pytest.raises(CriticEngineDead, match="GET /health answers 503") as caught:
        client_for(critic).review(png(), context())
    assert V034_DEAD in caught.value.reason
    assert "recreates the Critic" in caught.value.next_action


def test_0_34s_generic_500_with_a_healthy_engine_is_a_plain_failure(critic: CriticSim) -> None:
    dead = error_body(V034_DEAD, "InternalServerError", 500)
    reply(critic, "/v1/chat/completions", 500, json=dead)
    with pytest.raises(RuntimeFailure) as caught:
        client_for(critic).review(png(), context())
    assert not isinstance(caught.value, CriticEngineDead)
    assert "failed the review" in caught.value.reason
    assert "(HTTP 500)" in caught.value.reason


def test_the_pre_0_34_dead_engine_wording_is_a_dead_engine(critic: CriticSim) -> None:
    dead = error_body(OLD_DEAD, "InternalServerError", 500)
    reply(critic, "/v1/chat/completions", 500, json=dead)
    with pytest.raises(CriticEngineDead, match="engine is dead \\(HTTP 500"):
        client_for(critic).review(png(), context())


def test_a_health_503_is_a_dead_engine(critic: CriticSim) -> None:
    reply(critic, "/health", 503, text="")
    with pytest.raises(CriticEngineDead, match="answers GET /health with 503"):
        client_for(critic).health_check()


def test_finish_reason_abort_is_an_aborted_review_not_an_invalid_answer(critic: CriticSim) -> None:
    reply(critic, "/v1/chat/completions", 200, json=chat_reply("", "abort", 1500, 12))
    with pytest.raises(CriticReviewAborted, match="finish_reason abort") as caught:
        client_for(critic).review(png(), context())
    assert "after 12 answer tokens" in caught.value.reason
    assert "put back in the queue" in caught.value.next_action


def test_an_answer_vllm_shortened_to_fit_the_context_says_so_with_the_numbers(
    critic: CriticSim,
) -> None:
    # The server counted more prompt tokens than the client and cut the budget to fit.
    cut = chat_reply('{"scores": {"ta', "length", 8000, 192)
    reply(critic, "/v1/chat/completions", 200, json=cut)
    with pytest.raises(CriticAnswerCut) as caught:
        client_for(critic).review(png(), context())
    reason = caught.value.reason
    assert "cut off after 192 tokens" in reason
    assert "vLLM shortened the answer to the 192 tokens left in the 8192-token context" in reason
    assert "after a 8000-token prompt" in reason
    assert caught.value.raw_response == '{"scores": {"ta'


def test_an_answer_that_hit_its_own_limit_says_which_limit(critic: CriticSim) -> None:
    cut = chat_reply('{"scores"', "length", 1500, VERDICT_MAX_TOKENS)
    reply(critic, "/v1/chat/completions", 200, json=cut)
    with pytest.raises(
        CriticAnswerCut, match=f"reached the review's limit of {VERDICT_MAX_TOKENS} answer tokens"
    ):
        client_for(critic).review(png(), context())


def test_reset_prefix_cache_success_false_is_retried_then_an_error(critic: CriticSim) -> None:
    for _ in range(3):
        reply(critic, "/reset_prefix_cache", 200, json={"success": False})
    with pytest.raises(RuntimeUnavailable, match=r"could not reset its prefix cache.*3 times"):
        client_for(critic).reset_prefix_cache()


def test_reset_prefix_cache_succeeding_on_a_retry_is_fine(critic: CriticSim) -> None:
    reply(critic, "/reset_prefix_cache", 200, json={"success": False})
    client_for(critic).reset_prefix_cache()  # the second try reaches the simulator: success


def test_an_older_empty_200_from_reset_prefix_cache_is_success(critic: CriticSim) -> None:
    reply(critic, "/reset_prefix_cache", 200, text="")
    client_for(critic).reset_prefix_cache()


def test_a_200_wake_up_that_says_sleeping_is_not_taken_as_awake(critic: CriticSim) -> None:
    # 0.34.0 entrypoints/serve/dev/sleep/api_router.py: 200 even when only partly awake.
    reply(critic, "/wake_up", 200, json={"status": "sleeping", "tags": None})
    with pytest.raises(RuntimeUnavailable, match="answered POST /wake_up but is still asleep"):
        client_for(critic).wake_up()


def test_a_partial_wake_by_tags_reports_not_fully_awake_without_failing(
    critic: CriticSim,
) -> None:
    client = client_for(critic)
    client.sleep(1)
    assert client.wake_up(["weights"]) is False
    assert client.wake_up(["kv_cache"]) is True


def test_an_older_empty_wake_up_is_confirmed_with_is_sleeping(critic: CriticSim) -> None:
    client = client_for(critic)
    client.sleep(1)
    reply(critic, "/wake_up", 200, text="")  # the engine was not really woken
    with pytest.raises(RuntimeUnavailable, match="GET /is_sleeping says true"):
        client.wake_up()


def test_sleep_reads_0_34s_status_body(critic: CriticSim) -> None:
    reply(critic, "/sleep", 200, json={"status": "paused", "level": 1})
    with pytest.raises(RuntimeFailure, match="not status 'sleeping'"):
        client_for(critic).sleep(1)


def test_the_version_comes_from_get_version(critic: CriticSim) -> None:
    assert client_for(critic).version() == "0.34.0+sim"
    reply(critic, "/version", 200, json={"version": "0.11.0"})
    assert client_for(critic).version() == "0.11.0"
    reply(critic, "/version", 404, text="Not Found")
    assert client_for(critic).version() == ""
    reply(critic, "/version", 200, json={"v": 1})
    with pytest.raises(RuntimeFailure, match="not \\{'version': str\\}"):
        client_for(critic).version()


def test_without_tokenize_the_prompt_is_estimated_high_and_said_so(critic: CriticSim) -> None:
    reply(critic, "/tokenize", 404, text="Not Found")
    client = client_for(critic)
    from artcritic.runtimes.critic_prompt import prompt_build

    prompt = prompt_build(png(), context())
    estimate = client.count_prompt(prompt)
    counted = client.count_prompt(prompt)
    assert estimate.method == "bound"
    assert counted.method == "tokenizer"
    assert estimate.tokens >= counted.tokens
    assert estimate.image_tokens == counted.image_tokens == 81 + 2  # 256² → 9 × 9 pads
    assert re.fullmatch(r"\d+", str(counted.text_tokens))
