"""The parts strategies share: checks, batches, pools, choosing, results, streaming."""

from __future__ import annotations

import itertools
import random

import pytest
from tiny import tiny_tokenizer

from langchain_aligned.decoding import (
    Candidate,
    DecodeCancelled,
    Hooks,
    Request,
    Result,
    SamplingParams,
)
from langchain_aligned.decoding.base import EVENT_DONE
from langchain_aligned.decoding.stats import AlignmentStats
from langchain_aligned.decoding.strategy_parts import (
    GREEDY_NOTE,
    Batch,
    ReplyStreams,
    batches_by_params,
    best_result,
    check_cancelled,
    check_gamma,
    check_positive_int,
    choose_best,
    decode_batches,
    new_pool,
    result_of,
)
from langchain_aligned.decoding.text import StopMatcher, decode
from langchain_aligned.errors import AlignedError, InvalidInputError

BAD_COUNTS = [0, -1, 2.5, True, False, "3", None, float("nan")]


def _request(params=None, seed=0, prompt=(5, 6, 7)):
    return Request(
        conversation="hello", prompt_ids=list(prompt), params=params or SamplingParams(), seed=seed
    )


@pytest.mark.parametrize("value", [1, 2, 17, 10**9])
def test_counts_of_at_least_one_pass_every_check(value):
    check_positive_int("S", "n", value)
    check_positive_int("S", "n", value, optional=True)
    check_gamma("S", value)


@pytest.mark.parametrize("value", BAD_COUNTS)
def test_a_bad_count_names_the_strategy_the_field_and_the_value(value):
    with pytest.raises(InvalidInputError) as info:
        check_positive_int("BestOfN", "max_batch_size", value)
    assert isinstance(info.value, AlignedError)
    assert f"BestOfN(max_batch_size={value!r})" in str(info.value)
    with pytest.raises(InvalidInputError) as info:
        check_gamma("SpeculativeSampling", value)
    assert f"SpeculativeSampling(num_draft_tokens={value!r})" in str(info.value)
    assert "γ" in str(info.value)


def test_optional_counts_accept_none_only():
    check_positive_int("S", "n", None, optional=True)
    for value in BAD_COUNTS:
        if value is not None:
            with pytest.raises(InvalidInputError):
                check_positive_int("S", "n", value, optional=True)


def test_check_cancelled_raises_exactly_when_the_caller_asks():
    check_cancelled(Hooks())
    answers = iter([False, False, True])
    hooks = Hooks(should_stop=lambda: next(answers))
    check_cancelled(hooks)
    check_cancelled(hooks)
    with pytest.raises(DecodeCancelled):
        check_cancelled(hooks)


# Which sampling parameters each request of a call has: one letter per request.
PATTERNS = ["a", "aaa", "ab", "ba", "abab", "aabca", "cbacb", "abcabcab"]
KINDS = {k: SamplingParams(temperature=t) for k, t in zip("abc", (0, 0.5, 1.0), strict=True)}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_batches_partition_the_requests_by_sampling_parameters(pattern):
    requests = [_request(KINDS[k]) for k in pattern]
    batches = batches_by_params(requests)
    # Every request is in exactly one batch, members in request order, and a batch
    # holds exactly the requests with its parameters.
    members = [i for batch in batches.values() for i in batch]
    assert sorted(members) == list(range(len(requests)))
    for params, batch in batches.items():
        assert batch == sorted(batch)
        assert batch == [i for i, r in enumerate(requests) if r.params == params]
    # Batches come in the order their first request does.
    firsts = [batch[0] for batch in batches.values()]
    assert firsts == sorted(firsts)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_decode_batches_returns_results_in_request_order(pattern):
    requests = [_request(KINDS[k], seed=i) for i, k in enumerate(pattern)]
    seen: list[Batch] = []

    def decode_batch(batch):
        seen.append(batch)
        assert all(batch.requests[i].params == batch.params for i in batch.members)
        # Each result names the request it belongs to, through its seed.
        return [
            Result(str(batch.requests[i].seed), [], "stop", AlignmentStats(strategy="t"))
            for i in batch.members
        ]

    results = decode_batches(object(), requests, None, Hooks(), decode_batch)
    assert [r.text for r in results] == [str(r.seed) for r in requests]
    # One batch per distinct parameters, each with its own id and fresh counters.
    assert len(seen) == len({r.params for r in requests})
    assert len({batch.id for batch in seen}) == len(seen)
    assert len({id(batch.counters) for batch in seen}) == len(seen)
    assert all(batch.seconds() >= 0 for batch in seen)


@pytest.mark.parametrize(("n", "temperature"), list(itertools.product([1, 3, 8], [0, 0.8])))
def test_new_pool_starts_n_candidates_or_one_when_greedy(n, temperature):
    request = _request(SamplingParams(temperature=temperature), seed=11)
    stats, candidates = new_pool("best_of_n", request, 4, n)
    count = 1 if temperature == 0 else n
    assert len(candidates) == stats.num_candidates == count
    assert [c.index for c in candidates] == list(range(count))
    assert all(c.request == 4 and c.prompt_ids == request.prompt_ids for c in candidates)
    # Each candidate owns its prompt ids and, unless greedy, its own generator.
    assert len({id(c.prompt_ids) for c in candidates} | {id(request.prompt_ids)}) == count + 1
    assert all((c.generator is None) == (temperature == 0) for c in candidates)
    assert stats.strategy == "best_of_n" and stats.seed == 11 and stats.prompt_tokens == 3
    assert stats.note == (GREEDY_NOTE if temperature == 0 and n > 1 else None)


@pytest.mark.parametrize("seed", range(10))
def test_choose_best_is_the_first_highest_reward(seed):
    rng = random.Random(seed)
    rewards = [rng.choice([0.0, 0.5, 1.0, -2.0]) for _ in range(rng.randint(1, 8))]
    best = choose_best(rewards)
    assert rewards[best] == max(rewards)
    assert all(rewards[i] < rewards[best] for i in range(best))


def _finished(index, words, reason="stop"):
    candidate = Candidate(request=2, index=index, prompt_ids=[5])
    candidate.token_ids = tiny_tokenizer().encode(words, add_special_tokens=False)
    candidate.text, candidate.finish_reason = words, reason
    return candidate


def test_result_of_copies_the_reply_and_defaults_an_unfinished_one():
    candidate = _finished(0, "the cat sat")
    stats = AlignmentStats(strategy="t")
    result = result_of(candidate, stats)
    assert (result.text, result.finish_reason, result.stats) == ("the cat sat", "stop", stats)
    assert result.token_ids == candidate.token_ids and result.token_ids is not candidate.token_ids
    bare = result_of(Candidate(request=0, index=0, prompt_ids=[1]), stats)
    assert (bare.text, bare.token_ids, bare.finish_reason) == ("", [], "length")


@pytest.mark.parametrize("seed", range(5))
def test_best_result_reports_rewards_by_candidate_index_in_any_order(seed):
    rng = random.Random(seed)
    texts = ["the cat", "a dog sat", "hello world", "yes", "no no"]
    rewards = [float(rng.randint(0, 3)) for _ in texts]
    for order in (list(range(len(texts))), rng.sample(range(len(texts)), len(texts))):
        candidates = [_finished(i, texts[i]) for i in order]
        given = [rewards[i] for i in order]
        streamed, events = [], []
        hooks = Hooks(
            on_text=lambda i, d, streamed=streamed: streamed.append((i, d)),
            on_event=lambda name, data, events=events: events.append((name, data)),
        )
        stats = AlignmentStats(strategy="t")
        result = best_result(candidates, given, stats, 2, hooks)
        # The winner is the first highest reward in the order given, streamed whole
        # once; the statistics list the rewards in candidate-index order.
        assert result.text == texts[order[choose_best(given)]]
        assert streamed == [(2, result.text)]
        assert [name for name, _ in events] == [EVENT_DONE]
        assert events[0][1]["request"] == 2 and events[0][1]["stats"]["reward"] == max(rewards)
        assert stats.candidate_rewards == rewards and stats.reward == max(rewards)
        assert stats.tokens_returned == len(result.token_ids)


def _final_reply(tokenizer, stop, token_ids):
    """(tokens decoded when the reply finishes, its text), as the engine finds them."""
    matcher = StopMatcher(tokenizer, stop)
    for count in range(1, len(token_ids) + 1):
        cut = matcher.check(token_ids[:count])
        if cut is not None:
            return count, cut
    return len(token_ids), decode(tokenizer, token_ids)


@pytest.mark.parametrize("stop", [(), ("sat",), ("on the",), ("t",)])
def test_reply_streams_add_up_to_each_finished_reply(stop):
    tokenizer = tiny_tokenizer()
    words = ["the cat sat on the mat", "hello world on the dog", "yes"]
    targets = [tokenizer.encode(w, add_special_tokens=False) for w in words]
    finals = [_final_reply(tokenizer, stop, ids) for ids in targets]
    candidates = [Candidate(request=i, index=0, prompt_ids=[5]) for i in range(len(words))]
    pieces = {i: "" for i in range(len(words))}
    streams = ReplyStreams(
        Hooks(on_text=lambda i, d: pieces.__setitem__(i, pieces[i] + d)),
        tokenizer,
        stop,
        candidates[:2],  # the third candidate is not streamed
    )
    assert streams
    alive = list(candidates)
    while alive:
        # One step: every alive row gets its next token; rows that end finish.
        rows, ended = list(alive), []
        for candidate in rows:
            i = candidate.request
            candidate.token_ids.append(targets[i][len(candidate.token_ids)])
            if len(candidate.token_ids) == finals[i][0]:
                candidate.text, candidate.finish_reason = finals[i][1], "stop"
                ended.append(candidate)
        alive = [c for c in alive if c not in ended]
        streams.send_step(rows, ended)
        # Streamed text never shows what the finished reply will not contain.
        for i in (0, 1):
            assert finals[i][1].startswith(pieces[i]), (pieces[i], finals[i][1])
    assert [pieces[0], pieces[1]] == [finals[0][1], finals[1][1]]
    assert pieces[2] == ""


def test_reply_streams_stay_silent_without_on_text():
    candidate = _finished(0, "the cat")
    streams = ReplyStreams(Hooks(), tiny_tokenizer(), (), [candidate])
    assert not streams
    streams.send(candidate, True)  # nothing to send to, nothing raised
