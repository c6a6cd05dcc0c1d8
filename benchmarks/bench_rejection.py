"""Speculative Rejection against Best-of-N on one engine (the paper's metrics).

Same engine, same prompts (``benchmarks/prompts.py``), same seed per prompt, same reward
(the embedded ``rewards.default_scorer()``), on each embedded model: the chat model
SmolLM2-135M-Instruct and the base model Gemma-3-270M (prompts rendered as plain text,
since a base model has no chat template). For every
method and prompt the score is the reward of the returned reply. Definitions follow Sun
et al. (NeurIPS 2024):

* **improvement score** — per prompt, (score − max_ref) / (max_ref − min_ref) where
  max_ref / min_ref are the highest and lowest candidate rewards of the reference
  Best-of-N (the largest n in the run); reported as 100·(1 + mean), so the reference
  scores 100;
* **relative compute** — Σ time of the method ÷ Σ time of the reference (one device for
  every method here, so no GPU-count factor). The time is the process's CPU time, which
  equals wall time on an idle machine with one torch thread and is far less moved by
  other programs than wall time — but not immune: caches and memory bandwidth are
  shared, and Best-of-64's CPU time differed by 32 % between two runs under different
  loads. Read speedups as ±30 % on a busy machine; the ratio of tokens decoded, the KV
  cache and the scores are exact (scores are deterministic under the per-prompt seeds).
  The wall-time ratio is reported beside it;
* **speedup** — for a Speculative Rejection point (x_s, y_s), log-compute is interpolated
  linearly in score between the two Best-of-N points around y_s; speedup = x_BoN(y_s)/x_s
  (a lower bound "≥" when y_s is above every Best-of-N point).

    python -m benchmarks.bench_rejection            # both models, 20 prompts, 32 tokens, τ = 8,
                                                    # n ∈ {8,16,32,64}, α ∈ {0.3,0.5,0.7}
    python -m benchmarks.bench_rejection --quick    # 20 prompts, n ∈ {8,16}, α = 0.5, 32 tokens, τ = 8
    python -m benchmarks.bench_rejection --models gemma-3-270m --n 8 16 32 --alpha 0.5
    # the grid split over two processes, then summarised together:
    python -m benchmarks.bench_rejection --models smollm2-135m-instruct --n 8 16 32 &
    python -m benchmarks.bench_rejection --models smollm2-135m-instruct --n 64 &
    wait; python -m benchmarks.bench_rejection --models smollm2-135m-instruct --from-partial

Writes ``results/rejection_<model>.json`` and ``.png`` per model.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

from tqdm import tqdm

import rewards
from benchmarks.bench_speed import kv_bytes_per_slot as handle_kv_bytes_per_slot
from benchmarks.common import RESULTS, machine, plot_path, write_json
from benchmarks.prompts import PROMPTS
from langchain_aligned import BestOfN, SpeculativeRejection, generate
from langchain_aligned.models import load_model

MODELS = ["smollm2-135m-instruct", "gemma-3-270m"]


def kv_bytes_per_slot(model: str) -> int:
    """Bytes one cache slot (one position of one row) takes in the target's KV cache.
    Exact for the prompts here, which stay shorter than any sliding attention window
    (so every layer keeps every position)."""
    return handle_kv_bytes_per_slot(load_model(model))


def run_method(model, strategy, prompts, reward, max_new_tokens):
    rows = []
    for index, prompt in enumerate(prompts):
        start, cpu_start = time.perf_counter(), time.process_time()
        (result,) = generate(
            model,
            prompt,
            strategy=strategy,
            reward=reward,
            seed=index,
            max_new_tokens=max_new_tokens,
            temperature=0.8,
        )
        stats = result.stats
        rows.append(
            {
                "seconds": time.perf_counter() - start,
                "cpu_seconds": time.process_time() - cpu_start,
                "generation_seconds": stats.generation_seconds,
                "scoring_seconds": stats.scoring_seconds,
                "score": stats.reward,
                "candidate_rewards": stats.candidate_rewards,
                "tokens": stats.tokens_generated,
                "peak_cache_slots": stats.peak_cache_slots,
                "reward_calls": stats.reward_calls,
                "rounds": len(stats.rounds),
            }
        )
    return rows


def interpolate_speedup(point, bon_points):
    """x_BoN(y_s) / x_s with log-compute linear in score between bracketing BoN points."""
    x_s, y_s = point
    ordered = sorted(bon_points, key=lambda p: p[1])
    for (x1, y1), (x2, y2) in itertools.pairwise(ordered):
        if y1 <= y_s <= y2 and y2 > y1:
            log_x = math.log(x1) + (y_s - y1) / (y2 - y1) * (math.log(x2) - math.log(x1))
            return math.exp(log_x) / x_s, "interpolated"
    if y_s > ordered[-1][1]:
        return ordered[-1][0] / x_s, "lower bound"
    return ordered[0][0] / x_s, "upper bound"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--n", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--decision-tokens", type=int, default=8)
    parser.add_argument(
        "--from-partial",
        action="store_true",
        help="summarise the n levels an interrupted run completed, without decoding",
    )
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.n, args.alpha, args.max_new_tokens = 20, [8, 16], [0.5], 32
        args.decision_tokens = 8
    for model in args.models:
        if args.from_partial:
            summarize_partial(model, args)
        else:
            run_model(model, args)


def checkpoint_dir(model: str) -> Path:
    """One JSON file per finished method (gitignored), so a long grid survives an
    interruption and n levels can run in parallel processes (``--n 8 16 32`` and
    ``--n 64``) before ``--from-partial`` summarises them together."""
    return RESULTS / "checkpoints" / f"rejection_{model}"


def load_checkpoints(model: str, config: dict) -> dict[str, list[dict]]:
    results = {}
    for path in sorted(checkpoint_dir(model).glob("*.json")):
        saved = json.loads(path.read_text())
        if saved["config"] == config:
            results[saved["method"]] = saved["rows"]
    return results


def run_config(model: str, args: argparse.Namespace) -> dict:
    return {
        "model": model,
        "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "decision_tokens": args.decision_tokens,
        "clock": "process_time+split",
    }


def summarize_partial(model: str, args: argparse.Namespace) -> None:
    results = load_checkpoints(model, run_config(model, args))
    complete = [
        n
        for n in args.n
        if f"BoN n={n}" in results and all(f"SpR n={n} α={a}" in results for a in args.alpha)
    ]
    if not complete:
        raise SystemExit(f"no complete n level in the checkpoints of {model}")
    args.n = complete
    # In the order a single run decodes them: by n, Best-of-N first, then each α.
    order = [m for n in complete for m in (f"BoN n={n}", *(f"SpR n={n} α={a}" for a in args.alpha))]
    results = {name: results[name] for name in order}
    reward = rewards.default_scorer()
    summarize(
        model,
        args,
        PROMPTS[: args.prompts],
        reward,
        results,
        # The machine record above this file is the summarising process's; the methods
        # were decoded by the processes that wrote the checkpoints (possibly in parallel).
        provenance={"summarised_from_checkpoints": str(checkpoint_dir(model).relative_to(RESULTS))},
    )


def run_model(model: str, args: argparse.Namespace) -> None:
    prompts = PROMPTS[: args.prompts]
    load_model(model)  # loading is excluded from compute, as in the paper
    reward = rewards.default_scorer()
    reward.score(prompts[0], ["warm-up"])
    # One n at a time (Best-of-N, then Speculative Rejection at every α), so a run cut
    # short still holds complete n levels.
    methods = {}
    for n in args.n:
        methods[f"BoN n={n}"] = BestOfN(n=n)
        for alpha in args.alpha:
            methods[f"SpR n={n} α={alpha}"] = SpeculativeRejection(
                n=n, rejection_rate=alpha, decision_tokens=args.decision_tokens
            )
    config = run_config(model, args)
    folder = checkpoint_dir(model)
    folder.mkdir(parents=True, exist_ok=True)
    results = {k: v for k, v in load_checkpoints(model, config).items() if k in methods}
    for name, strategy in tqdm(methods.items(), desc=f"{model} methods"):
        if name in results:
            continue
        results[name] = run_method(model, strategy, prompts, reward, args.max_new_tokens)
        slug = name.replace(" ", "_").replace("=", "").replace("α", "alpha")
        (folder / f"{slug}.json").write_text(
            json.dumps(
                {"config": config, "method": name, "machine": machine(), "rows": results[name]}
            )
        )
    summarize(model, args, prompts, reward, results)


def summarize(model, args, prompts, reward, results, provenance=None) -> None:
    reference = f"BoN n={max(args.n)}"
    slot_bytes = kv_bytes_per_slot(model)
    ref_rows = results[reference]
    ref_time = sum(r["cpu_seconds"] for r in ref_rows)
    ref_wall = sum(r["seconds"] for r in ref_rows)
    ref_tokens = sum(r["tokens"] for r in ref_rows)
    summary = {}
    for name, rows in results.items():
        improvements = []
        for row, ref in zip(rows, ref_rows, strict=True):
            spread = max(ref["candidate_rewards"]) - min(ref["candidate_rewards"])
            improvements.append(
                (row["score"] - max(ref["candidate_rewards"])) / spread if spread > 0 else 0.0
            )
        summary[name] = {
            "improvement_score": 100 * (1 + sum(improvements) / len(improvements)),
            "mean_reward": sum(r["score"] for r in rows) / len(rows),
            "relative_compute": sum(r["cpu_seconds"] for r in rows) / ref_time,
            "relative_wall_time": sum(r["seconds"] for r in rows) / ref_wall,
            "relative_tokens": sum(r["tokens"] for r in rows) / ref_tokens,
            "tokens_decoded": sum(r["tokens"] for r in rows),
            "peak_cache_slots": (peak := max(r["peak_cache_slots"] for r in rows)),
            "peak_kv_cache_mib": peak * slot_bytes / 2**20,
            "reward_calls": sum(r["reward_calls"] for r in rows),
            "seconds": sum(r["seconds"] for r in rows),
            "cpu_seconds": sum(r["cpu_seconds"] for r in rows),
            "generation_seconds": sum(r["generation_seconds"] for r in rows),
            "scoring_seconds": sum(r["scoring_seconds"] for r in rows),
        }
    bon_points = [
        (summary[f"BoN n={n}"]["relative_compute"], summary[f"BoN n={n}"]["improvement_score"])
        for n in args.n
    ]
    for name, entry in summary.items():
        if name.startswith("SpR"):
            speedup, kind = interpolate_speedup(
                (entry["relative_compute"], entry["improvement_score"]), bon_points
            )
            entry["speedup"], entry["speedup_kind"] = speedup, kind
    for name, entry in summary.items():
        extra = (
            f", speedup {entry['speedup']:.2f}x ({entry['speedup_kind']})"
            if "speedup" in entry
            else ""
        )
        print(
            f"{name:<18} improvement {entry['improvement_score']:6.1f}  compute {entry['relative_compute']:.2f}  "
            f"tokens {entry['relative_tokens']:.2f}  peak slots {entry['peak_cache_slots']}{extra}"
        )
    path = write_json(
        f"rejection_{model}",
        {
            "model": model,
            "reward": reward.name,
            "prompts": len(prompts),
            "max_new_tokens": args.max_new_tokens,
            "decision_tokens": args.decision_tokens,
            "reference": reference,
            "summary": summary,
            "per_prompt": results,
            **(provenance or {}),
        },
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [summary[f"BoN n={n}"]["relative_compute"] for n in args.n]
    ys = [summary[f"BoN n={n}"]["improvement_score"] for n in args.n]
    ax.plot(xs, ys, "o-", color="gray", label="Best-of-N")
    for n, x, y in zip(args.n, xs, ys, strict=True):
        ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    for alpha in args.alpha:
        pts = [
            (
                summary[f"SpR n={n} α={alpha}"]["relative_compute"],
                summary[f"SpR n={n} α={alpha}"]["improvement_score"],
            )
            for n in args.n
        ]
        ax.plot(*zip(*pts, strict=True), "s--", label=f"Speculative Rejection α={alpha}")
    ax.set_xscale("log")
    ax.set_xlabel(f"relative compute (CPU time ÷ {reference})")
    ax.set_ylabel("improvement score (reference = 100)")
    ax.set_title(f"{model}, {len(prompts)} prompts, reward: default scorer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot_path(f"rejection_{model}"), dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
