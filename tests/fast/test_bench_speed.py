"""``benchmarks/bench_speed.py`` end to end on the tiny in-process model: the JSON it
writes, the pairing of Best-of-N and Speculative Rejection, the per-scorer timing and
the forward-pass count."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scorers import CountingScorer
from tiny import tiny_pair

import rewards
from benchmarks import bench_speed
from langchain_aligned import BestOfN

SPR = "SpR α=0.5"


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    out = tmp_path_factory.mktemp("speed")
    argv = ["--n", "2", "4", "--lengths", "6", "--prompts", "3", "--repeats", "2"]
    argv += ["--decision-tokens", "2", "--resamples", "50", "--out", "speed_tiny"]
    # The test session's thread count, so the benchmark's setting leaks nowhere.
    argv += ["--out-dir", str(out), "--threads", str(torch.get_num_threads())]
    result = bench_speed.main(argv, model=tiny_pair(0), reward=CountingScorer())
    return result, out


def test_the_json_holds_settings_raw_pairs_and_summaries(payload):
    result, out = payload
    saved = json.loads((out / "speed_tiny.json").read_text())
    assert saved["complete"] is True
    for key in ("machine", "settings", "kv_bytes_per_slot", "pairs", "summary", "plot"):
        assert key in saved
    assert {"cost_model", "settings", "speedups", "targets"} <= set(saved["summary"])
    # Two batch sizes (n = 2 and 4) separate the per-pass and per-row-token seconds (on
    # a tiny model either may come out near 0 or below: only their presence is tested).
    cost = saved["summary"]["cost_model"]
    assert math.isfinite(cost["seconds_per_pass"]) and math.isfinite(cost["seconds_per_token"])
    for setting in saved["summary"]["settings"]:
        assert set(setting["phases"]) == set(setting["methods"])
    assert saved["settings"]["budget"] == result["settings"]["budget"] > 0
    assert (out / "speed_tiny.png").stat().st_size > 0
    method_keys = {"seconds", "cpu_seconds", "reward", "tokens", "scorer_seconds", "rounds"}
    for pair in saved["pairs"]:
        for stats in pair["methods"].values():
            assert method_keys <= set(stats)


def test_every_pair_runs_both_methods_on_one_prompt_in_alternating_order(payload):
    result, _ = payload
    pairs = result["pairs"]
    # 2 n × 3 prompts × 2 repeats unlimited, plus the budget rows where it binds.
    assert sum(p["regime"] == "unlimited" for p in pairs) == 12
    for pair in pairs:
        assert set(pair["methods"]) == {"BoN", SPR}
        assert pair["seed"] == pair["prompt"]
        first = "BoN" if (pair["prompt"] + pair["repeat"]) % 2 == 0 else SPR
        assert pair["order"][0] == first
    keys = [(p["regime"], p["n"], p["prompt"], p["repeat"]) for p in pairs]
    assert len(keys) == len(set(keys))
    # Identical seeds make every repeat decode the same replies.
    by_key = {}
    for p in pairs:
        rewards_now = tuple(m["reward"] for m in p["methods"].values())
        assert by_key.setdefault((p["regime"], p["n"], p["prompt"]), rewards_now) == rewards_now


def test_budget_rows_share_one_budget_and_run_only_where_it_binds(payload):
    result, _ = payload
    budget = result["settings"]["budget"]
    budget_pairs = [p for p in result["pairs"] if p["regime"] == "budget"]
    assert budget_pairs, "the derived budget binds at the largest n"
    assert {p["budget"] for p in budget_pairs} == {budget}
    ran = {(p["length"], p["n"]) for p in budget_pairs}
    assert ran.isdisjoint(map(tuple, result["not_binding"]))
    assert ran | set(map(tuple, result["not_binding"])) == {(6, 2), (6, 4)}
    for pair in budget_pairs:
        assert pair["methods"]["BoN"]["peak_cache_slots"] <= budget


def test_forward_hook_matches_the_strategies_own_passes(payload):
    result, _ = payload
    for pair in result["pairs"]:
        for stats in pair["methods"].values():
            assert stats["hook_forward_passes"] == stats["target_forward_passes"] > 0


def test_a_budget_too_small_for_n_prompts_is_refused_before_decoding(tmp_path):
    # Speculative Rejection must hold all n prompts at once; a run that found out at
    # the budget rows would have spent the unlimited rows first (as one n = 128 run did).
    argv = ["--n", "2", "8", "--lengths", "6", "--prompts", "2", "--budget", "12"]
    argv += ["--out", "refused", "--out-dir", str(tmp_path)]
    with pytest.raises(SystemExit, match=r"--budget 12 cannot hold n=\d+ candidates"):
        bench_speed.main(argv, model=tiny_pair(0), reward=CountingScorer())
    assert not list(tmp_path.iterdir())  # nothing was decoded or written


def test_default_budget_follows_the_documented_rule():
    # max(⌈n/4⌉·(P + L), n·(P + τ)) over the grid, with P = 40, τ = 16.
    assert bench_speed.default_budget([(96, 128), (256, 32)], 40, 16) == 128 * 56
    assert bench_speed.default_budget([(256, 128)], 40, 16) == 32 * 296


class Forwarding:
    """A scorer that runs the policy once per call (what self-reward must not do)."""

    name = "forwarding"

    def __init__(self, model):
        self.model = model

    def score(self, conversation, completions):
        with torch.no_grad():
            self.model(input_ids=torch.tensor([[2, 3]]))
        return [float(len(c)) for c in completions]


def test_the_counter_sees_a_scorer_s_forward_pass_and_parts_are_timed(tiny_handle):
    weighted = rewards.WeightedScorer(
        {CountingScorer(): 1.0, Forwarding(tiny_handle.model): 0.5}, name="w"
    )
    reward, timers = bench_speed.instrument(weighted)
    assert [t.name for t in timers] == ["counting", "forwarding"]
    counter = bench_speed.ForwardCounter(tiny_handle.model)
    try:
        row = bench_speed.run_one(tiny_handle, BestOfN(n=3), "hello", 0, 5, reward, timers, counter)
    finally:
        counter.close()
    assert row["hook_forward_passes"] == row["target_forward_passes"] + 1
    assert set(row["scorer_seconds"]) == {"counting", "forwarding"}
    assert all(s > 0 for s in row["scorer_seconds"].values())
    assert sum(row["scorer_seconds"].values()) <= row["scoring_seconds"]
    # Timed parts score exactly as the parts themselves.
    plain = rewards.WeightedScorer({CountingScorer(): 1.0}, name="p")
    timed, _ = bench_speed.instrument(rewards.WeightedScorer({CountingScorer(): 1.0}, name="p"))
    texts = ["a b b", "c"]
    assert timed.score("q", texts) == plain.score("q", texts)


def test_self_reward_over_the_policy_costs_no_forward_pass(tiny_handle):
    reward, timers = bench_speed.instrument(rewards.LikelihoodScorer(tiny_handle))
    counter = bench_speed.ForwardCounter(tiny_handle.model)
    try:
        row = bench_speed.run_one(tiny_handle, BestOfN(n=3), "hello", 0, 5, reward, timers, counter)
    finally:
        counter.close()
    assert row["hook_forward_passes"] == row["target_forward_passes"]


def test_summarise_only_recomputes_the_summary_from_the_raw_rows(payload, tmp_path):
    _, out = payload
    saved = json.loads((out / "speed_tiny.json").read_text())
    stale = {**saved, "summary": {"stale": True}}
    path = tmp_path / "speed_copy.json"
    path.write_text(json.dumps(stale))
    bench_speed.main(["--summarise", str(path)])  # the run's own 50 resamples
    again = json.loads(path.read_text())
    assert again["pairs"] == saved["pairs"]  # the measurements are untouched
    # The same rows and bootstrap seed give the summary the run wrote.
    assert again["summary"] == saved["summary"]
    assert path.with_suffix(".png").stat().st_size > 0


def test_parts_of_one_grid_merge_into_the_summary_of_the_whole(payload, tmp_path):
    _, out = payload
    saved = json.loads((out / "speed_tiny.json").read_text())
    # Split the run by n, as two processes would have written it.
    paths = []
    for n in (2, 4):
        part = {
            **saved,
            "pairs": [p for p in saved["pairs"] if p["n"] == n],
            "not_binding": [x for x in saved["not_binding"] if x[1] == n],
            "settings": {
                **saved["settings"],
                "grid": [x for x in saved["settings"]["grid"] if x[1] == n],
            },
        }
        paths.append(tmp_path / f"part{n}.json")
        paths[-1].write_text(json.dumps(part))
    argv = ["--summarise", *map(str, paths), "--out", "whole", "--note", "two parts"]
    merged = bench_speed.main([*argv, "--out-dir", str(tmp_path / "m")])
    assert merged["note"] == "two parts"
    assert merged["summary"] == saved["summary"]  # the same rows, the same bootstrap
    assert [p["file"] for p in merged["parts"]] == ["part2.json", "part4.json"]
    assert merged["complete"] is True and merged["settings"]["grid"] == [[6, 2], [6, 4]]
    assert (tmp_path / "m" / "whole.json").exists()
    # A merged result extended by a new part keeps every part's own record.
    (tmp_path / "new.json").write_text(json.dumps({**saved, "machine": {"cpu": "another"}}))
    extended = bench_speed.merge([tmp_path / "m" / "whole.json", tmp_path / "new.json"])
    assert [p["file"] for p in extended["parts"]] == ["part2.json", "part4.json", "new.json"]
    assert extended["parts"][-1]["machine"] == {"cpu": "another"}
    assert len(extended["pairs"]) == 2 * len(saved["pairs"])
    other = json.loads(paths[1].read_text())
    other["settings"]["budget"] += 1
    paths[1].write_text(json.dumps(other))
    with pytest.raises(ValueError, match="budget"):
        bench_speed.main(
            ["--summarise", *map(str, paths), "--out", "x", "--out-dir", str(tmp_path)]
        )
