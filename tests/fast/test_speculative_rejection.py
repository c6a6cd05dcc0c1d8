"""Speculative Rejection: α=0 ≡ Best-of-N, fewer tokens for α>0, no re-prefill."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from scorers import BatchCountingScorer, CountingScorer, RaisingScorer
from tiny import tiny_pair

import rewards
from langchain_aligned import BestOfN, Hooks, SpeculativeRejection, generate
from langchain_aligned.decoding import DecodingEngine
from langchain_aligned.engines.base import DecodeCancelled
from langchain_aligned.errors import InvalidInputError, RewardError
from langchain_aligned.models import load_model, render_chat

PAIR = tiny_pair(0)
PROMPTS = ["why is the sun red", "hello world", "what is a good answer"]
COMMON = dict(max_new_tokens=24, top_k=20)


def _run(strategy, prompt, seed, scorer=None, **kwargs):
    return generate(
        PAIR,
        prompt,
        strategy=strategy,
        reward=scorer or CountingScorer(),
        seed=seed,
        **{**COMMON, **kwargs},
    )[0]


@pytest.mark.parametrize("seed", range(4))
def test_alpha_zero_equals_best_of_n_under_one_seed(seed):
    for prompt in PROMPTS:
        spr = _run(SpeculativeRejection(n=6, rejection_rate=0.0, decision_tokens=3), prompt, seed)
        bon = _run(BestOfN(n=6), prompt, seed)
        assert spr.token_ids == bon.token_ids and spr.text == bon.text
        assert spr.stats.reward == bon.stats.reward
        assert spr.stats.candidate_rewards == bon.stats.candidate_rewards
        assert spr.stats.tokens_generated == bon.stats.tokens_generated


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.7])
def test_rejection_decodes_fewer_tokens_with_one_prefill(alpha):
    spr_tokens = bon_tokens = 0
    for seed, prompt in enumerate(PROMPTS):
        spr = _run(SpeculativeRejection(n=8, rejection_rate=alpha, decision_tokens=4), prompt, seed)
        bon = _run(BestOfN(n=8), prompt, seed)
        spr_tokens += spr.stats.tokens_generated
        bon_tokens += bon.stats.tokens_generated
        assert spr.stats.prefill_passes == 1  # survivors are selected, never re-prefilled
        assert spr.stats.tokens_generated <= bon.stats.tokens_generated
    assert spr_tokens < bon_tokens


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.7])
def test_requests_of_one_call_share_passes_and_each_pool_runs_as_if_alone(alpha):
    # Prompts of different lengths: each pool's decision points follow its own
    # memory rule (its own prompt length), so sharing the batch changes nothing.
    prompts = [*PROMPTS, "a much longer prompt than the others, to shift the schedule"]
    strategy = SpeculativeRejection(n=5, rejection_rate=alpha, decision_tokens=3)
    together = generate(PAIR, prompts, strategy=strategy, reward=CountingScorer(), seed=7, **COMMON)
    for prompt, shared in zip(prompts, together, strict=True):
        alone = _run(strategy, prompt, 7)
        assert shared.token_ids == alone.token_ids and shared.text == alone.text
        assert shared.stats.candidate_rewards == alone.stats.candidate_rewards
        assert shared.stats.rounds == alone.stats.rounds
        assert shared.stats.tokens_generated == alone.stats.tokens_generated
        assert shared.stats.reward_calls == alone.stats.reward_calls
        # One prefill for all pools; the batch held every candidate of every request.
        assert shared.stats.prefill_passes == 1
        assert shared.stats.peak_batch_size == 5 * len(prompts)


def test_survivors_are_exactly_the_best_of_n_candidates():
    # Per-candidate generators: a candidate that survives every round produces the
    # same reply as the same-index candidate of Best-of-N under one seed.
    scorer = CountingScorer()
    spr = _run(
        SpeculativeRejection(n=8, rejection_rate=0.5, decision_tokens=4), PROMPTS[0], 3, scorer
    )
    bon_scorer = CountingScorer()
    _run(BestOfN(n=8), PROMPTS[0], 3, bon_scorer)
    assert spr.text in bon_scorer.calls[0]


def test_round_statistics_add_up_and_finished_are_never_rejected():
    events = []
    spr = _run(
        SpeculativeRejection(n=8, rejection_rate=0.5, decision_tokens=3),
        PROMPTS[0],
        1,
        hooks=Hooks(on_event=lambda name, data: events.append((name, data))),
    )
    rounds = spr.stats.rounds
    assert rounds, "expected at least one decision point"
    pool = 8
    for r in rounds:
        assert r.alive >= r.rejected
        # keep = ⌈(1 − α)·|pool|⌉ of the pool; rejections come only from alive ones.
        assert r.rejected <= pool - math.ceil(0.5 * pool)
        pool -= r.rejected
        assert r.threshold is None or r.best_reward >= r.threshold
    assert [n for n, _ in events].count("aligned.round") == len(rounds)
    assert sum(r.tokens_decoded for r in rounds) <= spr.stats.tokens_generated
    assert len(spr.stats.candidate_rewards) == 8 - sum(r.rejected for r in rounds)


def _keep(alpha, size):
    """⌈(1 − α)·|pool|⌉ in exact arithmetic (0.3·10 is 3, not 3.0000000000000004)."""
    return math.ceil((1 - Fraction(str(alpha))) * size)


def _check_schedule(stats, n, alpha, budget):
    """Every round's decision token τ is exactly the one the schedule gives.

    The memory rule: decide when alive rows × (prompt + tokens decoded) would exceed
    the budget, i.e. d + max(1, budget // alive − (prompt + d)) after a round at d
    (the first at max(1, budget // n − prompt)). Back-off: after a round that rejected
    less than its quota |pool| − ⌈(1 − α)·|pool|⌉ (finished candidates ranked at the
    bottom), the next decision comes no earlier than 2·d. A round is only held while
    it can reject something (quota ≥ 1).
    """
    prompt = stats.prompt_tokens
    expected = max(1, budget // n - prompt)
    pool, short, previous = n, False, None
    for r in stats.rounds:
        if previous is not None:
            d = previous.decision_token
            expected = d + max(1, budget // r.alive - (prompt + d))
            if short:
                expected = max(expected, 2 * d)
        assert r.decision_token == expected, (r.round, [x.decision_token for x in stats.rounds])
        quota = pool - _keep(alpha, pool)
        assert quota >= 1, f"round {r.round} could not reject anything (pool {pool})"
        short = r.rejected < quota
        pool -= r.rejected
        previous = r


def test_decision_points_follow_the_memory_rule():
    # With α = 0.5 the survivors decode until the cache budget fills again, so each
    # decision comes at roughly twice the previous one's length; every round's τ is
    # the rule's, not just "later than the first".
    strategy = SpeculativeRejection(n=8, rejection_rate=0.5, decision_tokens=4)
    spr = _run(strategy, PROMPTS[1], 0, max_new_tokens=40)
    rounds = spr.stats.rounds
    assert len(rounds) >= 2
    assert rounds[0].decision_token == 4
    assert rounds[1].decision_token > 2 * rounds[0].decision_token
    _check_schedule(spr.stats, 8, 0.5, 8 * (spr.stats.prompt_tokens + 4))


def test_memory_budget_mode_decides_when_the_budget_is_exceeded():
    budget = 8 * 12
    spr = _run(
        SpeculativeRejection(n=8, rejection_rate=0.5, memory_budget_slots=budget), PROMPTS[0], 0
    )
    assert len(spr.stats.rounds) >= 2
    _check_schedule(spr.stats, 8, 0.5, budget)
    # Every decision comes before alive rows × slots pass the budget (one row per
    # candidate at most over it: the step that reaches it).
    assert spr.stats.peak_cache_slots <= budget + 8


def _full_rounds(n, alpha):
    """L(n): how many rounds that each reject their whole quota fit, starting at n."""
    count, pool = 0, n
    while _keep(alpha, pool) < pool:
        count, pool = count + 1, _keep(alpha, pool)
    return count


@pytest.mark.parametrize("alpha", [0.05, 0.2, 0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("n", [2, 3, 4, 8, 16])
def test_rounds_stay_logarithmic_whatever_alpha_and_n(n, alpha):
    # The bound: the pool (alive + finished) shrinks only by rejection, and a round is
    # held only while ⌈(1 − α)·|pool|⌉ < |pool|.
    # * A round that rejects its whole quota maps |pool| to ⌈(1 − α)·|pool|⌉; rounds
    #   that reject less only shrink it less, and the chain length L is monotone in
    #   |pool|, so there are at most L(n) such rounds — O(log n / −log(1 − α)).
    # * A round that rejects less than its quota puts the next decision at ≥ 2·d, and
    #   decisions strictly increase within 1 ≤ d < max_new_tokens, so there are at
    #   most ⌊log2(max_new_tokens − 1)⌋ + 1 of them.
    max_new_tokens = 24
    bound = _full_rounds(n, alpha) + math.floor(math.log2(max_new_tokens - 1)) + 1
    events = []
    strategy = SpeculativeRejection(n=n, rejection_rate=alpha, decision_tokens=2)
    spr = _run(
        strategy,
        PROMPTS[0],
        n,
        max_new_tokens=max_new_tokens,
        hooks=Hooks(on_event=lambda name, data: events.append((name, data))),
    )
    stats = spr.stats
    rounds = stats.rounds
    scored = [data for name, data in events if name == "aligned.scored"]
    partial_calls = [data for data in scored if data["partial"]]
    final_calls = [data for data in scored if not data["partial"]]
    assert [d["round"] for d in partial_calls] == [r.round for r in rounds]
    assert len(final_calls) <= 1
    assert stats.reward_calls == len(rounds) + len(final_calls)
    pool = n
    for r, call in zip(rounds, partial_calls, strict=True):
        # The call's last entries are the alive candidates' partial scores.
        alive = pool - r.finished
        partial = sorted(call["rewards"][-alive:], reverse=True)
        if r.rejected == 0:
            assert r.threshold is None, f"round {r.round} rejected nothing"
        else:
            # The lowest partial reward that survived (the rejected are the lowest).
            assert r.threshold == partial[alive - r.rejected - 1]
        pool -= r.rejected
    assert len(rounds) <= bound, [(r.decision_token, r.rejected) for r in rounds]
    _check_schedule(stats, n, alpha, n * (stats.prompt_tokens + 2))


@pytest.mark.parametrize(("n", "alpha"), [(4, 0.2), (3, 0.3), (2, 0.3), (16, 0.05)])
def test_a_pool_that_can_never_reject_is_best_of_n(n, alpha):
    # ⌈(1 − α)·n⌉ = n: no round could ever reject anything (the pool only shrinks by
    # rejection), so none is held: one reward call, exactly Best-of-N's result.
    for seed, prompt in enumerate(PROMPTS):
        spr = _run(SpeculativeRejection(n=n, rejection_rate=alpha, decision_tokens=2), prompt, seed)
        bon = _run(BestOfN(n=n), prompt, seed)
        assert spr.stats.rounds == []
        assert spr.stats.reward_calls == 1
        assert spr.token_ids == bon.token_ids and spr.text == bon.text
        assert spr.stats.reward == bon.stats.reward
        assert spr.stats.candidate_rewards == bon.stats.candidate_rewards
        assert spr.stats.tokens_generated == bon.stats.tokens_generated


class RecordingScorer(rewards.RewardScorer):
    """A real scorer that records the texts of every call and delegates to ``inner``."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []
        self.comparable_across_calls = getattr(inner, "comparable_across_calls", True)

    @property
    def name(self):
        return f"recording({self.inner.name})"

    def _score(self, conversation, completions):
        self.calls.append(list(completions))
        return self.inner.score(conversation, completions)


def _counting(text):
    return CountingScorer().score("", [text])[0]


def _brevity(conversation, text):
    """Fewer words is better (then more characters): finished short replies win."""
    return -len(text.split()) + 0.01 * len(text)


def _run_recorded(scorer, seed, n):
    events = []
    spr = _run(
        SpeculativeRejection(n=n, rejection_rate=0.5, decision_tokens=3),
        PROMPTS[0],
        seed,
        scorer,
        hooks=Hooks(on_event=lambda name, data: events.append((name, data))),
    )
    scored = [data for name, data in events if name == "aligned.scored"]
    assert len(scored) == len(scorer.calls) == spr.stats.reward_calls
    # Which texts of each call are finished candidates' replies: all of a final
    # call's; of a round's call, all but the alive candidates' texts (the last ones).
    finished, pool, partial_counts = set(), n, []
    for texts, data in zip(scorer.calls, scored, strict=True):
        if data["partial"]:
            r = spr.stats.rounds[data["round"] - 1]
            alive = pool - r.finished
            partial_counts.append(alive)
            finished.update(texts[: len(texts) - alive])
            pool -= r.rejected
        else:
            finished.update(texts)
    return spr, scored, finished, partial_counts


@pytest.mark.parametrize("normalization", ["rank", "zscore"])
def test_within_call_normalised_reward_returns_the_best_finished_candidate(normalization):
    # Rank / z-score normalisation makes scores comparable only within one call: every
    # round ranks the whole pool from one call and one final call scores every
    # finished candidate, so the reply is the best finished one by the underlying
    # (deterministic, per-text) score.
    runs, wrong = [], []
    underlying = rewards.FunctionScorer(_brevity, per_item=True)
    for seed in range(20):
        inner = rewards.WeightedScorer({underlying: 1.0}, normalization=normalization)
        scorer = RecordingScorer(inner)
        assert scorer.comparable_across_calls is False
        spr, scored, finished, _ = _run_recorded(scorer, seed, 16)
        runs.append((spr, scorer, scored, finished))
        if _brevity("", spr.text) != max(_brevity("", t) for t in finished):
            wrong.append(seed)
    assert wrong == [], f"not the best finished candidate for seeds {wrong}"
    for spr, scorer, scored, finished in runs:
        # One call per round holds the whole pool (finished candidates re-scored).
        pool = 16
        for r, texts in zip(spr.stats.rounds, scorer.calls, strict=False):
            assert len(texts) == pool
            pool -= r.rejected
        # The last call scores every finished candidate; the reported rewards are its.
        final = scored[-1]
        assert not final["partial"] and set(scorer.calls[-1]) == finished
        assert len(scorer.calls[-1]) == len(spr.stats.candidate_rewards)
        assert spr.stats.reward_calls == len(spr.stats.rounds) + 1
        assert spr.stats.candidate_rewards == final["rewards"]
        assert spr.stats.reward == max(final["rewards"])


def test_comparable_reward_scores_each_finished_candidate_once():
    # The default (comparable across calls): finished candidates are scored in one
    # call only — the round that first sees them, or the final call.
    for seed in range(4):
        scorer = RecordingScorer(rewards.FunctionScorer(CountingScorer().score))
        spr, _, finished, partial_counts = _run_recorded(scorer, seed, 8)
        assert spr.stats.rounds
        assert _counting(spr.text) == max(_counting(t) for t in finished)
        final_rewards = spr.stats.reward_texts_scored - sum(partial_counts)
        assert final_rewards == len(spr.stats.candidate_rewards)


def test_repeated_runs_identical_and_single_survivor_streams_live():
    a = _run(SpeculativeRejection(n=4, rejection_rate=0.7, decision_tokens=2), PROMPTS[2], 7)
    b = _run(SpeculativeRejection(n=4, rejection_rate=0.7, decision_tokens=2), PROMPTS[2], 7)
    assert a.token_ids == b.token_ids and a.stats.candidate_rewards == b.stats.candidate_rewards
    pieces = []
    c = _run(
        SpeculativeRejection(n=4, rejection_rate=0.7, decision_tokens=2),
        PROMPTS[2],
        7,
        hooks=Hooks(on_text=lambda i, d: pieces.append(d)),
    )
    assert "".join(pieces) == c.text == a.text
    # Live: the survivor's text came token by token after the last round, not in one
    # piece once the pool was done.
    assert c.stats.rounds and len(pieces) > 1


@pytest.mark.parametrize(
    "strategy", [SpeculativeRejection(n=4, decision_tokens=3), BestOfN(n=4)], ids=str
)
def test_cancellation_stops_decoding_and_leaves_the_model_usable(strategy):
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 5

    with pytest.raises(DecodeCancelled):
        _run(strategy, PROMPTS[0], 0, hooks=Hooks(should_stop=should_stop))
    assert len(polls) == 6  # polled before every step, stopped at the sixth
    assert _run(strategy, PROMPTS[0], 0).token_ids


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"n": 0}, "n=0"),
        ({"rejection_rate": 1.0}, "rejection_rate=1.0"),
        ({"rejection_rate": -0.1}, "-0.1"),
        ({"decision_tokens": 0}, "decision_tokens=0"),
    ],
)
def test_bad_config(kwargs, needle):
    with pytest.raises(InvalidInputError, match=needle):
        SpeculativeRejection(**kwargs)


def test_failing_reward_is_named_and_model_stays_usable():
    with pytest.raises(RewardError, match="raising"):
        _run(SpeculativeRejection(n=4, decision_tokens=2), PROMPTS[0], 0, RaisingScorer())
    assert _run(SpeculativeRejection(n=4, decision_tokens=2), PROMPTS[0], 0).text is not None


def test_decode_time_excludes_scoring_and_is_shared_equally():
    # Several requests decode together; each gets an equal share of the decode time,
    # which excludes every reward call (slow here on purpose) of every pool.
    import time

    class SlowScorer(CountingScorer):
        def score(self, conversation, completions):
            time.sleep(0.05)
            return super().score(conversation, completions)

    start = time.perf_counter()
    results = generate(
        PAIR,
        ["why is the sun red", "hello", "what"],
        strategy=SpeculativeRejection(n=4, decision_tokens=2),
        reward=SlowScorer(),
        seed=0,
        max_new_tokens=8,
    )
    elapsed = time.perf_counter() - start
    shares = [r.stats.generation_seconds for r in results]
    assert shares[0] > 0 and shares == [shares[0]] * 3
    scoring = sum(r.stats.scoring_seconds for r in results)
    assert scoring >= 0.05 * sum(r.stats.reward_calls for r in results)
    assert sum(shares) + scoring <= elapsed


@pytest.mark.parametrize("strategy", [SpeculativeRejection(n=8, decision_tokens=3), BestOfN(n=4)])
def test_self_reward_reads_recorded_logprobs_instead_of_running_the_model(strategy):
    # The paper's self-reward: likelihood under the policy's own weights. It costs no
    # forward pass beyond decoding, and the reply's reward is the likelihood of its
    # tokens. The same reward over an identical copy of the weights (another model
    # object, so nothing recorded applies) must run the model: the counter can fail.
    import copy

    policy = tiny_pair(0)
    twin = (copy.deepcopy(policy[0]), policy[1])

    def counter(fed, name):
        def count(_module, args, kwargs, _output):
            ids = kwargs.get("input_ids", args[0] if args else None)
            fed[name] += ids.numel()  # tokens fed: [rows, tokens]

        return count

    outcomes = []
    for scorer_model in (policy, twin):
        fed = {"policy": 0, "twin": 0}
        hooks = [
            policy[0].register_forward_hook(counter(fed, "policy"), with_kwargs=True),
            twin[0].register_forward_hook(counter(fed, "twin"), with_kwargs=True),
        ]
        try:
            (result,) = generate(
                policy,
                ["why is the sun red"],
                strategy=strategy,
                reward=rewards.LikelihoodScorer(scorer_model),
                max_new_tokens=10,
                temperature=1.0,
                seed=4,
            )
        finally:
            for hook in hooks:
                hook.remove()
        outcomes.append((result, fed))
    (recorded, recorded_fed), (_, recomputed_fed) = outcomes
    # Decoding feeds the same tokens in both runs (recomputed_fed["policy"]).
    assert recorded_fed == {"policy": recomputed_fed["policy"], "twin": 0}
    assert recomputed_fed["twin"] > 0
    handle = load_model(policy)
    engine = DecodingEngine(handle)
    prompt = engine.encode(render_chat(handle, [{"role": "user", "content": "why is the sun red"}]))
    expected = engine.score_continuations([prompt], [recorded.token_ids])[0].mean().item()
    assert recorded.stats.reward == pytest.approx(expected, abs=1e-5)


def test_pools_due_at_one_step_share_one_reward_call():
    # Three prompts decoded together: each round step scores every pool due then in
    # one score_batch call (one item per pool), and the final scoring too, while each
    # pool's reply, rewards and rounds stay exactly those it gets alone.
    strategy = SpeculativeRejection(n=5, rejection_rate=0.5, decision_tokens=3)
    scorer = BatchCountingScorer()
    together = generate(PAIR, PROMPTS, strategy=strategy, reward=scorer, seed=7, **COMMON)
    for prompt, shared in zip(PROMPTS, together, strict=True):
        alone = _run(strategy, prompt, 7)
        assert shared.token_ids == alone.token_ids
        assert shared.stats.candidate_rewards == alone.stats.candidate_rewards
        assert shared.stats.rounds == alone.stats.rounds
        assert shared.stats.reward_calls == alone.stats.reward_calls
    # Every pool's call is an item of some batch call...
    assert sum(scorer.batches) == sum(r.stats.reward_calls for r in together)
    # ...and the pools' calls were grouped: at least the first round (τ = 3 for all
    # three pools) and the final scoring hold several pools.
    assert len(scorer.batches) < sum(r.stats.reward_calls for r in together)
    assert scorer.batches[0] == len(PROMPTS)


def test_a_budget_that_cannot_hold_the_prompts_is_refused_before_decoding():
    prompt_tokens = _run(SpeculativeRejection(n=2), PROMPTS[0], 0).stats.prompt_tokens
    smallest = 8 * (prompt_tokens + 1)
    assert SpeculativeRejection(n=8).smallest_budget_slots(prompt_tokens) == smallest
    with pytest.raises(InvalidInputError, match=rf"memory_budget_slots={smallest - 1}\).*n=8"):
        _run(SpeculativeRejection(n=8, memory_budget_slots=smallest - 1), PROMPTS[0], 0)
    (result,) = [_run(SpeculativeRejection(n=8, memory_budget_slots=smallest), PROMPTS[0], 0)]
    assert result.stats.rounds  # the boundary decodes: a round after the first token


def test_greedy_decoding_is_held_to_the_budget_of_its_one_candidate():
    # Defect 6 of issue 28: temperature 0 decodes one candidate, but the budget check
    # asked for n candidates' prompts and refused a budget that one fits.
    prompt_tokens = _run(SpeculativeRejection(n=2), PROMPTS[0], 0).stats.prompt_tokens
    strategy = SpeculativeRejection(n=16, memory_budget_slots=prompt_tokens + 1)
    assert strategy.smallest_budget_slots(prompt_tokens, greedy=True) == prompt_tokens + 1
    greedy = _run(strategy, PROMPTS[0], 0, temperature=0.0)
    assert greedy.stats.num_candidates == 1 and greedy.token_ids
    # The same budget still refuses the 16 sampled candidates, naming both counts.
    with pytest.raises(
        InvalidInputError, match=r"cannot hold the 16 candidates it decodes \(n=16\)"
    ):
        _run(strategy, PROMPTS[0], 0)
    with pytest.raises(InvalidInputError, match=r"cannot hold the 1 candidates it decodes"):
        _run(
            SpeculativeRejection(n=16, memory_budget_slots=prompt_tokens),
            PROMPTS[0],
            0,
            temperature=0.0,
        )


class LengthPenalty:
    """Reward = −(characters): every round's best partial reward falls as replies grow."""

    name = "length-penalty"

    def score(self, conversation, completions):
        return [-float(len(text)) for text in completions]


@pytest.mark.parametrize("seed", range(3))
def test_best_reward_is_the_best_seen_so_far(seed):
    # Defect 5 of issue 28: best_reward was each round's own maximum (−5, −34, −63 under
    # a length penalty) while documented as the best seen so far.
    scored: dict[int, list[float]] = {}  # round number -> the rewards its call gave
    hooks = Hooks(
        on_event=lambda name, data: (
            scored.setdefault(data["round"], data["rewards"])
            if name == "aligned.scored" and data["partial"]
            else None
        )
    )
    strategy = SpeculativeRejection(n=8, rejection_rate=0.5, decision_tokens=2)
    (result,) = generate(
        PAIR,
        PROMPTS[0],
        strategy=strategy,
        reward=LengthPenalty(),
        seed=seed,
        hooks=hooks,
        **{**COMMON, "max_new_tokens": 40},
    )
    rounds = result.stats.rounds
    assert len(rounds) >= 2
    best = [r.best_reward for r in rounds]
    assert best == sorted(best)  # it never falls
    # ...and it is the running maximum of every reward the rounds gave.
    seen = -math.inf
    for round_stats in rounds:
        seen = max(seen, *scored[round_stats.round])
        assert round_stats.best_reward == seen
    # Under this penalty the later rounds' own maxima are lower: the case that matters.
    assert max(scored[rounds[-1].round]) < max(scored[rounds[0].round])
