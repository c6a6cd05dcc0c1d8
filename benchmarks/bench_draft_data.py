"""How a distilled draft's acceptance grows with its teacher data.

Issue 15 asks for a distilled draft whose token acceptance on held-out prompts reaches
0.6 at γ = 3, which speculative sampling needs to beat plain sampling on this CPU
(``bench_speculative --drafts`` measures 0.14 with 6 replies per prompt). This script
tests whether the draft is limited by its data: it distils the benchmark's recipe
(``bench_speculative.DISTILL``: SmolLM2's first 6 of 30 layers, an 8,192-token head)
from 6, 12 and 24 target replies per prompt (the same 48 training prompts; the teacher
data is cached round by round, so the larger sets extend the smaller ones), and measures
each draft on held-out prompts:

* **overlap** Σ_x min(p(x), q(x)) of the target's law p and the draft's law q at every
  position of the target's own sampled replies (temperature 1): the probability that
  speculative sampling accepts a draft token there, given that context. Its mean is the
  acceptance of a first draft position; it is exact and cheap (one forward pass of each
  model per reply), so the learning curve has no sampling noise from the decoding;
* **tokens per step (estimate)** 1 + Σ_{j=1..γ} mean_t Π_{i<j} overlap_{t+i}: the
  expected tokens of a γ-step block if the accepted tokens followed the target's path;
* for the largest draft, **speculative sampling itself** through the public API
  (acceptance by draft position, target passes per token, tokens/s against plain
  sampling, interleaved prompt by prompt).

The cut draft before training is the first point. A log-linear fit of the overlap
against teacher tokens says how much data 0.6 would take, if the trend holds.

    python -m benchmarks.bench_draft_data [--quick]
    python -m benchmarks.bench_draft_data --phases [--replies N]   # SD's time per phase

Writes ``results/draft_data.json`` and ``draft_data.png``; partial results are written
after every draft, so a stopped run keeps what it measured.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from benchmarks.bench_speculative import DISTILL, GAMMA
from benchmarks.common import plot_path, write_json
from benchmarks.prompts import PROMPTS
from langchain_aligned import Hooks, Sampling, SpeculativeSampling, generate
from langchain_aligned.decoding.base import EVENT_VERIFY
from langchain_aligned.drafts import DISTILL_PROMPTS, DistillConfig, distill_draft, init_draft
from langchain_aligned.drafts.distill import teacher_examples
from langchain_aligned.models import load_model

TARGET = "smollm2-135m-instruct"
# Replies per prompt; the benchmark's recipe uses 6.
DATA = (6, 24, 12)
# The held-out replies: 2 per benchmark prompt, 64 tokens, seeds no training round uses.
HELD_OUT_SEED = 10_000


def held_out_replies(target, prompts, replies, max_new_tokens):
    config = DistillConfig(
        prompts=tuple(prompts),
        replies_per_prompt=replies,
        max_new_tokens=max_new_tokens,
        top_k=1,
        seed=HELD_OUT_SEED,
    )
    return [(e.input_ids, e.start) for e in teacher_examples(target, config)]


def overlaps(target, draft_model, replies):
    """Per reply, Σ_x min(p, q) at each of its positions (temperature 1)."""
    values = []
    with torch.no_grad():
        for ids, start in replies:
            tensor = torch.tensor([ids])
            span = slice(start - 1, len(ids) - 1)  # the positions predicting reply tokens
            p = torch.softmax(target.model(input_ids=tensor).logits[0, span].float(), -1)
            q = torch.softmax(draft_model(input_ids=tensor).logits[0, span].float(), -1)
            values.append(torch.minimum(p, q).sum(-1).tolist())  # [reply]
    return values


def summary(values):
    flat = [v for reply in values for v in reply]
    # Expected tokens of a γ-step block starting at t: 1 (the target's own token at the
    # end) + P(first accepted) + P(first two) + ..., along the target's path.
    per_step = []
    for reply in values:
        for t in range(len(reply) - GAMMA + 1):
            prefix, total = 1.0, 1.0
            for j in range(GAMMA):
                prefix *= reply[t + j]
                total += prefix
            per_step.append(total)
    by_reply = [statistics.mean(r) for r in values if r]
    return {
        "overlap": statistics.mean(flat),
        # Replies are the independent units: the standard error is over them.
        "overlap_se": statistics.stdev(by_reply) / math.sqrt(len(by_reply)),
        "tokens_per_step_estimate": statistics.mean(per_step),
        "positions": len(flat),
    }


class ForwardTimer:
    """Wall time and count of a module's forward passes (forward hooks: the module is
    the one the strategies use, since loaded models are cached per process)."""

    def __init__(self, module):
        self.seconds, self.calls, self._start = 0.0, 0, 0.0
        self._handles = [
            module.register_forward_pre_hook(self._before),
            module.register_forward_hook(self._after),
        ]

    def _before(self, *_):
        self._start = time.perf_counter()

    def _after(self, *_):
        self.seconds += time.perf_counter() - self._start
        self.calls += 1

    def remove(self):
        for handle in self._handles:
            handle.remove()


def speculative_rows(target, draft_folder, prompts, max_new_tokens):
    """Plain sampling and SD with ``draft_folder``, interleaved prompt by prompt: speed,
    target passes, SD's acceptance by position, and where each one's time goes (the
    target's forward passes, the draft's, and everything else: sampling, the acceptance
    rule, KV-cache bookkeeping, Python), with the acceptance SD would need for 1.3×."""
    steps = []
    hooks = Hooks(
        on_event=lambda name, data: (
            steps.append((data["proposed"], data["accepted"])) if name == EVENT_VERIFY else None
        )
    )
    methods = {
        "sampling": Sampling(),
        "SD": SpeculativeSampling(draft=draft_folder, num_draft_tokens=GAMMA),
    }
    modules = {"target": load_model(target).model, "draft": load_model(draft_folder).model}
    totals = {
        name: {"seconds": 0.0, "tokens": 0, "passes": 0, "target": 0.0, "draft": 0.0}
        for name in methods
    }
    accepted = proposed = 0
    for index, prompt in enumerate(prompts):
        for name, strategy in methods.items():
            timers = {k: ForwardTimer(m) for k, m in modules.items()}
            start = time.perf_counter()
            (result,) = generate(
                target,
                prompt,
                strategy=strategy,
                seed=index,
                max_new_tokens=max_new_tokens,
                hooks=hooks if name == "SD" else None,
            )
            totals[name]["seconds"] += time.perf_counter() - start
            for k, timer in timers.items():
                totals[name][k] += timer.seconds
                timer.remove()
            totals[name]["tokens"] += len(result.token_ids)
            totals[name]["passes"] += result.stats.target_forward_passes
            accepted += result.stats.draft_tokens_accepted
            proposed += result.stats.draft_tokens_proposed
    rows = {}
    for name, t in totals.items():
        tokens = max(t["tokens"], 1)
        rows[name] = {
            "tokens_per_s": t["tokens"] / t["seconds"],
            "target_passes_per_token": t["passes"] / tokens,
            "tokens": t["tokens"],
            "target_forward_s_per_token": t["target"] / tokens,
            "draft_forward_s_per_token": t["draft"] / tokens,
            "other_s_per_token": (t["seconds"] - t["target"] - t["draft"]) / tokens,
        }
    sd = rows["SD"]
    sd["acceptance_rate"] = accepted / max(proposed, 1)
    sd["acceptance_by_position"] = [
        sum(a >= i for p, a in steps if p >= i) / max(1, sum(p >= i for p, _ in steps))
        for i in range(1, GAMMA + 1)
    ]
    sd["speed_vs_sampling"] = sd["tokens_per_s"] / rows["sampling"]["tokens_per_s"]
    # Per verification step, in units of plain sampling's time per token: a step must
    # return (its cost × 1.3) tokens for SD to run 1.3× faster.
    per_step = totals["SD"]["tokens"] / max(len(steps), 1)
    cost = per_step * rows["sampling"]["tokens_per_s"] / sd["tokens_per_s"]
    sd["per_step"] = {
        "tokens": per_step,
        "cost_in_sampling_tokens": cost,
        "tokens_needed_for_1.3x": 1.3 * cost,
        # α with 1 + α + α² + … + α^γ = that (acceptance independent per position).
        "alpha_needed_for_1.3x": _alpha_for(1.3 * cost),
    }
    return rows


def _alpha_for(tokens_per_step):
    if tokens_per_step >= GAMMA + 1:
        return None  # no acceptance rate reaches it: a step returns at most γ + 1 tokens
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sum(mid**j for j in range(GAMMA + 1)) < tokens_per_step else (lo, mid)
    return lo


def fit(points):
    """Least squares of overlap = a + b·ln(tokens) over the trained drafts, and the
    tokens at which it would reach 0.6."""
    xs = [math.log(p["teacher_tokens"]) for p in points]
    ys = [p["overlap"] for p in points]
    if len(xs) < 2:
        return None
    mx, my = statistics.mean(xs), statistics.mean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    a = my - b * mx
    return {
        "a": a,
        "b_per_ln_tokens": b,
        "tokens_for_0.6": math.exp((0.6 - a) / b) if b > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small settings (a smoke run)")
    parser.add_argument(
        "--phases",
        action="store_true",
        help="only time SD's phases with a draft of the last full run (adds to the JSON)",
    )
    parser.add_argument(
        "--replies",
        type=int,
        default=None,
        help="with --phases: the draft of this many replies per prompt (default: the largest;"
        " the time per phase hardly depends on it, and the recipe's 6 is the quickest to remake)",
    )
    args = parser.parse_args()
    if args.phases:
        return phases_main(args.quick, args.replies)
    data = (1, 2) if args.quick else DATA
    recipe = {**DISTILL, "max_new_tokens": 16, "epochs": 1} if args.quick else DISTILL
    prompts = PROMPTS[:4] if args.quick else PROMPTS
    assert not set(prompts) & set(DISTILL_PROMPTS)  # held out from training
    target = load_model(TARGET)
    replies = held_out_replies(target, prompts, 1 if args.quick else 2, 16 if args.quick else 64)
    cut = init_draft(target.model, recipe["num_layers"])
    payload = {
        "target": TARGET,
        "recipe": recipe,
        "held_out": {"prompts": len(prompts), "replies": len(replies)},
        "num_draft_tokens": GAMMA,
        "untrained": summary(overlaps(target, cut, replies)),
        "drafts": [],
    }
    del cut
    name = "draft_data_quick" if args.quick else "draft_data"
    folders = {}
    print(f"untrained cut draft: {payload['untrained']}")
    for replies_per_prompt in data:
        report = distill_draft(TARGET, **{**recipe, "replies_per_prompt": replies_per_prompt})
        draft = load_model(report.folder)
        folders[Path(report.folder).name] = report.folder
        point = {
            "replies_per_prompt": replies_per_prompt,
            "teacher_replies": report.examples,
            "teacher_tokens": report.tokens,
            "steps": len(report.losses),
            "first_loss": report.losses[0],
            "last_loss": report.losses[-1],
            "seconds_when_made": report.seconds,
            "folder": Path(report.folder).name,
            **summary(overlaps(target, draft.model, replies)),
        }
        payload["drafts"].append(point)
        payload["drafts"].sort(key=lambda p: p["teacher_tokens"])
        payload["fit"] = fit(payload["drafts"])
        print(f"{replies_per_prompt} replies per prompt: {point}")
        write_json(name, payload)
    largest = max(payload["drafts"], key=lambda p: p["teacher_tokens"])
    generate(TARGET, "warm up", max_new_tokens=2)
    payload["speculative"] = {
        "draft": largest["folder"],
        "rows": speculative_rows(
            TARGET,
            folders[largest["folder"]],
            prompts,
            16 if args.quick else 64,
        ),
    }
    print(f"speculative sampling with the largest draft: {payload['speculative']}")
    path = write_json(name, payload)
    plot(payload, name)
    print(f"wrote {path}")


def phases_main(quick, replies_per_prompt=None):
    """``--phases``: SD's time per phase with a draft of the last full run (the largest
    unless ``replies_per_prompt`` names another)."""
    import json

    from benchmarks.common import RESULTS

    name = "draft_data_quick" if quick else "draft_data"
    payload = json.loads((RESULTS / f"{name}.json").read_text())
    points = {p["replies_per_prompt"]: p for p in payload["drafts"]}
    if replies_per_prompt is None:
        replies_per_prompt = max(points, key=lambda r: points[r]["teacher_tokens"])
    if replies_per_prompt not in points:
        raise SystemExit(f"--replies {replies_per_prompt}: the last run made {sorted(points)}")
    chosen = points[replies_per_prompt]
    settings = {**payload["recipe"], "replies_per_prompt": replies_per_prompt}
    folder = distill_draft(TARGET, **settings).folder  # cached: returns at once
    assert Path(folder).name == chosen["folder"]
    prompts = PROMPTS[:2] if quick else PROMPTS[:12]
    generate(TARGET, "warm up", max_new_tokens=2)
    payload["phases"] = {
        "draft": chosen["folder"],
        "replies_per_prompt": replies_per_prompt,
        "prompts": len(prompts),
        **speculative_rows(TARGET, folder, prompts, 16 if quick else 64),
    }
    print(f"phases: {payload['phases']}")
    write_json(name, payload)


def plot(payload, name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = payload["drafts"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [p["teacher_tokens"] for p in points]
    ax.errorbar(
        xs,
        [p["overlap"] for p in points],
        yerr=[2 * p["overlap_se"] for p in points],
        marker="o",
        label="distilled draft (±2 s.e. over held-out replies)",
    )
    ax.axhline(payload["untrained"]["overlap"], color="grey", ls=":", label="cut, untrained")
    ax.axhline(0.6, color="red", ls="--", label="issue 15's target (0.6)")
    if payload.get("fit"):
        f = payload["fit"]
        grid = [min(xs) * 2 ** (i / 4) for i in range(0, 41)]
        ax.plot(
            grid,
            [f["a"] + f["b_per_ln_tokens"] * math.log(x) for x in grid],
            color="C0",
            ls="--",
            alpha=0.5,
            label="log-linear fit (extrapolated)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("teacher tokens trained on")
    ax.set_ylabel("held-out Σ min(p, q) (first-position acceptance)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("SmolLM2-135M, 6-layer distilled draft: acceptance vs teacher data")
    fig.tight_layout()
    fig.savefig(plot_path(name), dpi=120)


if __name__ == "__main__":
    main()
