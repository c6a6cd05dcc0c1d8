# Source of 03_weak_to_strong_sss.ipynb: edit this script, then run `python cookbook/build_notebooks.py`.

# %% [markdown]
# # Weak-to-strong alignment with Reward-Shifted Speculative Sampling (SSS)
#
# SSS (Li et al., EMNLP 2025) uses three models sharing a vocabulary: a large unaligned
# **target** π_ref, a small unaligned **draft reference** π_draft and a small **aligned draft**
# π_r^draft. Drafts come from the aligned draft; a draft token is accepted with probability
# min(1, π_ref/π_draft); at the first rejection the recovered token is drawn from
# norm((π_r^draft·(π_ref/π_draft − 1))₊). The result approximates π_ref·exp(r/β) with no
# reward model at decode time.
#
# No PyPI package ships a second model with SmolLM2's vocabulary, so this notebook makes the
# drafts from SmolLM2 itself: `distill_draft` cuts its first layers and distils them on its own
# replies (the **draft reference**), and `align_draft` aligns a copy by DPO (the **aligned
# draft**). Both are cached per machine. The last part shows the no-training option:
# **prompt-steered** drafts, the same weights with a different system prompt.

# %%
import os

# COOKBOOK_SMALL=1 (set by the test suite) picks settings that run in about a minute on a CPU.
SMALL = os.environ.get("COOKBOOK_SMALL") == "1"

# %%
import rewards
from langchain_aligned import (
    AlignedChatModel,
    PromptSteeredDraft,
    RewardShiftedSampling,
    Sampling,
    SpeculativeSampling,
)
from langchain_aligned.drafts import DISTILL_PROMPTS, align_draft, distill_draft

MAX_TOKENS = 24 if SMALL else 48
questions = [
    "Tell me about your weekend.",
    "Describe a rainy day.",
    "What do you think of Mondays?",
][: 2 if SMALL else 3]

# %% [markdown]
# ## The three models from one target
# The full settings are those of `benchmarks/bench_speculative.py --drafts` (about 8 minutes of
# training on a 2-core CPU once the target's replies are made and cached); the small ones train
# for a few steps only, enough to show the calls.

# %%
if SMALL:
    distill_settings = dict(
        num_layers=4,
        prompts=DISTILL_PROMPTS[:8],
        replies_per_prompt=1,
        max_new_tokens=24,
        epochs=1,
        head_tokens=4096,
    )
    align_settings = dict(
        prompts=DISTILL_PROMPTS[:8], samples_per_prompt=2, max_new_tokens=24, epochs=1
    )
else:
    distill_settings = dict(
        num_layers=6,
        replies_per_prompt=6,
        max_new_tokens=128,
        head_tokens=8192,
        learning_rate=2e-3,
        epochs=4,
    )
    align_settings = dict(samples_per_prompt=4, max_new_tokens=64, epochs=3, learning_rate=1e-4)
reference = distill_draft("smollm2-135m-instruct", **distill_settings)
print(
    "draft reference:",
    reference.folder,
    "loss",
    round(reference.losses[0], 2),
    "→",
    round(reference.losses[-1], 2),
)
# The alignment reward: MiniLM's similarity to warm replies. The gold reward below is VADER.
warm = rewards.EmbeddingSimilarityScorer(
    references=[
        "I'd be delighted to help! What a wonderful question, thank you so much for asking."
    ]
)
aligned = align_draft(reference.folder, warm, **align_settings)
print(
    "aligned draft:",
    aligned.folder,
    "pairs",
    aligned.pairs,
    "DPO loss",
    [round(x, 3) for x in aligned.losses[:: max(1, len(aligned.losses) // 4)]],
)

# %%
gold = rewards.SentimentScorer()  # a different scorer than the alignment reward
trained = {
    "target sampling": Sampling(),
    "SD (distilled draft)": SpeculativeSampling(draft=reference.folder, num_draft_tokens=3),
    "SSS (aligned draft, distilled reference)": RewardShiftedSampling(
        draft=aligned.folder, draft_reference=reference.folder, num_draft_tokens=3
    ),
}
for name, strategy in trained.items():
    model = AlignedChatModel(strategy=strategy, max_tokens=MAX_TOKENS, seed=0)
    for question in questions:
        message = model.invoke(question)
        stats = message.response_metadata["alignment"]
        acc = stats.get("acceptance_rate")
        print(
            f"{name:<42} sentiment {gold.score(question, [message.content])[0]:+.2f}  "
            f"acceptance {acc if acc is None else round(acc, 2)}  target passes "
            f"{stats['target_forward_passes']}  | {message.content[:50]!r}"
        )

# %% [markdown]
# `benchmarks/bench_speculative.py --drafts` measures these rows over 24 held-out prompts with
# standard errors, acceptance by draft position and tokens/s (`docs/speculative.md`).
#
# ## No training: prompt-steered drafts

# %%
steer = PromptSteeredDraft(
    "You love helping. Answer with joy and enthusiasm, using happy, kind, wonderful words."
)
# Default draft reference: the target's own weights and prompt, the natural π_draft of a prompt-steered draft.
sss = RewardShiftedSampling(draft=steer, num_draft_tokens=4)
# A reference steered the opposite way contrasts two prompts (not the paper's set-up).
opposite = PromptSteeredDraft(
    "You hate helping. Answer with gloom and irritation, using sad, dull, annoying words."
)
sss_contrastive = RewardShiftedSampling(draft=steer, draft_reference=opposite, num_draft_tokens=4)

# %% [markdown]
# With the default reference, π_ref/π_draft = 1 at every position: every draft is accepted
# and SSS samples from the aligned draft, as equations 6 and 7 imply. With the contrastive
# reference the target differs from the reference, so some drafts are rejected and the
# recovered tokens come from norm((π_r^draft·(π_ref/π_draft − 1))₊). On a 135M model a tone
# prompt moves sentiment only a little; `benchmarks/bench_speculative.py` measures it over
# 20 prompts with standard errors (`docs/speculative.md`).

# %%
strategies = {
    "target sampling": Sampling(),
    "SSS (default reference)": sss,
    "SSS (contrastive reference)": sss_contrastive,
}
for name, strategy in strategies.items():
    model = AlignedChatModel(strategy=strategy, max_tokens=MAX_TOKENS, seed=0, reward=gold)
    for question in questions:
        message = model.invoke(question)
        stats = message.response_metadata["alignment"]
        sentiment = gold.score(question, [message.content])[0]
        acc = stats.get("acceptance_rate")
        print(
            f"{name:<28} sentiment {sentiment:+.2f}  acceptance {acc if acc is None else round(acc, 2)}  "
            f"target passes {stats['target_forward_passes']}  | {message.content[:60]!r}"
        )

# %% [markdown]
# ## Lossless speculative sampling
# With a draft that equals the target, every draft token is accepted; greedy speculative
# sampling reproduces greedy target decoding token for token.

# %%
greedy = AlignedChatModel(strategy=Sampling(), temperature=0, max_tokens=MAX_TOKENS)
spec = AlignedChatModel(
    strategy=SpeculativeSampling(draft=PromptSteeredDraft(None), num_draft_tokens=4),
    temperature=0,
    max_tokens=MAX_TOKENS,
)
a, b = greedy.invoke(questions[0]), spec.invoke(questions[0])
print(a.content == b.content, b.response_metadata["alignment"]["acceptance_rate"])

# %% [markdown]
# ## The paper's OPT pairs on a GPU machine
# ```python
# sss = RewardShiftedSampling(
#     draft="lblaoke/opt-125m-hh-rlhf-dpo-trl-v5",                  # aligned draft (DPO)
#     draft_reference="lblaoke/opt-125m-hh-rlhf-chosen-sft-trl-v5", # unaligned draft (SFT)
#     num_draft_tokens=4,
# )
# llm = AlignedChatModel(model="facebook/opt-6.7b", strategy=sss, max_tokens=128,
#                        model_kwargs={"device_map": "auto"})
# ```
# The gold reward in the paper is `argsearch/llama-7b-rm-float32` (usable through
# `rewards.RewardModelScorer`).
