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

    python -m benchmarks.bench_speculative [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import rewards
from benchmarks.common import plot_path, write_json
from benchmarks.prompts import PROMPTS
from langchain_aligned import (
    BestOfN,
    PromptSteeredDraft,
    RewardShiftedSampling,
    Sampling,
    SpeculativeSampling,
    generate,
)

# The steering prompt was picked by hand among five candidates on 8 held-out prompts
# (not the benchmark's; a one-off check, not a benchmark): it gave the highest VADER
# sentiment there, while the earlier "relentlessly warm, cheerful and kind" prompt gave
# less than no system prompt at all — a 135M model copies words from an instruction more
# than it follows its tone, so a short prompt made of the target words works better.
STEER = "You love helping. Answer with joy and enthusiasm, using happy, kind, wonderful words."
# The same prompt turned around, for the contrastive-reference row (not tuned).
OPPOSITE = "You hate helping. Answer with gloom and irritation, using sad, dull, annoying words."


def measure(model, strategy, prompts, max_new_tokens, gold, dtype, system=None):
    rows = []
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
            temperature=1.0,
            dtype=dtype,
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
        "tokens": tokens,
        "tokens_generated_per_returned": sum(r.stats.tokens_generated for r in rows)
        / max(tokens, 1),
        "seconds": elapsed,
        "seconds_per_prompt": elapsed / len(prompts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_prompts, max_new = (8, 40) if args.quick else (20, 48)
    prompts = PROMPTS[:n_prompts]
    gold = rewards.SentimentScorer()
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
        entry = {"target sampling": base}
        for name, strategy in strategies.items():
            strategy, system = strategy if isinstance(strategy, tuple) else (strategy, None)
            row = measure(model, strategy, prompts, max_new, gold, dtype, system)
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


if __name__ == "__main__":
    main()
