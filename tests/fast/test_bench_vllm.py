"""benchmarks/bench_vllm.py's summary (the runs themselves need vLLM)."""

from __future__ import annotations

from benchmarks.bench_vllm import summarise


def row(part, library, engine, method, prompt, wall, reward, n=8):
    return {
        "part": part,
        "library": library,
        "engine": engine,
        "method": method,
        "n": n,
        "prompt": prompt,
        "wall_s": wall,
        "tokens": 10 * wall,
        "reward": reward,
    }


def test_summary_means_intervals_and_ratios_to_our_best_of_n_on_the_same_engine():
    rows = [
        row("engines", "langchain-aligned", "vllm", "best_of_n", "a", 4.0, 1.0),
        row("engines", "langchain-aligned", "vllm", "best_of_n", "b", 8.0, 2.0),
        row("engines", "langchain-aligned", "vllm", "speculative_rejection", "a", 2.0, 1.5),
        row("engines", "langchain-aligned", "vllm", "speculative_rejection", "b", 6.0, 2.5),
        # Another engine's Best-of-N is no baseline for the vllm rows.
        row("engines", "langchain-aligned", "openai", "best_of_n", "a", 100.0, 0.0),
        row("peer", "its-hub", "openai", "best_of_n", "a", 3.0, 1.0),
    ]
    summary = {(s["part"], s["library"], s["engine"], s["method"]): s for s in summarise(rows)}
    spr = summary[("engines", "langchain-aligned", "vllm", "speculative_rejection")]
    assert spr["runs"] == 2 and spr["wall_s"] == 4.0 and spr["reward"] == 2.0
    # Per-prompt ratios 2/4 and 6/8: their median.
    assert spr["wall_ratio_to_our_best_of_n"] == (0.5 + 0.75) / 2
    assert spr["wall_s_ci"][0] <= spr["wall_s"] <= spr["wall_s_ci"][1]
    assert (
        summary[("engines", "langchain-aligned", "openai", "best_of_n")][
            "wall_ratio_to_our_best_of_n"
        ]
        == 1.0
    )
    # its-hub's rows in the peer part have no Best-of-N of ours in that part: no ratio.
    assert (
        summary[("peer", "its-hub", "openai", "best_of_n")]["wall_ratio_to_our_best_of_n"] is None
    )


def test_quick_is_accepted_and_never_overwrites_the_full_result():
    # run_all --quick passes --quick to every benchmark (issue 28).
    from benchmarks.bench_vllm import MODEL, parse_args

    quick, full = parse_args(["--quick"]), parse_args([])
    assert quick.prompts < full.prompts and max(quick.n) < max(full.n)
    assert quick.max_new_tokens < full.max_new_tokens
    assert full.out == f"vllm_{MODEL}" and quick.out != full.out
