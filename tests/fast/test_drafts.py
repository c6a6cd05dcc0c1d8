"""Draft binding: prompt steering and vocabulary checks."""

from __future__ import annotations

from tiny import tiny_pair

from langchain_aligned.decoding import DecodingEngine, PromptSteeredDraft, Request, SamplingParams
from langchain_aligned.decoding.drafts import bind_draft
from langchain_aligned.models import load_model


def test_steering_replaces_adds_or_removes_the_system_message():
    conversation = [{"role": "system", "content": "old"}, {"role": "user", "content": "hi"}]
    assert PromptSteeredDraft(None).steer(conversation) == conversation
    assert PromptSteeredDraft("new").steer(conversation)[0] == {"role": "system", "content": "new"}
    assert PromptSteeredDraft("").steer(conversation) == [{"role": "user", "content": "hi"}]
    assert PromptSteeredDraft("s").steer("hi") == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "hi"},
    ]


def test_prompt_steered_draft_shares_weights_but_not_the_prompt():
    engine = DecodingEngine(load_model(tiny_pair(0)))
    request = Request(
        conversation=[{"role": "user", "content": "hello"}],
        prompt_ids=engine.encode("<|user|> hello </s> <|assistant|>"),
        params=SamplingParams(),
        seed=0,
    )
    plain = bind_draft(PromptSteeredDraft(None), engine)
    steered = bind_draft(PromptSteeredDraft("be good"), engine)
    assert plain.engine is engine and steered.engine is engine
    assert plain.prompt(request) == request.prompt_ids
    assert steered.prompt(request) == engine.encode(
        "<|system|> be good </s> <|user|> hello </s> <|assistant|>"
    )
