"""How often vLLM's CPU build samples wrongly with speculative decoding.

This library refuses ``SpeculativeSampling`` at temperature > 0 on vLLM's CPU build
(``engines/speculation.py``, ``check_sampling``) because the replies vLLM 0.32 samples
there were, in every run up to 2026-12-01, far less likely under the target than plain
sampling's (−24.1 nats per token against −1.9), then right once, in a fresh-clone CI run.
This script measures the rate: each run is a fresh Python process (the fault is
intermittent between processes, so runs in one process would not be independent) that
builds vLLM on the embedded SmolLM2 twice, plain and with a draft (the target's first 20
of 30 layers, its final norm and head), samples the same 4 seeded replies × 16 tokens at
temperature 0.8 from each, and scores every reply under the target with the
transformers engine: mean log-probability per token. A run is **wrong** when the two
means differ by more than 1.5 nats (the per-token spread is about 2 nats, so the
difference's standard error is about 0.35 and 1.5 is over four of them; the test
``tests/vllm/test_vllm_speculation.py`` uses the same bound).

    python -m benchmarks.bench_vllm_spec_check [--runs 10]

Writes ``results/spec_check_vllm.json`` (no plot: one rate and its interval).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import write_json

MODEL = "smollm2-135m-instruct"
QUESTION = "Give me one tip for sleeping better."
KEEP_LAYERS = 20
GAMMA = 3
REPLIES, TOKENS, TEMPERATURE = 4, 16, 0.8
WRONG_NATS = 1.5


def make_draft(folder: Path) -> None:
    """The target's first ``KEEP_LAYERS`` layers with its final norm and head."""
    import copy

    from langchain_aligned.models import load_model

    loaded = load_model(MODEL)
    model = copy.deepcopy(loaded.model)  # the loaded model is cached: leave it whole
    model.model.layers = model.model.layers[:KEEP_LAYERS]
    model.config.num_hidden_layers = KEEP_LAYERS
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:KEEP_LAYERS]
    model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)


def worker(draft: str) -> dict[str, float]:
    """One run (in its own process): mean target log-probability per token of vLLM's
    plain and speculative replies."""
    import torch
    from vllm.inputs import TokensPrompt

    from benchmarks.bench_vllm import cpu_settings
    from langchain_aligned import SpeculativeSampling
    from langchain_aligned.decoding import SamplingParams, build_requests, engine_for
    from langchain_aligned.engines.select import open_engine
    from langchain_aligned.models import load_model

    cpu_settings()
    plain = open_engine(MODEL, "vllm")
    strategy = SpeculativeSampling(draft=draft, num_draft_tokens=GAMMA)
    speculative = open_engine(MODEL, "vllm", strategy.engine_settings("vllm", {}))
    params = SamplingParams(TEMPERATURE, max_new_tokens=TOKENS)
    (request,) = build_requests(plain, [QUESTION], params)
    prompt = TokensPrompt(prompt_token_ids=list(request.prompt_ids))
    scorer = engine_for(load_model(MODEL))

    def mean_logprob(engine) -> float:
        replies = []
        for seed in range(REPLIES):
            sampling = engine.sampling_params(params, seed, TOKENS)
            sampling.output_kind = type(sampling.output_kind).FINAL_ONLY
            (output,) = engine.llm.generate([prompt], sampling, use_tqdm=False)
            replies.append(list(output.outputs[0].token_ids))
        scores = scorer.score_continuations([request.prompt_ids] * len(replies), replies)
        return float(torch.cat([s.float() for s in scores]).mean())

    return {"plain": mean_logprob(plain), "speculative": mean_logprob(speculative)}


def wilson(wrong: int, runs: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a rate (sound at 0 or ``runs`` wrong, unlike the normal one)."""
    p = wrong / runs
    centre = (p + z * z / (2 * runs)) / (1 + z * z / runs)
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / (1 + z * z / runs)
    return max(0.0, centre - half), min(1.0, centre + half)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=None, help="fresh processes (default 10)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 runs, written beside the full result (.quick), never over it",
    )
    parser.add_argument("--worker", metavar="DRAFT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 2 if args.quick else 10
    args.out = "spec_check_vllm" + (".quick" if args.quick else "")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    if args.runs < 1:
        raise SystemExit(f"--runs {args.runs}: give at least 1 run")
    import vllm

    runs = []
    with tempfile.TemporaryDirectory(prefix="vllm-spec-check-") as tmp:
        draft = Path(tmp) / f"draft{KEEP_LAYERS}"
        make_draft(draft)
        for index in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_vllm_spec_check", "--worker", str(draft)],
                capture_output=True,
                text=True,
                env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"},
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"run {index} failed:\n{done.stderr[-4000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["difference"] = row["plain"] - row["speculative"]
            row["wrong"] = abs(row["difference"]) > WRONG_NATS
            row["seconds"] = time.perf_counter() - start
            runs.append(row)
            print(f"run {index}: {row}", flush=True)
    wrong = sum(r["wrong"] for r in runs)
    low, high = wilson(wrong, len(runs))
    path = write_json(
        args.out,
        {
            "vllm": vllm.__version__,
            "model": MODEL,
            "draft_layers": KEEP_LAYERS,
            "num_draft_tokens": GAMMA,
            "replies": REPLIES,
            "tokens": TOKENS,
            "temperature": TEMPERATURE,
            "wrong_if_nats_apart": WRONG_NATS,
            "runs": runs,
            "wrong": wrong,
            "wrong_rate": wrong / len(runs),
            "wrong_rate_95ci": [low, high],
        },
    )
    print(f"{wrong}/{len(runs)} runs wrong (95 % CI {low:.2f}–{high:.2f}); wrote {path}")


if __name__ == "__main__":
    main()
