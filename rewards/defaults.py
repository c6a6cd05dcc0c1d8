"""``default_scorer()``: the reward used when none is given, built from embedded models only.

A weighted sum (no within-call normalisation, so scores are comparable across calls —
Speculative Rejection compares scores from different rounds):

* ``LikelihoodScorer`` on the embedded SmolLM2-135M-Instruct — the paper's self-reward:
  fluent, on-topic, correct replies are likely under an instruction-tuned model;
* ``EmbeddingSimilarityScorer`` on the embedded all-MiniLM-L6-v2 — relevance to the
  question;
* ``SentimentScorer`` (VADER) with a small weight — a courteous tone.

Its accuracy on the bundled preference set (``rewards/data/preference_pairs.json``) is
measured by ``benchmarks/preference_accuracy.py`` and reported in ``docs/rewards.md``.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from .embedding import EmbeddingSimilarityScorer
from .ensemble import WeightedScorer
from .likelihood import LikelihoodScorer
from .sentiment import SentimentScorer

__all__ = ["DEFAULT_WEIGHTS", "default_scorer", "preference_pairs"]

DEFAULT_WEIGHTS = {"likelihood": 1.0, "similarity": 2.0, "sentiment": 0.5}


def default_scorer(model: Any = "smollm2-135m-instruct", **load_kwargs: Any) -> WeightedScorer:
    """The default reward (lazy: no weights load until the first ``score``)."""
    return WeightedScorer(
        {
            LikelihoodScorer(model, **load_kwargs): DEFAULT_WEIGHTS["likelihood"],
            EmbeddingSimilarityScorer(): DEFAULT_WEIGHTS["similarity"],
            SentimentScorer(): DEFAULT_WEIGHTS["sentiment"],
        },
        name="default(likelihood + similarity + sentiment)",
    )


def preference_pairs() -> list[dict[str, str]]:
    """The bundled preference sanity set: prompt, better, worse, category."""
    return list(json.loads(files("rewards").joinpath("data/preference_pairs.json").read_text()))
