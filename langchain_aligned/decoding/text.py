"""Text side of decoding: stop strings on decoded text and incremental streaming.

Stop strings may span several tokens and may end in the middle of a token, so they
are matched on decoded text, never on token ids. Only the tail of a reply is decoded
on each step (a window of tokens long enough to hold the longest stop string in
characters, however many tokens a character takes), which keeps the check cheap; a
hit is then located in the full text and the reply is cut there. Terms (reply, stop
string, text delta) are defined in the glossary of :mod:`langchain_aligned.decoding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["StopMatcher", "TextStream", "decode", "tokens_within"]


def decode(tokenizer: Any, token_ids: Sequence[int]) -> str:
    """Decode generated ids to text without special tokens."""
    return str(
        tokenizer.decode(
            list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
    )


def tokens_within(tokenizer: Any, token_ids: Sequence[int], text: str) -> int:
    """How many of ``token_ids`` a reply cut to ``text`` keeps: the longest prefix that
    decodes to the start of ``text`` (all of ``text`` when the cut falls between
    tokens, which is the usual case).

    A stop string that starts inside a token's text leaves that token out: the reply
    text keeps the token's characters before the stop string, the ids end before it.
    Only the last few tokens are tried (those the stop string spans), so a hit costs a
    few decodes, never one per token of the reply.
    """
    kept = len(token_ids)
    while kept > 0:
        head = decode(tokenizer, token_ids[:kept])
        if text.startswith(head):
            return kept
        kept -= 1
    return 0


class StopMatcher:
    """Finds the first stop string in a growing reply.

    Matching is on decoded characters, whatever their token count: with byte-level
    tokenizers one character can be several tokens (an emoji is up to four), so the
    decoded tail is grown until it holds enough whole characters (see :meth:`check`).
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.longest = max((len(s) for s in self.stop), default=0)
        # The first token window tried: enough for tokenizers whose tokens decode to at
        # least one character each; check() doubles it when characters span tokens.
        self.window = self.longest + 4

    def _tail(self, token_ids: Sequence[int]) -> tuple[str, bool]:
        """Decoded tail that holds every stop string completed by the last token, and
        whether it is the whole reply."""
        window = self.window
        while window < len(token_ids):
            # A stop string completed by the last token starts at most len(stop) - 1
            # characters before that token's text, so the tokens before the last one
            # must decode to at least that many whole characters (one spare covers a
            # leading space a tokenizer may drop at the cut). U+FFFD at either end is
            # a multi-byte character cut by the window or completed by the last token.
            head = decode(self.tokenizer, token_ids[-window:-1]).strip("\ufffd")
            if len(head) >= self.longest:
                return decode(self.tokenizer, token_ids[-window:]), False
            window *= 2
        return decode(self.tokenizer, token_ids), True

    def check(self, token_ids: Sequence[int]) -> str | None:
        """Return the reply text cut before the first stop string, or None if none.

        Meant to be called after every appended token: it finds a stop string that
        ends in the last token's text (a stop string completed earlier and missed is
        not searched for). Only a tail of the reply is decoded — the last
        ``len(stop) + 4`` tokens, doubled until the tokens before the last one decode
        to at least ``len(stop)`` whole characters, or the whole reply — and the full
        text only on a hit, so the normal case stays cheap.
        """
        if not self.stop or not token_ids:
            return None
        tail, whole = self._tail(token_ids)
        if not any(s in tail for s in self.stop):
            return None
        text = tail if whole else decode(self.tokenizer, token_ids)
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
