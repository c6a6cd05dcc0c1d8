"""Align a draft to a reward: preference pairs, then DPO — the aligned draft of SSS.

Reward-Shifted Speculative Sampling needs two drafts that differ only by alignment: the
*draft reference* (an unaligned small model, e.g. :func:`~.distill.distill_draft`'s
output) and the *aligned draft* (the same model after preference training); the paper
trains the second by DPO. :func:`align_draft` makes it:

1. **Pairs.** Either given, or made on-policy: the draft samples ``n`` replies to each
   prompt (its own distribution, seeded), a :class:`~rewards.RewardScorer` scores them,
   and the best and the worst become the *chosen* and *rejected* reply of one pair.
   Prompts whose best and worst are within ``min_reward_gap`` carry no preference and
   are dropped.
2. **DPO** (Rafailov et al., 2023) with TRL's ``DPOTrainer``: the loss of a pair is
   ``−log σ(β [(log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))])``,
   where ``π`` is the draft being trained and ``π_ref`` the input draft, frozen.
3. The result is saved as a new folder in the per-machine cache, keyed by the input
   draft's weights, the settings and the pairs themselves (on-policy pairs are made
   first, about a tenth of the time, so a scorer's settings that its name does not show
   can never select another scorer's draft); the input draft is left as it was — it is
   the draft reference.

Pairs reach the trainer as token ids: the prompt rendered and encoded exactly as this
library's engines do, and an on-policy reply as the tokens the draft sampled (ending
with end-of-sequence only if the reply ended), so the aligned draft is trained on the
sequences it produces and the contexts it sees when decoding.

TRL's trainer seeds Python's, NumPy's and torch's global generators; :func:`align_draft`
saves and restores them, so a caller's random state is as it was.

Terms are those of the glossary of :mod:`langchain_aligned.decoding`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInputError, ModelLoadError
from ..models.cache import cache_dir, file_lock, write_folder
from ..models.loading import ModelHandle, load_model
from ..models.restricted_head import HEAD_TOKENS_FILE, RestrictedHead, unrestricted_copy
from .common import ProgressBar, cached_report, merged_config, train_only_layers
from .distill import weights_fingerprint
from .prompts import DISTILL_PROMPTS

__all__ = ["AlignConfig", "AlignReport", "PreferencePair", "align_draft", "on_policy_pairs"]

REPORT_FILE = "align.json"
"""The file in an aligned draft's folder that records how it was made (and marks it
complete)."""


@dataclass(frozen=True)
class PreferencePair:
    """One prompt with a preferred and a dispreferred reply."""

    prompt: str
    """The user message."""
    chosen: str
    """The preferred reply (y_w)."""
    rejected: str
    """The dispreferred reply (y_l)."""
    chosen_reward: float | None = None
    """The reward of ``chosen`` (on-policy pairs; None for given pairs)."""
    rejected_reward: float | None = None
    """The reward of ``rejected``."""
    chosen_ids: tuple[int, ...] | None = None
    """``chosen``'s token ids as the draft sampled them (end-of-sequence included when
    the reply ended); None: tokenised from the text, end-of-sequence appended."""
    rejected_ids: tuple[int, ...] | None = None
    """``rejected``'s token ids, as ``chosen_ids``."""


@dataclass(frozen=True)
class AlignConfig:
    """How :func:`align_draft` makes the aligned draft."""

    prompts: tuple[str, ...] = DISTILL_PROMPTS
    """User messages the draft answers for on-policy pairs."""
    samples_per_prompt: int = 4
    """n: replies the draft samples per prompt; the best and the worst make a pair."""
    max_new_tokens: int = 64
    """Length cap of each sampled reply."""
    temperature: float = 1.0
    """Temperature of the sampled replies (1: the draft's own distribution)."""
    min_reward_gap: float = 0.0
    """Pairs whose chosen and rejected rewards differ by this much or less are dropped."""
    beta: float = 0.1
    """β of DPO: how far the aligned draft may move from the reference (smaller moves
    further)."""
    epochs: int = 3
    """Passes over the pairs."""
    batch_size: int = 8
    """Pairs per optimiser step."""
    learning_rate: float = 5e-5
    """AdamW's learning rate."""
    train_embeddings: bool = False
    """Whether the embeddings and the output head train too (by default they stay the
    draft's, as in distillation, so a restricted head's kept ids stay right)."""
    seed: int = 0
    """Seeds the replies (seed + j for the j-th reply of each prompt) and the trainer."""

    def __post_init__(self) -> None:
        for name in ("samples_per_prompt", "max_new_tokens", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"AlignConfig({name}={value!r}) must be an integer ≥ 1")
        if self.samples_per_prompt < 2:
            raise InvalidInputError(
                f"AlignConfig(samples_per_prompt={self.samples_per_prompt}) must be ≥ 2: "
                "a pair is the best and the worst of the samples"
            )
        if not self.prompts or not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise InvalidInputError(
                "AlignConfig(prompts=...) must be a non-empty tuple of non-empty strings"
            )
        for name in ("temperature", "beta", "learning_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidInputError(f"AlignConfig({name}={value!r}) must be a number > 0")
        gap = self.min_reward_gap
        if isinstance(gap, bool) or not isinstance(gap, int | float) or gap < 0:
            raise InvalidInputError(f"AlignConfig(min_reward_gap={gap!r}) must be a number ≥ 0")


@dataclass
class AlignReport:
    """What :func:`align_draft` did (saved beside the weights as ``align.json``)."""

    folder: str
    """The aligned draft's folder: ``draft=`` of ``RewardShiftedSampling``."""
    draft: str
    """The input draft's name (the draft reference)."""
    reward: str | None
    """The reward scorer's name (None: the pairs were given)."""
    config: dict[str, Any]
    """The :class:`AlignConfig` as a dict."""
    pairs: int = 0
    """Preference pairs trained on."""
    mean_reward_gap: float | None = None
    """Mean chosen − rejected reward of the on-policy pairs."""
    losses: list[float] = field(default_factory=list)
    """DPO loss of each optimiser step, in order."""
    reward_accuracy: list[float] = field(default_factory=list)
    """Per step, the share of pairs whose implicit DPO reward ranks chosen first."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per phase: ``pairs`` (sampling and scoring), ``training``."""
    cached: bool = False
    """Whether this call loaded the draft from the cache instead of training it."""


def on_policy_pairs(
    draft: ModelHandle,
    reward: Any,
    config: AlignConfig,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> list[PreferencePair]:
    """Step 1: the best and the worst of ``n`` draft samples per prompt under ``reward``."""
    from ..decoding.generate import generate

    conversations = [[{"role": "user", "content": p}] for p in config.prompts]
    replies: list[list[Any]] = [[] for _ in conversations]
    for j in range(config.samples_per_prompt):
        # One seed per round: within a round the prompts differ; across rounds the seed.
        results = generate(
            draft,
            conversations,
            temperature=config.temperature,
            max_new_tokens=config.max_new_tokens,
            seed=config.seed + j,
        )
        for samples, result in zip(replies, results, strict=True):
            samples.append(result)
        if on_progress is not None:
            on_progress("samples", j + 1, config.samples_per_prompt)
    texts = [[r.text for r in samples] for samples in replies]
    scores = reward.score_batch(list(zip(conversations, texts, strict=True)))
    eos = min(draft.eos_token_ids) if draft.eos_token_ids else None

    def sampled_ids(result: Any) -> tuple[int, ...]:
        ids = tuple(result.token_ids)
        # The draft also learns where replies end (as it decided to).
        return (*ids, eos) if result.finish_reason == "stop" and eos is not None else ids

    pairs = []
    for prompt, samples, values in zip(config.prompts, replies, scores, strict=True):
        best = max(range(len(samples)), key=values.__getitem__)
        worst = min(range(len(samples)), key=values.__getitem__)
        if values[best] - values[worst] <= config.min_reward_gap:
            continue
        chosen, rejected = samples[best], samples[worst]
        pairs.append(
            PreferencePair(
                prompt,
                chosen.text,
                rejected.text,
                values[best],
                values[worst],
                chosen_ids=sampled_ids(chosen),
                rejected_ids=sampled_ids(rejected),
            )
        )
    return pairs


def align_draft(
    draft: Any,
    reward: Any = None,
    *,
    pairs: Sequence[PreferencePair | Mapping[str, str]] | None = None,
    config: AlignConfig | None = None,
    progress: bool = True,
    **settings: Any,
) -> AlignReport:
    """Align (once per machine) a copy of ``draft`` by DPO.

    Args:
        draft: the draft reference: anything :func:`~langchain_aligned.models.load_model`
            accepts (a :func:`~.distill.distill_draft` folder, typically).
        reward: a :class:`~rewards.RewardScorer` that makes on-policy pairs.
        pairs: given pairs instead (``PreferencePair`` or mappings with ``prompt``,
            ``chosen`` and ``rejected``); exactly one of ``reward`` and ``pairs``.
        config: the settings; ``settings`` override its fields.
        progress: show progress bars on standard error.
        **settings: :class:`AlignConfig` fields (``beta``, ``epochs``, …).

    Returns:
        The :class:`AlignReport`; its ``folder`` is the aligned draft, for
        ``RewardShiftedSampling(draft=report.folder, draft_reference=draft)``.

    Raises:
        InvalidInputError: bad settings or pairs (named), neither or both of ``reward``
            and ``pairs``, or no on-policy pair (every prompt's samples tied).
        ModelLoadError: TRL is not installed.
    """
    config = merged_config(AlignConfig, config, settings, "align_draft")
    if (reward is None) == (pairs is None):
        raise InvalidInputError(
            "align_draft() takes exactly one of reward= (a RewardScorer, for on-policy "
            "pairs) and pairs= (given preference pairs)"
        )
    given = None if pairs is None else _checked_pairs(pairs)
    if reward is not None and not callable(getattr(reward, "score_batch", None)):
        raise InvalidInputError(
            f"reward={reward!r:.80} is not a RewardScorer (it has no score_batch method)"
        )
    handle = load_model(draft)
    bar = ProgressBar(progress, "align")
    start = time.perf_counter()
    try:
        if given is None:
            # Made before the cache is looked up: the cache is keyed by the pairs
            # themselves, so two scorers that share a name (or settings a scorer's name
            # does not show) never share an aligned draft.
            given = on_policy_pairs(handle, reward, config, bar.phase)
    finally:
        bar.close()  # the trainer shows its own progress
    pairs_seconds = time.perf_counter() - start
    reward_name = None if reward is None else str(reward.name)
    if not given:
        raise InvalidInputError(
            f"no preference pair: every prompt's samples scored within "
            f"min_reward_gap={config.min_reward_gap} of each other under "
            f"{reward_name}; lower min_reward_gap or raise samples_per_prompt"
        )
    folder = _aligned_folder(handle, config, given)
    report_path = folder / REPORT_FILE
    if report_path.is_file():
        return cached_report(AlignReport, report_path)
    with file_lock(folder.with_suffix(".lock")):
        if report_path.is_file():
            return cached_report(AlignReport, report_path)
        report = AlignReport(
            folder=str(folder),
            draft=handle.name,
            reward=reward_name,
            config=asdict(config),
            pairs=len(given),
            seconds={"pairs": pairs_seconds},
        )
        if reward is not None:
            gaps = [p.chosen_reward - p.rejected_reward for p in given]  # type: ignore[operator]
            report.mean_reward_gap = sum(gaps) / len(gaps)
        start = time.perf_counter()
        policy = unrestricted_copy(handle.model)
        reference = unrestricted_copy(handle.model)
        log = dpo_train(policy, reference, handle, given, config, progress)
        report.losses = [entry["loss"] for entry in log if "loss" in entry]
        report.reward_accuracy = [
            entry["rewards/accuracies"] for entry in log if "rewards/accuracies" in entry
        ]
        report.seconds["training"] = time.perf_counter() - start

        def save(tmp: Path) -> None:
            policy.save_pretrained(tmp, safe_serialization=True)
            handle.tokenizer.save_pretrained(tmp)
            head = handle.model.get_output_embeddings()
            if isinstance(head, RestrictedHead):
                kept = head.get_buffer("token_ids").tolist()
                (tmp / HEAD_TOKENS_FILE).write_text(json.dumps(kept))
            # Written last: a folder with its report is complete.
            (tmp / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2, default=list))

        write_folder(folder, save)
    return report


def dpo_train(
    policy: Any,
    reference: Any,
    handle: ModelHandle,
    pairs: Sequence[PreferencePair],
    config: AlignConfig,
    progress: bool,
) -> list[dict[str, float]]:
    """Step 2: TRL's DPO on ``pairs``; the trainer's log (one entry per step)."""
    try:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer
    except ImportError as error:  # pragma: no cover - the dev extras install it
        raise ModelLoadError(
            f"align_draft() trains with TRL, which is not importable here ({error}); "
            "install it with `pip install 'langchain-aligned[drafts]'`"
        ) from error
    train_only_layers(policy, config.train_embeddings)
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    rows = preference_rows(handle, pairs)
    tokenizer = handle.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    class TokenizedDPOTrainer(DPOTrainer):
        """TRL's DPO trainer on pairs already tokenised: ``prompt_ids``, ``chosen_ids``
        and ``rejected_ids`` are the input of its preference collator, so the trainer's
        own text tokenisation (which would re-split sampled tokens and append
        end-of-sequence to every reply) is skipped."""

        def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
            return dataset

    with tempfile.TemporaryDirectory() as scratch, _global_random_state_kept():
        arguments = DPOConfig(
            output_dir=scratch,
            beta=config.beta,
            learning_rate=config.learning_rate,
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            lr_scheduler_type="constant",
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            seed=config.seed,
            use_cpu=handle.device.type == "cpu",
            disable_tqdm=not progress,
            dataloader_num_workers=0,
            max_length=None,
            # TRL's defaults are bf16 mixed precision and gradient checkpointing, for
            # large models on GPUs; a draft is small, and on a CPU without bf16 units
            # autocast to bf16 made a step about 20 times slower (measured here). Train
            # in the draft's own dtype instead.
            bf16=next(policy.parameters()).dtype == torch.bfloat16,
            fp16=False,
            gradient_checkpointing=False,
        )
        trainer = TokenizedDPOTrainer(
            model=policy,
            ref_model=reference,
            args=arguments,
            train_dataset=Dataset.from_dict(rows),
            processing_class=tokenizer,
        )
        if not progress:
            from transformers.trainer_callback import PrinterCallback

            # Without a progress bar the trainer prints every step's log instead.
            trainer.remove_callback(PrinterCallback)
        trainer.train()
        log = [dict(entry) for entry in trainer.state.log_history]
    policy.eval()
    for parameter in policy.parameters():
        parameter.requires_grad_(False)
    return log


def preference_rows(handle: ModelHandle, pairs: Sequence[PreferencePair]) -> dict[str, list[Any]]:
    """The pairs as token-id columns (``prompt_ids``, ``chosen_ids``, ``rejected_ids``):
    the prompt rendered and encoded as the engines do; a reply's sampled ids, or its
    text tokenised followed by end-of-sequence."""
    from ..engines.transformers import DecodingEngine
    from ..models.chat import render_chat

    engine = DecodingEngine(handle)
    eos = [min(handle.eos_token_ids)] if handle.eos_token_ids else []

    def reply_ids(text: str, ids: tuple[int, ...] | None) -> list[int]:
        if ids is not None:
            return list(ids)
        return list(handle.tokenizer(text, add_special_tokens=False)["input_ids"]) + eos

    rows: dict[str, list[Any]] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    for index, pair in enumerate(pairs):
        chosen = reply_ids(pair.chosen, pair.chosen_ids)
        rejected = reply_ids(pair.rejected, pair.rejected_ids)
        if not chosen or not rejected:
            raise InvalidInputError(f"pairs[{index}] has an empty reply")
        prompt = render_chat(handle, [{"role": "user", "content": pair.prompt}])
        rows["prompt_ids"].append(engine.encode(prompt))
        rows["chosen_ids"].append(chosen)
        rows["rejected_ids"].append(rejected)
    return rows


@contextlib.contextmanager
def _global_random_state_kept() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global generators afterwards (TRL's
    trainer seeds them)."""
    import numpy as np

    python_state = random.getstate()
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _checked_pairs(pairs: Sequence[PreferencePair | Mapping[str, str]]) -> list[PreferencePair]:
    if isinstance(pairs, str | bytes) or not isinstance(pairs, Sequence) or not pairs:
        raise InvalidInputError(
            f"pairs={pairs!r:.80} must be a non-empty list of PreferencePair or of dicts "
            "with 'prompt', 'chosen' and 'rejected'"
        )
    checked = []
    for index, pair in enumerate(pairs):
        if isinstance(pair, Mapping):
            missing = [k for k in ("prompt", "chosen", "rejected") if k not in pair]
            if missing:
                raise InvalidInputError(f"pairs[{index}] lacks {missing}")
            pair = PreferencePair(pair["prompt"], pair["chosen"], pair["rejected"])
        if not isinstance(pair, PreferencePair) or not all(
            isinstance(getattr(pair, k), str) for k in ("prompt", "chosen", "rejected")
        ):
            raise InvalidInputError(
                f"pairs[{index}]={pair!r:.80} must be a PreferencePair or a dict of strings"
            )
        if not pair.prompt.strip():
            raise InvalidInputError(f"pairs[{index}] has an empty prompt")
        if pair.chosen == pair.rejected:
            raise InvalidInputError(
                f"pairs[{index}]: chosen and rejected are the same text ({pair.chosen!r:.60}); "
                "a pair needs two different replies"
            )
        checked.append(pair)
    return checked


def _aligned_folder(
    handle: ModelHandle, config: AlignConfig, pairs: Sequence[PreferencePair]
) -> Path:
    """Where the aligned copy of ``handle`` trained on ``pairs`` with ``config`` lives in
    the cache (keyed by the input's weights, the settings and the pairs: the training
    data itself, token ids included)."""
    data = json.dumps([asdict(p) for p in pairs], sort_keys=True, default=list)
    settings = json.dumps(asdict(config), sort_keys=True, default=list)
    key = hashlib.sha256(f"{weights_fingerprint(handle)}:{settings}:{data}".encode())
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(handle.name).name)[-48:]
    return cache_dir() / "aligned" / f"{stem}-{key.hexdigest()[:12]}"
