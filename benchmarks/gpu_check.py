"""GPU check: Speculative Rejection against Best-of-N on SmolLM2 in bf16 at one KV budget.

One command, at most 8 minutes on one GPU, nothing fetched from a hub: the policy
(SmolLM2-135M-Instruct) and the reward's models (MiniLM, VADER) are the embedded ones
that install with the environment. For each n, in ascending order, and each prompt,
Best-of-N and Speculative Rejection (α = 0.5) decode back to back (first one
alternating) under the same ``memory_budget_slots`` B — Best-of-N in sequential
batches of ⌊B / (P + L)⌋ rows, Speculative Rejection with all n started and a round
whenever the cache would exceed B — with ``rewards.default_scorer()`` over the
policy's own weights. B defaults to bench_speed's rule: the largest over n of
max(⌈n/4⌉·(P + L), n·(P + τ)), P the longest prompt (76 288 slots ≈ 1.6 GiB of bf16
KV cache at the defaults: Best-of-N at n = 1024 decodes 4 batches of 256 rows; at n = 64
and 256 the budget holds every row, so both methods decode alike — a control whose
time ratio should be ≈ 1).

    python -m benchmarks.gpu_check        # cuda, bf16, n ∈ {64, 256, 1024}, L = 256, 4 prompts
    python -m benchmarks.gpu_check --device cpu --dtype float32 --n 4 8 --length 16 --prompts 2

A time guard keeps the whole command under ``--time-limit`` (default 420 s, loading
included): before each prompt it predicts that prompt's pair from the last one (or,
for a new n, the previous n's mean scaled by the ratio of n) and starts it only if it
would end in time; what ran and where it stopped are recorded.

Metrics as in ``benchmarks/bench_speed.py`` (time ratio with its bootstrap interval,
speedup at equal reward on Best-of-N's curve over n, peak KV cache, scorer shares,
forward-hook count against ``target_forward_passes``), plus the CUDA peak memory of
each run. Writes ``results/gpu_check_<model>.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import speed_metrics, speed_plots
from benchmarks.bench_speed import (
    DEFAULT_MODEL,
    TEMPERATURE,
    default_budget,
    kv_bytes_per_slot,
    prepare,
    run_setting,
    write_results,
)
from benchmarks.common import RESULTS, machine


class TimeGuard:
    """Says whether the next prompt's pair, predicted to take ``predicted`` seconds
    (or as long as the last pair), still ends within ``limit`` seconds of ``start``."""

    def __init__(self, limit: float, start: float) -> None:
        self.limit = limit
        self.start = start
        self.predicted = 0.0
        self.stopped: dict[str, Any] | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, last_pair_seconds: float | None) -> bool:
        predicted = self.predicted if last_pair_seconds is None else last_pair_seconds
        if self.elapsed() + predicted <= self.limit:
            return True
        self.stopped = {"elapsed_seconds": self.elapsed(), "predicted_pair_seconds": predicted}
        return False


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--n", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--length", type=int, default=256, help="max new tokens")
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.5])
    parser.add_argument("--decision-tokens", type=int, default=16, help="τ in the budget rule")
    parser.add_argument("--budget", type=int, default=None, help="KV slots (default: derived)")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--time-limit", type=float, default=420.0, help="seconds, loading included")
    parser.add_argument("--resamples", type=int, default=speed_metrics.RESAMPLES)
    parser.add_argument("--out", default=None, help="result name (default gpu_check_<model>)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, model: Any = None, reward: Any = None) -> dict:
    """Run the check; ``model`` / ``reward`` replace ``--model`` and the default scorer."""
    args = parse_args(argv)
    guard = TimeGuard(args.time_limit, time.perf_counter())
    source = args.model if model is None else model
    run = prepare(source, reward, args, device=args.device, dtype=args.dtype)
    handle, counter, prompts, p_max = run["handle"], run["counter"], run["prompts"], run["p_max"]
    name = args.out or f"gpu_check_{args.model if model is None else handle.name}"
    ns = sorted(args.n)
    budget = args.budget or default_budget(
        [(args.length, n) for n in ns], p_max, args.decision_tokens
    )
    payload: dict[str, Any] = {
        "machine": machine(),
        "benchmark": "gpu_check",
        "model": handle.name,
        "dtype": str(handle.dtype),
        "device": str(handle.device),
        "reward": str(getattr(run["reward"], "name", "reward")),
        "settings": {
            **{k: v for k, v in vars(args).items() if k != "out_dir"},
            "budget": budget,
            "longest_prompt_tokens": p_max,
            "temperature": TEMPERATURE,
        },
        "kv_bytes_per_slot": kv_bytes_per_slot(handle),
        "load_seconds": guard.elapsed(),
        "ran": [],
        "skipped": [],
        "stopped": None,
        "complete": False,
        "pairs": [],
    }
    previous: tuple[int, float] | None = None  # (n, mean seconds of its pairs)
    for n in ns:
        if guard.stopped:
            payload["skipped"].append({"n": n, "reason": "time limit"})
            continue
        # A new n's first pair is predicted from the previous n, scaled by n.
        guard.predicted = previous[1] * n / previous[0] if previous else 0.0
        pairs = run_setting(
            run,
            regime="budget",
            budget=budget,
            n=n,
            length=args.length,
            prompts=prompts,
            repeats=1,
            guard=guard,
        )
        payload["ran"].append({"n": n, "prompts": len(pairs), "of": len(prompts)})
        if pairs:
            previous = (n, statistics.fmean(p["seconds"] for p in pairs))
            payload["pairs"] += pairs
            payload["summary"] = speed_metrics.summarise(payload["pairs"], resamples=args.resamples)
        if guard.stopped:
            payload["stopped"] = {"n": n, "after_prompts": len(pairs), **guard.stopped}
        payload["elapsed_seconds"] = guard.elapsed()
        write_results(payload, args.out_dir, name)
    counter.close()
    payload["complete"] = not payload["skipped"] and payload["stopped"] is None
    if payload["pairs"]:
        payload["plot"] = str(speed_plots.plot(payload, args.out_dir / f"{name}.png"))
        speed_plots.print_summary(payload)
    payload["elapsed_seconds"] = guard.elapsed()
    path = write_results(payload, args.out_dir, name)
    print(f"wrote {path} after {payload['elapsed_seconds']:.0f} s")
    return payload


if __name__ == "__main__":
    main()
