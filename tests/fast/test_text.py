"""Stop strings and streaming deltas on decoded text."""

from __future__ import annotations

from tiny import tiny_tokenizer

from langchain_aligned.decoding.text import StopMatcher, TextStream, decode


def ids(text):
    return tiny_tokenizer().encode(text, add_special_tokens=False)


def test_stop_matcher_finds_multi_token_stop_and_cuts_before_it():
    tokens = ids("the cat sat on the mat")
    matcher = StopMatcher(tiny_tokenizer(), ["sat on"])
    assert matcher.check(tokens[:2]) is None
    assert matcher.check(tokens[:4]) == "the cat "
    assert StopMatcher(tiny_tokenizer(), []).check(tokens) is None


def test_text_stream_holds_back_possible_stop_prefix_and_flushes_final():
    tokenizer = tiny_tokenizer()
    stream = TextStream(tokenizer, ["on the"])
    matcher = StopMatcher(tokenizer, ["on the"])
    tokens = ids("the cat sat on the mat")
    pieces = [stream.delta(tokens[: i + 1]) for i in range(4)]
    # "the cat sat on" ends with "on", a prefix of the stop string: held back.
    assert "".join(pieces) == "the cat sat "
    final = matcher.check(tokens[:5])
    assert final == "the cat sat "
    pieces.append(stream.delta(tokens[:5], final_text=final))
    # The streamed pieces add up to exactly the final reply, never more.
    assert "".join(pieces) == final


def test_text_stream_concatenation_equals_final_text():
    tokenizer = tiny_tokenizer()
    tokens = ids("hello world the cat is good")
    stream = TextStream(tokenizer)
    out = "".join(stream.delta(tokens[: i + 1]) for i in range(len(tokens)))
    out += stream.delta(tokens, final_text=decode(tokenizer, tokens))
    assert out == decode(tokenizer, tokens)
