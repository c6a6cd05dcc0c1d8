"""Shared fakes of the chat-model tests: a tiny model configured like a user would,
the framework-free core's answer to compare with, scripted strategies, handlers."""

from __future__ import annotations

from typing import TypedDict

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tools import tool
from pydantic import BaseModel
from scorers import CountingScorer
from tiny import tiny_pair

from langchain_aligned import AlignedChatModel, BestOfN, generate
from langchain_aligned.decoding import AlignmentStats, Result, Strategy, score_texts
from langchain_aligned.decoding.base import EVENT_DONE

PAIR = tiny_pair(0)


def make(**kwargs):
    params = {
        "model": PAIR,
        "strategy": BestOfN(n=3),
        "reward": CountingScorer(),
        "max_tokens": 12,
        "seed": 3,
    }
    params.update(kwargs)
    return AlignedChatModel(**params)


def core(model, conversation, *, reward=None, tools=None):
    """What the framework-free core returns for ``model``'s configuration: the chat
    model must be a thin layer over this (same strategy, seed, sampling, max tokens)."""
    (result,) = generate(
        PAIR,
        [conversation],
        strategy=model.strategy,
        reward=reward,
        temperature=model.temperature,
        top_p=model.top_p,
        top_k=model.top_k,
        max_new_tokens=model.max_tokens,
        stop=tuple(model.stop or ()),
        seed=model.seed,
        tools=tools,
        device=model.device,
        dtype=model.dtype,
    )
    return result


def user(text):
    return [{"role": "user", "content": text}]


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Recorder(BaseCallbackHandler):
    def __init__(self):
        self.events = []
        self.ends = []

    def on_custom_event(self, name, data, **kwargs):
        self.events.append(name)

    def on_llm_end(self, response, **kwargs):
        self.ends.append(response)


# ----------------------------------------------------------------------------------------
# Scripted strategies: the decoding is real (the tiny model is loaded and the prompt is
# rendered), but the candidate texts are fixed, so the LangChain plumbing — tool-call
# parsing, structured output, reward composition — is checked on known text.
class Scripted(Strategy):
    """Returns the candidate with the best reward (the first one without a reward)."""

    name = "scripted"

    def __init__(self, *texts: str, needs_reward: bool = False) -> None:
        self.texts = texts
        self.needs_reward = needs_reward  # type: ignore[misc]

    def run(self, engine, requests, *, reward=None, hooks=None):
        results = []
        for index, request in enumerate(requests):
            stats = AlignmentStats(strategy=self.name, num_candidates=len(self.texts))
            scores = (
                score_texts(reward, request.conversation, self.texts, stats)
                if reward is not None and self.needs_reward
                else [0.0] * len(self.texts)
            )
            best = max(range(len(scores)), key=lambda i: (scores[i], -i))
            text = self.texts[best]
            stats.reward, stats.candidate_rewards = scores[best], scores
            stats.prompt_tokens = len(request.prompt_ids)
            stats.tokens_returned = len(text.split())
            if hooks is not None:
                if hooks.on_text is not None:
                    for word in text.split(" "):
                        hooks.on_text(index, word + " ")
                hooks.event(EVENT_DONE, {"request": index, "stats": stats.to_dict()})
            results.append(Result(text=text, token_ids=[], finish_reason="stop", stats=stats))
        return results


ADD_CALL = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'


class Person(BaseModel):
    name: str
    age: int


class PersonDict(TypedDict):
    name: str
    age: int


PERSON_SCHEMA = {
    "title": "Person",
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


class FailsOn:
    """Counting reward that raises for one prompt (after other requests were scored)."""

    name = "fails-on"

    def __init__(self, word):
        self.word, self.inner = word, CountingScorer()

    def score(self, conversation, completions):
        if self.word in str(conversation):
            raise RuntimeError(f"cannot score {self.word!r}")
        return self.inner.score(conversation, completions)


def alignment(message):
    """The alignment statistics of a reply."""
    return message.response_metadata["alignment"]
