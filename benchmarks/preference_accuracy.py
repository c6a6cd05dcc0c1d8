"""Accuracy of the default reward and each scorer on the bundled preference set.

For each pair (prompt, better, worse) a scorer is right when it scores the better
answer strictly higher (both answers scored in one call). Writes
``benchmarks/results/preference_accuracy.json``.

    python -m benchmarks.preference_accuracy
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import rewards
from benchmarks.common import write_json


def accuracy(scorer, pairs):
    right = 0
    per_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pair in pairs:
        better, worse = scorer.score(pair["prompt"], [pair["better"], pair["worse"]])
        hit = int(better > worse)
        right += hit
        per_category[pair["category"]][0] += hit
        per_category[pair["category"]][1] += 1
    return right / len(pairs), {k: v[0] / v[1] for k, v in per_category.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="same as the full run (40 pairs)")
    parser.parse_args()
    pairs = rewards.preference_pairs()
    scorers = {
        "default_scorer": rewards.default_scorer(),
        "LikelihoodScorer(SmolLM2)": rewards.LikelihoodScorer(),
        "EmbeddingSimilarityScorer(MiniLM)": rewards.EmbeddingSimilarityScorer(),
        "SentimentScorer(VADER)": rewards.SentimentScorer(),
        "LLMJudgeScorer(SmolLM2, verdict)": rewards.LLMJudgeScorer(),
        "LLMJudgeScorer(SmolLM2, rating)": rewards.LLMJudgeScorer(mode="rating"),
        "LengthScorer(40-400 chars)": rewards.LengthScorer(min_chars=40, max_chars=400),
    }
    rows = {}
    for name, scorer in scorers.items():
        start = time.perf_counter()
        total, per_category = accuracy(scorer, pairs)
        rows[name] = {
            "accuracy": total,
            "per_category": per_category,
            "seconds": time.perf_counter() - start,
        }
        print(
            f"{name:<38} {total:6.1%}  "
            + "  ".join(f"{k} {v:.0%}" for k, v in sorted(per_category.items()))
        )
    path = write_json(
        "preference_accuracy",
        {"pairs": len(pairs), "scorers": rows, "default_weights": rewards.defaults.DEFAULT_WEIGHTS},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
