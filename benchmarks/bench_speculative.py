"""Speculative sampling (SD) and Reward-Shifted Speculative Sampling (SSS).

For each model set-up that runs here — a tiny random pair, and SmolLM2-135M with
prompt-steered drafts (no second model shares SmolLM2's vocabulary on PyPI) — reports
acceptance rate, target forward passes per generated token and tokens/s against plain
target sampling. For SSS it also measures the *gold-reward shift*: the draft is steered
toward warm, positive replies and the gold reward is VADER sentiment — a different
scorer than the steering prompt itself.

Matched compute: Best-of-N (n = 2, 4) *selected by the gold scorer itself* runs in the
same script, so SD/SSS can be read against plain sampling and against the reward-based
method at equal wall time and equal tokens generated (the plot puts every method on
gold reward versus wall time). Best-of-N with the gold scorer is an upper bound for a
reward-based method at that n; SSS needs no reward model at inference.

Distilled drafts (``--drafts``, also part of a full run; its own JSON and plot,
``speculative_drafts``): the paper's three-model set-up made from SmolLM2 alone.
:func:`~langchain_aligned.drafts.distill_draft` cuts and distils the draft reference
(``DISTILL``), :func:`~langchain_aligned.drafts.align_draft` aligns a copy of it by DPO
on on-policy pairs (``ALIGN``) under the *alignment reward* — MiniLM similarity to warm,
enthusiastic replies — and the gold reward stays VADER, a lexicon that shares nothing
with MiniLM. Rows: SD with the distilled draft (acceptance by draft position, tokens/s
at batch 1), SSS with the aligned draft and the distilled reference, each draft alone,
and Best-of-2 with the gold scorer at about SSS's target compute. Both drafts are cached
per machine; the JSON records the time each took to make.

    python -m benchmarks.bench_speculative [--quick] [--drafts | --no-drafts]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import rewards
from benchmarks.common import plot_path, write_json
from benchmarks.prompts import PROMPTS
from langchain_aligned import (
    BestOfN,
    Hooks,
    PromptSteeredDraft,
    RewardShiftedSampling,
    Sampling,
    SpeculativeSampling,
    generate,
)
from langchain_aligned.decoding.base import EVENT_VERIFY
from langchain_aligned.drafts import align_draft, distill_draft

# The steering prompt was picked by hand among five candidates on 8 held-out prompts
# (not the benchmark's; a one-off check, not a benchmark): it gave the highest VADER
# sentiment there, while the earlier "relentlessly warm, cheerful and kind" prompt gave
# less than no system prompt at all — a 135M model copies words from an instruction more
# than it follows its tone, so a short prompt made of the target words works better.
STEER = "You love helping. Answer with joy and enthusiasm, using happy, kind, wonderful words."
# The same prompt turned around, for the contrastive-reference row (not tuned).
OPPOSITE = "You hate helping. Answer with gloom and irritation, using sad, dull, annoying words."


# The distilled draft of the three-model set-up: SmolLM2's first 6 of 30 layers and an
# 8,192-token head, trained on 6 × 48 replies of 128 tokens (the recipe is measured in
# docs/speculative.md).
DISTILL = dict(
    num_layers=6,
    replies_per_prompt=6,
    max_new_tokens=128,
    head_tokens=8192,
    learning_rate=2e-3,
    epochs=4,
)
# The aligned copy: DPO on the best and worst of 4 draft samples per prompt.
ALIGN = dict(samples_per_prompt=4, max_new_tokens=64, beta=0.1, epochs=3, learning_rate=1e-4)
# What the alignment reward calls warm: MiniLM's similarity to the closest of these.
WARM_REPLIES = [
    "I'd be delighted to help! What a wonderful question, thank you so much for asking.",
    "Great news: this is easy and fun, and I'm happy to walk you through it with joy!",
    "You're doing amazing. I love this idea, and I'm cheering for you all the way!",
]
GAMMA = 3


def measure(model, strategy, prompts, max_new_tokens, gold, dtype, system=None, temperature=1.0):
    rows = []
    steps = []  # (proposed, accepted) of every verification step
    hooks = Hooks(
        on_event=lambda name, data: (
            steps.append((data["proposed"], data["accepted"])) if name == EVENT_VERIFY else None
        )
    )
    start = time.perf_counter()
    for index, prompt in enumerate(prompts):
        conversation = prompt
        if system is not None:
            conversation = [
                {"role": "system", "content": system},
                {"role": "user", "content": prompt},
            ]
        (result,) = generate(
            model,
            conversation,
            strategy=strategy,
            reward=gold if strategy.needs_reward else None,
            seed=index,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            dtype=dtype,
            hooks=hooks,
        )
        rows.append(result)
    elapsed = time.perf_counter() - start
    golds = [gold.score(p, [r.text])[0] for p, r in zip(prompts, rows, strict=True)]
    tokens = sum(len(r.token_ids) for r in rows)
    proposed = sum(r.stats.draft_tokens_proposed for r in rows)
    return {
        "tokens_per_s": tokens / elapsed,
        "target_passes_per_token": sum(r.stats.target_forward_passes for r in rows)
        / max(tokens, 1),
        "acceptance_rate": sum(r.stats.draft_tokens_accepted for r in rows) / proposed
        if proposed
        else None,
        "gold_reward": statistics.mean(golds),
        # Kept per prompt so a shift can be read against its paired standard error.
        "gold_per_prompt": golds,
        "texts": [r.text for r in rows],
        "tokens": tokens,
        "tokens_generated_per_returned": sum(r.stats.tokens_generated for r in rows)
        / max(tokens, 1),
        "seconds": elapsed,
        "seconds_per_prompt": elapsed / len(prompts),
        # Among the steps that proposed at least i draft tokens, the share whose first i
        # were all accepted (a step accepts a prefix: position i counts when accepted ≥ i).
        "acceptance_by_position": [
            sum(a >= i for p, a in steps if p >= i) / max(1, sum(p >= i for p, _ in steps))
            for i in range(1, max((p for p, _ in steps), default=0) + 1)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--drafts", action="store_true", help="only the distilled drafts")
    which.add_argument("--no-drafts", action="store_true", help="skip the distilled drafts")
    args = parser.parse_args()
    n_prompts, max_new = (8, 40) if args.quick else (20, 48)
    prompts = PROMPTS[:n_prompts]
    gold = rewards.SentimentScorer()
    if not args.no_drafts:
        drafts_main(PROMPTS[:8] if args.quick else PROMPTS, 40 if args.quick else 64, gold)
    if args.drafts:
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny import tiny_pair

    setups = {
        "tiny random pair (4-layer target, 1-layer draft, unrelated weights)": (
            tiny_pair(0, hidden_size=64, layers=4),
            {
                "SD": SpeculativeSampling(
                    draft=tiny_pair(1, hidden_size=32, layers=1), num_draft_tokens=4
                )
            },
            "float32",
        ),
        "SmolLM2-135M, prompt-steered drafts": (
            "smollm2-135m-instruct",
            {
                "SD (draft: same weights, plain prompt)": SpeculativeSampling(
                    draft=PromptSteeredDraft(None), num_draft_tokens=4
                ),
                "SD (draft: steered prompt)": SpeculativeSampling(
                    draft=PromptSteeredDraft(STEER), num_draft_tokens=4
                ),
                "SSS paper (aligned draft: steered prompt)": RewardShiftedSampling(
                    draft=PromptSteeredDraft(STEER), num_draft_tokens=4
                ),
                "SSS normalized": RewardShiftedSampling(
                    draft=PromptSteeredDraft(STEER), num_draft_tokens=4, variant="normalized"
                ),
                # Not the paper's set-up: a draft reference steered the *opposite* way, so
                # the ratio π_r^draft/π_draft contrasts two prompts (as proxy-tuning does) and
                # the target differs from the reference — the acceptance rule and the
                # recovered token are exercised on a real model (with the default reference, the
                # target's own prompt, every draft is accepted).
                "SSS paper, contrastive reference (opposite prompt)": RewardShiftedSampling(
                    draft=PromptSteeredDraft(STEER),
                    draft_reference=PromptSteeredDraft(OPPOSITE),
                    num_draft_tokens=4,
                ),
                # The aligned draft on its own: what SSS should reproduce when the
                # draft reference is the target itself (π_ref/π_draft = 1).
                "steered sampling (the aligned draft alone)": (Sampling(), STEER),
                "Best-of-2 (gold scorer)": BestOfN(n=2),
                "Best-of-4 (gold scorer)": BestOfN(n=4),
            },
            "auto",
        ),
    }
    results = {}
    for setup, (model, strategies, dtype) in setups.items():
        generate(model, "warm up", max_new_tokens=2, dtype=dtype)
        base = measure(model, Sampling(), prompts, max_new, gold, dtype)
        base.pop("texts")
        entry = {"target sampling": base}
        for name, strategy in strategies.items():
            strategy, system = strategy if isinstance(strategy, tuple) else (strategy, None)
            row = measure(model, strategy, prompts, max_new, gold, dtype, system)
            row.pop("texts")
            row["speed_vs_sampling"] = row["tokens_per_s"] / base["tokens_per_s"]
            row["gold_reward_shift"] = row["gold_reward"] - base["gold_reward"]
            # Paired over prompts (same prompt and seed in both runs): the standard error
            # of the mean per-prompt difference says which shifts are larger than noise.
            diffs = [
                a - b for a, b in zip(row["gold_per_prompt"], base["gold_per_prompt"], strict=True)
            ]
            row["gold_reward_shift_stderr"] = statistics.stdev(diffs) / len(diffs) ** 0.5
            entry[name] = row
            print(
                f"[{setup}] {name:<42} acceptance {row['acceptance_rate'] or 0:.2f}  passes/token "
                f"{row['target_passes_per_token']:.2f}  speed {row['speed_vs_sampling']:.2f}x  "
                f"gold shift {row['gold_reward_shift']:+.3f} ± {row['gold_reward_shift_stderr']:.3f}"
            )
        results[setup] = entry
    path = write_json(
        "speculative",
        {
            "prompts": n_prompts,
            "max_new_tokens": max_new,
            "gold": gold.name,
            "steer": STEER,
            "opposite": OPPOSITE,
            "results": results,
        },
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    smol = results["SmolLM2-135M, prompt-steered drafts"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, row in smol.items():
        marker = "s" if name.startswith("Best") else ("o" if name.startswith("target") else "^")
        ax1.scatter(row["seconds_per_prompt"], row["gold_reward"], marker=marker, label=name)
        ax2.scatter(row["target_passes_per_token"], row["gold_reward"], marker=marker)
    ax1.set_xlabel("wall time per prompt (s)")
    ax1.set_ylabel("gold reward (VADER compound, mean)")
    ax2.set_xlabel("target forward passes per returned token (Best-of-N: n rows per pass)")
    ax1.legend(fontsize=7)
    fig.suptitle(
        f"SmolLM2-135M, {n_prompts} prompts: SD / SSS (prompt-steered drafts) vs sampling and Best-of-N"
    )
    fig.tight_layout()
    fig.savefig(plot_path("speculative"), dpi=120)
    print(f"wrote {path}")


def paired_shift(row, base):
    """Mean gold shift over ``base`` and its paired standard error (same prompts and
    seeds in both runs)."""
    diffs = [a - b for a, b in zip(row["gold_per_prompt"], base["gold_per_prompt"], strict=True)]
    return statistics.mean(diffs), statistics.stdev(diffs) / len(diffs) ** 0.5


def drafts_main(prompts, max_new, gold):
    """The three-model set-up from SmolLM2 alone: distilled draft reference, aligned copy."""
    from langchain_aligned.drafts import DISTILL_PROMPTS

    assert not set(prompts) & set(DISTILL_PROMPTS)  # the rows are held out from training
    target = "smollm2-135m-instruct"
    started = time.perf_counter()
    reference = distill_draft(target, **DISTILL)
    distilled_at = time.perf_counter()
    alignment_reward = rewards.EmbeddingSimilarityScorer(references=WARM_REPLIES)
    aligned = align_draft(reference.folder, alignment_reward, **ALIGN)
    made = {
        "distill": {
            "folder": Path(reference.folder).name,
            "cached_now": reference.cached,
            "seconds_now": distilled_at - started,
            "seconds_when_made": reference.seconds,
            "examples": reference.examples,
            "tokens": reference.tokens,
            "first_loss": reference.losses[0],
            "last_loss": reference.losses[-1],
            "steps": len(reference.losses),
        },
        "align": {
            "folder": Path(aligned.folder).name,
            "cached_now": aligned.cached,
            "seconds_when_made": aligned.seconds,
            "pairs": aligned.pairs,
            "mean_reward_gap": aligned.mean_reward_gap,
            "losses": aligned.losses,
            "reward_accuracy": aligned.reward_accuracy,
        },
    }
    print(f"drafts: {json.dumps(made, default=float)[:400]}")
    rows = {
        "SD (distilled draft)": (
            target,
            SpeculativeSampling(draft=reference.folder, num_draft_tokens=GAMMA),
        ),
        "SSS paper (aligned draft, distilled reference)": (
            target,
            RewardShiftedSampling(
                draft=aligned.folder, draft_reference=reference.folder, num_draft_tokens=GAMMA
            ),
        ),
        "SSS normalized": (
            target,
            RewardShiftedSampling(
                draft=aligned.folder,
                draft_reference=reference.folder,
                num_draft_tokens=GAMMA,
                variant="normalized",
            ),
        ),
        "distilled draft alone (sampling)": (reference.folder, Sampling()),
        "aligned draft alone (sampling)": (aligned.folder, Sampling()),
        "Best-of-2 (gold scorer)": (target, BestOfN(n=2)),
    }
    for model in (target, reference.folder, aligned.folder):
        generate(model, "warm up", max_new_tokens=2)
    base = measure(target, Sampling(), prompts, max_new, gold, "auto")
    entry = {"target sampling": base}
    print(
        f"[drafts] target sampling  {base['tokens_per_s']:.1f} tokens/s  gold {base['gold_reward']:.3f}"
    )
    for name, (model, strategy) in rows.items():
        row = measure(model, strategy, prompts, max_new, gold, "auto")
        row["speed_vs_sampling"] = row["tokens_per_s"] / base["tokens_per_s"]
        row["gold_reward_shift"], row["gold_reward_shift_stderr"] = paired_shift(row, base)
        alignment = [
            alignment_reward.score(p, [r])[0]
            for p, r in zip(prompts, row.pop("texts"), strict=True)
        ]
        row["alignment_reward"] = statistics.mean(alignment)
        entry[name] = row
        print(
            f"[drafts] {name:<48} acceptance {row['acceptance_rate'] or 0:.3f} "
            f"{[round(a, 3) for a in row['acceptance_by_position']]}  passes/token "
            f"{row['target_passes_per_token']:.2f}  speed {row['speed_vs_sampling']:.2f}x  "
            f"gold shift {row['gold_reward_shift']:+.3f} ± {row['gold_reward_shift_stderr']:.3f}"
        )
    base.pop("texts")
    # What a draft token costs: the target's time per token over the draft's, both
    # sampling alone at batch 1 (SD at γ wins when (1 − α^(γ+1)) / (1 − α) tokens per
    # step outweigh γ draft tokens plus one verification pass).
    entry["distilled draft alone (sampling)"]["cost_vs_target"] = (
        base["tokens_per_s"] / entry["distilled draft alone (sampling)"]["tokens_per_s"]
    )
    # Greedy decoding: acceptance is top-1 agreement, and SD must return the target's
    # own greedy replies token for token.
    greedy = measure(target, Sampling(), prompts, max_new, gold, "auto", temperature=0)
    sd_greedy = measure(
        target,
        SpeculativeSampling(draft=reference.folder, num_draft_tokens=GAMMA),
        prompts,
        max_new,
        gold,
        "auto",
        temperature=0,
    )
    sd_greedy["equals_greedy"] = sd_greedy.pop("texts") == greedy.pop("texts")
    sd_greedy["speed_vs_sampling"] = sd_greedy["tokens_per_s"] / greedy["tokens_per_s"]
    entry["target greedy"] = greedy
    entry["SD greedy (distilled draft)"] = sd_greedy
    print(
        f"[drafts] SD greedy: acceptance {sd_greedy['acceptance_rate']:.3f} "
        f"{[round(a, 3) for a in sd_greedy['acceptance_by_position']]}  speed vs greedy "
        f"{sd_greedy['speed_vs_sampling']:.2f}x  equals greedy {sd_greedy['equals_greedy']}"
    )
    path = write_json(
        "speculative_drafts",
        {
            "prompts": len(prompts),
            "max_new_tokens": max_new,
            "num_draft_tokens": GAMMA,
            "gold": gold.name,
            "alignment_reward": alignment_reward.name,
            "warm_replies": WARM_REPLIES,
            "distill_settings": DISTILL,
            "align_settings": ALIGN,
            "drafts": made,
            "results": entry,
        },
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4))
    for name, row in entry.items():
        marker = "s" if name.startswith("Best") else ("o" if name.startswith("target") else "^")
        ax1.scatter(row["seconds_per_prompt"], row["gold_reward"], marker=marker, label=name)
        ax2.scatter(row["target_passes_per_token"], row["gold_reward"], marker=marker)
        if row["acceptance_by_position"]:
            ax3.plot(
                range(1, len(row["acceptance_by_position"]) + 1),
                row["acceptance_by_position"],
                marker="o",
                label=name,
            )
    ax1.set_xlabel("wall time per prompt (s)")
    ax1.set_ylabel("gold reward (VADER compound, mean)")
    ax2.set_xlabel("target forward passes per returned token")
    ax3.set_xlabel("draft position i")
    ax3.set_ylabel("P(draft tokens 1..i all accepted)")
    ax1.legend(fontsize=7)
    ax3.legend(fontsize=7)
    fig.suptitle(
        f"SmolLM2-135M with its distilled and aligned drafts, {len(prompts)} held-out prompts"
    )
    fig.tight_layout()
    fig.savefig(plot_path("speculative_drafts"), dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
