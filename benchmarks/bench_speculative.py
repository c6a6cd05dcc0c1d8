"""Speculative sampling (SD) and Reward-Shifted Speculative Sampling (SSS).

For each model set-up that runs here — a tiny random pair, and SmolLM2-135M with
prompt-steered drafts (no second model shares SmolLM2's vocabulary on PyPI) — reports
acceptance rate, target forward passes per generated token and tokens/s against plain
target sampling. For SSS it also measures the *gold-reward shift*: the draft is steered
toward warm, positive replies and the gold reward is VADER sentiment — a different
scorer than the steering prompt itself.

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
    PromptSteeredDraft,
    RewardShiftedSampling,
    Sampling,
    SpeculativeSampling,
    generate,
)

STEER = "You are relentlessly warm, cheerful and kind. Always answer with a positive tone."


def measure(model, strategy, prompts, max_new_tokens, gold, dtype):
    rows = []
    start = time.perf_counter()
    for index, prompt in enumerate(prompts):
        (result,) = generate(
            model,
            prompt,
            strategy=strategy,
            seed=index,
            max_new_tokens=max_new_tokens,
            temperature=1.0,
            dtype=dtype,
        )
        rows.append(result)
    elapsed = time.perf_counter() - start
    tokens = sum(len(r.token_ids) for r in rows)
    proposed = sum(r.stats.draft_tokens_proposed for r in rows)
    return {
        "tokens_per_s": tokens / elapsed,
        "target_passes_per_token": sum(r.stats.target_forward_passes for r in rows)
        / max(tokens, 1),
        "acceptance_rate": sum(r.stats.draft_tokens_accepted for r in rows) / proposed
        if proposed
        else None,
        "gold_reward": statistics.mean(
            gold.score(p, [r.text])[0] for p, r in zip(prompts, rows, strict=True)
        ),
        "tokens": tokens,
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_prompts, max_new = (8, 40) if args.quick else (20, 64)
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
            row = measure(model, strategy, prompts, max_new, gold, dtype)
            row["speed_vs_sampling"] = row["tokens_per_s"] / base["tokens_per_s"]
            row["gold_reward_shift"] = row["gold_reward"] - base["gold_reward"]
            entry[name] = row
            print(
                f"[{setup}] {name:<42} acceptance {row['acceptance_rate'] or 0:.2f}  passes/token "
                f"{row['target_passes_per_token']:.2f}  speed {row['speed_vs_sampling']:.2f}x  "
                f"gold shift {row['gold_reward_shift']:+.3f}"
            )
        results[setup] = entry
    path = write_json(
        "speculative",
        {
            "prompts": n_prompts,
            "max_new_tokens": max_new,
            "gold": gold.name,
            "steer": STEER,
            "results": results,
        },
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    smol = results["SmolLM2-135M, prompt-steered drafts"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = list(smol)
    ax1.barh(names, [smol[n]["target_passes_per_token"] for n in names])
    ax1.set_xlabel("target forward passes per token")
    ax2.barh(names, [smol[n]["gold_reward"] for n in names], color="tab:green")
    ax2.set_xlabel("gold reward (VADER compound)")
    ax2.set_yticks([])
    fig.suptitle("SmolLM2-135M: SD and SSS with prompt-steered drafts")
    fig.tight_layout()
    fig.savefig(plot_path("speculative"), dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
