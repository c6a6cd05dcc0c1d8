"""Prompt sets for making drafts: everyday requests of the kind a chat model answers.

:data:`DISTILL_PROMPTS` is the default training set of
:func:`~langchain_aligned.drafts.distill.distill_draft`; :data:`HELD_OUT_PROMPTS` never
appear in it, so a draft's acceptance measured on them is not measured on its
training data.
"""

from __future__ import annotations

__all__ = ["DISTILL_PROMPTS", "HELD_OUT_PROMPTS"]

_TOPICS = (
    "sleeping better",
    "saving money on groceries",
    "learning a new language",
    "staying focused while studying",
    "keeping houseplants alive",
    "writing a clear email",
    "preparing for a job interview",
    "starting to run",
    "cooking rice",
    "making friends in a new city",
    "reducing stress",
    "organising a small kitchen",
    "planning a weekend trip",
    "drinking more water",
    "reading more books",
    "keeping a bike in good shape",
)
_FORMS = (
    "Give me one tip for {}.",
    "Explain in two sentences why {} matters.",
    "Write a short list of three ideas for {}.",
)

DISTILL_PROMPTS: tuple[str, ...] = tuple(form.format(t) for t in _TOPICS for form in _FORMS)
"""48 requests: 16 topics × 3 forms."""

HELD_OUT_PROMPTS: tuple[str, ...] = (
    "What should I pack for a day at the beach?",
    "How do I apologise to a friend I upset?",
    "Describe a rainy afternoon in three sentences.",
    "What are two good habits for a healthy morning?",
    "How can I make my desk less cluttered?",
    "Suggest a simple dinner I can cook in twenty minutes.",
    "Why do leaves change colour in autumn?",
    "Give me a kind way to say no to an invitation.",
    "How do I remember people's names better?",
    "Write a two-line poem about the moon.",
    "What is a polite way to ask for a deadline extension?",
    "How can I keep warm in winter without a big heating bill?",
)
"""12 requests unlike the training set's, for measuring a draft's acceptance."""
