"""The paper's metrics as ``benchmarks/bench_rejection.py`` computes them (Sun et al.,
NeurIPS 2024): the interpolated speedup of a Speculative Rejection point against the
Best-of-N curve."""

from __future__ import annotations

import math

import pytest

from benchmarks.bench_rejection import interpolate_speedup

# Best-of-N points (relative compute, improvement score): compute doubles per 10 points.
BON = [(0.25, 80.0), (0.5, 90.0), (1.0, 100.0)]


def test_a_point_on_the_best_of_n_curve_has_speedup_one():
    speedup, kind = interpolate_speedup((0.5, 90.0), BON)
    assert kind == "interpolated"
    assert speedup == pytest.approx(1.0)


def test_log_compute_is_interpolated_linearly_in_score():
    # Score 95 lies halfway between BoN's 90 (0.5) and 100 (1.0): log-linear gives √0.5.
    # Reaching it with a quarter of the compute is a speedup of √0.5 / 0.25.
    speedup, kind = interpolate_speedup((0.25, 95.0), BON)
    assert kind == "interpolated"
    assert speedup == pytest.approx(math.sqrt(0.5) / 0.25)


def test_points_outside_the_curve_are_bounds():
    # Above every Best-of-N score: BoN's largest compute is only a lower bound on what it
    # would need.
    speedup, kind = interpolate_speedup((0.5, 101.0), BON)
    assert (kind, speedup) == ("lower bound", pytest.approx(2.0))
    # Below every Best-of-N score: BoN's smallest compute over-states what it would need.
    speedup, kind = interpolate_speedup((0.1, 70.0), BON)
    assert (kind, speedup) == ("upper bound", pytest.approx(2.5))


def test_unordered_points_give_the_same_answer():
    assert interpolate_speedup((0.25, 95.0), BON[::-1]) == interpolate_speedup((0.25, 95.0), BON)
