"""The rate interval of ``benchmarks/bench_vllm_spec_check.py`` (its vLLM runs are the
benchmark itself, not a test)."""

from __future__ import annotations

import pytest

from benchmarks.bench_vllm_spec_check import wilson


@pytest.mark.parametrize("runs", [1, 5, 10, 40])
def test_the_interval_holds_the_rate_and_stays_within_zero_and_one(runs):
    for wrong in range(runs + 1):
        low, high = wilson(wrong, runs)
        assert 0.0 <= low <= wrong / runs <= high <= 1.0
        assert high - low > 0  # a finite sample never pins the rate down


def test_no_wrong_run_in_ten_still_allows_a_rate_near_a_third():
    # Wilson's 95 % upper bound for 0 of 10 is z²/(n + z²) = 3.84/13.84 ≈ 0.278: ten
    # clean runs do not show the fault is gone.
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(1.96**2 / (10 + 1.96**2), rel=1e-9)


def test_the_interval_narrows_with_more_runs_at_the_same_rate():
    widths = [h - lo for lo, h in (wilson(n // 2, n) for n in (4, 16, 64))]
    assert widths == sorted(widths, reverse=True)


def test_quick_is_accepted_and_never_overwrites_the_full_result():
    # run_all --quick passes --quick to every benchmark (issue 28).
    from benchmarks.bench_vllm_spec_check import parse_args

    quick, full = parse_args(["--quick"]), parse_args([])
    assert (quick.runs, full.runs) == (2, 10)
    assert quick.out != full.out == "spec_check_vllm"
    assert parse_args(["--quick", "--runs", "5"]).runs == 5
