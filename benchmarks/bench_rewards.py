"""Reward scorer latency: milliseconds per completion at batch 1 and 16.

python -m benchmarks.bench_rewards [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import rewards
from benchmarks.common import plot_path, write_json

QUESTION = "How can I save money on groceries?"
ANSWER = "Plan your meals for the week, make a list, compare unit prices and buy store brands."


def scorers():
    tool = {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
        },
    }
    return {
        "FunctionScorer": rewards.FunctionScorer(lambda c, t: [float(len(x)) for x in t]),
        "RegexScorer": rewards.RegexScorer(r"\bplan\b"),
        "LengthScorer": rewards.LengthScorer(min_words=5, max_words=60),
        "JSONSchemaScorer": rewards.JSONSchemaScorer({"type": "object"}),
        "ToolCallScorer": rewards.ToolCallScorer([tool]),
        "SentimentScorer (VADER)": rewards.SentimentScorer(),
        "EmbeddingSimilarityScorer (MiniLM)": rewards.EmbeddingSimilarityScorer(),
        "LikelihoodScorer (SmolLM2)": rewards.LikelihoodScorer(),
        "LLMJudgeScorer (SmolLM2)": rewards.LLMJudgeScorer(),
        "default_scorer": rewards.default_scorer(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    rows = {}
    for name, scorer in scorers().items():
        scorer.score(QUESTION, [ANSWER])  # load models outside the timing
        entry = {}
        for batch in (1, 16):
            texts = [f"{ANSWER} ({i})" for i in range(batch)]
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                scorer.score(QUESTION, texts)
                times.append((time.perf_counter() - start) * 1000 / batch)
            entry[f"ms_per_completion_batch_{batch}"] = statistics.median(times)
        rows[name] = entry
        print(
            f"{name:<38} batch 1: {entry['ms_per_completion_batch_1']:8.2f} ms   batch 16: {entry['ms_per_completion_batch_16']:8.2f} ms"
        )
    path = write_json("rewards", {"scorers": rows})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(rows)
    ax.barh(names, [rows[n]["ms_per_completion_batch_16"] for n in names])
    ax.set_xscale("log")
    ax.set_xlabel("ms per completion (batch 16, log scale)")
    ax.set_title("Reward scorer latency, 2-core CPU")
    fig.tight_layout()
    fig.savefig(plot_path("rewards"), dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
