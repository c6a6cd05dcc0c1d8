"""Decoding: the shared engine and one module per strategy (no LangChain here).

Modules: ``engine`` (the engine seam and the batched, KV-cached decoder), ``params`` (sampling
parameters, logits to tokens), ``text`` (stop strings, streaming), ``base``
(requests, results, statistics, hooks, :class:`Strategy`), ``strategy_parts`` (what
the strategies share), one module per strategy (``sampling``, ``best_of_n``,
``speculative_rejection``, ``speculative_sampling``, ``reward_shifted_sampling``),
``drafts`` (draft models) and ``generate`` (the entry point).

Glossary
========

These terms have these meanings, and only these, throughout the package and
``docs/``. Module docstrings point here; an algorithm module defines only the symbols
and the mathematics of its paper.

Requests and replies
--------------------

* **conversation** — what a caller wants answered: a prompt string or chat messages.
  The reward scorer sees it as given.
* **request** — one conversation ready to decode (:class:`Request`): its prompt, its
  sampling parameters and its seed. A strategy returns one :class:`Result` per
  request.
* **prompt** — a request's conversation rendered by the chat template and tokenised
  (``prompt_ids``); it fills the start of the KV cache.
* **sampling parameters** — temperature, top-k, top-p, the length cap
  ``max_new_tokens`` and the stop strings of a request (:class:`SamplingParams`).
  **greedy** decoding is temperature 0: the argmax token at every position.
* **candidate** — one reply being decoded for a request (:class:`Candidate`). It owns
  a ``torch.Generator`` seeded from the request's **seed** and its index, so its
  tokens do not depend on which other candidates share its batch.
* **reply** — the tokens a candidate generated and their text (a stop string and the
  end-of-sequence token are not part of it). A :class:`Result` carries the reply a
  strategy chose for a request.
* **tokens generated** — what decoding a candidate produced: every token its reply
  took, sampled or accepted from a draft, up to and including the one that ended it
  (its end-of-sequence token, the tokens of a stop string); tokens after that are not
  taken. The decode cost, counted alike by every strategy and engine
  (``tokens_generated``).
* **tokens returned** — the tokens of the reply a :class:`Result` returns
  (``tokens_returned`` = ``len(token_ids)``): a reply's ids decode to its text, so they
  exclude the end-of-sequence token and the stop string. A candidate's tokens returned
  never exceed its tokens generated.
* **finished** — a candidate whose reply has ended: an end-of-sequence token or a
  **stop string** (text that ends a reply where it appears, matched on decoded text;
  finish reason ``"stop"``), or the length cap or context limit (``"length"``).
  With ``ignore_eos`` an end-of-sequence token ends nothing: it is a token of the
  reply like any other, on every engine (vLLM is then sent no stop token ids).
* **alive** — a candidate neither finished nor rejected: it is still decoding.
* **pool** — the candidates of one request that were not rejected: the alive and the
  finished ones. Best-of-N rejects none, so its pool is all n candidates.
* **strategy** — a small frozen config (``Sampling()``, ``BestOfN(n=8)``, …) whose
  :meth:`Strategy.run` decodes requests into results.

Batches and forward passes
--------------------------

* **batch** — the requests a strategy decodes together: their candidates share
  forward passes, counted under one ``batch`` id. Requests with different sampling
  parameters go to different batches.
* **row** — the place of one candidate in a batch's KV cache and in the tensors of a
  forward pass (``rows`` in tensor shapes); the **batch size** of a forward pass is
  its number of rows.
* **slot** — one position of a KV cache. A row's slots hold its prompt and its reply
  so far; a slot is *valid* when its attention-mask entry is 1, a *hole* when it is 0
  (left padding, the gap of a row that fed fewer tokens than others in one forward
  pass, a rolled-back token). Holes are never attended to, and position ids count
  valid slots only.
* **KV-cache budget** — a bound on ``rows × slots`` in one KV cache
  (``memory_budget_slots``); ``peak_cache_slots`` reports the same memory proxy.
* **forward pass** (**pass**) — one call of a model on a batch's rows: a **prefill**
  starts a KV cache from prompts, a **feed** appends tokens to it.
* **target pass** — a forward pass on the target's weights, also when a
  prompt-steered draft or reference runs on them; a **draft pass** is one on any
  other weights.
* **step** — one iteration of a strategy's decoding loop: one more token per row
  (:meth:`DecodingEngine.step`), or one draft-then-verify step of a speculative
  strategy.
* **call** — one call of :meth:`Strategy.run` (one ``generate``); it may decode
  several batches.
* **model call** — one LangChain invocation of the chat model (``invoke``, ``stream``,
  one input of ``batch``; ``chat_models.calls.Call``): it becomes one request, and the
  model calls of one ``batch`` that can share forward passes become one call.
* **per-request statistics** — the work a request did itself: candidates, tokens,
  draft tokens, reward calls, scoring time and its share of the decoding time.
  Summed over the results of a call they give the call's totals.
* **per-batch statistics** — the work of the forward passes a request shared with
  the rest of its batch (``PER_BATCH_FIELDS`` in ``base``): every result of one batch
  reports the same figures, which ``sum_stats`` counts once per batch.

Engines
-------

* **engine** — what decodes a batch's candidates: this library's transformers engine
  (:class:`DecodingEngine`, its own KV cache), vLLM in process, or a vLLM server
  (``langchain_aligned.engines``), chosen with ``engine=``.
* **engine seam** — the three calls Sampling, Best-of-N and Speculative Rejection
  decode through (:class:`~.engine.ReplyEngine`): ``prefill`` starts candidates,
  ``decode`` advances every alive row by up to ``max_steps`` tokens, ``select`` keeps
  some rows and drops the others' work.
* **stream** — on a vLLM engine, the tokens one candidate's request sends back (one
  request per candidate, seeded with the candidate's seed). A stream may run ahead of
  the strategy; **lockstep** consumption takes the next token of every alive row per
  step, so a step means the same on every engine.
* **abort** — ending a candidate's request on a vLLM engine (a rejected candidate, a
  reply that ended by a stop string), which frees its KV blocks.

Logits and tokens
-----------------

* **logits** — raw model outputs for the next token, ``[rows, vocab]``. An output
  layer may be padded past the tokenizer's **vocabulary** (``vocab``); padded ids are
  cut off or masked before any distribution is formed.
* **distribution** — the probabilities a token is drawn from after temperature, top-k
  and top-p (``params.warp``): float32, ``[rows, vocab]``, each row sums to 1. Greedy
  decoding uses the one-hot distribution of the argmax, so every rule stated for
  distributions covers greedy decoding too.
* **uniform** — one U(0, 1) draw per sampled token from the candidate's generator. A
  token is drawn by inverting the cumulative distribution, so it depends only on its
  distribution and its uniform.

Rewards and Speculative Rejection
---------------------------------

* **reward** — the float a reward scorer gives one reply text, higher is better;
  scorers follow ``rewards.RewardScorer``: ``score(conversation, completions) ->
  list[float]`` (``completions`` being the texts scored). A **reward call** is one
  such call; a **final reward** is the reward of a finished candidate's reply.
* **partial reward** — the reward of an alive candidate's reply so far, scored as if
  it were finished.
* **round** — one decision of Speculative Rejection for one pool: every alive
  candidate gets a partial reward, the pool is ranked, the lowest alive candidates
  are **rejected** (they leave the batch and the pool).
* **decision point** — the step at which a round is held; the **decision token** τ is
  how many tokens the alive candidates have then (``decision_tokens`` sets the first).
* **rejection rate** α — the fraction of the pool a round rejects: the top
  ⌈(1 − α)·|pool|⌉ survive, and finished candidates are never rejected.

Speculative strategies
----------------------

* **target** — the model whose distribution the replies follow (p; SSS's π_ref).
* **draft** — a model sharing the target's vocabulary that proposes tokens for the
  target to verify: a smaller model, or a **prompt-steered draft** — a model (by
  default the target's weights) with its own system prompt, or a **distilled draft**
  — the target's first k layers (embeddings, final norm and output head shared),
  trained on the target's own replies (:func:`langchain_aligned.drafts.distill_draft`).
* **aligned draft** — SSS's draft π_r^draft, steered or trained towards the reward
  (:func:`langchain_aligned.drafts.align_draft`: DPO on **preference pairs**, a prompt
  with a chosen and a rejected reply, made **on-policy** — the best and the worst of
  the draft's own n samples under a reward — or given).
* **reference** — a model that scores the draft tokens as the target does, for the
  verification: SSS's unaligned **draft reference** π_draft.
* **draft tokens** — the tokens the draft proposes in one step, ŷ₁…ŷ_γ.
* **γ** — ``num_draft_tokens``: draft tokens per step. Row r proposes
  **γ_r** = min(γ, room − 1), room being the tokens its reply can still take.
* **accepted token** — a draft token the verification keeps (the accepted ones are a
  prefix of the draft tokens); at the first rejected draft token a **recovered
  token**, drawn from the residual, takes its place; when all are accepted a **bonus
  token** is drawn at position γ_r + 1. A step thus adds 1 to γ_r + 1 tokens to a
  reply. The **acceptance rate** is accepted ÷ proposed draft tokens.
* **lane** — one model's view of a speculative batch: its KV cache and the reply
  tokens it has not fed yet (``speculative_sampling.Lane``).

Hooks
-----

* **hooks** — the caller's callbacks for one call (:class:`Hooks`): events, text
  deltas and cancellation.
* **text delta** — the text a reply gained since the last delta, sent to
  ``hooks.on_text``; a reply is streamed **live** while it is decoded.
"""

from ..engines.base import Candidate, DecodeCancelled, DecodeState, EngineCounters
from ..engines.transformers import DecodingEngine, engine_for
from .base import Hooks, Request, Result, Strategy, score_texts
from .best_of_n import BestOfN
from .drafts import PromptSteeredDraft
from .generate import build_requests, generate
from .memory import kv_budget_slots
from .params import SamplingParams
from .reward_shifted_sampling import RewardShiftedSampling
from .sampling import Sampling
from .speculative_rejection import SpeculativeRejection
from .speculative_sampling import SpeculativeSampling
from .stats import AlignmentStats, RoundStats

__all__ = [
    "AlignmentStats",
    "BestOfN",
    "Candidate",
    "DecodeCancelled",
    "DecodeState",
    "DecodingEngine",
    "EngineCounters",
    "Hooks",
    "PromptSteeredDraft",
    "Request",
    "Result",
    "RewardShiftedSampling",
    "RoundStats",
    "Sampling",
    "SamplingParams",
    "SpeculativeRejection",
    "SpeculativeSampling",
    "Strategy",
    "build_requests",
    "engine_for",
    "generate",
    "kv_budget_slots",
    "score_texts",
]
