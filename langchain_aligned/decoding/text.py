"""Text side of decoding: stop strings on decoded text and incremental streaming.

Stop strings may span several tokens and may end in the middle of a token, so they
are matched on decoded text, never on token ids. Only the tail of a reply is decoded
on each step (a window long enough to hold the longest stop string), which keeps the
check cheap; a hit is then located in the full text and the reply is cut there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["StopMatcher", "TextStream", "decode"]


def decode(tokenizer: Any, token_ids: Sequence[int]) -> str:
    """Decode generated ids to text without special tokens."""
    return str(
        tokenizer.decode(
            list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
    )


class StopMatcher:
    """Finds the first stop string in a growing reply."""

    def __init__(self, tokenizer: Any, stop: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        # A token decodes to at least one character except for partial UTF-8 bytes, so
        # the last len(stop)+4 tokens always cover a stop string that just completed.
        self.window = max((len(s) for s in self.stop), default=0) + 4

    def check(self, token_ids: Sequence[int]) -> str | None:
        """Return the reply text cut before the first stop string, or None if none."""
        if not self.stop or not token_ids:
            return None
        tail = decode(self.tokenizer, token_ids[-self.window :])
        if not any(s in tail for s in self.stop):
            return None
        text = decode(self.tokenizer, token_ids)
        cut = min((i for i in (text.find(s) for s in self.stop) if i >= 0), default=-1)
        return text[:cut] if cut >= 0 else None


class TextStream:
    """Turns a growing list of token ids into text deltas safe to show a user.

    Holds back text that is an incomplete UTF-8 sequence (decoded as U+FFFD) or that
    could still become a stop string, so a streamed reply never shows characters the
    final reply does not contain.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.emitted = 0

    def _hold_back(self, text: str) -> int:
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        return hold

    def delta(self, token_ids: Sequence[int], *, final_text: str | None = None) -> str:
        """Text not yet emitted. With ``final_text`` (the finished reply), flush all."""
        if final_text is not None:
            out = final_text[self.emitted :]
            self.emitted = max(self.emitted, len(final_text))
            return out
        text = decode(self.tokenizer, token_ids)
        end = len(text)
        while end > 0 and text[end - 1] == "\ufffd":
            end -= 1
        end -= self._hold_back(text[:end])
        if end <= self.emitted:
            return ""
        out = text[self.emitted : end]
        self.emitted = end
        return out
