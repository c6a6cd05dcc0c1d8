"""The metrics of ``benchmarks/bench_speed.py`` and ``benchmarks/gpu_check.py``: pure
functions over measured rows, unit-tested in ``tests/fast/test_speed_metrics.py``.

A *point* is ``(time, reward)``: one run's wall time in seconds and the reward of the
reply it returned, or their means over prompts.

* **paired time ratio** — per prompt (and repeat), t_SpR ÷ t_BoN of two runs decoded
  back to back in one process, under the same load: below 1, Speculative Rejection
  was faster; 1 ÷ ratio is its speedup at equal n.
* **median ratio and its interval** — the median of the paired ratios, with a
  percentile bootstrap interval: the pairs are resampled with replacement
  ``resamples`` times from a ``random.Random(seed)`` (no global seed), the median is
  recomputed each time, and the (1 − c)/2 and (1 + c)/2 quantiles are the interval.
* **time at a reward** — on Best-of-N's curve of mean points over its n, log-time is
  interpolated linearly in reward between the two points around the reward. Above
  every point the curve's largest time is returned as a ``"lower bound"`` (Best-of-N
  would need at least that), below every point its smallest as an ``"upper bound"``.
  A reward within 10⁻⁶ of a point is that point's (the same reply scored in another
  batch differs in its last digits); several such points give the smallest time.
* **speedup at equal reward** — t_BoN(ȳ_SpR) ÷ t̄_SpR for a Speculative Rejection point
  (t̄_SpR, ȳ_SpR: means over prompts), as in Sun et al. (NeurIPS 2024). Its interval
  resamples prompts (one draw for every point of the curve and for the SpR point,
  since they share prompts) and recomputes every mean and the interpolation.
* **cost model** — where the decode time goes: every run's decode seconds fitted by
  least squares (no intercept) as c·passes + t·tokens, c the seconds of one forward
  pass whatever its rows (reading the weights, launching the kernels) and t the
  seconds of one row-token (sampled token) on top. Speculative Rejection saves row
  tokens, not passes (its survivors still decode to the reply's length), so the
  per-pass share of Best-of-N's time, c·passes_BoN ÷ t_BoN, is the smallest time
  ratio it could reach at equal passes.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable, Sequence

Point = tuple[float, float]
"""``(time in seconds, reward)``."""

RESAMPLES = 2000
CONFIDENCE = 0.95
REWARD_TOLERANCE = 1e-6
"""Rewards this close (relative or absolute) count as equal in the interpolation."""


def _check_times(values: Sequence[float], what: str) -> None:
    for value in values:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{what} must be finite and positive seconds, got {value!r}")


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-pair ``numerators[i] / denominators[i]`` (t_SpR ÷ t_BoN per prompt)."""
    if len(numerators) != len(denominators):
        raise ValueError(
            f"{len(numerators)} times against {len(denominators)}: pairs must match one to one"
        )
    if not numerators:
        raise ValueError("no pairs to compare")
    _check_times(numerators, "paired times")
    _check_times(denominators, "paired times")
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0 ≤ q ≤ 1) with linear interpolation between order statistics."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 1:
        raise ValueError(f"quantile q={q!r} must be in [0, 1]")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def bootstrap_interval(
    count: int,
    statistic: Callable[[list[int]], float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``count`` items: each resample
    draws ``count`` indices with replacement and passes them to ``statistic``."""
    if count < 1:
        raise ValueError("bootstrap over no items")
    if resamples < 1:
        raise ValueError(f"resamples={resamples!r} must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} must be in (0, 1)")
    rng = random.Random(seed)
    values = [statistic([rng.randrange(count) for _ in range(count)]) for _ in range(resamples)]
    return percentile(values, (1 - confidence) / 2), percentile(values, (1 + confidence) / 2)


def median_with_interval(values: Sequence[float], **bootstrap: float) -> dict[str, float]:
    """``{"median", "low", "high", "count"}``: the median and its bootstrap interval."""
    if not values:
        raise ValueError("median of no values")
    values = list(values)
    low, high = bootstrap_interval(
        len(values), lambda idx: statistics.median(values[i] for i in idx), **bootstrap
    )
    return {"median": statistics.median(values), "low": low, "high": high, "count": len(values)}


def interpolate_log_time(curve: Sequence[Point], reward: float) -> tuple[float, str]:
    """The time the curve needs to reach ``reward``, and how: ``"interpolated"``,
    ``"lower bound"`` (above every point) or ``"upper bound"`` (below every point)."""
    if not curve:
        raise ValueError("interpolation on an empty curve")
    _check_times([t for t, _ in curve], "curve times")
    if not math.isfinite(reward) or not all(math.isfinite(r) for _, r in curve):
        raise ValueError("rewards must be finite")
    ordered = sorted(curve, key=lambda p: (p[1], p[0]))
    for time, value in ordered:
        # The same reply scored in another batch differs in its last digits (≈ 1e-7).
        if math.isclose(value, reward, rel_tol=REWARD_TOLERANCE, abs_tol=REWARD_TOLERANCE):
            return time, "interpolated"
    for (t1, y1), (t2, y2) in itertools.pairwise(ordered):
        if y1 < reward < y2:
            log_t = math.log(t1) + (reward - y1) / (y2 - y1) * (math.log(t2) - math.log(t1))
            return math.exp(log_t), "interpolated"
    if reward > ordered[-1][1]:
        return ordered[-1][0], "lower bound"
    return ordered[0][0], "upper bound"


def mean_point(points: Sequence[Point], indices: Sequence[int] | None = None) -> Point:
    """Mean time and mean reward over ``points`` (or over ``points[i]`` for ``indices``)."""
    chosen = [points[i] for i in indices] if indices is not None else list(points)
    if not chosen:
        raise ValueError("mean of no points")
    return statistics.fmean(t for t, _ in chosen), statistics.fmean(r for _, r in chosen)


def speedup_at_equal_reward(
    bon_curve: Sequence[Sequence[Point]],
    spr: Sequence[Point],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, float | str]:
    """t_BoN(ȳ_SpR) ÷ t̄_SpR with its bootstrap interval over prompts.

    ``bon_curve``: one list of per-prompt points per Best-of-N n; ``spr``: the per-prompt
    points of one Speculative Rejection setting — all over the same prompts, in order.
    Returns ``{"speedup", "kind", "low", "high", "interpolated_share", "prompts"}``
    (``interpolated_share``: the fraction of resamples that fell inside the curve).
    """
    if not bon_curve:
        raise ValueError("no Best-of-N points to compare against")
    count = len(spr)
    if count == 0 or any(len(points) != count for points in bon_curve):
        raise ValueError(
            f"every curve point needs the {count} prompts of the SpR point; got "
            f"{[len(points) for points in bon_curve]}"
        )

    def estimate(indices: Sequence[int] | None) -> tuple[float, str]:
        curve = [mean_point(points, indices) for points in bon_curve]
        time, reward = mean_point(spr, indices)
        reached, kind = interpolate_log_time(curve, reward)
        return reached / time, kind

    speedup, kind = estimate(None)
    kinds: list[str] = []

    def resampled(indices: list[int]) -> float:
        value, resample_kind = estimate(indices)
        kinds.append(resample_kind)
        return value

    low, high = bootstrap_interval(
        count, resampled, resamples=resamples, confidence=confidence, seed=seed
    )
    return {
        "speedup": speedup,
        "kind": kind,
        "low": low,
        "high": high,
        "interpolated_share": kinds.count("interpolated") / len(kinds),
        "prompts": count,
    }


def prompt_points(pairs: Sequence[dict], method: str) -> dict[int, Point]:
    """Per prompt, ``method``'s mean wall time over repeats and its reward."""
    by_prompt: dict[int, list[Point]] = {}
    for pair in pairs:
        row = pair["methods"][method]
        by_prompt.setdefault(pair["prompt"], []).append((row["seconds"], row["reward"]))
    return {prompt: mean_point(points) for prompt, points in sorted(by_prompt.items())}


def _method_summary(rows: Sequence[dict]) -> dict:
    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in rows)

    wall = sum(r["seconds"] for r in rows)
    scorers = {
        name: statistics.fmean(r["scorer_seconds"][name] for r in rows)
        for name in rows[0]["scorer_seconds"]
    }
    return {
        **{f"mean_{k}": mean(k) for k in ("reward", "seconds", "cpu_seconds", "tokens", "rounds")},
        "mean_generation_seconds": mean("generation_seconds"),
        "mean_scoring_seconds": mean("scoring_seconds"),
        "scorer_seconds": scorers,
        "scorer_share": {name: s * len(rows) / wall for name, s in scorers.items()},
        "peak_cache_slots": max(r["peak_cache_slots"] for r in rows),
        "target_forward_passes": sum(r["target_forward_passes"] for r in rows),
        "hook_forward_passes": sum(r["hook_forward_passes"] for r in rows),
    }


def cost_model(rows: Sequence[dict]) -> dict[str, float]:
    """Least-squares c (seconds a pass) and t (seconds a row-token) of
    ``generation_seconds ≈ c·target_forward_passes + t·tokens`` over ``rows`` (runs of
    any method), with the fit's uncentred R² (1 − RSS / Σy², the fit has no intercept)
    and the number of runs. Runs too alike may give a coefficient below 0: it is
    returned as fitted (the plot clamps its bar at 0)."""
    data = [(r["target_forward_passes"], r["tokens"], r["generation_seconds"]) for r in rows]
    if len(data) < 2:
        raise ValueError(f"the cost model needs at least 2 runs, got {len(data)}")
    spp = sum(p * p for p, _, _ in data)
    spk = sum(p * k for p, k, _ in data)
    skk = sum(k * k for _, k, _ in data)
    spy = sum(p * y for p, _, y in data)
    sky = sum(k * y for _, k, y in data)
    determinant = spp * skk - spk * spk
    if determinant <= 1e-12 * spp * skk:
        raise ValueError(
            "the cost model needs runs whose passes and tokens are not proportional "
            "(decode more than one batch size)"
        )
    # The 2 × 2 normal equations, solved by Cramer's rule.
    per_pass = (spy * skk - sky * spk) / determinant
    per_token = (sky * spp - spy * spk) / determinant
    residual = sum((y - per_pass * p - per_token * k) ** 2 for p, k, y in data)
    total = sum(y * y for _, _, y in data)
    return {
        "seconds_per_pass": per_pass,
        "seconds_per_token": per_token,
        "r2": 1 - residual / total if total else 1.0,
        "runs": len(data),
    }


def phases(rows: Sequence[dict], model: dict[str, float]) -> dict[str, float]:
    """Mean seconds of each phase of ``rows`` (one method in one setting) under the cost
    ``model``: per-pass and per-token decode time, scoring, and the rest of the wall
    time (the fit's residual and everything outside decoding and scoring)."""
    passes = statistics.fmean(r["target_forward_passes"] for r in rows)
    tokens = statistics.fmean(r["tokens"] for r in rows)
    wall = statistics.fmean(r["seconds"] for r in rows)
    scoring = statistics.fmean(r["scoring_seconds"] for r in rows)
    per_pass = model["seconds_per_pass"] * passes
    per_token = model["seconds_per_token"] * tokens
    return {
        "per_pass_seconds": per_pass,
        "per_token_seconds": per_token,
        "scoring_seconds": scoring,
        "other_seconds": wall - per_pass - per_token - scoring,
        "per_pass_share": per_pass / wall,
    }


def summarise(
    pairs: Sequence[dict], *, not_binding: Sequence[tuple[int, int]] = (), **bootstrap: float
) -> dict:
    """Per-setting means, paired ratios, speedups at equal reward and the targets.

    ``pairs``: the raw rows of ``bench_speed`` (one per prompt, repeat and setting, every
    method's run of that prompt in ``methods``); ``not_binding``: the (length, n) whose
    budget rows were not run because the budget did not bind — there Best-of-N under
    the budget is the unlimited run, which joins the budget curve.
    """
    groups: dict[tuple[str, int, int], list[dict]] = {}
    for pair in pairs:
        groups.setdefault((pair["regime"], pair["length"], pair["n"]), []).append(pair)
    try:
        model: dict[str, float] | None = cost_model(
            [row for pair in pairs for row in pair["methods"].values()]
        )
    except ValueError:
        model = None  # too few runs, or passes and tokens proportional in every run
    settings = []
    for (regime, length, n), group in sorted(groups.items()):
        names = list(group[0]["methods"])
        ratios = {}
        for name in (m for m in names if m != "BoN"):
            ratios[name] = {
                clock: median_with_interval(
                    paired_ratios(
                        [p["methods"][name][key] for p in group],
                        [p["methods"]["BoN"][key] for p in group],
                    ),
                    **bootstrap,
                )
                for clock, key in (("wall", "seconds"), ("cpu", "cpu_seconds"))
            }
        settings.append(
            {
                "regime": regime,
                "length": length,
                "n": n,
                "budget": group[0]["budget"],
                "prompts": len({p["prompt"] for p in group}),
                "pairs": len(group),
                "methods": {m: _method_summary([p["methods"][m] for p in group]) for m in names},
                "phases": {
                    m: phases([p["methods"][m] for p in group], model) for m in names if model
                },
                "time_ratio": ratios,
            }
        )
    speedups = []
    for regime, length in sorted({(r, length) for r, length, _ in groups}):
        curve = {n: g for (r, L, n), g in groups.items() if (r, L) == (regime, length)}
        if regime == "budget":
            for free_length, n in not_binding:
                if free_length == length and ("unlimited", length, n) in groups:
                    curve.setdefault(n, groups[("unlimited", length, n)])
        bon = {n: prompt_points(g, "BoN") for n, g in curve.items()}
        for (r, L, n), group in sorted(groups.items()):
            if (r, L) != (regime, length):
                continue
            for name in (m for m in group[0]["methods"] if m != "BoN"):
                spr = prompt_points(group, name)
                common = sorted(set(spr).intersection(*bon.values()))
                result = speedup_at_equal_reward(
                    [[bon[k][p] for p in common] for k in sorted(bon)],
                    [spr[p] for p in common],
                    **bootstrap,
                )
                speedups.append({"regime": r, "length": L, "n": n, "method": name, **result})
    summary = {"cost_model": model, "settings": settings, "speedups": speedups}
    summary["targets"] = check_targets(summary)
    return summary


def time_floor(length: int) -> float:
    """The wall-time fraction SpR must reach Best-of-N's reward in (issue 13): ½ below
    256-token replies, ⅓ at 256 and beyond."""
    return 1 / 3 if length >= 256 else 1 / 2


def check_targets(summary: dict, *, min_n: int = 32) -> list[dict]:
    """Each floor of issue 13 against a :func:`summarise` result (its settings and
    speedups): one entry per checked setting with its value, floor and ``met``."""
    checks = []
    for entry in summary["speedups"]:
        if entry["n"] < min_n:
            continue
        budget = entry["regime"] == "budget"
        floor = 1 / 4 if budget else time_floor(entry["length"])
        fraction = 1 / entry["speedup"]
        checks.append(
            {
                "target": "equal-budget time fraction at equal reward"
                if budget
                else "time fraction at equal reward",
                **{k: entry[k] for k in ("regime", "length", "n", "method")},
                "value": fraction,
                "interval": [1 / entry["high"], 1 / entry["low"]],
                "floor": floor,
                # An "upper bound" speedup (SpR below every BoN reward) proves nothing.
                "met": fraction <= floor and entry["kind"] != "upper bound",
            }
        )
    for setting in summary["settings"]:
        methods = setting["methods"]
        for name, stats in methods.items():
            if setting["regime"] == "unlimited" and name.startswith("SpR"):
                ratio = stats["peak_cache_slots"] / methods["BoN"]["peak_cache_slots"]
                checks.append(
                    {
                        "target": "peak KV cache fraction at equal n",
                        **{k: setting[k] for k in ("regime", "length", "n")},
                        "method": name,
                        "value": ratio,
                        "floor": 1 / 2,
                        "met": ratio <= 1 / 2,
                    }
                )
            checks.append(
                {
                    "target": "forward passes beyond the strategy's own (scoring passes)",
                    **{k: setting[k] for k in ("regime", "length", "n")},
                    "method": name,
                    "value": stats["hook_forward_passes"] - stats["target_forward_passes"],
                    "floor": 0,
                    "met": stats["hook_forward_passes"] == stats["target_forward_passes"],
                }
            )
    return checks
