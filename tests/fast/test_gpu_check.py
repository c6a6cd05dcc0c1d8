"""``benchmarks/gpu_check.py`` on the CPU (device and dtype are arguments): the tiny
in-process model at tiny n, the JSON it writes and its time guard."""

from __future__ import annotations

import json

from scorers import CountingScorer
from tiny import tiny_pair

from benchmarks import gpu_check

TINY = ["--device", "cpu", "--dtype", "float32", "--n", "2", "4", "--length", "6"]


def run(tmp_path, *extra):
    argv = [*TINY, "--prompts", "2", "--resamples", "20", "--out", "gpu_tiny"]
    result = gpu_check.main(
        [*argv, "--out-dir", str(tmp_path), *extra], model=tiny_pair(0), reward=CountingScorer()
    )
    return result, json.loads((tmp_path / "gpu_tiny.json").read_text())


def test_cpu_smoke_run_writes_every_setting_under_one_budget(tmp_path):
    result, saved = run(tmp_path, "--budget", "56")
    assert saved["complete"] is True and saved["stopped"] is None and saved["skipped"] == []
    assert saved["ran"] == [{"n": 2, "prompts": 2, "of": 2}, {"n": 4, "prompts": 2, "of": 2}]
    assert saved["device"] == "cpu" and saved["settings"]["budget"] == 56
    for key in ("machine", "kv_bytes_per_slot", "load_seconds", "elapsed_seconds", "summary"):
        assert key in saved
    assert (tmp_path / "gpu_tiny.png").exists()
    for pair in saved["pairs"]:
        assert (pair["regime"], pair["budget"], pair["length"]) == ("budget", 56, 6)
        assert set(pair["methods"]) == {"BoN", "SpR α=0.5"}
        for stats in pair["methods"].values():
            assert stats["hook_forward_passes"] == stats["target_forward_passes"]
            assert stats["peak_gpu_bytes"] is None  # no CUDA here
    # The budget of 56 slots (4 prompts of ≤ 12 tokens + 1 fit) splits Best-of-N at n = 4 into sequential batches.
    n4 = [p for p in saved["pairs"] if p["n"] == 4]
    assert all(p["methods"]["BoN"]["peak_batch_size"] < 4 for p in n4)
    assert {(s["n"], s["pairs"]) for s in result["summary"]["settings"]} == {(2, 2), (4, 2)}


def test_the_time_guard_starts_nothing_past_the_limit_and_records_it(tmp_path):
    _, saved = run(tmp_path, "--time-limit", "0")
    assert saved["pairs"] == [] and saved["complete"] is False
    assert saved["ran"] == [{"n": 2, "prompts": 0, "of": 2}]
    assert saved["skipped"] == [{"n": 4, "reason": "time limit"}]
    assert saved["stopped"]["n"] == 2 and saved["stopped"]["after_prompts"] == 0


def test_time_guard_predicts_from_the_last_pair():
    guard = gpu_check.TimeGuard(10.0, start=0.0)
    guard.elapsed = lambda: 6.0  # six seconds in
    guard.predicted = 3.0
    assert guard(None) is True  # 6 + 3 ≤ 10
    assert guard(5.0) is False  # the last pair took 5 s: 11 > 10
    assert guard.stopped == {"elapsed_seconds": 6.0, "predicted_pair_seconds": 5.0}
