"""``make demo``: the embedded chat model answers a few prompts, plain sampling beside
Speculative Rejection, with rewards and alignment statistics.

    python -m langchain_aligned.demo [--n 8] [--max-tokens 64] [--seed 0]

Runs on a CPU with the embedded models only (no model hub).
"""

from __future__ import annotations

import argparse
import textwrap
import time
from typing import Any

PROMPTS = [
    "Give me one tip for sleeping better.",
    "What is the capital of France?",
    "Write a friendly one-sentence greeting for a new colleague.",
]


def _strategies(n: int) -> list[tuple[str, Any]]:
    from langchain_aligned import Sampling

    strategies: list[tuple[str, Any]] = [("plain sampling", Sampling())]
    try:
        from langchain_aligned import SpeculativeRejection
    except (ImportError, AttributeError):  # pragma: no cover - before the strategy existed
        return strategies
    strategies.append(
        (f"Speculative Rejection (n={n}, α=0.5)", SpeculativeRejection(n=n, rejection_rate=0.5))
    )
    return strategies


def _format_stats(alignment: dict[str, Any]) -> str:
    parts = [f"reward {alignment['reward']:+.3f}" if alignment.get("reward") is not None else ""]
    parts.append(f"candidates {alignment['num_candidates']}")
    parts.append(f"tokens decoded {alignment['tokens_generated']}")
    parts.append(f"returned {alignment['tokens_returned']}")
    rounds = alignment.get("rounds") or []
    if rounds:
        alive = " → ".join(str(r["alive"]) for r in rounds)
        parts.append(f"alive per round {alive}")
    parts.append(f"reward calls {alignment['reward_calls']}")
    parts.append(
        f"time {alignment['generation_seconds']:.1f} s decode + {alignment['scoring_seconds']:.1f} s score"
    )
    return ", ".join(p for p in parts if p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="candidates for Speculative Rejection")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import rewards
    from langchain_aligned import AlignedChatModel

    reward = rewards.default_scorer()
    print("Embedded chat model: smollm2-135m-instruct (SmolLM2-135M-Instruct, CPU)")
    print(f"Reward: {reward.name}\n")
    models = {
        label: AlignedChatModel(
            strategy=strategy,
            reward=reward,
            max_tokens=args.max_tokens,
            seed=args.seed,
            temperature=0.8,
        )
        for label, strategy in _strategies(args.n)
    }
    for prompt in PROMPTS:
        print("=" * 78)
        print(f"Q: {prompt}")
        for label, model in models.items():
            start = time.perf_counter()
            reply = model.invoke(prompt)
            elapsed = time.perf_counter() - start
            alignment = reply.response_metadata["alignment"]
            print(f"\n[{label}] ({elapsed:.1f} s)")
            print(textwrap.indent(textwrap.fill(str(reply.content), 76), "  "))
            print(f"  · {_format_stats(alignment)}")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
