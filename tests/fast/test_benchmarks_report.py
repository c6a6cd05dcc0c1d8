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
