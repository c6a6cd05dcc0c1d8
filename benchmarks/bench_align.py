"""Which alignment settings carry over to a reward the draft was not aligned on.

``bench_speculative --drafts`` aligns the distilled draft by DPO on 48 on-policy pairs
(``bench_speculative.ALIGN``) under the *alignment reward* (MiniLM similarity to warm
replies); the pairs are learnt by heart (loss 0 after 7 steps) and the *gold reward*
(VADER sentiment, which shares nothing with MiniLM) hardly moves. This script aligns the
same draft reference under a few settings (8 samples per prompt, so wider reward
gaps, on twice the prompts; then also a lower learning rate and fewer epochs) and
measures each aligned draft alone on the held-out benchmark prompts (2 seeded replies
each, 64 tokens): its alignment reward and its gold reward, as a shift over the draft
reference's replies to the same prompts and seeds (paired; standard error over prompts).

``--sss`` then runs Reward-Shifted Speculative Sampling on the target with the aligned
draft of the best gold shift, interleaved prompt by prompt with plain target sampling:
the gold shift, target forward passes per token and acceptance.

    python -m benchmarks.bench_align [--quick] [--sss [--sss-seeds K]]

Writes ``results/align.json`` and ``align.png``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import rewards
from benchmarks.bench_speculative import ALIGN, DISTILL, GAMMA, WARM_REPLIES
from benchmarks.common import plot_path, write_json
from benchmarks.prompts import PROMPTS
from langchain_aligned import RewardShiftedSampling, Sampling, generate
from langchain_aligned.drafts import DISTILL_PROMPTS, align_draft, distill_draft

TARGET = "smollm2-135m-instruct"
# 48 more requests on the training topics (never the benchmark's held-out prompts).
_MORE_FORMS = (
    "What is the first step in {}?",
    "Tell me about a common mistake people make when {}.",
    "How do I get better at {}?",
)
_TOPICS = sorted({p.removeprefix("Give me one tip for ").rstrip(".") for p in DISTILL_PROMPTS[::3]})
MORE_PROMPTS = tuple(form.format(t) for t in _TOPICS for form in _MORE_FORMS)
VARIANTS = {
    "recipe (n=4, 48 prompts, lr 1e-4, 3 epochs)": ALIGN,
    "n=8, 96 prompts": {
        **ALIGN,
        "samples_per_prompt": 8,
        "prompts": DISTILL_PROMPTS + MORE_PROMPTS,
    },
    "n=8, 96 prompts, lr 3e-5, 2 epochs": {
        **ALIGN,
        "samples_per_prompt": 8,
        "prompts": DISTILL_PROMPTS + MORE_PROMPTS,
        "learning_rate": 3e-5,
        "epochs": 2,
    },
}
SEEDS = (0, 1)


def replies(model, prompts, max_new_tokens, strategy=None):
    """One seeded reply per (prompt, seed), prompt-major."""
    out = []
    for index, prompt in enumerate(prompts):
        for seed in SEEDS:
            (result,) = generate(
                model,
                prompt,
                strategy=strategy or Sampling(),
                seed=1000 * seed + index,
                max_new_tokens=max_new_tokens,
            )
            out.append(result)
    return out


def per_prompt(scorer, prompts, results, k=len(SEEDS)):
    """The scorer's mean over each prompt's ``k`` replies: [prompt]."""
    return [
        statistics.mean(scorer.score(p, [r.text for r in results[i * k : (i + 1) * k]]))
        for i, p in enumerate(prompts)
    ]


def paired(values, base):
    diffs = [a - b for a, b in zip(values, base, strict=True)]
    # Prompts are the independent units (the same prompts and seeds in both rows).
    return statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small settings (a smoke run)")
    parser.add_argument("--sss", action="store_true", help="SSS with the best aligned draft")
    parser.add_argument(
        "--sss-seeds",
        type=int,
        default=len(SEEDS),
        choices=range(1, len(SEEDS) + 1),
        help=f"seeds per prompt in the SSS rows (default {len(SEEDS)}; 1 halves their time)",
    )
    args = parser.parse_args()
    assert not set(PROMPTS) & set(DISTILL_PROMPTS + MORE_PROMPTS)  # held out
    prompts = PROMPTS[:4] if args.quick else PROMPTS
    max_new = 16 if args.quick else 64
    variants = dict(list(VARIANTS.items())[:2]) if args.quick else VARIANTS
    if args.quick:
        variants = {
            name: {**v, "prompts": v.get("prompts", DISTILL_PROMPTS)[:8], "max_new_tokens": 16}
            for name, v in variants.items()
        }
    name = "align_quick" if args.quick else "align"
    gold = rewards.SentimentScorer()
    alignment = rewards.EmbeddingSimilarityScorer(references=WARM_REPLIES)
    reference = distill_draft(TARGET, **DISTILL)
    base = replies(reference.folder, prompts, max_new)
    payload = {
        "target": TARGET,
        "reference": Path(reference.folder).name,
        "prompts": len(prompts),
        "seeds": len(SEEDS),
        "max_new_tokens": max_new,
        "gold": gold.name,
        "alignment_reward": alignment.name,
        "reference_draft": {
            "gold": statistics.mean(per_prompt(gold, prompts, base)),
            "alignment_reward": statistics.mean(per_prompt(alignment, prompts, base)),
        },
        "variants": {},
    }
    base_gold = per_prompt(gold, prompts, base)
    base_alignment = per_prompt(alignment, prompts, base)
    folders = {}
    for label, settings in variants.items():
        report = align_draft(reference.folder, alignment, **settings)
        folders[label] = report.folder
        rows = replies(report.folder, prompts, max_new)
        gold_shift, gold_se = paired(per_prompt(gold, prompts, rows), base_gold)
        align_shift, align_se = paired(per_prompt(alignment, prompts, rows), base_alignment)
        payload["variants"][label] = {
            "settings": {k: (len(v) if k == "prompts" else v) for k, v in settings.items()},
            "pairs": report.pairs,
            "mean_reward_gap": report.mean_reward_gap,
            "steps": len(report.losses),
            "last_loss": report.losses[-1] if report.losses else None,
            "seconds_when_made": report.seconds,
            "gold_shift": gold_shift,
            "gold_shift_se": gold_se,
            "alignment_shift": align_shift,
            "alignment_shift_se": align_se,
        }
        print(f"{label}: {payload['variants'][label]}")
        write_json(name, payload)
    if args.sss:
        best = max(payload["variants"], key=lambda k: payload["variants"][k]["gold_shift"])
        payload["sss"] = {
            "aligned_draft": best,
            "seeds": args.sss_seeds,
            **sss_rows(folders[best], reference, prompts, gold, max_new, SEEDS[: args.sss_seeds]),
        }
        print(f"SSS with {best}: {payload['sss']}")
    path = write_json(name, payload)
    plot(payload, name)
    print(f"wrote {path}")


def sss_rows(aligned_folder, reference, prompts, gold, max_new, seeds=SEEDS):
    """Plain target sampling and SSS, interleaved prompt by prompt (same prompts, seeds)."""
    strategies = {
        "sampling": Sampling(),
        "SSS": RewardShiftedSampling(
            draft=aligned_folder, draft_reference=reference.folder, num_draft_tokens=GAMMA
        ),
    }
    generate(TARGET, "warm up", max_new_tokens=2)
    results = {n: [] for n in strategies}
    seconds = dict.fromkeys(strategies, 0.0)
    for index, prompt in enumerate(prompts):
        for seed in seeds:
            for label, strategy in strategies.items():
                start = time.perf_counter()
                (result,) = generate(
                    TARGET,
                    prompt,
                    strategy=strategy,
                    seed=1000 * seed + index,
                    max_new_tokens=max_new,
                )
                seconds[label] += time.perf_counter() - start
                results[label].append(result)
    golds = {n: per_prompt(gold, prompts, r, len(seeds)) for n, r in results.items()}
    shift, se = paired(golds["SSS"], golds["sampling"])
    out = {"gold_shift": shift, "gold_shift_se": se}
    for label, rows in results.items():
        tokens = sum(len(r.token_ids) for r in rows)
        proposed = sum(r.stats.draft_tokens_proposed for r in rows)
        out[label] = {
            "gold": statistics.mean(golds[label]),
            "tokens_per_s": tokens / seconds[label],
            "target_passes_per_token": sum(r.stats.target_forward_passes for r in rows) / tokens,
            "acceptance_rate": sum(r.stats.draft_tokens_accepted for r in rows) / proposed
            if proposed
            else None,
        }
    return out


def plot(payload, name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, row in payload["variants"].items():
        ax.errorbar(
            row["alignment_shift"],
            row["gold_shift"],
            xerr=2 * row["alignment_shift_se"],
            yerr=2 * row["gold_shift_se"],
            marker="o",
            capsize=3,
            label=label,
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("alignment-reward shift over the draft reference (MiniLM warmth)")
    ax.set_ylabel("gold shift over the draft reference (VADER)")
    ax.legend(fontsize=7)
    ax.set_title(
        f"Aligned drafts alone, {payload['prompts']} held-out prompts × {payload['seeds']} seeds (±2 s.e.)"
    )
    fig.tight_layout()
    fig.savefig(plot_path(name), dpi=120)


if __name__ == "__main__":
    main()
