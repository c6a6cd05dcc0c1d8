"""The plot and printed table of ``benchmarks/bench_speed.py`` and ``gpu_check.py``.

One PNG, six panels from the JSON summary: reward against wall time and against
tokens decoded (each method's curve over n, per regime and reply length), peak KV
cache against n, wall time against n and against reply length, and where the time
of the largest n goes (decoding split by the cost model into per-pass and per-token
seconds, then each part of the reward, then the rest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

STYLE = {"unlimited": "-", "budget": "--"}
MARKERS = "os^vD*"


def _curves(summary: dict) -> dict[tuple[str, str, int], list[tuple[int, dict]]]:
    """(regime, method, length) → [(n, method summary)] in order of n."""
    curves: dict[tuple[str, str, int], list[tuple[int, dict]]] = {}
    for setting in summary["settings"]:
        for method, stats in setting["methods"].items():
            key = (setting["regime"], method, setting["length"])
            curves.setdefault(key, []).append((setting["n"], stats))
    return {k: sorted(v, key=lambda item: item[0]) for k, v in sorted(curves.items())}


def plot(payload: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    summary = payload["summary"]
    curves = _curves(summary)
    lengths = sorted({length for _, _, length in curves})
    methods = sorted({method for _, method, _ in curves})
    colors = {m: "gray" if m == "BoN" else f"C{i}" for i, m in enumerate(methods)}
    slot_mib = payload["kv_bytes_per_slot"] / 2**20
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    (reward_time, reward_tokens, kv_n), (time_n, time_length, split) = axes

    def line(ax, xs, ys, regime, method, length, label=True):
        # Budget rows: dashed with hollow markers (one point is still told apart).
        ax.plot(
            xs,
            ys,
            STYLE[regime],
            marker=MARKERS[lengths.index(length) % len(MARKERS)],
            color=colors[method],
            markerfacecolor="none" if regime == "budget" else colors[method],
            label=f"{method} {regime} L={length}" if label else None,
        )

    for (regime, method, length), points in curves.items():
        ns = [n for n, _ in points]
        stats = [s for _, s in points]
        line(
            reward_time,
            [s["mean_seconds"] for s in stats],
            [s["mean_reward"] for s in stats],
            regime,
            method,
            length,
        )
        line(
            reward_tokens,
            [s["mean_tokens"] for s in stats],
            [s["mean_reward"] for s in stats],
            regime,
            method,
            length,
            False,
        )
        line(
            kv_n,
            ns,
            [s["peak_cache_slots"] * slot_mib for s in stats],
            regime,
            method,
            length,
            False,
        )
        line(time_n, ns, [s["mean_seconds"] for s in stats], regime, method, length, False)
    by_n: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for setting in summary["settings"]:
        if setting["regime"] == "unlimited":
            for method, stats in setting["methods"].items():
                by_n.setdefault((method, setting["n"]), []).append(
                    (setting["length"], stats["mean_seconds"])
                )
    for i, ((method, n), points) in enumerate(sorted(by_n.items())):
        points.sort()
        time_length.plot(
            *zip(*points, strict=True),
            "-",
            marker=MARKERS[i % len(MARKERS)],
            color=colors[method],
            label=f"{method} n={n}",
        )
    _time_split(split, summary)
    for ax, title, xlabel, ylabel in (
        (reward_time, "reward vs wall time", "mean wall seconds per prompt", "mean reward"),
        (reward_tokens, "reward vs tokens", "mean tokens decoded per prompt", "mean reward"),
        (kv_n, "peak KV cache vs n", "n", "peak KV cache (MiB)"),
        (time_n, "wall time vs n", "n", "mean wall seconds per prompt"),
        (
            time_length,
            "wall time vs reply length (unlimited)",
            "max new tokens",
            "mean wall seconds",
        ),
    ):
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
    # Log axes with plain numbers at 1, 2, 5 × 10^k (n: its own values, base 2).
    ns = sorted({s["n"] for s in summary["settings"]})
    for ax, axis in ((reward_time, "x"), (reward_tokens, "x"), (kv_n, "y"), (time_n, "y")):
        getattr(ax, f"set_{axis}scale")("log")
        scale = getattr(ax, f"{axis}axis")
        scale.set_major_locator(LogLocator(subs=(1, 2, 5)))
        scale.set_major_formatter(ScalarFormatter())
        scale.set_minor_formatter(NullFormatter())
    for ax in (kv_n, time_n):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.xaxis.set_minor_formatter(NullFormatter())
    for ax in (reward_time, time_length):
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=7)
    fig.suptitle(
        f"{payload['model']} ({payload['dtype']}, {payload['device']}), budget "
        f"{payload['settings']['budget']} slots, reward: {payload['reward']}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _time_split(ax: Any, summary: dict) -> None:
    """Stacked bars per method at the largest n of each (regime, length): decode
    seconds split into per-pass and per-token parts (``speed_metrics.phases``), each
    scorer's seconds, and the rest of the wall time."""
    largest: dict[tuple[str, int], dict] = {}
    for setting in summary["settings"]:
        key = (setting["regime"], setting["length"])
        if key not in largest or setting["n"] > largest[key]["n"]:
            largest[key] = setting
    labels, bottoms, index = [], [], 0
    for (regime, length), setting in sorted(largest.items()):
        for method, stats in setting["methods"].items():
            split = setting["phases"].get(method)
            decode = (
                {
                    "decode: per pass": max(0.0, split["per_pass_seconds"]),
                    "decode: per row-token": max(0.0, split["per_token_seconds"]),
                }
                if split
                else {"decode": stats["mean_generation_seconds"]}
            )
            parts = {**decode, **stats["scorer_seconds"]}
            if split:
                parts["other"] = max(0.0, split["other_seconds"])
            bottom = 0.0
            for j, (part, seconds) in enumerate(parts.items()):
                ax.bar(
                    index, seconds, bottom=bottom, color=f"C{j}", label=part if index == 0 else None
                )
                bottom += seconds
            labels.append(f"{method}\n{regime[:5]} L={length} n={setting['n']}")
            bottoms.append(bottom)
            index += 1
    ax.set_xticks(range(len(labels)), labels, fontsize=6, rotation=45, ha="right")
    ax.set(title="where the time goes (largest n)", ylabel="mean seconds per prompt")
    ax.legend(fontsize=7)


def print_summary(payload: dict) -> None:
    """One line per setting and method, then each speedup and target."""
    summary = payload["summary"]
    cost = summary["cost_model"]
    if cost:
        print(
            f"cost model over {cost['runs']} runs: {cost['seconds_per_pass'] * 1e3:.1f} ms a pass"
            f" + {cost['seconds_per_token'] * 1e3:.2f} ms a row-token (uncentred R² {cost['r2']:.3f})"
        )
    for s in summary["settings"]:
        for method, m in s["methods"].items():
            ratio = s["time_ratio"].get(method, {}).get("wall")
            paired = (
                f"  t/t_BoN {ratio['median']:.2f} [{ratio['low']:.2f}, {ratio['high']:.2f}]"
                if ratio
                else ""
            )
            scorers = ", ".join(f"{k} {v:.2f}" for k, v in m["scorer_seconds"].items())
            split = s["phases"].get(method)
            share = f"  per-pass share {split['per_pass_share']:.2f}" if split else ""
            print(
                f"{s['regime']:9} L={s['length']:<4} n={s['n']:<5} {method:<10} reward {m['mean_reward']:7.3f}  "
                f"wall {m['mean_seconds']:7.2f} s  cpu {m['mean_cpu_seconds']:7.2f} s  tokens {m['mean_tokens']:8.0f}  "
                f"peak {m['peak_cache_slots']:7d}  passes {m['target_forward_passes']}/{m['hook_forward_passes']} (own/hook)  "
                f"scorers [{scorers}]{share}{paired}"
            )
    for e in summary["speedups"]:
        print(
            f"speedup {e['regime']:9} L={e['length']:<4} n={e['n']:<5} {e['method']}: {e['speedup']:.2f}x "
            f"[{e['low']:.2f}, {e['high']:.2f}] ({e['kind']}, {e['prompts']} prompts)"
        )
    for t in summary["targets"]:
        if not t["target"].startswith("forward"):
            print(
                f"target {t['target']} {t['regime']} L={t['length']} n={t['n']} {t['method']}: "
                f"{t['value']:.3f} vs floor {t['floor']:.3f} -> {'met' if t['met'] else 'NOT met'}"
            )
    extra = [t for t in summary["targets"] if t["target"].startswith("forward") and not t["met"]]
    print(
        f"forward passes beyond the strategies' own: {len(extra)} settings"
        if extra
        else "forward passes: hook count = target passes everywhere"
    )
