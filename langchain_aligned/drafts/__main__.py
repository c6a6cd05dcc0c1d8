"""``python -m langchain_aligned.drafts`` (or ``langchain-aligned-drafts``): make a draft.

    python -m langchain_aligned.drafts distill smollm2-135m-instruct --num-layers 6

prints the draft's folder (cached: a second run returns at once) and what was done.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields

from ..errors import AlignedError
from .distill import DistillConfig, distill_draft

_TUNABLE = ("replies_per_prompt", "max_new_tokens", "top_k", "epochs", "batch_size", "seed")


def parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    root = argparse.ArgumentParser(prog="python -m langchain_aligned.drafts")
    commands = root.add_subparsers(dest="command", required=True)
    distill = commands.add_parser("distill", help="distil a draft from a target model")
    distill.add_argument("target", help="a Hugging Face id, a folder or an embedded alias")
    distill.add_argument("--num-layers", type=int, default=DistillConfig.num_layers)
    defaults = {f.name: f.default for f in fields(DistillConfig)}
    for name in _TUNABLE:
        distill.add_argument(f"--{name.replace('_', '-')}", type=int, default=defaults[name])
    distill.add_argument("--learning-rate", type=float, default=defaults["learning_rate"])
    distill.add_argument("--temperature", type=float, default=defaults["temperature"])
    distill.add_argument("--train-embeddings", action="store_true")
    distill.add_argument(
        "--head-tokens", type=int, default=None, help="keep M tokens in the output head"
    )
    distill.add_argument("--quiet", action="store_true", help="no progress bar")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = {name: getattr(args, name) for name in _TUNABLE}
    try:
        report = distill_draft(
            args.target,
            args.num_layers,
            learning_rate=args.learning_rate,
            temperature=args.temperature,
            train_embeddings=args.train_embeddings,
            head_tokens=args.head_tokens,
            progress=not args.quiet,
            **settings,
        )
    except AlignedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = asdict(report)
    summary.pop("config")
    losses = summary.pop("losses")
    summary["loss_first_last"] = [losses[0], losses[-1]] if losses else []
    print(report.folder)
    print(json.dumps(summary, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
