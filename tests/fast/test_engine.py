"""The decoding engine: exactness against transformers, KV-cache surgery, stops."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import warnings

import pytest
import torch
from tiny import tiny_pair

from langchain_aligned.decoding import Candidate, DecodingEngine, SamplingParams
from langchain_aligned.decoding.params import derive_seed, make_generator
from langchain_aligned.engines.kv_cache import cache_keyword
from langchain_aligned.errors import ContextLengthError, InvalidInputError
from langchain_aligned.models import load_model

PROMPTS = [
    "<|user|> hello world the cat sat on the mat </s> <|assistant|>",
    "<|user|> what </s> <|assistant|>",
    "<|user|> why is the sun red </s> <|assistant|>",
]


@pytest.fixture(scope="module")
def engine():
    return DecodingEngine(load_model(tiny_pair(0)))


def _candidates(engine, prompts, seed=None):
    return [
        Candidate(
            request=i,
            index=0,
            prompt_ids=engine.encode(p),
            generator=None if seed is None else make_generator(derive_seed(seed, i)),
        )
        for i, p in enumerate(prompts)
    ]


def _hf_generate(engine, prompts, **kwargs):
    ids = [engine.encode(p) for p in prompts]
    width = max(len(i) for i in ids)
    pad = engine.pad_id
    input_ids = torch.tensor([[pad] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    out = engine.model.generate(
        input_ids=input_ids,
        attention_mask=mask,
        pad_token_id=pad,
        eos_token_id=sorted(engine.eos_ids),
        **kwargs,
    )
    rows = []
    for row in out[:, width:].tolist():
        tokens = []
        for t in row:
            if t in engine.eos_ids:
                break
            tokens.append(t)
        rows.append(tokens)
    return rows


def test_greedy_equals_model_generate_token_for_token(engine):
    # Left-padded batch of different-length prompts: the engine must reproduce
    # transformers' greedy decoding exactly, EOS handling included.
    params = SamplingParams(temperature=0, max_new_tokens=16)
    candidates = _candidates(engine, PROMPTS)
    engine.decode(engine.prefill(candidates), params)
    expected = _hf_generate(engine, PROMPTS, do_sample=False, max_new_tokens=16)
    assert [c.token_ids for c in candidates] == expected
    assert all(c.finished for c in candidates)


def test_greedy_single_row_equals_batched_rows(engine):
    params = SamplingParams(temperature=0, max_new_tokens=12)
    batched = _candidates(engine, PROMPTS)
    engine.decode(engine.prefill(batched), params)
    for i, prompt in enumerate(PROMPTS):
        alone = _candidates(engine, [prompt])
        engine.decode(engine.prefill(alone), params)
        assert alone[0].token_ids == batched[i].token_ids


def test_seeded_sampling_is_reproducible_and_seed_dependent(engine):
    params = SamplingParams(temperature=1.0, max_new_tokens=20)

    def run(seed):
        candidates = _candidates(engine, PROMPTS, seed=seed)
        engine.decode(engine.prefill(candidates), params)
        return [c.token_ids for c in candidates]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_candidate_tokens_do_not_depend_on_batch_mates(engine):
    # Per-candidate generators: decoding a candidate alone or beside others yields
    # the same tokens (the basis of SpR(α=0) ≡ BoN and of row pruning).
    params = SamplingParams(temperature=0.8, top_k=10, max_new_tokens=15)
    together = _candidates(engine, PROMPTS, seed=3)
    engine.decode(engine.prefill(together), params)
    alone = _candidates(engine, PROMPTS, seed=3)[1:2]
    engine.decode(engine.prefill(alone), params)
    assert alone[0].token_ids == together[1].token_ids


def test_rollback_and_select_match_fresh_prefill(engine):
    prompts = [engine.encode(p) for p in PROMPTS]
    state = engine.prefill([Candidate(i, 0, p) for i, p in enumerate(prompts)])
    engine.feed(state, [[10, 11, 12, 13], [20, 21], [30]], keep=1)
    engine.rollback(state, [2, 1, 0])
    engine.select(state, [2, 0])
    logits = engine.feed(state, [[40], [41, 42]], keep=1)[:, -1]
    fresh = engine.prefill(
        [Candidate(0, 0, prompts[2] + [30, 40]), Candidate(1, 0, prompts[0] + [10, 11, 41, 42])]
    )
    torch.testing.assert_close(logits, fresh.next_logits, atol=1e-5, rtol=1e-5)
    # Row pruning never re-prefills: one prefill for `state`.
    assert state.counters.prefill_passes == 1


def test_rollback_crops_trailing_holes(engine):
    state = engine.prefill(_candidates(engine, PROMPTS[:2]))
    before = state.num_slots
    engine.feed(state, [[5, 6, 7], [8, 9, 10]])
    engine.rollback(state, [3, 3])
    assert state.num_slots == before
    with pytest.raises(InvalidInputError, match="more tokens"):
        engine.rollback(state, [100, 0])


def test_select_drops_rows_and_leading_padding(engine):
    state = engine.prefill(_candidates(engine, PROMPTS))
    width = state.num_slots
    engine.select(state, [1])  # the shortest prompt alone: its left padding goes
    assert state.num_rows == 1
    assert state.num_slots == len(engine.encode(PROMPTS[1])) < width


def test_stop_strings_of_any_token_length_are_trimmed(engine):
    params = SamplingParams(temperature=0, max_new_tokens=16)
    replies = _candidates(engine, PROMPTS)
    engine.decode(engine.prefill(replies), params)
    # The prompt with the longest greedy reply gives a stop string in mid-reply.
    row = max(range(len(PROMPTS)), key=lambda i: len(replies[i].text.split()))
    free = replies[row]
    words = free.text.split()
    assert len(words) >= 4
    stop = " ".join(words[2:4])  # spans two tokens
    stopped = _candidates(engine, PROMPTS[row : row + 1])
    engine.decode(
        engine.prefill(stopped), SamplingParams(temperature=0, max_new_tokens=16, stop=(stop,))
    )
    assert stopped[0].finish_reason == "stop"
    assert stopped[0].text == free.text[: free.text.index(stop)]
    assert stop not in stopped[0].text


def test_max_new_tokens_and_finish_reason(engine):
    candidates = _candidates(engine, PROMPTS, seed=1)
    engine.decode(engine.prefill(candidates), SamplingParams(max_new_tokens=3))
    for c in candidates:
        assert len(c.token_ids) <= 3
        assert c.finish_reason in ("stop", "length")
        if c.finish_reason == "length":
            assert len(c.token_ids) == 3


def test_finished_rows_are_pruned_from_the_batch(engine):
    candidates = _candidates(engine, PROMPTS, seed=5)
    state = engine.prefill(candidates)
    engine.decode(state, SamplingParams(max_new_tokens=8))
    assert state.num_rows == 0
    fed = state.counters.tokens_fed
    # Every sampled token except each row's last one (or its EOS) is fed back.
    assert fed == sum(len(c.token_ids) for c in candidates) - sum(
        1 for c in candidates if c.finish_reason == "length"
    )


def test_score_continuations_matches_stepwise_logits(engine):
    prompt = engine.encode(PROMPTS[0])
    continuation = [10, 11, 12]
    (logprobs,) = engine.score_continuations([prompt], [continuation])
    expected = []
    for j, token in enumerate(continuation):
        state = engine.prefill([Candidate(0, 0, prompt + continuation[:j])])
        expected.append(state.next_logits[0, : engine.vocab_size].log_softmax(-1)[token].item())
    torch.testing.assert_close(logprobs, torch.tensor(expected), atol=1e-5, rtol=1e-5)
    full = engine.score_continuations([prompt, prompt], [continuation, []], full=True)
    assert full[0].shape == (3, engine.vocab_size) and full[1].shape[0] == 0


def test_prompt_longer_than_context_names_both_lengths(engine):
    too_long = [5] * 300  # tiny model context: 256
    with pytest.raises(ContextLengthError, match=r"300 tokens.*256"):
        engine.prefill([Candidate(0, 0, too_long)])


def test_sampling_needs_a_generator(engine):
    state = engine.prefill(_candidates(engine, PROMPTS[:1]))
    with pytest.raises(InvalidInputError, match="generator"):
        engine.sample(state, SamplingParams(temperature=1.0))


def test_engine_calls_raise_no_deprecation(engine):
    # transformers 5.24 renamed the KV-cache keyword `past_key_values` → `cache`: the
    # old name warns (FutureWarning) on forward calls, reading `out.past_key_values`
    # logs a deprecation. Every engine primitive must use the current names.
    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()  # the log line is emitted once per process
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    library_logger = hf_logging.get_logger()  # "transformers" (it does not propagate)
    library_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            params = SamplingParams(temperature=0.8, max_new_tokens=6)
            state = engine.prefill(_candidates(engine, PROMPTS, seed=1))
            engine.decode(state, params, max_steps=3)
            engine.feed(state, [[5, 6]] * state.num_rows)
            engine.rollback(state, [1] * state.num_rows)
            engine.select(state, [0])
            engine.score_continuations([engine.encode(PROMPTS[0])], [[5, 6, 7]])
    finally:
        library_logger.removeHandler(handler)
    deprecations = [
        f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
        for w in caught
        if issubclass(w.category, DeprecationWarning | FutureWarning)
    ]
    assert deprecations == []
    logged = [r.getMessage() for r in records if "deprecat" in r.getMessage().lower()]
    assert logged == []


def test_forward_passes_fill_the_cache_they_are_given(engine):
    # A cache passed under a keyword the model does not know (`cache` before 5.24)
    # lands in **kwargs and stays empty: decoding would silently run uncached.
    state = engine.prefill(_candidates(engine, PROMPTS))
    assert state.cache.get_seq_length() == state.num_slots
    engine.feed(state, [[5], [6, 7], [8]])
    assert state.cache.get_seq_length() == state.num_slots
    assert engine.cache_keyword in inspect.signature(engine.model.forward).parameters


def test_cache_keyword_follows_the_models_signature():
    class Old:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
            pass

    class New:
        def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs):
            pass

    class Renamed:
        # transformers ≥ 5.24 wraps forward in a deprecate_kwarg decorator (functools.wraps).
        def _forward(self, input_ids=None, cache=None, **kwargs):
            pass

        @functools.wraps(_forward)
        def forward(self, *args, **kwargs):
            pass

    class Opaque:
        def forward(self, *args, **kwargs):
            pass

    from transformers.modeling_outputs import CausalLMOutputWithPast

    installed = (
        "cache"
        if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)}
        else "past_key_values"
    )
    assert cache_keyword(Old()) == "past_key_values"
    assert cache_keyword(New()) == "cache"
    assert cache_keyword(Renamed()) == "cache"
    assert cache_keyword(Opaque()) == installed


@pytest.mark.parametrize("params", [SamplingParams(temperature=0.7, top_k=3), SamplingParams()])
def test_step_records_each_tokens_untempered_logprob(engine, params):
    # Whatever the sampling parameters, the recorded log-probability is the model's own
    # (temperature 1, no truncation): what a likelihood reward over these weights reads.
    prompt = engine.encode("the cat sat on")
    candidates = [
        Candidate(request=0, index=i, prompt_ids=prompt, generator=make_generator(i))
        for i in range(3)
    ]
    engine.decode(engine.prefill(candidates), dataclasses.replace(params, max_new_tokens=6))
    for candidate in candidates:
        assert len(candidate.token_logprobs) == len(candidate.token_ids) > 0
        expected = engine.score_continuations([prompt], [candidate.token_ids])[0]
        assert candidate.token_logprobs == pytest.approx(expected.tolist(), abs=1e-5)
    # Tokens appended without sampling (accepted draft tokens) are not recorded.
    engine.append(candidates[0], [5], SamplingParams(max_new_tokens=50))
    assert len(candidates[0].token_logprobs) < len(candidates[0].token_ids)


def test_a_shared_prompt_is_prefilled_once_and_rows_decode_as_alone(engine):
    prompt = engine.encode("the cat sat on")
    other = engine.encode("why is the sun red")
    seeds = [0, 1, 2, 9]
    prompts = [prompt, prompt, prompt, other]

    def candidates():
        return [
            Candidate(request=int(p is other), index=i, prompt_ids=p, generator=make_generator(s))
            for i, (p, s) in enumerate(zip(prompts, seeds, strict=True))
        ]

    shared = candidates()
    state = engine.prefill(shared)
    # One prefill row per distinct prompt: the tokens of two prompts, not of four.
    assert state.counters.prefill_tokens == len(prompt) + len(other)
    assert state.candidates == shared and state.num_rows == 4
    alone = engine.prefill([Candidate(request=0, index=0, prompt_ids=prompt)])
    for row in range(3):
        torch.testing.assert_close(state.next_logits[row], alone.next_logits[0], atol=1e-5, rtol=0)
    params = SamplingParams(max_new_tokens=6, temperature=1.0)
    engine.decode(state, params)
    for candidate, single in zip(shared, candidates(), strict=True):
        engine.decode(engine.prefill([single]), params)
        assert candidate.token_ids == single.token_ids
