"""Distil a small draft from any target: the draft the speculative strategies assume.

A draft must share the target's vocabulary; the cheapest one that also agrees with the
target is the target's own bottom: :func:`init_draft` keeps the target's embeddings,
its first ``k`` decoder layers, its final norm and its output head. The missing top
layers make it agree poorly at first, so :func:`distill_draft` trains it by token-level
distillation on the target's own replies:

1. the target samples replies to a prompt set (this library's engine, seeded);
2. the target scores each reply once, keeping its top-``K`` log-probabilities per
   position (the rest of the distribution carries little mass and would cost
   ``vocab`` floats a position);
3. the draft learns to match them: the loss is the cross-entropy of the draft's
   log-softmax against the renormalised top-``K`` teacher distribution, which is the
   KL divergence from teacher to draft up to a constant;
4. the trained draft is saved as a safetensors folder in the per-machine cache, keyed
   by the target's weights and the settings, so a second call loads it.

Speculative sampling stays exact with any draft (the acceptance rule corrects for the
draft); distillation only raises how often the draft's tokens are accepted.

Terms are those of the glossary of :mod:`langchain_aligned.decoding`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInputError
from ..models.cache import cache_dir, file_lock, write_folder
from ..models.loading import ModelHandle, load_model
from ..models.restricted_head import HEAD_TOKENS_FILE
from .common import ProgressBar, cached_report, merged_config, train_only_layers
from .prompts import DISTILL_PROMPTS

__all__ = ["DistillConfig", "DistillReport", "distill_draft", "init_draft", "teacher_examples"]

REPORT_FILE = "distill.json"
"""The file in a draft's folder that records how it was made (and marks it complete)."""


@dataclass(frozen=True)
class DistillConfig:
    """How :func:`distill_draft` makes a draft."""

    num_layers: int = 8
    """k: decoder layers the draft keeps (the target's first k)."""
    prompts: tuple[str, ...] = DISTILL_PROMPTS
    """User messages the target answers; its replies are the training data."""
    replies_per_prompt: int = 2
    """Replies the target samples per prompt (different seeds)."""
    max_new_tokens: int = 96
    """Length cap of each reply."""
    temperature: float = 1.0
    """Temperature of the target's replies (1: its own distribution)."""
    top_k: int = 32
    """K: teacher log-probabilities kept per position."""
    epochs: int = 2
    """Passes over the replies."""
    batch_size: int = 8
    """Replies per optimiser step."""
    learning_rate: float = 3e-4
    """AdamW's learning rate."""
    train_embeddings: bool = False
    """Whether the embeddings and the output head train too (by default they stay the
    target's, so the draft shares them exactly and trains faster)."""
    head_tokens: int | None = None
    """M: keep only the M tokens with the most teacher probability mass (end-of-sequence
    and special tokens always) in the draft's output head, which then costs vocab / M
    times less (``models.restricted_head``); None keeps the whole vocabulary. The draft
    gives the other tokens probability 0; speculative sampling stays exact."""
    seed: int = 0
    """Seeds the replies (seed + r for the r-th reply of each prompt) and the order of
    the training batches."""

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"DistillConfig({name}={value!r}) must be an integer ≥ 1")

        for name in ("num_layers", "replies_per_prompt", "max_new_tokens", "top_k"):
            positive(name)
        positive("epochs")
        positive("batch_size")
        if self.head_tokens is not None:
            positive("head_tokens")
        if not self.prompts or not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise InvalidInputError(
                "DistillConfig(prompts=...) must be a non-empty tuple of non-empty strings"
            )
        if not isinstance(self.temperature, int | float) or self.temperature <= 0:
            raise InvalidInputError(
                f"DistillConfig(temperature={self.temperature!r}) must be > 0 (the "
                "target's sampled replies are the training data)"
            )
        if not isinstance(self.learning_rate, int | float) or self.learning_rate <= 0:
            raise InvalidInputError(
                f"DistillConfig(learning_rate={self.learning_rate!r}) must be > 0"
            )


@dataclass
class DistillReport:
    """What :func:`distill_draft` did (saved beside the weights as ``distill.json``)."""

    folder: str
    """The draft's folder: pass it as ``draft=`` or to ``load_model``."""
    target: str
    """The target's name."""
    config: dict[str, Any]
    """The :class:`DistillConfig` as a dict."""
    examples: int = 0
    """Replies trained on."""
    tokens: int = 0
    """Reply positions trained on (per epoch)."""
    losses: list[float] = field(default_factory=list)
    """Mean loss of each optimiser step, in order."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per phase: ``teacher`` (the replies and their scoring), ``training``."""
    head_tokens: list[int] | None = None
    """The token ids the draft's output head keeps (None: every token)."""
    cached: bool = False
    """Whether this call loaded the draft from the cache instead of training it."""
    teacher_cached: bool = False
    """Whether the teacher data came from the cache (made for another draft of the same
    target with the same teacher settings; ``seconds["teacher"]`` is then its loading)."""


@dataclass
class TeacherExample:
    """One target reply with the target's top-K log-probabilities at its positions."""

    input_ids: list[int]
    """Prompt + reply token ids."""
    start: int
    """Index in ``input_ids`` of the first reply token."""
    top_ids: torch.Tensor
    """``[reply, K]`` the teacher's K most likely tokens at each reply position."""
    top_logprobs: torch.Tensor
    """``[reply, K]`` their log-probabilities."""


def init_draft(target: Any, num_layers: int) -> Any:
    """A new model with the target's embeddings, first ``num_layers`` decoder layers,
    final norm and output head (copies: training it leaves the target unchanged).

    Raises:
        InvalidInputError: ``num_layers`` is not below the target's layer count, or the
            target's decoder layers are not at ``model.layers`` (Llama, Qwen, Gemma,
            Mistral and most causal LMs of transformers).
    """
    layers = getattr(getattr(target, "model", None), "layers", None)
    if layers is None:
        raise InvalidInputError(
            f"cannot cut a draft from {type(target).__name__}: its decoder layers are "
            "not at model.layers"
        )
    total = len(layers)
    if (
        isinstance(num_layers, bool)
        or not isinstance(num_layers, int)
        or not 1 <= num_layers < total
    ):
        raise InvalidInputError(
            f"num_layers={num_layers!r}: a draft keeps between 1 and {total - 1} of the "
            f"target's {total} layers"
        )
    config = copy.deepcopy(target.config)
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None):
        config.layer_types = list(config.layer_types)[:num_layers]
    draft = type(target)(config)
    # Every tensor but the dropped layers' comes from the target.
    kept = {
        name: tensor
        for name, tensor in target.state_dict().items()
        if not name.startswith("model.layers.") or int(name.split(".")[2]) < num_layers
    }
    draft.load_state_dict(kept, strict=True)
    draft.to(dtype=next(target.parameters()).dtype)
    return draft.eval()


def teacher_examples(
    target: ModelHandle,
    config: DistillConfig,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> list[TeacherExample]:
    """Steps 1 and 2: the target's replies to ``config.prompts`` and its top-K
    log-probabilities at every reply position, round by round (round r samples one
    reply per prompt with seed ``config.seed + r``)."""
    examples: list[TeacherExample] = []
    for r in range(config.replies_per_prompt):
        examples += teacher_round(target, config, config.seed + r)
        if on_progress is not None:
            on_progress("replies", r + 1, config.replies_per_prompt)
    return examples


def teacher_round(target: ModelHandle, config: DistillConfig, seed: int) -> list[TeacherExample]:
    """One reply per prompt, sampled with ``seed``, and the target's top-K
    log-probabilities at its positions (one forward pass per reply)."""
    from ..decoding.generate import generate
    from ..engines.transformers import DecodingEngine

    engine = DecodingEngine(target)
    conversations = [[{"role": "user", "content": p}] for p in config.prompts]
    results = generate(
        target,
        conversations,
        temperature=config.temperature,
        max_new_tokens=config.max_new_tokens,
        seed=seed,
    )
    eos = min(target.eos_token_ids) if target.eos_token_ids else None
    examples = []
    with torch.no_grad():
        for conversation, result in zip(conversations, results, strict=True):
            prompt = engine.encode(_render(target, conversation))
            reply = list(result.token_ids)
            if result.finish_reason == "stop" and eos is not None:
                # The draft also learns where replies end.
                reply.append(eos)
            if not reply:
                continue
            ids = torch.tensor([prompt + reply], device=target.device)
            logits = target.model(input_ids=ids).logits[0].float()  # [length, vocab]
            # Position t's logits predict token t + 1: the reply's tokens are predicted
            # from start − 1 to length − 2.
            reply_logits = logits[len(prompt) - 1 : -1]  # [reply, vocab]
            values, indices = torch.log_softmax(reply_logits, -1).topk(config.top_k, dim=-1)
            examples.append(
                TeacherExample(prompt + reply, len(prompt), indices.cpu(), values.cpu())
            )
    return examples


TEACHER_SETTINGS = ("prompts", "max_new_tokens", "temperature", "top_k")
"""The :class:`DistillConfig` fields a round of teacher data depends on, beside its seed
(the rest shape only the training, so drafts that differ in them share the teacher
data, and a larger ``replies_per_prompt`` reuses the rounds a smaller one made)."""


def cached_teacher_examples(
    target: ModelHandle,
    config: DistillConfig,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> tuple[list[TeacherExample], bool]:
    """:func:`teacher_examples`, each round computed once per target, teacher settings
    and seed and kept in the cache (the target's sampling is most of a distillation's
    time; another ``num_layers``, learning rate or epoch count needs the same data, and
    more replies per prompt need the same first rounds); whether every round was
    cached."""
    settings = json.dumps({k: getattr(config, k) for k in TEACHER_SETTINGS}, default=list)
    examples: list[TeacherExample] = []
    all_cached = True
    for r in range(config.replies_per_prompt):
        seed = config.seed + r
        key = f"{weights_fingerprint(target)}:{settings}:seed={seed}"
        path = cache_dir() / "teacher" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
        with file_lock(path.with_suffix(".lock")):
            if path.is_file():
                rows = torch.load(path, weights_only=True)
                examples += [TeacherExample(list(i), s, t, lp) for i, s, t, lp in rows]
            else:
                all_cached = False
                made = teacher_round(target, config, seed)
                # Written under a temporary name and renamed: a crash leaves no partial file.
                tmp = path.with_suffix(".tmp")
                torch.save([(e.input_ids, e.start, e.top_ids, e.top_logprobs) for e in made], tmp)
                tmp.replace(path)
                examples += made
        if on_progress is not None:
            on_progress("replies", r + 1, config.replies_per_prompt)
    return examples, all_cached


def _render(target: ModelHandle, conversation: Sequence[dict[str, str]]) -> str:
    from ..models.chat import render_chat

    return render_chat(target, conversation)


def distillation_loss(
    draft_logits: torch.Tensor, top_ids: torch.Tensor, top_logprobs: torch.Tensor
) -> torch.Tensor:
    """Step 3's loss per position: ``−Σ_k p̂_k log q(k)``, where ``p̂`` is the teacher's
    top-K distribution renormalised and ``q`` the draft's softmax over the whole
    vocabulary (the KL divergence KL(p̂ ‖ q) plus the entropy of p̂, a constant).

    Shapes: ``draft_logits`` ``[positions, vocab]``, ``top_ids`` and ``top_logprobs``
    ``[positions, K]``; returns ``[positions]``. A ``top_logprobs`` entry of ``−∞``
    drops that token (a restricted head's missing token); a row without a finite entry
    adds 0.
    """
    # [positions, K], renormalised; a row with no finite entry weighs nothing (not NaN).
    teacher = torch.nan_to_num(torch.softmax(top_logprobs.float(), -1), nan=0.0)
    log_q = torch.log_softmax(draft_logits.float(), -1).gather(-1, top_ids)  # [positions, K]
    # A teacher entry of −∞ (a token the draft cannot give) weighs 0 and adds nothing.
    return -torch.where(teacher > 0, teacher * log_q, 0.0).sum(-1)


def train_draft(
    draft: Any,
    examples: Sequence[TeacherExample],
    config: DistillConfig,
    on_step: Callable[[int, int, float], None] | None = None,
    head_tokens: Sequence[int] | None = None,
) -> list[float]:
    """Step 3: fit the draft to the teacher's top-K distributions; the mean loss of
    each optimiser step, in order.

    The output head runs at reply positions only (the prompt's positions are never
    scored, and the head is most of a small draft's work). With ``head_tokens`` the
    draft is trained as it will decode: its softmax spans those tokens only, and the
    teacher's top-K is renormalised over the kept ones among them. The learning rate
    warms up linearly over the first 5 % of the steps, then decays along a cosine to a
    tenth of ``learning_rate``.
    """
    device = next(draft.parameters()).device
    trainable = train_only_layers(draft, config.train_embeddings)
    head = draft.get_output_embeddings()
    vocab = int(head.weight.shape[0])
    kept = torch.arange(vocab) if head_tokens is None else torch.tensor(sorted(head_tokens))
    # position_in_kept[token] is the token's row in the kept head, or −1.
    position_in_kept = torch.full((vocab,), -1, dtype=torch.long)
    position_in_kept[kept] = torch.arange(len(kept))
    kept, position_in_kept = kept.to(device), position_in_kept.to(device)
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = -(-len(examples) // config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, round(0.05 * total))

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    losses: list[float] = []
    draft.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(examples), generator=generator).tolist()
        for first in range(0, len(order), config.batch_size):
            batch = [examples[i] for i in order[first : first + config.batch_size]]
            # Right-padded batch; the padding's positions are never scored.
            width = max(len(e.input_ids) for e in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            for row, example in enumerate(batch):
                ids[row, : len(example.input_ids)] = torch.tensor(example.input_ids)
                mask[row, : len(example.input_ids)] = 1
            hidden = draft.model(
                input_ids=ids.to(device), attention_mask=mask.to(device)
            ).last_hidden_state  # [batch, width, hidden]
            # Position t predicts token t + 1: a reply is predicted from start − 1 on.
            reply_hidden = torch.cat(
                [hidden[row, e.start - 1 : len(e.input_ids) - 1] for row, e in enumerate(batch)]
            )  # [positions, hidden]
            top_ids = torch.cat([e.top_ids for e in batch]).to(device)  # [positions, K]
            top_logprobs = torch.cat([e.top_logprobs for e in batch]).to(device)
            logits = (
                head(reply_hidden)
                if head_tokens is None
                else _kept_logits(head, reply_hidden, kept)
            )  # [positions, kept]
            local = position_in_kept[top_ids]  # [positions, K]; −1: not kept
            loss = distillation_loss(
                logits,
                local.clamp(min=0),
                top_logprobs.masked_fill(local < 0, float("-inf")),
            ).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(len(losses), total, losses[-1])
    draft.eval()
    for parameter in draft.parameters():
        parameter.requires_grad_(False)
    return losses


def _kept_logits(head: Any, hidden: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """The head's logits for the ``kept`` tokens only: ``[positions, len(kept)]``."""
    bias = getattr(head, "bias", None)
    return torch.nn.functional.linear(
        hidden, head.weight[kept], None if bias is None else bias[kept]
    )


def head_token_ids(
    handle: ModelHandle, examples: Sequence[TeacherExample], count: int
) -> list[int]:
    """The ``count`` tokens with the most teacher probability mass over ``examples``
    (their top-K lists), with every end-of-sequence and special token added."""
    mass = torch.zeros(handle.logits_size)
    for example in examples:
        mass.index_add_(0, example.top_ids.reshape(-1), example.top_logprobs.exp().reshape(-1))
    always = set(handle.eos_token_ids) | set(getattr(handle.tokenizer, "all_special_ids", []))
    always = {t for t in always if 0 <= t < handle.logits_size}
    ranked = [int(t) for t in mass.argsort(descending=True) if mass[t] > 0]
    chosen = list(always)
    for token in ranked:
        if len(chosen) >= max(count, len(always)):
            break
        if token not in always:
            chosen.append(token)
    return sorted(chosen)


def weights_fingerprint(handle: ModelHandle) -> str:
    """A short hash of the target's configuration and weights (every tensor's shape
    and a strided sample of its values), which keys its drafts in the cache."""
    digest = hashlib.sha256(handle.model.config.to_json_string().encode())
    with torch.no_grad():
        for name, tensor in sorted(handle.model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 64)][:64].float().cpu()
            digest.update(f"{name}:{tuple(tensor.shape)}".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def draft_folder(handle: ModelHandle, config: DistillConfig) -> Path:
    """Where the draft of ``handle`` with ``config`` lives in the cache."""
    settings = json.dumps(asdict(config), sort_keys=True, default=list)
    key = hashlib.sha256(f"{weights_fingerprint(handle)}:{settings}".encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in handle.name)[-48:]
    return cache_dir() / "drafts" / f"{stem}-{config.num_layers}l-{key}"


def distill_draft(
    target: Any,
    num_layers: int | None = None,
    *,
    config: DistillConfig | None = None,
    progress: bool = True,
    **settings: Any,
) -> DistillReport:
    """Distil (once per machine) a ``num_layers``-layer draft of ``target``.

    Settings come from ``config`` (default: ``DistillConfig()``); an argument given
    here overrides its field, an argument left out never does.

    Args:
        target: anything :func:`~langchain_aligned.models.load_model` accepts.
        num_layers: k, the target's layers the draft keeps (None: ``config``'s,
            8 by default).
        config: the settings; ``num_layers`` and ``settings`` override its fields.
        progress: show a progress bar on standard error.
        **settings: :class:`DistillConfig` fields (``prompts``, ``epochs``, …).

    Returns:
        The :class:`DistillReport`; its ``folder`` is the draft (``draft=`` of
        ``SpeculativeSampling`` and ``RewardShiftedSampling``, or ``load_model``).

    Raises:
        InvalidInputError: bad settings (named), or a target that cannot be cut.
    """
    if num_layers is not None:
        settings["num_layers"] = num_layers
    config = merged_config(DistillConfig, config, settings, "distill_draft")
    handle = load_model(target)
    folder = draft_folder(handle, config)
    report_path = folder / REPORT_FILE
    if report_path.is_file():
        return cached_report(DistillReport, report_path)
    with file_lock(folder.with_suffix(".lock")):
        if report_path.is_file():
            return cached_report(DistillReport, report_path)
        draft = init_draft(handle.model, config.num_layers)
        bar = ProgressBar(progress, "distil")
        start = time.perf_counter()
        report = DistillReport(folder=str(folder), target=handle.name, config=asdict(config))
        try:
            examples, report.teacher_cached = cached_teacher_examples(handle, config, bar.phase)
            report.seconds["teacher"] = time.perf_counter() - start
            report.examples = len(examples)
            report.tokens = sum(len(e.input_ids) - e.start for e in examples)
            if config.head_tokens is not None:
                report.head_tokens = head_token_ids(handle, examples, config.head_tokens)
            start = time.perf_counter()
            report.losses = train_draft(draft, examples, config, bar.step, report.head_tokens)
            report.seconds["training"] = time.perf_counter() - start
        finally:
            bar.close()

        def save(tmp: Path) -> None:
            draft.save_pretrained(tmp, safe_serialization=True)
            handle.tokenizer.save_pretrained(tmp)
            if report.head_tokens is not None:
                (tmp / HEAD_TOKENS_FILE).write_text(json.dumps(report.head_tokens))
            # Written last: a folder with its report is complete.
            (tmp / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2, default=list))

        write_folder(folder, save)
    return report
