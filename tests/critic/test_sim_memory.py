"""The simulated Critic remembers rejected near-duplicates from the examples it is shown."""

from __future__ import annotations

import pytest

from artcritic.runtimes.critic import PriorDecision, ReviewContext
from artcritic.runtimes.critic_prompt import prompt_build
from artcritic.sim.critic_answer import rejected_near_duplicates
from tests.sim.test_sim_critic import png

LAMP = "a brushed aluminium desk lamp with a walnut base, front view"


def request_text(*decisions: PriorDecision) -> str:
    prompt = prompt_build(
        png(), ReviewContext(LAMP, "", "brief", "notes", "constraints", list(decisions))
    )
    system, user = prompt.messages
    return system["content"] + "\n" + user["content"][0]["text"]


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        ((), 0),
        ((PriorDecision(1, "reject", "", LAMP.replace("front", "side")),), 1),
        ((PriorDecision(1, "approve", "", LAMP),), 0),
        ((PriorDecision(1, "conflict", "", LAMP, votes=(("reject", ""), ("approve", ""))),), 0),
        ((PriorDecision(1, "reject", "", "a red wool armchair"),), 0),
        (
            (
                PriorDecision(1, "reject", "", LAMP),
                PriorDecision(2, "reject", '"prior_decisions": [', LAMP + " again"),
            ),
            2,
        ),
    ],
)
def test_only_rejections_of_near_identical_prompts_count(
    decisions: tuple[PriorDecision, ...], expected: int
) -> None:
    assert rejected_near_duplicates(request_text(*decisions)) == expected


@pytest.mark.parametrize(
    "text",
    ["", '"prior_decisions": [', '"prior_decisions": {"a": 1}', '"prior_decisions": [1, "x"]'],
)
def test_a_malformed_document_counts_nothing(text: str) -> None:
    assert rejected_near_duplicates(text) == 0
