"""``python -m langchain_aligned.drafts`` (or ``langchain-aligned-drafts``): make a draft.

    python -m langchain_aligned.drafts distill smollm2-135m-instruct --num-layers 6
    python -m langchain_aligned.drafts align DRAFT_FOLDER --reward sentiment
    python -m langchain_aligned.drafts align DRAFT_FOLDER --pairs pairs.jsonl

prints the draft's folder (cached: a second run returns at once) and what was done.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ..errors import AlignedError
from .align import AlignConfig, align_draft
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

    align = commands.add_parser("align", help="align a copy of a draft by DPO")
    align.add_argument("draft", help="the draft reference: a folder, id or alias")
    source = align.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--reward", choices=sorted(_REWARDS), help="make on-policy pairs under this scorer"
    )
    source.add_argument(
        "--pairs", help="a JSON list or JSON-lines file of {prompt, chosen, rejected}"
    )
    align_defaults = {f.name: f.default for f in fields(AlignConfig)}
    for name in _ALIGN_INTS:
        align.add_argument(f"--{name.replace('_', '-')}", type=int, default=align_defaults[name])
    for name in _ALIGN_FLOATS:
        align.add_argument(f"--{name.replace('_', '-')}", type=float, default=align_defaults[name])
    align.add_argument("--quiet", action="store_true", help="no progress bar")
    return root


_ALIGN_INTS = ("samples_per_prompt", "max_new_tokens", "epochs", "batch_size", "seed")
_ALIGN_FLOATS = ("beta", "learning_rate", "temperature", "min_reward_gap")


def _sentiment() -> object:
    import rewards

    return rewards.SentimentScorer()


def _similarity() -> object:
    import rewards

    return rewards.EmbeddingSimilarityScorer()


def _default() -> object:
    import rewards

    return rewards.default_scorer()


_REWARDS = {"sentiment": _sentiment, "similarity": _similarity, "default": _default}
"""The scorers ``align --reward`` can name (in Python, ``align_draft`` takes any)."""


def read_pairs(path: str) -> list[dict[str, str]]:
    """Preference pairs from a JSON list or a JSON-lines file."""
    text = Path(path).read_text()
    if text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _align(args: argparse.Namespace) -> int:
    settings = {name: getattr(args, name) for name in (*_ALIGN_INTS, *_ALIGN_FLOATS)}
    try:
        pairs = None if args.pairs is None else read_pairs(args.pairs)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read --pairs {args.pairs}: {exc}", file=sys.stderr)
        return 2
    reward = None if args.reward is None else _REWARDS[args.reward]()
    try:
        report = align_draft(args.draft, reward, pairs=pairs, progress=not args.quiet, **settings)
    except AlignedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _print_report(report)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "align":
        return _align(args)
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
    return _print_report(report)


def _print_report(report: Any) -> int:
    """The folder on standard output, a summary of the report on standard error."""
    summary = asdict(report)
    summary.pop("config")
    summary.pop("reward_accuracy", None)
    losses = summary.pop("losses")
    summary["loss_first_last"] = [losses[0], losses[-1]] if losses else []
    print(report.folder)
    print(json.dumps(summary, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
