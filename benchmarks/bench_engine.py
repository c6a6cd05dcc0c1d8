"""Engine throughput against ``model.generate`` (same model, batch, token count).

Both decode exactly ``--tokens`` new tokens per row with sampling (EOS ignored by
the engine, suppressed by ``min_new_tokens`` in ``generate``), from the same
left-padded prompts, on the embedded SmolLM2-135M-Instruct. Runs alternate between
the two methods and the median of ``--repeats`` is reported, because the machine is
noisy; the ratio inside one run is the figure that matters.

    python -m benchmarks.bench_engine            # batch 1 and 16, 64 tokens
    python -m benchmarks.bench_engine --quick
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import plot_path, write_json
from benchmarks.prompts import PROMPTS
from langchain_aligned.decoding import Candidate, DecodingEngine, SamplingParams
from langchain_aligned.decoding.params import derive_seed, make_generator
from langchain_aligned.models import load_model, render_chat


def _prompts(handle, batch):
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    return [
        handle.tokenizer(
            render_chat(handle, [{"role": "user", "content": t}]), add_special_tokens=False
        )["input_ids"]
        for t in texts
    ]


def run_engine(engine, prompts, tokens, seed):
    params = SamplingParams(temperature=1.0, max_new_tokens=tokens, ignore_eos=True)
    candidates = [
        Candidate(i, 0, p, generator=make_generator(derive_seed(seed, i)))
        for i, p in enumerate(prompts)
    ]
    start = time.perf_counter()
    engine.decode(engine.prefill(candidates), params)
    elapsed = time.perf_counter() - start
    assert all(len(c.token_ids) == tokens for c in candidates)
    return elapsed


def run_generate(handle, prompts, tokens, seed):
    width = max(map(len, prompts))
    pad = handle.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    torch.manual_seed(seed)  # generate() only takes the global RNG; benchmark-only
    start = time.perf_counter()
    out = handle.model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        pad_token_id=pad,
    )
    elapsed = time.perf_counter() - start
    assert out.shape[1] - width == tokens
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.repeats = 32, 2
    handle = load_model("smollm2-135m-instruct")
    engine = DecodingEngine(handle)
    rows = []
    for batch in args.batches:
        prompts = _prompts(handle, batch)
        run_engine(engine, prompts, 4, 0)  # warm-up
        run_generate(handle, prompts, 4, 0)
        times = {"engine": [], "generate": []}
        for r in range(args.repeats):
            times["engine"].append(run_engine(engine, prompts, args.tokens, r))
            times["generate"].append(run_generate(handle, prompts, args.tokens, r))
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {
            "batch": batch,
            "tokens_per_row": args.tokens,
            "engine_seconds": med["engine"],
            "generate_seconds": med["generate"],
            "engine_tokens_per_s": batch * args.tokens / med["engine"],
            "generate_tokens_per_s": batch * args.tokens / med["generate"],
            "speed_ratio": med["generate"] / med["engine"],
            "all_seconds": times,
        }
        rows.append(row)
        print(
            f"batch {batch:>3}: engine {row['engine_tokens_per_s']:.1f} tok/s, "
            f"generate {row['generate_tokens_per_s']:.1f} tok/s, ratio {row['speed_ratio']:.2f}x"
        )
    path = write_json(
        "engine",
        {"model": "smollm2-135m-instruct", "dtype": str(handle.dtype), "rows": rows},
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = range(len(rows))
    ax.bar(
        [x - 0.2 for x in xs],
        [r["engine_tokens_per_s"] for r in rows],
        0.4,
        label="langchain-aligned engine",
    )
    ax.bar(
        [x + 0.2 for x in xs],
        [r["generate_tokens_per_s"] for r in rows],
        0.4,
        label="model.generate",
    )
    ax.set_xticks(list(xs), [f"batch {r['batch']}" for r in rows])
    ax.set_ylabel("tokens / s")
    ax.set_title(f"Sampling throughput, SmolLM2-135M, {args.tokens} new tokens")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot_path("engine"), dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
