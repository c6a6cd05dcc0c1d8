"""vLLM: this library's engines side by side, and its strategies against its-hub's on
one vLLM server.

Two parts, both on the embedded SmolLM2-135M-Instruct, the same prompts
(``benchmarks/prompts.py``), temperature 0.8, seed = prompt index where a method takes
one. The reward is the default reward without its likelihood part (MiniLM similarity
+ VADER sentiment, the default's weights). The likelihood part reads the decoder's
recorded log-probabilities only on the transformers engine, so it would cost the vLLM
engines a forward pass the transformers engine does not pay.

* **engines**: Best-of-N(n) and Speculative Rejection(n, α = 0.5, τ) on each of this
  library's engines: ``transformers`` (in process), ``vllm`` (in process) and
  ``openai`` (a vLLM server started here on 127.0.0.1). Methods and engines are
  interleaved prompt by prompt, in one process.
* **peer**: on that one server, this library's Best-of-N and Speculative Rejection
  (``engine="openai"``) against `its-hub` (PyPI ``its-hub``, which talks to
  OpenAI-compatible servers). its-hub's methods are its Best-of-N (budget n) and its
  particle filtering (budget n particles, steps of τ tokens). Each gets the same
  reward, as an outcome reward model and as a process reward model whose scores are
  squashed by a sigmoid, because its-hub wants probabilities. The tokens are the
  server's own count (``vllm:generation_tokens_total``), the same for every method.
  Every reply is scored again with the reward, so the rewards compare.

Recorded per run: wall seconds, tokens generated, the reply's reward. The summary
gives means per method with 95 % bootstrap intervals, and wall-time ratios to
Best-of-N on the same engine.

    pip install its-hub                          # the peer (not a dependency)
    python -m benchmarks.bench_vllm              # both parts: 8 prompts, n ∈ {8, 16}, 64 tokens
    python -m benchmarks.bench_vllm --parts engines --prompts 4 --n 8

Writes ``results/vllm_<model>.json`` and ``vllm_<model>.png``. vLLM spawns its engine
process, so this script runs under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

from .common import plot_path, write_json
from .prompts import PROMPTS

MODEL = "smollm2-135m-instruct"


def cpu_settings() -> None:
    """vLLM's settings for a CPU machine (docs/scale.md), unless already set."""
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def reward_scorer() -> Any:
    import rewards
    from rewards.defaults import DEFAULT_WEIGHTS

    return rewards.WeightedScorer(
        {
            rewards.EmbeddingSimilarityScorer(): DEFAULT_WEIGHTS["similarity"],
            rewards.SentimentScorer(): DEFAULT_WEIGHTS["sentiment"],
        },
        name="similarity + sentiment",
    )


def ours(engine: str, method: str, n: int, tau: int) -> Any:
    from langchain_aligned import BestOfN, SpeculativeRejection

    if method == "best_of_n":
        return BestOfN(n=n)
    return SpeculativeRejection(n=n, rejection_rate=0.5, decision_tokens=tau)


def server_tokens(url: str) -> float:
    import httpx

    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("vllm:generation_tokens_total")
    )


def run_ours(engine, method, n, tau, prompt, seed, args, url, reward) -> dict[str, Any]:
    from langchain_aligned import generate

    kwargs: dict[str, Any] = {}
    if engine == "openai":
        kwargs["engine_kwargs"] = {"base_url": url}
    before = server_tokens(url) if engine == "openai" else 0.0
    start = time.perf_counter()
    (result,) = generate(
        MODEL,
        prompt,
        strategy=ours(engine, method, n, tau),
        reward=reward,
        seed=seed,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        engine=engine,
        **kwargs,
    )
    wall = time.perf_counter() - start
    row = {
        "engine": engine,
        "method": method,
        "library": "langchain-aligned",
        "n": n,
        "prompt": prompt,
        "seed": seed,
        "wall_s": wall,
        "tokens": result.stats.tokens_generated,
        "reward": result.stats.reward,
        "scoring_s": result.stats.scoring_seconds,
    }
    if engine == "openai":
        row["server_tokens"] = server_tokens(url) - before
    return row


class ItsHubRewards:
    """The benchmark's reward as its-hub's outcome and process reward models."""

    def __init__(self, reward: Any) -> None:
        from its_hub.api import AbstractOutcomeRewardModel, AbstractProcessRewardModel

        scorer = reward

        class Outcome(AbstractOutcomeRewardModel):
            def score(self, messages, **kwargs):
                raise NotImplementedError

            async def ascore(self, messages, orchestrator=None, **kwargs):
                # A batch of conversations, each ending with the candidate reply.
                return [scorer.score(_messages(c[:-1]), [_text(c[-1])])[0] for c in messages]

        class Process(AbstractProcessRewardModel):
            def score(self, prompt_or_messages, steps):
                raise NotImplementedError

            async def ascore(self, prompt_or_messages, steps):
                values = scorer.score(_messages(prompt_or_messages), list(steps))
                return [1 / (1 + math.exp(-v)) for v in values]

        self.outcome = Outcome()
        self.process = Process()


def _text(message: Any) -> str:
    content = (
        message.get("content") if isinstance(message, dict) else getattr(message, "content", "")
    )
    return content if isinstance(content, str) else str(content or "")


def _messages(conversation: Any) -> Any:
    if isinstance(conversation, str):
        return conversation
    if hasattr(conversation, "to_chat_messages"):
        conversation = conversation.to_chat_messages()
    out = []
    for message in conversation:
        role = message.get("role") if isinstance(message, dict) else message.role
        out.append({"role": role, "content": _text(message)})
    return out


def run_its_hub(method, n, tau, prompt, args, url, served, hub_rewards, reward) -> dict[str, Any]:
    from its_hub import BestOfN
    from its_hub.core.algorithms.particle_gibbs import ParticleFiltering
    from its_hub.core.lms.openai_lm import OpenAICompatibleLanguageModel
    from its_hub.core.lms.step_generation import StepGeneration

    lm = OpenAICompatibleLanguageModel(
        endpoint=url,
        api_key="none",
        model_name=served,
        max_tokens=args.max_new_tokens,
        temperature=args.temperature,
    )
    if method == "best_of_n":
        algorithm: Any = BestOfN(hub_rewards.outcome)
    else:
        steps = max(1, args.max_new_tokens // tau)
        generation = StepGeneration(
            max_steps=steps, tokens_per_step=tau, temperature=args.temperature
        )
        algorithm = ParticleFiltering(generation, hub_rewards.process)
    conversation = [{"role": "user", "content": prompt}]
    before = server_tokens(url)
    start = time.perf_counter()
    # A plain prompt: its-hub makes it the user message (its particle filtering takes
    # no message dicts).
    response = asyncio.run(algorithm.ainfer(lm, prompt, budget=n))
    wall = time.perf_counter() - start
    tokens = server_tokens(url) - before
    text = _text(response)
    return {
        "engine": "openai",
        "method": "best_of_n" if method == "best_of_n" else "particle_filtering",
        "library": "its-hub",
        "n": n,
        "prompt": prompt,
        "seed": None,
        "wall_s": wall,
        "tokens": tokens,
        "server_tokens": tokens,
        "reward": reward.score(conversation, [text])[0],
    }


def bootstrap_mean(values: Sequence[float], rng: random.Random, draws: int = 2000) -> list[float]:
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(draws))
    return [means[int(0.025 * draws)], means[int(0.975 * draws) - 1]]


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rng = random.Random(0)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["part"], row["library"], row["engine"], row["method"], row["n"])
        groups.setdefault(key, []).append(row)
    out = []
    for (part, library, engine, method, n), group in sorted(groups.items(), key=str):
        walls = [r["wall_s"] for r in group]
        baseline = groups.get((part, "langchain-aligned", engine, "best_of_n", n), [])
        by_prompt = {r["prompt"]: r["wall_s"] for r in baseline}
        ratios = [r["wall_s"] / by_prompt[r["prompt"]] for r in group if r["prompt"] in by_prompt]
        out.append(
            {
                "part": part,
                "library": library,
                "engine": engine,
                "method": method,
                "n": n,
                "runs": len(group),
                "wall_s": statistics.fmean(walls),
                "wall_s_ci": bootstrap_mean(walls, rng),
                "tokens": statistics.fmean(r["tokens"] for r in group),
                "reward": statistics.fmean(r["reward"] for r in group),
                "reward_ci": bootstrap_mean([r["reward"] for r in group], rng),
                "wall_ratio_to_our_best_of_n": statistics.median(ratios) if ratios else None,
            }
        )
    return out


def plot(summary: list[dict[str, Any]], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, part, title in (
        (axes[0], "engines", "this library's engines"),
        (axes[1], "peer", "one vLLM server: langchain-aligned vs its-hub"),
    ):
        for row in (r for r in summary if r["part"] == part):
            label = f"{row['library']} {row['engine']} {row['method']} n={row['n']}"
            axis.errorbar(
                row["wall_s"],
                row["reward"],
                xerr=[[row["wall_s"] - row["wall_s_ci"][0]], [row["wall_s_ci"][1] - row["wall_s"]]],
                yerr=[[row["reward"] - row["reward_ci"][0]], [row["reward_ci"][1] - row["reward"]]],
                marker="o" if row["library"] == "langchain-aligned" else "s",
                capsize=3,
                label=label,
            )
        axis.set_xlabel("wall seconds per prompt")
        axis.set_ylabel("reward of the reply")
        axis.set_title(title)
        axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(plot_path(name), dpi=120)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", nargs="+", default=["engines", "peer"], choices=["engines", "peer"]
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--tau", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--out", default=None, help=f"result name (default vllm_{MODEL})")
    parser.add_argument("--note", default="")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 prompts, n = 4, 16 tokens; written beside the full result (.quick), never over it",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.prompts, args.n, args.max_new_tokens, args.tau = 2, [4], 16, 4
    if args.out is None:
        args.out = f"vllm_{MODEL}" + (".quick" if args.quick else "")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cpu_settings()
    from langchain_aligned.engines.serve import VLLMServer

    reward = reward_scorer()
    prompts = PROMPTS[: args.prompts]
    rows: list[dict[str, Any]] = []
    with VLLMServer(MODEL) as server:
        import httpx

        served = httpx.get(f"{server.url}/models").json()["data"][0]["id"]
        hub = ItsHubRewards(reward) if "peer" in args.parts else None
        # Warm every engine once (start-up and first-call costs are not the methods').
        for engine in ("transformers", "vllm", "openai"):
            run_ours(engine, "best_of_n", 2, args.tau, prompts[0], 0, args, server.url, reward)
        for n in args.n:
            for index, prompt in enumerate(prompts):
                order = ["best_of_n", "speculative_rejection"]
                if index % 2:
                    order.reverse()  # alternate which method goes first
                if "engines" in args.parts:
                    for engine in ("transformers", "vllm", "openai"):
                        for method in order:
                            row = run_ours(
                                engine, method, n, args.tau, prompt, index, args, server.url, reward
                            )
                            rows.append({"part": "engines", **row})
                            print(
                                f"engines {engine:12} {method:22} n={n:3} p={index} {row['wall_s']:6.2f}s r={row['reward']:.3f}",
                                flush=True,
                            )
                if "peer" in args.parts and hub is not None:
                    for method in order:
                        mine = run_ours(
                            "openai", method, n, args.tau, prompt, index, args, server.url, reward
                        )
                        rows.append({"part": "peer", **mine})
                        theirs = run_its_hub(
                            method, n, args.tau, prompt, args, server.url, served, hub, reward
                        )
                        rows.append({"part": "peer", **theirs})
                        print(
                            f"peer {method:22} n={n:3} p={index} ours {mine['wall_s']:6.2f}s r={mine['reward']:.3f} | its-hub {theirs['wall_s']:6.2f}s r={theirs['reward']:.3f}",
                            flush=True,
                        )
    summary = summarise(rows)
    payload = {
        "benchmark": "bench_vllm",
        "settings": {**vars(args), "model": MODEL, "reward": reward.name},
        "summary": summary,
        "rows": rows,
    }
    path = write_json(args.out, payload)
    plot(summary, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
