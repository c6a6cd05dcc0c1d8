"""Exact laws of decoded replies, computed by enumeration, and the chi-square check.

The speculative strategies reuse KV caches, roll them back and feed tokens in chunks;
the laws here are computed the slow, obviously correct way instead: every
next-token distribution comes from a fresh forward pass over the full context
(prompt + prefix), and the algorithm's rules are applied to those distributions
token by token. A corrupted cache (a rejected token left in a draft's context, a
token fed twice) changes the law the strategy samples, and the chi-square test sees
it — provided the models' next-token law depends clearly on the context, which the
tiny models of :mod:`tiny` (2 layers, weights of standard deviation 0.3) do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from scipy import stats as scipy_stats
from tiny import tiny_model

from langchain_aligned.decoding import Candidate, DecodingEngine, SamplingParams
from langchain_aligned.decoding.params import warp

Law = dict[tuple[int, ...], float]
"""Probability of each reply (token ids, end-of-sequence excluded)."""


def noisy_copy(model, noise: float, seed: int, extra_vocab: int = 0):
    """A copy of a tiny model with Gaussian noise on every weight matrix.

    A draft close to the target accepts often but not always, so accepted runs,
    rejections and bonus tokens all occur. ``extra_vocab`` pads the output layer (and
    embeddings) with that many rows past the tokenizer's vocabulary, as real models
    do (their logits are random: they must never be sampled).
    """
    config = model.config
    copy = tiny_model(
        seed,
        vocab_size=config.vocab_size + extra_vocab,
        hidden_size=config.hidden_size,
        layers=config.num_hidden_layers,
    )
    generator = torch.Generator().manual_seed(seed)
    source = dict(model.named_parameters())
    with torch.no_grad():
        for name, parameter in copy.named_parameters():
            original = source[name]
            rows = original.shape[0]
            parameter[:rows].copy_(original)
            if parameter.dim() >= 2:
                parameter[:rows] += noise * torch.randn(original.shape, generator=generator)
    return copy.eval()


class ContextLaw:
    """Next-token logits of one model for one prompt, from a fresh pass per context."""

    def __init__(self, engine: DecodingEngine, prompt_ids: Sequence[int]) -> None:
        self.engine = engine
        self.prompt_ids = list(prompt_ids)

    @functools.cache  # noqa: B019 - a test helper kept for one test's lifetime
    def logits(self, prefix: tuple[int, ...]) -> torch.Tensor:
        """``[vocab]`` logits after prompt + prefix (restricted to the vocabulary)."""
        state = self.engine.prefill([Candidate(0, 0, self.prompt_ids + list(prefix))])
        return self.engine.vocab_logits(state.next_logits[0]).float()


Rule = Callable[[tuple[int, ...]], tuple[torch.Tensor, torch.Tensor]]
"""prefix -> (weights w verified against, proposal q), both ``[vocab]``."""


def product_law(distribution: Callable[[tuple[int, ...]], torch.Tensor], max_new: int, eos) -> Law:
    """The law of replies whose every token is drawn from ``distribution(prefix)``."""
    out: Law = {}

    def extend(prefix: tuple[int, ...], prob: float) -> None:
        if len(prefix) == max_new:
            out[prefix] = out.get(prefix, 0.0) + prob
            return
        dist = distribution(prefix)
        for token in torch.nonzero(dist).flatten().tolist():
            p = prob * float(dist[token])
            if token in eos:
                out[prefix] = out.get(prefix, 0.0) + p
            else:
                extend((*prefix, token), p)

    extend((), 1.0)
    return out


def speculative_law(rule: Rule, gamma: int, max_new: int, eos) -> Law:
    """The law of replies of draft-then-verify decoding, step by step.

    Each step verifies γ_r = min(γ, room − 1) draft tokens (room = tokens the reply
    can still take). At each position the draft token v is drawn from q and accepted
    with probability min(1, w(v)/q(v)) — jointly min(q, w)(v); on rejection the step
    ends with a token from norm((w − q)₊) (norm(w) when that is empty); after γ_r
    acceptances the bonus token comes from norm(w). An end-of-sequence token ends
    the reply wherever it appears.
    """
    out: Law = {}

    def emit(prefix: tuple[int, ...], token: int, prob: float) -> None:
        if token in eos:
            out[prefix] = out.get(prefix, 0.0) + prob
            return
        longer = (*prefix, token)
        if len(longer) == max_new:
            out[longer] = out.get(longer, 0.0) + prob
        else:
            start_step(longer, prob)

    def start_step(prefix: tuple[int, ...], prob: float) -> None:
        own_gamma = min(gamma, max_new - len(prefix) - 1)
        position(prefix, 0, own_gamma, prob)

    def position(prefix: tuple[int, ...], t: int, own_gamma: int, prob: float) -> None:
        w, q = rule(prefix)
        w = w.double().clamp(min=0)
        q = q.double()
        if t == own_gamma:  # all accepted: the bonus token
            bonus = w / w.sum()
            for token in torch.nonzero(bonus).flatten().tolist():
                emit(prefix, token, prob * float(bonus[token]))
            return
        accepted = torch.where(q > 0, torch.minimum(q, w), torch.zeros_like(q))
        for token in torch.nonzero(accepted).flatten().tolist():
            p = prob * float(accepted[token])
            if token in eos:
                out[prefix] = out.get(prefix, 0.0) + p
            else:
                position((*prefix, token), t + 1, own_gamma, p)
        rejected = 1.0 - float(accepted.sum())
        if rejected <= 1e-12:
            return
        residual = (w - q).clamp(min=0)
        if float(residual.sum()) <= 0:
            residual = w
        residual = residual / residual.sum()
        for token in torch.nonzero(residual).flatten().tolist():
            emit(prefix, token, prob * rejected * float(residual[token]))

    start_step((), 1.0)
    return out


def sd_rule(target: ContextLaw, draft: ContextLaw, params: SamplingParams) -> Rule:
    """Lossless speculative sampling: w = warp(target), q = warp(draft)."""
    return lambda prefix: (
        warp(target.logits(prefix), params),
        warp(draft.logits(prefix), params),
    )


def tilt_distribution(
    target: ContextLaw, aligned: ContextLaw, reference: ContextLaw, params: SamplingParams
) -> Callable[[tuple[int, ...]], torch.Tensor]:
    """p̃_w = warp(log π_ref + log π_r^draft − log π_draft), written out independently."""

    def distribution(prefix: tuple[int, ...]) -> torch.Tensor:
        tilt = (
            target.logits(prefix).log_softmax(-1)
            + aligned.logits(prefix).log_softmax(-1)
            - reference.logits(prefix).log_softmax(-1)
        )
        return warp(tilt, params)

    return distribution


def sss_rule(
    target: ContextLaw,
    aligned: ContextLaw,
    reference: ContextLaw,
    params: SamplingParams,
    variant: str,
) -> Rule:
    """SSS as documented: q = warp(π_r^draft); w = p̃_w, or Z_T·p̃_w for the paper's rule
    (Z_T = Σ_v π_ref,T·π_r,T^draft/π_draft,T, the three models at temperature T)."""
    shaped = tilt_distribution(target, aligned, reference, params)

    def rule(prefix: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        w = shaped(prefix)
        if variant == "paper":
            t = params.temperature
            mass = (
                (target.logits(prefix) / t).softmax(-1)
                * (aligned.logits(prefix) / t).softmax(-1)
                / (reference.logits(prefix) / t).softmax(-1)
            ).sum()
            w = w * mass
        return w, warp(aligned.logits(prefix), params)

    return rule


def chi_square_pvalue(replies: Sequence[Sequence[int]], law: Law) -> float:
    """Pearson's chi-square p-value of observed replies against ``law``.

    Replies outside the law's support give p = 0. Cells with an expected count under
    5 are pooled into one cell (the usual validity condition of the test).
    """
    draws = len(replies)
    counts: dict[tuple[int, ...], int] = {}
    for reply in replies:
        key = tuple(reply)
        counts[key] = counts.get(key, 0) + 1
    if any(key not in law for key in counts):
        return 0.0
    observed, expected = [], []
    pooled_observed, pooled_expected = 0, 0.0
    for key, prob in law.items():
        if prob * draws >= 5:
            observed.append(counts.get(key, 0))
            expected.append(prob * draws)
        else:
            pooled_observed += counts.get(key, 0)
            pooled_expected += prob * draws
    if pooled_expected > 0:
        observed.append(pooled_observed)
        expected.append(pooled_expected)
    total = sum(expected)
    expected = [e * draws / total for e in expected]  # float rounding of the law's sum
    return float(scipy_stats.chisquare(observed, expected).pvalue)


def total_variation(a: Law, b: Law) -> float:
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in keys)
