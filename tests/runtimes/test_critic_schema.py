"""verdict_parse accepts exactly the verdict schema and says precisely what is wrong otherwise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from artcritic.runtimes.critic_schema import (
    CRITERIA,
    RATIONALE_MAX_CHARS,
    VERDICT_SCHEMA,
    CriticVerdictData,
    verdict_parse,
)
from artcritic.runtimes.errors import CriticAnswerInvalid


def good() -> dict[str, Any]:
    return {
        "scores": {"taste": 7, "manufacturability": 5, "prompt_intent": 9, "consistency": 6},
        "verdict": "approve",
        "rationale": {k: f"Because of the {k}." for k in CRITERIA},
    }


def reason_for(content: str, finish_reason: str = "stop") -> str:
    with pytest.raises(CriticAnswerInvalid) as caught:
        verdict_parse(content, finish_reason=finish_reason)
    return caught.value.reason


def test_a_valid_answer_becomes_verdict_data() -> None:
    data = verdict_parse(json.dumps(good()), finish_reason="stop")
    assert data == CriticVerdictData(
        scores={"taste": 7, "manufacturability": 5, "prompt_intent": 9, "consistency": 6},
        verdict="approve",
        rationale={k: f"Because of the {k}." for k in CRITERIA},
    )


def test_the_schema_itself_is_a_valid_json_schema_with_no_extra_properties() -> None:
    Draft202012Validator.check_schema(VERDICT_SCHEMA)
    assert VERDICT_SCHEMA["additionalProperties"] is False
    assert VERDICT_SCHEMA["properties"]["scores"]["additionalProperties"] is False
    assert VERDICT_SCHEMA["properties"]["rationale"]["additionalProperties"] is False


def test_prose_is_not_json_at_char_0() -> None:
    reason = reason_for("Sure! Here is my review: {...}")
    assert "not JSON at char 0" in reason
    assert "The answer began: 'Sure! Here is my review" in reason
    assert "No score was recorded" in reason


def test_a_markdown_fenced_answer_is_not_json() -> None:
    assert "not JSON at char 0" in reason_for("```json\n" + json.dumps(good()) + "\n```")


def test_trailing_text_after_the_json_says_where() -> None:
    text = json.dumps(good())
    assert f"not JSON at char {len(text) + 1}" in reason_for(text + " Hope this helps!")


def test_a_score_of_11_is_out_of_range() -> None:
    answer = good()
    answer["scores"]["taste"] = 11
    assert "scores.taste is 11, out of range 0–10" in reason_for(json.dumps(answer))


def test_a_negative_score_is_out_of_range() -> None:
    answer = good()
    answer["scores"]["consistency"] = -1
    assert "scores.consistency is -1, out of range 0–10" in reason_for(json.dumps(answer))


def test_missing_fields_are_each_named() -> None:
    answer = good()
    del answer["verdict"]
    del answer["rationale"]["consistency"]
    reason = reason_for(json.dumps(answer))
    assert "missing field verdict" in reason
    assert "missing field rationale.consistency" in reason


def test_an_extra_field_is_refused() -> None:
    answer = good() | {"confidence": 0.9}
    assert "unexpected field 'confidence' in the answer" in reason_for(json.dumps(answer))


def test_a_score_written_as_a_string_is_the_wrong_type() -> None:
    answer = good()
    answer["scores"]["taste"] = "7"
    assert "scores.taste is '7', expected integer" in reason_for(json.dumps(answer))


def test_a_boolean_is_not_a_score() -> None:
    answer = good()
    answer["scores"]["taste"] = True
    assert "scores.taste is True, expected integer" in reason_for(json.dumps(answer))


def test_an_unknown_verdict_is_named_with_the_allowed_values() -> None:
    answer = good() | {"verdict": "maybe"}
    assert "verdict is 'maybe', expected 'approve' or 'reject'" in reason_for(json.dumps(answer))


def test_a_rationale_over_1000_characters_is_refused_with_its_length() -> None:
    answer = good()
    answer["rationale"]["taste"] = "x" * (RATIONALE_MAX_CHARS + 1)
    assert "rationale.taste is 1001 characters long, more than the limit of 1000" in reason_for(
        json.dumps(answer)
    )


def test_an_answer_cut_by_the_token_limit_is_refused_even_if_it_parses() -> None:
    reason = reason_for(json.dumps(good()), finish_reason="length")
    assert "cut off by the token limit (finish_reason length)" in reason


def test_an_empty_or_missing_answer_is_refused() -> None:
    assert "the answer is empty" in reason_for("   ")
    with pytest.raises(CriticAnswerInvalid, match="the answer is empty"):
        verdict_parse(None, finish_reason="stop")


def test_a_duplicated_key_is_refused_rather_than_silently_keeping_the_last() -> None:
    text = json.dumps(good())[:-1] + ', "verdict": "reject"}'
    assert "field 'verdict' appears twice" in reason_for(text)


def test_nan_is_not_a_json_number() -> None:
    text = json.dumps(good()).replace('"taste": 7', '"taste": NaN', 1)
    assert "NaN is not a JSON number" in reason_for(text)


def test_a_json_array_is_not_a_verdict() -> None:
    assert "the answer is [1, 2], expected object" in reason_for("[1, 2]")


def test_deeply_nested_json_is_refused_not_crashed() -> None:
    assert "nested too deeply" in reason_for("[" * 30_000 + "]" * 30_000)


def test_a_nul_character_in_a_rationale_is_refused_because_it_cannot_be_stored() -> None:
    answer = good()
    answer["rationale"]["taste"] = "bad\u0000byte"
    assert "rationale.taste contains a NUL character" in reason_for(json.dumps(answer))


def test_a_lone_surrogate_in_a_rationale_is_refused() -> None:
    text = json.dumps(good()).replace("Because of the taste.", "\\ud800")
    assert "unpaired UTF-16 surrogate" in reason_for(text)


def test_a_whole_number_float_score_is_stored_as_an_integer() -> None:
    text = json.dumps(good()).replace('"taste": 7', '"taste": 7.0', 1)
    data = verdict_parse(text, finish_reason="stop")
    assert data.scores["taste"] == 7
    assert type(data.scores["taste"]) is int


def test_a_fractional_score_is_refused() -> None:
    text = json.dumps(good()).replace('"taste": 7', '"taste": 7.5', 1)
    assert "scores.taste is 7.5, expected integer" in reason_for(text)


# -- hostile input generated by hypothesis: never a default, never a crash ----------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-20, 20)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


def _outcome(content: str, finish_reason: str) -> CriticVerdictData | CriticAnswerInvalid:
    try:
        return verdict_parse(content, finish_reason=finish_reason)
    except CriticAnswerInvalid as exc:
        return exc


def _assert_parse_is_honest(content: str, finish_reason: str = "stop") -> None:
    outcome = _outcome(content, finish_reason)
    if isinstance(outcome, CriticAnswerInvalid):
        assert outcome.reason.startswith("The Critic's answer was rejected: ")
        assert outcome.next_action
        return
    # Accepted only when the content really is a schema-valid verdict with these values.
    decoded = json.loads(content)
    Draft202012Validator(VERDICT_SCHEMA).validate(decoded)
    assert finish_reason == "stop"
    assert outcome.verdict == decoded["verdict"]
    assert outcome.scores == {k: int(decoded["scores"][k]) for k in CRITERIA}
    assert outcome.rationale == decoded["rationale"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.sampled_from(["stop", "length", "abort", ""]))
def test_arbitrary_text_is_either_a_real_verdict_or_refused(content: str, finish: str) -> None:
    _assert_parse_is_honest(content, finish)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_is_either_a_real_verdict_or_refused(value: Any) -> None:
    _assert_parse_is_honest(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["scores", "verdict", "rationale"]),
    st.sampled_from([*CRITERIA, "extra"]),
    json_values,
)
def test_a_verdict_with_one_field_replaced_by_garbage_is_judged_exactly(
    section: str, key: str, garbage: Any
) -> None:
    answer = good()
    if section == "verdict":
        answer["verdict"] = garbage
    else:
        answer[section][key] = garbage
    _assert_parse_is_honest(json.dumps(answer))
