"""Speed where the paper promises it: Speculative Rejection against Best-of-N in wall time.

Sun et al. (NeurIPS 2024) measure long replies, large n and one GPU's memory. This
benchmark decodes that regime on the embedded SmolLM2-135M-Instruct with the
embedded ``rewards.default_scorer()`` (its likelihood part is the self-reward: it
reads the log-probabilities the decoder recorded, so it should cost no forward pass).
For every reply length L and n, and for each prompt (seed = prompt index, temperature
0.8), Best-of-N and Speculative Rejection (at each α) run back to back in one process,
in alternating order per prompt and repeat, in two regimes:

* **unlimited** — no memory limit: Best-of-N decodes all n candidates in one batch;
  Speculative Rejection follows the memory rule with the budget N·(prompt + τ), its
  cache size at the first decision token τ;
* **budget** — one KV budget B (``memory_budget_slots``, rows × slots) for both:
  Best-of-N decodes ⌊B / (prompt + L)⌋ rows at a time in sequential batches, while
  Speculative Rejection starts all n and holds a round whenever the cache would
  exceed B. Settings where B holds all n·(prompt + L) slots are not rerun: both
  methods would decode exactly as in the unlimited rows (no batch split, no round).
  The default B is the largest over the grid of max(⌈n/4⌉·(P + L), n·(P + τ)), P the
  longest prompt: Best-of-N at the largest n holds at most a quarter of its rows at
  once, and Speculative Rejection at the largest n reaches τ tokens before a round.

Recorded per run (raw rows in the JSON): wall time (``perf_counter``), CPU time
(``process_time``), decode and scoring seconds, seconds in each part of the reward,
tokens decoded, reward of the reply, the strategy's target forward passes and the
passes a forward hook on the policy counted (any difference is a scorer's pass),
peak KV-cache slots and rounds. Metrics (``benchmarks/speed_metrics.py``):

* **time ratio** — per prompt t_SpR ÷ t_BoN (wall and CPU), its median over prompts
  and repeats with a 95 % percentile-bootstrap interval;
* **speedup at equal reward** — t_BoN(ȳ_SpR) ÷ t̄_SpR, log wall time interpolated
  linearly in mean reward on Best-of-N's curve over n (per regime and length), with
  a bootstrap interval over prompts; "lower bound" above the curve, "upper bound"
  below it;
* **targets** (issue 13) — for n ≥ 32: time fraction at equal reward ≤ ½ (L < 256)
  or ≤ ⅓ (L ≥ 256); at equal budget ≤ ¼; SpR's peak KV cache ≤ ½ of Best-of-N's at
  equal n (unlimited); hook-counted passes = the strategies' target passes.

    python -m benchmarks.bench_speed               # the default grid (below)
    python -m benchmarks.bench_speed --quick       # n ∈ {4, 8}, L = 16, 3 prompts: ≈ 2 min
    python -m benchmarks.bench_speed --lengths 96 --n 16 32 --alpha 0.5 0.75 --budget 3712
    python -m benchmarks.bench_speed --summarise a.json b.json --out speed_<model>  # merge parts
    python -m benchmarks.bench_speed --max-work 0  # all 4 × 2 settings

Default grid: n ∈ {16, 32, 64, 128} × L ∈ {96, 256} minus the settings with n·L above
``--max-work`` 12288 (128·96), so L = 256 runs n ∈ {16, 32} only; α = 0.5, τ = 16, the
same 12 prompts in every setting (none uses fewer), one repeat, one torch thread
(two threads were 1.3× faster on the idle 2-core VM but 10–15× slower beside any
other busy process). Time on the 2-core VM (AMD EPYC), measured by the committed run
(parts of the grid in separate processes, two at a time; wall minutes per setting,
unlimited + budget rows): L = 96: n = 16 ≈ 21 (α ∈ {0.5, 0.75}, no budget rows),
n = 32 ≈ 35 (both α), n = 64 ≈ 43; L = 256: n = 16 ≈ 55, n = 32 ≈ 70. A later,
faster VM, alone, ran L = 96 at n = 128 (unlimited rows; B = 3712 cannot hold 128
prompts) in 12 min and n = 16–64 in 26 min. A decode step costs ≈ 180 ms a forward pass plus
≈ 7.5 ms a row-token there (the cost model in the summary).

The committed result merges four such parts with ``--summarise`` (each part's machine
record is kept in ``parts``).

Writes ``results/speed_<model>.json`` (after every setting, ``"complete": false``
until the end) and ``speed_<model>.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import rewards
from benchmarks import speed_metrics, speed_plots
from benchmarks.common import RESULTS, machine
from benchmarks.prompts import PROMPTS
from langchain_aligned import BestOfN, SpeculativeRejection, generate
from langchain_aligned.decoding import build_requests, engine_for
from langchain_aligned.decoding.params import SamplingParams
from langchain_aligned.models import load_model
from rewards.base import score_items

DEFAULT_MODEL = "smollm2-135m-instruct"
TEMPERATURE = 0.8


class TimedScorer:
    """Stands in for one scorer and adds the wall time of each of its calls to
    ``seconds`` (the scorer's share of the scoring time)."""

    def __init__(self, inner: Any, name: str) -> None:
        self.inner = inner
        self.name = name
        self.comparable_across_calls = getattr(inner, "comparable_across_calls", True)
        self.seconds = 0.0

    def score(self, conversation: Any, completions: list[str]) -> Any:
        return self.score_batch([(conversation, completions)])[0]

    def score_batch(self, items: list[tuple[Any, list[str]]]) -> Any:
        start = time.perf_counter()
        try:
            return score_items(self.inner, items)
        finally:
            self.seconds += time.perf_counter() - start


def instrument(reward: Any) -> tuple[Any, list[TimedScorer]]:
    """Time each part of a ``WeightedScorer`` (its ``parts``, replaced in place by
    timed stand-ins), or the whole of any other scorer; returns (reward, timers)."""
    parts = getattr(reward, "parts", None)
    if not (isinstance(parts, list) and parts):
        timer = TimedScorer(reward, str(getattr(reward, "name", type(reward).__name__)))
        return timer, [timer]
    timers = []
    for index, (scorer, _, _) in enumerate(parts):
        name = str(getattr(scorer, "name", None) or type(scorer).__name__)
        # Two parts of one kind keep separate totals.
        timers.append(
            TimedScorer(scorer, f"{name}#{index}" if any(t.name == name for t in timers) else name)
        )
    reward.parts = [(t, w, m) for t, (_, w, m) in zip(timers, parts, strict=True)]
    return reward, timers


class ForwardCounter:
    """Counts calls of the policy's forward (a forward hook): compared with the
    strategies' ``target_forward_passes``, any surplus is a pass a scorer ran."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        self._hook = model.register_forward_hook(self._counted)

    def _counted(self, *_: Any) -> None:
        self.count += 1

    def close(self) -> None:
        self._hook.remove()


def prompt_lengths(handle: Any, prompts: Sequence[str]) -> list[int]:
    """Tokens of each rendered prompt (the P of the budget formulas)."""
    params = SamplingParams(max_new_tokens=1)
    return [len(r.prompt_ids) for r in build_requests(engine_for(handle), prompts, params, seed=0)]


def default_budget(grid: Sequence[tuple[int, int]], prompt_slots: int, tau: int) -> int:
    """max over (L, n) of max(⌈n/4⌉·(P + L), n·(P + τ)) KV slots (see the docstring)."""
    return max(
        max(math.ceil(n / 4) * (prompt_slots + length), n * (prompt_slots + tau))
        for length, n in grid
    )


def kv_bytes_per_slot(handle: Any) -> int:
    """Bytes of one cache slot (one position of one row): keys and values of every layer."""
    return int(handle.kv_bytes_per_slot)


def strategies(n: int, alphas: Sequence[float], tau: int, budget: int | None) -> dict[str, Any]:
    """Best-of-N and Speculative Rejection at each α, all under the same budget."""
    return {
        "BoN": BestOfN(n=n, memory_budget_slots=budget),
        **{
            f"SpR α={alpha:g}": SpeculativeRejection(
                n=n, rejection_rate=alpha, decision_tokens=tau, memory_budget_slots=budget
            )
            for alpha in alphas
        },
    }


def run_one(handle, strategy, prompt, seed, length, reward, timers, counter) -> dict[str, Any]:
    """One decode of one prompt, with every clock and counter around it."""
    before, passes = [t.seconds for t in timers], counter.count
    cuda = handle.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(handle.device)
    start, cpu_start = time.perf_counter(), time.process_time()
    (result,) = generate(
        handle,
        prompt,
        strategy=strategy,
        reward=reward,
        seed=seed,
        max_new_tokens=length,
        temperature=TEMPERATURE,
    )
    if cuda:
        torch.cuda.synchronize(handle.device)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    stats = result.stats
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "generation_seconds": stats.generation_seconds,
        "scoring_seconds": stats.scoring_seconds,
        "scorer_seconds": {t.name: t.seconds - b for t, b in zip(timers, before, strict=True)},
        "reward": stats.reward,
        "tokens": stats.tokens_generated,
        "tokens_returned": stats.tokens_returned,
        "target_forward_passes": stats.target_forward_passes,
        "hook_forward_passes": counter.count - passes,
        "peak_cache_slots": stats.peak_cache_slots,
        "peak_batch_size": stats.peak_batch_size,
        "rounds": len(stats.rounds),
        "decision_tokens": [r.decision_token for r in stats.rounds],
        "reward_calls": stats.reward_calls,
        "finish_reason": result.finish_reason,
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(handle.device) if cuda else None,
    }


def run_setting(run: dict, *, n, length, regime, budget, prompts, repeats, guard=None) -> list:
    """Every prompt × repeat of one (n, L, regime), the methods back to back per prompt
    (first one alternating), so both see the same machine load. ``run`` holds the
    handle, reward, timers, counter, α list and τ; ``guard(seconds_of_last_pair)``
    returning False stops before the next prompt (gpu_check's time limit)."""
    methods = strategies(n, run["alpha"], run["tau"], budget)
    pairs: list[dict] = []
    for repeat in range(repeats):
        for index, prompt in enumerate(prompts):
            if guard is not None and not guard(pairs[-1]["seconds"] if pairs else None):
                return pairs
            # Alternate who goes first, so a trend in machine load favours no method.
            order = list(methods) if (index + repeat) % 2 == 0 else list(reversed(methods))
            start = time.perf_counter()
            meters = (run["reward"], run["timers"], run["counter"])
            rows = {
                name: run_one(run["handle"], methods[name], prompt, index, length, *meters)
                for name in order
            }
            pairs.append(
                {
                    "regime": regime,
                    "n": n,
                    "length": length,
                    "budget": budget,
                    "prompt": index,
                    "seed": index,
                    "repeat": repeat,
                    "order": order,
                    "seconds": time.perf_counter() - start,
                    "methods": {name: rows[name] for name in methods},
                }
            )
            times = ", ".join(f"{k} {v['seconds']:.3g} s" for k, v in pairs[-1]["methods"].items())
            print(
                f"{regime:9} L={length} n={n} prompt {index} repeat {repeat}: {times}", flush=True
            )
    return pairs


def prepare(
    model: Any, reward: Any, args: argparse.Namespace, *, device: str = "auto", dtype: str = "auto"
) -> dict:
    """Load the policy, instrument the reward and hook the forward (loading and the
    scorers' first call are kept out of every timing, as in the paper); the prompts
    and the longest prompt's length (for the budget) come with it."""
    handle = load_model(model, device=device, dtype=dtype)
    reward, timers = instrument(rewards.default_scorer(handle) if reward is None else reward)
    reward.score(PROMPTS[0], ["warm-up"])
    generate(handle, PROMPTS[0], strategy=BestOfN(n=2), reward=reward, seed=0, max_new_tokens=4)
    prompts = PROMPTS[: args.prompts]
    return {
        "handle": handle,
        "reward": reward,
        "timers": timers,
        "counter": ForwardCounter(handle.model),
        "alpha": args.alpha,
        "tau": args.decision_tokens,
        "prompts": prompts,
        "p_max": max(prompt_lengths(handle, prompts)),
    }


def write_results(payload: dict, out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--n", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--lengths", type=int, nargs="+", default=[96, 256])
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.5])
    parser.add_argument("--decision-tokens", type=int, default=16, help="τ (unlimited rows)")
    parser.add_argument("--budget", type=int, default=None, help="KV slots (default: derived)")
    parser.add_argument("--max-work", type=int, default=128 * 96, help="skip n·L above; 0: none")
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--resamples", type=int, default=None, help="bootstrap resamples")
    parser.add_argument("--quick", action="store_true", help="n ∈ {4, 8}, L = 16, 3 prompts")
    parser.add_argument("--out", default=None, help="result name (default speed_<model>)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--summarise",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSON",
        help="only recompute the summary and plot of a result file from its raw rows; "
        "several files are merged into --out-dir/--out (parts of one grid)",
    )
    parser.add_argument(
        "--note", default=None, help="a sentence saved in the result (how it was run)"
    )
    args = parser.parse_args(argv)
    # --summarise keeps the run's own count unless one is given.
    args.resamples_given = args.resamples
    if args.resamples is None:
        args.resamples = speed_metrics.RESAMPLES
    if args.quick:
        args.n, args.lengths, args.prompts, args.decision_tokens = [4, 8], [16], 3, 4
        args.max_work = 0
    return args


def main(argv: Sequence[str] | None = None, *, model: Any = None, reward: Any = None) -> dict:
    """Run the grid; ``model`` / ``reward`` replace ``--model`` and the default scorer
    (tests pass a tiny in-process pair and a cheap scorer)."""
    args = parse_args(argv)
    if args.summarise is not None:
        if len(args.summarise) == 1:
            return resummarise(args.summarise[0], resamples=args.resamples_given, note=args.note)
        if not args.out:
            raise SystemExit("--summarise with several files needs --out (the merged name)")
        target = args.out_dir / f"{args.out}.json"
        return resummarise(
            target, resamples=args.resamples_given, sources=args.summarise, note=args.note
        )
    torch.set_num_threads(args.threads)
    run = prepare(args.model if model is None else model, reward, args)
    handle, counter, prompts, p_max = run["handle"], run["counter"], run["prompts"], run["p_max"]
    name = args.out or f"speed_{args.model if model is None else handle.name}"
    grid = [
        (length, n)
        for length in args.lengths
        for n in args.n
        if not args.max_work or n * length <= args.max_work
    ]
    budget = args.budget or default_budget(grid, p_max, args.decision_tokens)
    # Speculative Rejection starts all n candidates at once: a budget that cannot hold
    # their prompts and one token each would stop the run at that setting's budget rows,
    # after its unlimited rows. Refuse it before decoding anything.
    for _length, n in grid:
        smallest = SpeculativeRejection(n=n).smallest_budget_slots(p_max)
        if smallest > budget:
            counter.close()
            raise SystemExit(
                f"--budget {budget} cannot hold n={n} candidates of the longest prompt "
                f"({p_max} tokens) and one token each ({smallest} slots): "
                f"give --budget {n * (p_max + args.decision_tokens)} or more, or leave out n={n}"
            )
    payload: dict[str, Any] = {
        "machine": machine(),
        "benchmark": "speed",
        "model": handle.name,
        "dtype": str(handle.dtype),
        "device": str(handle.device),
        "reward": str(getattr(run["reward"], "name", "reward")),
        "settings": {
            **{
                k: v
                for k, v in vars(args).items()
                if k not in ("out_dir", "quick", "summarise", "resamples_given", "note")
            },
            "quick": args.quick,
            "grid": grid,
            "budget": budget,
            "budget_rule": "max over (L, n) of max(ceil(n/4)·(P+L), n·(P+τ)), P = longest prompt",
            "longest_prompt_tokens": p_max,
            "temperature": TEMPERATURE,
        },
        "kv_bytes_per_slot": kv_bytes_per_slot(handle),
        "not_binding": [],
        "complete": False,
        "pairs": [],
    }
    if args.note:
        payload["note"] = args.note

    def checkpoint() -> None:
        # After every regime of every setting: a long run stopped early keeps its rows.
        payload["summary"] = speed_metrics.summarise(
            payload["pairs"], not_binding=payload["not_binding"], resamples=args.resamples
        )
        write_results(payload, args.out_dir, name)

    for length, n in grid:
        kw = {"n": n, "length": length, "prompts": prompts, "repeats": args.repeats}
        payload["pairs"] += run_setting(run, regime="unlimited", budget=None, **kw)
        # Where the budget holds every row to the end, nothing would change: skip it.
        if n * (p_max + length) <= budget:
            payload["not_binding"].append((length, n))
        else:
            checkpoint()
            payload["pairs"] += run_setting(run, regime="budget", budget=budget, **kw)
        checkpoint()
    counter.close()
    payload["complete"] = True
    payload["plot"] = str(speed_plots.plot(payload, args.out_dir / f"{name}.png"))
    path = write_results(payload, args.out_dir, name)
    speed_plots.print_summary(payload)
    print(f"wrote {path}")
    return payload


def merge(paths: Sequence[Path]) -> dict:
    """One payload from the raw rows of several runs of the same model, reward and
    budget (parts of one grid run by separate processes): their pairs, grids and
    not-binding settings joined, each part's machine record kept in ``parts``."""
    parts = [json.loads(path.read_text()) for path in paths]
    first = parts[0]
    for path, part in zip(paths, parts, strict=True):
        for key in ("model", "reward", "dtype"):
            if part[key] != first[key]:
                raise ValueError(f"{path}: {key} {part[key]!r} differs from {first[key]!r}")
        if part["settings"]["budget"] != first["settings"]["budget"]:
            raise ValueError(f"{path}: budget {part['settings']['budget']} differs")
    merged = {**first, "pairs": [], "not_binding": [], "parts": []}
    merged["settings"] = {**first["settings"], "grid": []}
    for path, part in zip(paths, parts, strict=True):
        merged["pairs"] += part["pairs"]
        merged["not_binding"] += part["not_binding"]
        merged["settings"]["grid"] += part["settings"]["grid"]
        # A part that is itself a merge (a committed result extended by a new run)
        # brings its own parts' records, not one record of its first part.
        merged["parts"] += part.get("parts") or [
            {
                "file": path.name,
                "machine": part["machine"],
                "complete": part["complete"],
                "grid": part["settings"]["grid"],
                "alpha": part["settings"]["alpha"],
            }
        ]
    # The grid: each setting once, in order. A part stopped early may list settings it
    # never ran; the merged run is complete when every listed setting has its rows.
    grid = sorted({tuple(setting) for setting in merged["settings"]["grid"]})
    merged["settings"]["grid"] = [list(setting) for setting in grid]
    ran = {(p["regime"], p["length"], p["n"]) for p in merged["pairs"]}
    free = {tuple(x) for x in merged["not_binding"]}
    merged["complete"] = all(
        ("unlimited", length, n) in ran and (("budget", length, n) in ran or (length, n) in free)
        for length, n in grid
    )
    return merged


def resummarise(
    path: Path,
    *,
    resamples: int | None = None,
    sources: Sequence[Path] = (),
    note: str | None = None,
) -> dict:
    """Recompute the summary (and the plot) of a ``speed_*.json`` from its raw rows, in
    place — or write it at ``path`` from the merged rows of ``sources``: the metrics'
    code may change after a long run, the measurements do not. ``resamples``: the
    bootstrap's, by default the run's own."""
    payload = merge(sources) if sources else json.loads(path.read_text())
    if note is not None:
        payload["note"] = note
    if resamples is None:
        resamples = int(payload["settings"].get("resamples") or speed_metrics.RESAMPLES)
    payload["summary"] = speed_metrics.summarise(
        payload["pairs"],
        not_binding=[tuple(x) for x in payload["not_binding"]],
        resamples=resamples,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    payload["plot"] = str(speed_plots.plot(payload, path.with_suffix(".png")))
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    speed_plots.print_summary(payload)
    print(f"rewrote {path}")
    return payload


if __name__ == "__main__":
    main()
