"""Model-backed scorers on tiny in-process models: RewardModelScorer heads and
truncation, likelihood agreement with the engine, judge probabilities, load errors."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny import tiny_pair, tiny_reward_model

import rewards
from langchain_aligned.decoding import DecodingEngine
from langchain_aligned.models import load_model, render_chat
from rewards.reward_model import reward_model_ids, reward_model_text


def test_reward_model_scores_match_a_direct_forward_pass():
    model, tokenizer = tiny_reward_model()
    scorer = rewards.RewardModelScorer((model, tokenizer), max_tokens_per_batch=16)
    texts = ["the cat sat", "hello world the cat sat on the mat", ""]
    scores = scorer.score("why is the sun red", texts)
    for text, score in zip(texts, scores, strict=True):
        formatted = scorer.format(tokenizer, "why is the sun red", text)
        ids = tokenizer(formatted, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            expected = model(**ids).logits[0, 0].item()
        assert score == pytest.approx(expected, abs=1e-5)


def test_reward_model_head_selection_and_bad_ids():
    model, tokenizer = tiny_reward_model()
    with pytest.raises(rewards.InvalidScorerConfig, match="head=3"):
        rewards.RewardModelScorer((model, tokenizer), head=3).score("q", ["a"])
    with pytest.raises(rewards.InvalidScorerConfig, match="'helpfulness'"):
        rewards.RewardModelScorer((model, tokenizer), head="helpfulness").score("q", ["a"])
    with pytest.raises(rewards.RewardScorerError, match="no-such/reward-model"):
        rewards.RewardModelScorer("no-such/reward-model").score("q", ["a"])


def test_likelihood_is_the_mean_token_logprob():
    pair = tiny_pair(0)
    scorer = rewards.LikelihoodScorer(pair)
    score = scorer.score("hello", ["the cat sat", ""])
    handle = load_model(pair)
    engine = DecodingEngine(handle)
    prompt = engine.encode(render_chat(handle, [{"role": "user", "content": "hello"}]))
    cont = handle.tokenizer("the cat sat", add_special_tokens=False)["input_ids"]
    expected = engine.score_continuations([prompt], [cont])[0].mean().item()
    assert score[0] == pytest.approx(expected, abs=1e-5)
    assert score[1] == scorer.empty_score


def test_judge_returns_probabilities_and_validates_config():
    scores = rewards.LLMJudgeScorer(tiny_pair(0)).score("q", ["yes", "no", "the cat"])
    assert all(0.0 <= s <= 1.0 for s in scores)
    with pytest.raises(rewards.InvalidScorerConfig, match="mode"):
        rewards.LLMJudgeScorer(mode="vibes")
    with pytest.raises(rewards.InvalidScorerConfig, match=r"\{answer\}"):
        rewards.LLMJudgeScorer(template="{question} only")


def test_model_scorers_load_lazily():
    scorer = rewards.LikelihoodScorer("no-such/model-anywhere")
    assert scorer._lm is None  # nothing loaded at construction
    with pytest.raises(rewards.RewardScorerError, match="no-such/model-anywhere"):
        scorer.score("q", ["a"])


def test_likelihood_reads_recorded_logprobs_only_where_they_apply():
    from rewards.base import RecordedLogprobs, recording

    pair = tiny_pair(0)
    handle = load_model(pair)
    engine = DecodingEngine(handle)
    conversation = [{"role": "user", "content": "hello"}]
    prompt = tuple(engine.encode(render_chat(handle, conversation)))
    text = "the cat sat"
    ids = tuple(handle.tokenizer(text, add_special_tokens=False)["input_ids"])
    true = engine.score_continuations([list(prompt)], [list(ids)])[0].mean().item()
    scorer = rewards.LikelihoodScorer(pair)
    # Recorded numbers unlike the model's, so the test sees which ones were used.
    fake = tuple(-1.0 - i for i in range(len(ids)))
    applies = RecordedLogprobs(handle.model, prompt, {text: (ids, fake)})
    with recording(applies):
        assert scorer.score(conversation, [text, ""]) == [
            pytest.approx(sum(fake) / len(fake)),
            scorer.empty_score,
        ]
    other_model = tiny_pair(1)[0]
    for stale in (
        RecordedLogprobs(other_model, prompt, {text: (ids, fake)}),  # other weights
        RecordedLogprobs(handle.model, prompt[:-1], {text: (ids, fake)}),  # other prompt
        RecordedLogprobs(handle.model, prompt, {text: (ids[:-1], fake[:-1])}),  # other text
        RecordedLogprobs(handle.model, prompt, {"the cat": (ids, fake)}),  # other text
    ):
        with recording(stale):
            assert scorer.score(conversation, [text]) == [pytest.approx(true, abs=1e-5)]
    assert scorer.score(conversation, [text]) == [pytest.approx(true, abs=1e-5)]  # none


def test_similarity_embeds_a_question_once_across_reward_calls():
    from tiny import tiny_model, tiny_tokenizer

    encoder = (tiny_model(1).model, tiny_tokenizer())
    rows: list[int] = []
    hook = encoder[0].register_forward_hook(
        lambda _m, _a, kwargs, _o: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        scorer = rewards.EmbeddingSimilarityScorer(encoder=encoder)
        texts = ["the cat sat", "hello world", ""]
        first = scorer.score("why is the sun red", texts)
        rows.clear()
        again = scorer.score("why is the sun red", texts)
        assert rows == [len(texts)]  # the replies only: the question's embedding is kept
        assert again == first
        # Equal to a scorer that has embedded nothing before (float noise from padding).
        fresh = rewards.EmbeddingSimilarityScorer(encoder=encoder).score(
            "why is the sun red", texts
        )
        assert first == pytest.approx(fresh, abs=1e-5)
        rows.clear()
        scorer.score("another question", texts[:1])
        assert rows == [1, 1]  # a new question is embedded once, then its reply
    finally:
        hook.remove()


def _rows_fed(model):
    """A forward hook recording the rows of every call of ``model``."""
    rows: list[int] = []
    hook = model.register_forward_hook(
        lambda _m, _a, kwargs, _o: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    return rows, hook


def test_score_batch_encodes_every_items_replies_in_one_pass():
    from tiny import tiny_model, tiny_tokenizer

    items = [
        ("why is the sun red", ["the cat sat", "hello world"]),
        ("what is a cat", ["a small animal", "the cat sat on the mat", ""]),
        ("why is the sun red", ["red light"]),
    ]
    texts = sum(len(t) for _, t in items)
    encoder = (tiny_model(1).model, tiny_tokenizer())
    scorer = rewards.EmbeddingSimilarityScorer(encoder=encoder)
    scorer.score_batch(items)  # embeds the two questions once
    rows, hook = _rows_fed(encoder[0])
    try:
        scorer.score_batch(items)
    finally:
        hook.remove()
    assert rows == [texts]  # one pass for all six replies, not one per item

    model, tokenizer = tiny_reward_model()
    reward_model = rewards.RewardModelScorer((model, tokenizer))
    rows, hook = _rows_fed(model)
    try:
        together = reward_model.score_batch(items)
        assert rows == [texts]  # the default token budget holds them all in one batch
        rows.clear()
        alone = [reward_model.score(c, t) for c, t in items]
        assert rows == [len(t) for _, t in items]
    finally:
        hook.remove()
    for batched, single in zip(together, alone, strict=True):
        assert batched == pytest.approx(single, abs=1e-5)


def test_likelihood_in_one_batch_call_reads_each_prompts_recorded_logprobs():
    from rewards.base import RecordedLogprobs, recording

    pair = tiny_pair(0)
    handle = load_model(pair)
    engine = DecodingEngine(handle)
    questions = ["hello", "why is the sun red"]
    chats = [[{"role": "user", "content": q}] for q in questions]
    prompts = [tuple(engine.encode(render_chat(handle, c))) for c in chats]
    text = "the cat sat"
    ids = tuple(handle.tokenizer(text, add_special_tokens=False)["input_ids"])
    fakes = [tuple(-1.0 - i - k for i in range(len(ids))) for k in (0, 10)]
    published = [
        RecordedLogprobs(handle.model, prompt, {text: (ids, fake)})
        for prompt, fake in zip(prompts, fakes, strict=True)
    ]
    scorer = rewards.LikelihoodScorer(pair)
    with recording(published):
        values = scorer.score_batch([(q, [text]) for q in questions])
    # Each item reads the record of its own prompt (the two are told apart by value).
    assert values == [[pytest.approx(sum(f) / len(f))] for f in fakes]
    with recording(published[:1]):
        _, second = scorer.score_batch([(q, [text]) for q in questions])
    true = engine.score_continuations([list(prompts[1])], [list(ids)])[0].mean().item()
    assert second == [pytest.approx(true, abs=1e-5)]  # no record for it: the model runs


def test_requests_sharing_a_prompt_merge_their_recorded_logprobs():
    from rewards.base import RecordedLogprobs, recorded_logprobs, recording

    model = object()
    first = RecordedLogprobs(model, (1, 2), {"a": ((5,), (-1.0,))})
    second = RecordedLogprobs(model, (1, 2), {"b": ((6,), (-2.0,))})
    other = RecordedLogprobs(model, (3,), {"c": ((7,), (-3.0,))})
    with recording([first, None, second, other]):
        merged = recorded_logprobs(model, [1, 2])
        # Both requests' texts are found under their common prompt, and nothing else.
        assert merged is not None and dict(merged.by_text) == {**first.by_text, **second.by_text}
        assert recorded_logprobs(model, [3]) is other
        assert recorded_logprobs(object(), [1, 2]) is None
    assert recorded_logprobs(model, [1, 2]) is None  # nothing outside the block


def test_similarity_runs_on_the_device_asked_and_names_a_bad_one():
    from tiny import tiny_model, tiny_tokenizer

    with pytest.raises(rewards.InvalidScorerConfig, match="nope"):
        rewards.EmbeddingSimilarityScorer(device="nope")
    scorer = rewards.EmbeddingSimilarityScorer(device="cpu")
    assert scorer.device == torch.device("cpu")
    # A given encoder is used where it lies: inputs follow its weights.
    encoder = (tiny_model(1).model, tiny_tokenizer())
    values = rewards.EmbeddingSimilarityScorer(encoder=encoder, device="cpu").score("q", ["a b"])
    assert len(values) == 1


# A conversation of 2,807 tokens: longer than the tiny reward model's 2,048 positions.
LONG_CONVERSATION = [
    {"role": "user", "content": " ".join(["the cat sat on the mat ."] * 400)},
    {"role": "assistant", "content": "sure"},
    {"role": "user", "content": "why is the sun red ?"},
]
EXAMPLES = [
    (LONG_CONVERSATION, "yes it is good"),
    (LONG_CONVERSATION, ""),
    ("why is the sun red", "the cat sat on the mat"),
    ("hello " * 2500, "no"),
]


@pytest.fixture()
def reward_folder(tmp_path):
    """The tiny reward model saved as a folder (what VLLMRewardScorer loads by name),
    and the in-memory pair it was saved from."""
    model, tokenizer = tiny_reward_model()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return str(tmp_path), (model, tokenizer)


def _ids_fed(model):
    """A forward hook recording the unpadded token ids of every row ``model`` reads."""
    fed: list[list[int]] = []

    def record(_module, _args, kwargs, _output):
        for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"], strict=True):
            fed.append(ids[mask.bool()].tolist())

    return fed, model.register_forward_hook(record, with_kwargs=True)


def _vllm_requests(scorer, monkeypatch, engine_max_length=None):
    """The token ids ``scorer`` sends to vLLM, with the engine stubbed out: it accepts
    ``engine_max_length`` tokens (None: it says nothing) and scores every text 0."""
    sent: list[list[int]] = []

    def classify(prompts):
        sent.extend(prompts)
        return [0.0] * len(prompts)

    monkeypatch.setattr(scorer, "_engine_max_length", lambda: engine_max_length)
    monkeypatch.setattr(scorer, "_in_process", classify)
    return sent


@pytest.mark.parametrize("max_length", [None, 300, 2, 1])
@pytest.mark.parametrize(("conversation", "reply"), EXAMPLES)
def test_both_reward_model_scorers_read_the_same_token_ids(
    reward_folder, monkeypatch, conversation, reply, max_length
):
    """One truncation rule: RewardModelScorer (transformers) and VLLMRewardScorer send
    the model the same ids, the whole text's last ``limit`` tokens when it is longer
    (the reply is kept, the conversation's start is cut)."""
    folder, (model, tokenizer) = reward_folder
    fed, hook = _ids_fed(model)
    try:
        rewards.RewardModelScorer((model, tokenizer), max_length=max_length).score(
            conversation, [reply]
        )
    finally:
        hook.remove()
    scorer = rewards.VLLMRewardScorer(folder, max_length=max_length)
    sent = _vllm_requests(scorer, monkeypatch)
    scorer.score(conversation, [reply])
    assert fed == sent and len(sent) == 1
    # Default: the model's 2,048 positions (below 4,096 and the tokenizer's limit).
    limit = max_length or 2048
    text = reward_model_text(tokenizer, conversation, reply)
    whole = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert sent[0] == whole[-limit:]
    assert len(sent[0]) == min(limit, len(whole))


def test_truncation_keeps_a_leading_bos_and_the_end():
    """A template that writes the BOS keeps it: the cut falls after it."""
    from tiny import CHAT_TEMPLATE, tiny_tokenizer

    tokenizer = copy.deepcopy(tiny_tokenizer())
    tokenizer.chat_template = "{{ '<s> ' }}" + CHAT_TEMPLATE
    text = reward_model_text(tokenizer, "the cat sat on the mat", "yes")
    whole = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert whole[0] == tokenizer.bos_token_id
    for limit in (2, 5, len(whole) - 1):
        assert reward_model_ids(tokenizer, text, limit) == whole[:1] + whole[1 - limit :]
    assert reward_model_ids(tokenizer, text, len(whole)) == whole
    assert reward_model_ids(tokenizer, text, 1) == whole[-1:]


def test_vllm_reward_scorer_keeps_within_the_engines_max_model_len(reward_folder, monkeypatch):
    """An engine that accepts fewer tokens than the rule's default gets texts cut to its
    max_model_len (the ids RewardModelScorer reads with that max_length); a max_length
    asked above it is refused, naming both."""
    folder, (model, tokenizer) = reward_folder
    scorer = rewards.VLLMRewardScorer(folder)
    sent = _vllm_requests(scorer, monkeypatch, engine_max_length=300)
    scorer.score(LONG_CONVERSATION, ["yes", "no"])
    fed, hook = _ids_fed(model)
    try:
        rewards.RewardModelScorer((model, tokenizer), max_length=300).score(
            LONG_CONVERSATION, ["yes", "no"]
        )
    finally:
        hook.remove()
    assert sorted(sent) == sorted(fed) and {len(ids) for ids in sent} == {300}
    asked = rewards.VLLMRewardScorer(folder, max_length=1000)
    _vllm_requests(asked, monkeypatch, engine_max_length=300)
    with pytest.raises(rewards.InvalidScorerConfig, match=r"max_length=1000 .* 300 tokens"):
        asked.score(LONG_CONVERSATION, ["yes"])
    for scorer_class, source in (
        (rewards.RewardModelScorer, (model, tokenizer)),
        (rewards.VLLMRewardScorer, folder),
    ):
        for bad in (0, -1, 2.5, True):
            with pytest.raises(rewards.InvalidScorerConfig, match=f"max_length={bad!r}"):
                scorer_class(source, max_length=bad)
