"""``benchmarks/report.py`` renders each table from its list of columns."""

from __future__ import annotations

from benchmarks.report import Column, named_rows, rejection_table, table

COLUMNS = [
    Column("name", lambda r: r["name"]),
    Column("hidden", lambda r: 1 / 0, shown=False),  # never evaluated when not shown
    Column("score", lambda r: f"{r['score']:.1f}"),
]


def test_a_table_renders_its_header_row_and_one_line_per_row():
    rows = named_rows({"a": {"score": 1.0}, "b": {"score": 2.0}})
    assert table(COLUMNS, rows) == "| name | score |\n|---|---|\n| a | 1.0 |\n| b | 2.0 |"


def test_a_table_without_rows_is_its_header():
    assert table(COLUMNS, []) == "| name | score |\n|---|---|"


def test_named_rows_carry_their_key():
    assert named_rows({"x": {"v": 1}}) == [{"v": 1, "name": "x"}]


def _rejection(cpu: bool) -> dict:
    s = {
        "improvement_score": 100.0,
        "relative_compute": 1.0,
        "relative_tokens": 1.0,
        "relative_wall_time": 1.0,
        "peak_cache_slots": 80,
        "reward_calls": 4,
        "generation_seconds": 3.0,
        "scoring_seconds": 1.0,
    }
    if cpu:
        s["cpu_seconds"] = 4.0
    return {"reference": "BoN n=4", "summary": {"BoN n=4": s}}


def test_rejection_table_shows_cpu_columns_only_for_cpu_timed_results():
    header, _, row = rejection_table(_rejection(cpu=True)).split("\n")
    assert "relative compute (CPU time)" in header
    assert "| relative wall time |" in header and header.endswith("| time scoring |")
    assert row == "| BoN n=4 | 100.0 | 1.00 | 1.00 | 1.00 | 80 | 4 | reference | 25 % |"

    header, _, row = rejection_table(_rejection(cpu=False)).split("\n")
    assert "relative compute (wall time)" in header
    assert "relative wall time" not in header and "time scoring" not in header
    assert row == "| BoN n=4 | 100.0 | 1.00 | 1.00 | 80 | 4 | reference |"


def _speed_row(seconds, reward, passes, tokens, peak):
    return {
        "seconds": seconds,
        "cpu_seconds": seconds,
        "generation_seconds": 0.1 * passes + 0.01 * tokens,
        "scoring_seconds": 0.5,
        "scorer_seconds": {"a": 0.5},
        "reward": reward,
        "tokens": tokens,
        "rounds": 1,
        "peak_cache_slots": peak,
        "target_forward_passes": passes,
        "hook_forward_passes": passes,
    }


def test_speed_tables_show_every_setting_speedup_and_target():
    from benchmarks.report import speed_tables
    from benchmarks.speed_metrics import summarise

    pairs = [
        {
            "regime": "unlimited",
            "length": 96,
            "n": n,
            "budget": None,
            "prompt": p,
            "repeat": 0,
            "methods": {
                "BoN": _speed_row(t, y, 97, 96 * n, 140 * n),
                "SpR α=0.5": _speed_row(0.8 * t, y, 97, 56 * n, 60 * n),
            },
        }
        for n, (t, y) in ((16, (10.0, 1.0)), (32, (20.0, 2.0)))
        for p in range(3)
    ]
    text = speed_tables({"summary": summarise(pairs, resamples=20)})
    assert "10.0 ms a row-token" in text and "100 ms a forward pass" in text  # the exact fit
    assert "| unlimited | 96 | 32 | 3 | SpR α=0.5 | 2.000 | 16.0 |" in text
    assert "0.80 [0.80, 0.80]" in text  # the paired ratio and its interval
    # The scorer "a" took 0.5 s of SpR's 16 s at n = 32.
    assert "| 0.50 | a 3.1 % |" in text
    assert "| unlimited | 96 | 32 | SpR α=0.5 | 1.25 [1.25, 1.25] | interpolated |" in text
    # 0.8 of Best-of-N's time misses the ½ floor at n = 32; the cache target is met.
    assert (
        "| time fraction at equal reward | unlimited L=96 n=32 | SpR α=0.5 | 0.80 | ≤ 0.50 | **no** |"
        in text
    )
    assert (
        "| peak KV cache fraction at equal n | unlimited L=96 n=32 | SpR α=0.5 | 0.43 | ≤ 0.50 | yes |"
        in text
    )


def test_vllm_table_shows_each_summary_row_with_its_interval_and_ratio():
    from benchmarks.report import vllm_table

    row = {
        "part": "peer",
        "library": "its-hub",
        "engine": "openai",
        "method": "particle_filtering",
        "n": 8,
        "wall_s": 12.5,
        "wall_s_ci": [10.0, 15.0],
        "wall_ratio_to_our_best_of_n": 1.25,
        "tokens": 640.0,
        "reward": 1.5,
        "reward_ci": [1.25, 1.75],
    }
    ours = {
        **row,
        "library": "langchain-aligned",
        "method": "best_of_n",
        "wall_ratio_to_our_best_of_n": None,
    }
    lines = vllm_table({"summary": [row, ours]}).splitlines()
    assert len(lines) == 4
    assert (
        "| peer | its-hub | `openai` | particle_filtering | 8 | 12.50 [10.00, 15.00] | 1.25 | 640 |"
        in lines[2]
    )
    assert "| – |" in lines[3]


MACHINE = {
    "cpu": "x",
    "cores": 2,
    "torch_threads": 2,
    "gpu": None,
    "python": "3",
    "torch": "2",
    "transformers": "5",
    "commit": "c",
    "date": "d",
}


def _draft_point(replies, tokens, overlap):
    return {
        "replies_per_prompt": replies,
        "teacher_tokens": tokens,
        "overlap": overlap,
        "overlap_se": 0.01,
        "tokens_per_step_estimate": 1.4,
        "seconds_when_made": {"training": 100.0},
    }


def test_the_draft_data_section_shows_each_draft_the_fit_and_sd(tmp_path, monkeypatch):
    import json
    import math

    from benchmarks import report

    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.draft_data_section() is None  # no results yet: no section
    a, b = 0.1, 0.05
    points = [_draft_point(r, 1000 * r, a + b * math.log(1000 * r)) for r in (1, 4)]
    data = {
        "machine": MACHINE,
        "target": "t",
        "recipe": {},
        "held_out": {"prompts": 2, "replies": 4},
        "num_draft_tokens": 3,
        "untrained": {"overlap": 0.05, "overlap_se": 0.01, "tokens_per_step_estimate": 1.05},
        "drafts": points,
        "fit": {"a": a, "b_per_ln_tokens": b, "tokens_for_0.6": math.exp((0.6 - a) / b)},
        "speculative": {
            "rows": {
                "sampling": {"tokens_per_s": 10.0},
                "SD": {
                    "acceptance_rate": 0.2,
                    "acceptance_by_position": [0.3, 0.1, 0.05],
                    "target_passes_per_token": 0.7,
                    "speed_vs_sampling": 0.6,
                },
            }
        },
    }
    (tmp_path / "draft_data.json").write_text(json.dumps(data))
    text = report.draft_data_section()
    assert "| 0 (cut, untrained) | 0 | 0.050 ± 0.010 | 1.05 | – |" in text
    assert f"| 4 | 4000 | {points[1]['overlap']:.3f} ± 0.010 | 1.40 | 100 |" in text
    # +b ln 2 per doubling; 0.6 at exp(10) ≈ 22,026 tokens, 6× the largest set (4,000).
    assert f"+{b * math.log(2):.3f} per doubling" in text and "(6× the largest set)" in text
    assert "**0.60×** sampling's tokens/s" in text
    assert "Where SD's time goes" not in text  # no --phases run yet
    timing = {"target_forward_s_per_token": 0.1, "other_s_per_token": 0.01}
    data["phases"] = {
        "prompts": 2,
        "replies_per_prompt": 6,
        "sampling": timing,
        "SD": {
            "target_forward_s_per_token": 0.1,
            "other_s_per_token": 0.03,
            "draft_forward_s_per_token": 0.02,
            "per_step": {
                "tokens": 1.4,
                "cost_in_sampling_tokens": 2.0,
                "tokens_needed_for_1.3x": 2.6,
                "alpha_needed_for_1.3x": 0.7,
            },
        },
    }
    (tmp_path / "draft_data.json").write_text(json.dumps(data))
    text = report.draft_data_section()
    assert "the 6-reply draft" in text and "sampling 0.100 target + 0.010 other" in text
    assert "SD 0.100 target + 0.020 draft + 0.030 other" in text
    assert "so 1.3× needs 2.60 tokens a step (α ≈ 0.70 at every position)" in text


def test_the_align_section_shows_each_setting_and_the_sss_row(tmp_path, monkeypatch):
    import json

    from benchmarks import report

    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.align_section() is None
    variant = {
        "pairs": 48,
        "steps": 18,
        "alignment_shift": 0.02,
        "alignment_shift_se": 0.01,
        "gold_shift": -0.1,
        "gold_shift_se": 0.05,
    }
    data = {
        "machine": MACHINE,
        "reference": "r",
        "prompts": 24,
        "seeds": 2,
        "max_new_tokens": 64,
        "alignment_reward": "minilm",
        "gold": "vader",
        "variants": {"recipe": variant},
        "sss": {
            "aligned_draft": "recipe",
            "gold_shift": 0.3,
            "gold_shift_se": 0.1,
            "sampling": {"tokens_per_s": 10.0},
            "SSS": {"target_passes_per_token": 0.8, "acceptance_rate": 0.1, "tokens_per_s": 4.0},
        },
    }
    (tmp_path / "align.json").write_text(json.dumps(data))
    text = report.align_section()
    assert "| recipe | 48 | 18 | +0.020 ± 0.010 | -0.100 ± 0.050 |" in text
    assert "gold shift +0.300 ± 0.100" in text and "0.40× sampling's tokens/s" in text
