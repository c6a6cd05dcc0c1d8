"""The metrics of ``benchmarks/bench_speed.py`` (``benchmarks/speed_metrics.py``): paired
time ratios, bootstrap intervals, log-time interpolation, speedup at equal reward and
the issue-13 targets, on hand-made rows whose answers are known."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from benchmarks.speed_metrics import (
    bootstrap_interval,
    check_targets,
    cost_model,
    interpolate_log_time,
    median_with_interval,
    paired_ratios,
    percentile,
    phases,
    speedup_at_equal_reward,
    summarise,
)

# Best-of-N: time doubles per reward point.
CURVE = [(1.0, 1.0), (2.0, 2.0), (4.0, 3.0)]


def test_identical_timings_give_ratio_one_with_a_degenerate_interval():
    times = [0.7, 1.3, 2.0, 5.5]
    ratios = paired_ratios(times, times)
    assert ratios == [1.0] * 4
    assert median_with_interval(ratios) == {"median": 1.0, "low": 1.0, "high": 1.0, "count": 4}


def test_a_method_twice_as_fast_has_ratio_one_half_and_speedup_two():
    bon = [1.0, 2.0, 3.0]
    assert paired_ratios([t / 2 for t in bon], bon) == [0.5, 0.5, 0.5]
    # SpR reaches Best-of-N's reward 2 (which BoN needs 2 s for) in 1 s, on every prompt.
    result = speedup_at_equal_reward(
        [[(1.0, 1.0)] * 5, [(2.0, 2.0)] * 5, [(4.0, 3.0)] * 5], [(1.0, 2.0)] * 5
    )
    assert result["speedup"] == pytest.approx(2.0)
    assert (result["kind"], result["interpolated_share"]) == ("interpolated", 1.0)
    assert (result["low"], result["high"]) == (pytest.approx(2.0), pytest.approx(2.0))


def test_log_time_is_interpolated_linearly_in_reward():
    # Halfway between 1 s and 2 s in reward is the geometric mean √2 s.
    assert interpolate_log_time(CURVE, 1.5) == (pytest.approx(math.sqrt(2)), "interpolated")
    assert interpolate_log_time(CURVE, 3.0) == (4.0, "interpolated")
    # Batch-composition noise in a reward (≈ 1e-7) does not turn a point into a bound.
    assert interpolate_log_time(CURVE, 1.0 - 3e-7) == (1.0, "interpolated")
    assert interpolate_log_time(CURVE, 1.0 - 1e-3) == (1.0, "upper bound")


def test_interpolation_is_monotone_and_bounded_outside_the_curve():
    rewards = [0.5 + 0.05 * i for i in range(61)]  # 0.5 … 3.5
    times = [interpolate_log_time(CURVE, r)[0] for r in rewards]
    assert all(a <= b for a, b in itertools.pairwise(times))
    assert interpolate_log_time(CURVE, 0.5) == (1.0, "upper bound")
    assert interpolate_log_time(CURVE, 3.5) == (4.0, "lower bound")
    # The order the points come in does not matter.
    assert interpolate_log_time(CURVE[::-1], 2.5) == interpolate_log_time(CURVE, 2.5)


def test_bootstrap_interval_contains_the_point_estimate_and_is_reproducible():
    rng = random.Random(7)
    ratios = [rng.lognormvariate(-0.7, 0.3) for _ in range(15)]
    result = median_with_interval(ratios, seed=3)
    assert result["low"] < result["median"] < result["high"]
    assert result["median"] == statistics.median(ratios)
    assert median_with_interval(ratios, seed=3) == result
    assert median_with_interval(ratios, seed=4) != result
    bon = [
        [(t * rng.uniform(0.8, 1.2), y + rng.gauss(0, 0.2)) for _ in range(12)] for t, y in CURVE
    ]
    spr = [(rng.uniform(0.4, 0.6), 2.5 + rng.gauss(0, 0.2)) for _ in range(12)]
    speedup = speedup_at_equal_reward(bon, spr, seed=1)
    assert speedup["low"] <= speedup["speedup"] <= speedup["high"]
    assert speedup["low"] < speedup["high"]


def test_percentile_interpolates_between_order_statistics():
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0], 0.0) == 1.0
    assert percentile([1.0, 2.0, 3.0], 1.0) == 3.0
    assert bootstrap_interval(3, lambda idx: 5.0, resamples=10) == (5.0, 5.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: paired_ratios([1.0, 2.0], [1.0]), "pairs must match"),
        (lambda: paired_ratios([], []), "no pairs"),
        (lambda: paired_ratios([0.0], [1.0]), "positive"),
        (lambda: paired_ratios([math.nan], [1.0]), "finite"),
        (lambda: median_with_interval([]), "no values"),
        (lambda: percentile([1.0], 1.5), r"\[0, 1\]"),
        (lambda: bootstrap_interval(0, len), "no items"),
        (lambda: bootstrap_interval(3, len, confidence=1.0), "confidence"),
        (lambda: bootstrap_interval(3, len, resamples=0), "resamples"),
        (lambda: interpolate_log_time([], 1.0), "empty curve"),
        (lambda: interpolate_log_time([(-1.0, 1.0)], 1.0), "positive"),
        (lambda: interpolate_log_time(CURVE, math.inf), "finite"),
        (lambda: speedup_at_equal_reward([], [(1.0, 1.0)]), "no Best-of-N"),
        (lambda: speedup_at_equal_reward([[(1.0, 1.0)] * 2], [(1.0, 1.0)] * 3), "3 prompts"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def row(seconds, reward, *, peak=100, passes=10, hook=None, scorers=None):
    return {
        "seconds": seconds,
        "cpu_seconds": seconds,
        "generation_seconds": seconds * 0.8,
        "scoring_seconds": seconds * 0.2,
        "scorer_seconds": scorers or {"a": seconds * 0.2},
        "reward": reward,
        "tokens": 10 * seconds,
        "rounds": 1,
        "peak_cache_slots": peak,
        "target_forward_passes": passes,
        "hook_forward_passes": passes if hook is None else hook,
    }


def pairs_for(regime, length, n, bon, spr, prompts=4, **spr_kw):
    return [
        {
            "regime": regime,
            "length": length,
            "n": n,
            "budget": None if regime == "unlimited" else 1000,
            "prompt": p,
            "repeat": 0,
            "methods": {"BoN": row(*bon, peak=200), "SpR α=0.5": row(*spr, **spr_kw)},
        }
        for p in range(prompts)
    ]


def test_summarise_finds_the_speedup_ratios_and_targets_of_known_rows():
    # BoN: 1, 2, 4 s for rewards 1, 2, 3; SpR gets BoN(n)'s reward in a quarter of the time.
    pairs = []
    for n, (t, y) in zip((16, 32, 64), CURVE, strict=True):
        pairs += pairs_for("unlimited", 96, n, (t, y), (t / 4, y))
    summary = summarise(pairs, resamples=50)
    assert [s["n"] for s in summary["settings"]] == [16, 32, 64]
    for setting in summary["settings"]:
        assert setting["prompts"] == 4
        assert setting["time_ratio"]["SpR α=0.5"]["wall"]["median"] == pytest.approx(0.25)
        assert setting["methods"]["BoN"]["scorer_share"]["a"] == pytest.approx(0.2)
    assert [e["speedup"] for e in summary["speedups"]] == [pytest.approx(4.0)] * 3
    met = {(t["target"], t["n"]): t["met"] for t in summary["targets"]}
    assert met[("time fraction at equal reward", 32)] is True
    assert ("time fraction at equal reward", 16) not in met  # only n ≥ 32 is a target
    assert met[("peak KV cache fraction at equal n", 16)] is True  # 100 of 200 slots


def test_targets_fail_where_the_rows_miss_them():
    pairs = []
    for n, (t, y) in zip((16, 32, 64), CURVE, strict=True):
        # Only 1.5× faster, more cache than half, and one scorer forward pass per run.
        pairs += pairs_for("unlimited", 256, n, (t, y), (t / 1.5, y), peak=150, hook=11)
    targets = summarise(pairs, resamples=20)["targets"]
    by_kind = {}
    for target in targets:
        by_kind.setdefault(target["target"], []).append(target["met"])
    assert by_kind["time fraction at equal reward"] == [False, False]  # n = 32, 64
    assert not any(by_kind["peak KV cache fraction at equal n"])
    assert by_kind["forward passes beyond the strategy's own (scoring passes)"].count(False) == 3
    # A speedup that is only an upper bound (SpR below every BoN reward) is never met.
    bound = {"regime": "unlimited", "length": 96, "n": 64, "method": "SpR", "kind": "upper bound"}
    entry = {**bound, "speedup": 10.0, "low": 9.0, "high": 11.0}
    assert check_targets({"speedups": [entry], "settings": []})[0]["met"] is False


def test_budget_curve_borrows_best_of_n_where_the_budget_did_not_bind():
    pairs = pairs_for("unlimited", 96, 16, CURVE[0], (0.5, 1.0))
    pairs += pairs_for("unlimited", 96, 32, CURVE[1], (1.0, 2.0))
    # Under the budget Best-of-N at n = 32 needs 3 s (sequential batches) for reward 2.
    pairs += pairs_for("budget", 96, 32, (3.0, 2.0), (0.75, 1.5))
    (borrowed,) = [
        e
        for e in summarise(pairs, not_binding=[(96, 16)], resamples=20)["speedups"]
        if e["regime"] == "budget"
    ]
    # Reward 1.5 lies halfway between the borrowed n = 16 point (1 s) and n = 32 (3 s).
    assert borrowed["kind"] == "interpolated"
    assert borrowed["speedup"] == pytest.approx(math.sqrt(3.0) / 0.75)
    (alone,) = [e for e in summarise(pairs, resamples=20)["speedups"] if e["regime"] == "budget"]
    # Without it the one budget point lies above SpR's reward: only an upper bound.
    assert (alone["kind"], alone["speedup"]) == ("upper bound", pytest.approx(3.0 / 0.75))


@pytest.mark.parametrize(
    ("regime", "length", "speedup", "met"),
    [
        ("unlimited", 96, 2.5, True),  # 0.4 of the time: within ½
        ("unlimited", 256, 2.5, False),  # but not within ⅓
        ("unlimited", 256, 3.5, True),
        ("budget", 96, 3.5, False),  # equal budget asks for ¼
        ("budget", 256, 4.5, True),
    ],
)
def test_time_floors_depend_on_length_and_regime(regime, length, speedup, met):
    entry = {"regime": regime, "length": length, "n": 32, "method": "SpR", "kind": "interpolated"}
    entry.update(speedup=speedup, low=speedup * 0.9, high=speedup * 1.1)
    (target,) = check_targets({"speedups": [entry], "settings": []})
    assert target["met"] is met
    assert target["value"] == pytest.approx(1 / speedup)
    assert target["interval"] == [
        pytest.approx(1 / (speedup * 1.1)),
        pytest.approx(1 / (speedup * 0.9)),
    ]


def cost_rows(per_pass, per_token, shapes, noise=0.0):
    rng = random.Random(0)
    rows = []
    for passes, tokens in shapes:
        generation = per_pass * passes + per_token * tokens + rng.gauss(0, noise)
        rows.append(
            {
                "target_forward_passes": passes,
                "tokens": tokens,
                "generation_seconds": generation,
                "scoring_seconds": 0.5,
                "seconds": generation + 0.5 + 0.1,
            }
        )
    return rows


# Decodes of one reply length (97 passes) at several batch sizes, and a shorter one.
SHAPES = [(97, 97 * rows) for rows in (1, 4, 16, 64)] + [(40, 40 * 8), (120, 300)]


def test_cost_model_recovers_the_seconds_of_a_pass_and_of_a_row_token():
    fit = cost_model(cost_rows(0.12, 0.005, SHAPES))
    assert fit["seconds_per_pass"] == pytest.approx(0.12)
    assert fit["seconds_per_token"] == pytest.approx(0.005)
    assert fit["r2"] == pytest.approx(1.0)
    assert fit["runs"] == len(SHAPES)
    # With noise (σ = 10 ms on decodes of 1 to 43 s) the fit stays within 5 %, R² < 1.
    noisy = cost_model(cost_rows(0.12, 0.005, SHAPES * 5, noise=0.01))
    assert noisy["seconds_per_pass"] == pytest.approx(0.12, rel=0.05)
    assert noisy["seconds_per_token"] == pytest.approx(0.005, rel=0.05)
    assert 0.99 < noisy["r2"] < 1.0


def test_phases_split_the_wall_time_and_give_the_per_pass_share():
    rows = cost_rows(0.12, 0.005, [(97, 97 * 16)] * 3)
    split = phases(rows, {"seconds_per_pass": 0.12, "seconds_per_token": 0.005})
    assert split["per_pass_seconds"] == pytest.approx(0.12 * 97)
    assert split["per_token_seconds"] == pytest.approx(0.005 * 97 * 16)
    assert split["scoring_seconds"] == pytest.approx(0.5)
    assert split["other_seconds"] == pytest.approx(0.1)
    wall = rows[0]["seconds"]
    assert split["per_pass_share"] == pytest.approx(0.12 * 97 / wall)


@pytest.mark.parametrize(
    ("shapes", "message"),
    [([(10, 40)], "at least 2 runs"), ([(10, 40), (20, 80), (5, 20)], "not proportional")],
)
def test_cost_model_refuses_rows_it_cannot_separate(shapes, message):
    with pytest.raises(ValueError, match=message):
        cost_model(cost_rows(0.1, 0.01, shapes))


def test_summarise_reports_the_cost_model_and_each_methods_phases():
    pairs = []
    for n, (t, y) in zip((16, 32, 64), CURVE, strict=True):
        pairs += pairs_for("unlimited", 96, n, (t, y), (t / 4, y))
    summary = summarise(pairs, resamples=20)
    # row(): 10 passes, 10·s tokens and 0.8·s of decoding: all of it per token.
    assert summary["cost_model"]["seconds_per_token"] == pytest.approx(0.08)
    assert summary["cost_model"]["seconds_per_pass"] == pytest.approx(0.0, abs=1e-12)
    bon = summary["settings"][0]["phases"]["BoN"]
    assert bon["per_token_seconds"] == pytest.approx(0.8)
    assert bon["scoring_seconds"] == pytest.approx(0.2)
