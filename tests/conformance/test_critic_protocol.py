"""vLLM (Critic) protocol cases: the same assertions against the simulator and a real server.

The real leg sleeps and wakes the server only with ARTCRITIC_REAL_CRITIC_SLEEP=1 (consent:
it frees and re-takes GPU memory and aborts running requests); without it the sleep case
checks the route's shape only.
"""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from artcritic.runtimes.critic import CriticClient, context_overflow_parse
from artcritic.runtimes.critic_prompt import ReviewContext, prompt_build
from artcritic.runtimes.critic_schema import CRITERIA
from artcritic.runtimes.critic_tokens import vision_grid_for_model
from artcritic.runtimes.errors import CriticContextTooLong
from artcritic.runtimes.versions import version_check, version_parse
from tests.conformance.conftest import Target

CONTEXT = ReviewContext(
    prompt="a matte teal electric kettle, studio shot",
    negative="text, watermark",
    brief="conformance check: small kitchen appliances",
    taste_notes="calm, matte, rounded",
    manufacturability="injection-moulded PP, no undercuts",
)


def image(size: tuple[int, int] = (256, 256)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 140, 140)).save(buf, "PNG")
    return buf.getvalue()


def client_for(target: Target) -> CriticClient:
    return CriticClient(target.url, model=target.model, timeout=180)


def test_health_version_and_models_answer_as_documented(critic_target: Target) -> None:
    client = client_for(critic_target)
    client.health_check()
    version = client.version()
    assert version_parse(version) is not None, version
    print(f"[{critic_target.leg}] {version_check('critic', version).sentence}")
    cards = client.models()
    assert critic_target.model in [card.id for card in cards]
    assert client.max_model_len() > 1024


def test_tokenize_counts_the_text_and_the_clients_bound_is_never_lower(
    critic_target: Target,
) -> None:
    client = client_for(critic_target)
    prompt = prompt_build(image(), CONTEXT, grid=vision_grid_for_model(critic_target.model))
    counted = client.count_prompt(prompt)
    assert counted.method == "tokenizer"
    assert 0 < counted.text_tokens <= prompt.text_tokens  # the bound is an upper bound
    assert counted.image_tokens == prompt.image_tokens


def test_a_review_returns_a_schema_valid_verdict(critic_target: Target) -> None:
    verdict = client_for(critic_target).review(image(), CONTEXT, seed=1)
    assert set(verdict.scores) == set(CRITERIA)
    assert verdict.verdict in ("approve", "reject")
    assert verdict.prompt_tokens > 0
    # The count made before sending is never below what the server billed.
    assert verdict.estimated_prompt_tokens >= verdict.prompt_tokens


def test_a_prompt_over_the_context_is_refused_with_numbers_the_client_reads(
    critic_target: Target,
) -> None:
    client = client_for(critic_target)
    limit = client.max_model_len()
    body = {
        "model": critic_target.model,
        "messages": [{"role": "user", "content": "word " * (limit * 2)}],
        "max_completion_tokens": 16,
    }
    response = requests.post(critic_target.url + "/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 400
    overflow = context_overflow_parse(response.json()["error"]["message"])
    assert overflow is not None, response.text
    assert overflow.max_context == limit


def test_a_review_that_cannot_fit_is_refused_before_sending(critic_target: Target) -> None:
    client = client_for(critic_target)
    answer = client.max_model_len() - 10  # leaves no room for the 1536² image
    with pytest.raises(CriticContextTooLong, match="Nothing was sent"):
        client.review(image((1536, 1536)), CONTEXT, max_completion_tokens=answer)


def test_sleep_state_and_with_consent_a_sleep_wake_cycle(critic_target: Target) -> None:
    client = client_for(critic_target)
    state = requests.get(critic_target.url + "/is_sleeping", timeout=30)
    assert state.status_code in (200, 404)  # 404: no dev mode; the Critic can only be stopped
    if state.status_code == 404 or not critic_target.may_sleep:
        print(f"[{critic_target.leg}] sleep cycle not run (no dev mode, or no consent)")
        return
    assert client.is_sleeping() is False
    client.sleep(1)
    assert client.is_sleeping() is True
    assert client.wake_up() is True
    assert client.is_sleeping() is False
    client.reset_prefix_cache()
