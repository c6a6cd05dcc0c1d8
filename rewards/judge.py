"""``LLMJudgeScorer``: a causal LM reads the question and a reply and gives a verdict.

The score is read from the next-token probabilities, not from sampled text, so it is
deterministic and graded:

* ``mode="verdict"`` — P(yes) / (P(yes) + P(no)) for the judge's answer to the
  template's yes/no question;
* ``mode="rating"`` — the expected rating Σ k·P(k) / Σ P(k) over the tokens "1"…"k"
  (``scale`` = k), divided by k so the score lies in (0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Conversation, InvalidScorerConfig, RewardScorer, last_user_text
from .causal_lm import CausalLMMixin

__all__ = ["LLMJudgeScorer"]

VERDICT_TEMPLATE = (
    "Question: {question}\n\nAnswer: {answer}\n\n"
    "Is this answer helpful, relevant and correct? Reply with yes or no."
)
RATING_TEMPLATE = (
    "Question: {question}\n\nAnswer: {answer}\n\n"
    "Rate how helpful, relevant and correct this answer is from 1 (bad) to {scale} (excellent). "
    "Reply with a single digit."
)


class LLMJudgeScorer(CausalLMMixin, RewardScorer):
    """A causal LM (default: the embedded SmolLM2) as a judge of replies."""

    def __init__(
        self,
        model: Any = "smollm2-135m-instruct",
        *,
        mode: str = "verdict",
        template: str | None = None,
        scale: int = 5,
        batch_size: int = 8,
        **load_kwargs: Any,
    ) -> None:
        if mode not in ("verdict", "rating"):
            raise InvalidScorerConfig(f"LLMJudgeScorer(mode={mode!r}): use 'verdict' or 'rating'")
        if not 2 <= scale <= 9:
            raise InvalidScorerConfig(f"LLMJudgeScorer(scale={scale!r}) must be between 2 and 9")
        template = template or (VERDICT_TEMPLATE if mode == "verdict" else RATING_TEMPLATE)
        for field in ("{question}", "{answer}"):
            if field not in template:
                raise InvalidScorerConfig(f"LLMJudgeScorer template must contain {field}")
        self._init_model(model, load_kwargs)
        self.mode, self.template, self.scale, self.batch_size = mode, template, scale, batch_size
        self._ids: dict[str, list[list[int]]] | None = None

    @property
    def name(self) -> str:
        return f"LLMJudgeScorer({self.mode})"

    def _answer_ids(self, tokenizer: Any) -> dict[str, list[list[int]]]:
        if self._ids is None:

            def first_ids(words: Sequence[str]) -> list[int]:
                ids = {
                    tokenizer(w, add_special_tokens=False)["input_ids"][0]
                    for w in words
                    if tokenizer(w, add_special_tokens=False)["input_ids"]
                }
                return sorted(ids)

            if self.mode == "verdict":
                self._ids = {
                    "options": [
                        first_ids(["yes", "Yes", " yes", " Yes", "YES"]),
                        first_ids(["no", "No", " no", " No", "NO"]),
                    ]
                }
            else:
                self._ids = {
                    "options": [first_ids([str(k), f" {k}"]) for k in range(1, self.scale + 1)]
                }
        return self._ids

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        import torch

        lm = self._load()
        options = self._answer_ids(lm.tokenizer)["options"]
        question = last_user_text(conversation)
        out: list[float] = []
        for start in range(0, len(completions), self.batch_size):
            batch = completions[start : start + self.batch_size]
            prompts = [
                lm.prompt_ids(
                    [
                        {
                            "role": "user",
                            "content": self.template.format(
                                question=question, answer=a or "(empty)", scale=self.scale
                            ),
                        }
                    ]
                )
                for a in batch
            ]
            probs = lm.next_token_logprobs(prompts).exp()  # [batch, vocab]
            mass = torch.stack(
                [probs[:, ids].sum(-1) for ids in options], dim=-1
            )  # [batch, options]
            mass = mass / mass.sum(-1, keepdim=True).clamp(min=1e-12)
            if self.mode == "verdict":
                out.extend(float(v) for v in mass[:, 0])
            else:
                levels = torch.arange(1, self.scale + 1, dtype=mass.dtype)
                out.extend(float(v) for v in (mass * levels).sum(-1) / self.scale)
        return out
