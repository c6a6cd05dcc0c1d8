"""Stop strings and streaming deltas on decoded text."""

from __future__ import annotations

import functools

from tiny import tiny_model, tiny_tokenizer
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from langchain_aligned.decoding import Candidate, DecodingEngine, SamplingParams
from langchain_aligned.decoding.text import StopMatcher, TextStream, decode
from langchain_aligned.models import load_model


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


@functools.cache
def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer like SmolLM2's, built in memory.

    Every byte is a token and the only merges spell " world", so "🦜" is four tokens
    (4 UTF-8 bytes) while " world" is one token of six characters. The special tokens
    take the ids of ``tiny_tokenizer``'s, so ``tiny_model`` fits it.
    """
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    pieces = ["Ġ", "w", "o", "r", "l", "d"]
    merged = ["".join(pieces[: i + 1]) for i in range(1, len(pieces))]
    vocab = {t: i for i, t in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for token in merged:
        vocab[token] = len(vocab)
    merges = [(merged[i - 1] if i else pieces[0], pieces[i + 1]) for i in range(len(merged))]
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )


PARROTS = "hello 🦜🦜🦜 world"


def byte_ids(text):
    return byte_tokenizer().encode(text, add_special_tokens=False)


def test_byte_tokenizer_splits_emoji_into_bytes():
    # The premise of the tests below: one character, several tokens.
    assert len(byte_ids("🦜")) == 4
    assert len(byte_ids(" world")) == 1
    assert decode(byte_tokenizer(), byte_ids(PARROTS)) == PARROTS


def test_stop_string_of_multi_token_characters_is_found():
    tokenizer = byte_tokenizer()
    tokens = byte_ids(PARROTS)
    end = len(byte_ids("hello 🦜🦜🦜"))  # 6 + 3 * 4 = 18 tokens
    assert end == 18
    matcher = StopMatcher(tokenizer, ["🦜🦜🦜"])
    # Found on the token that completes the third parrot, text cut before it.
    assert matcher.check(tokens[:end]) == "hello "
    # Not before: every earlier prefix, including ones ending inside a parrot.
    assert [k for k in range(1, end) if matcher.check(tokens[:k]) is not None] == []
    # Two parrots are not three.
    assert StopMatcher(tokenizer, ["🦜🦜🦜"]).check(byte_ids("a 🦜🦜 b 🦜🦜")) is None


def test_stop_string_ending_inside_a_long_last_token_after_emoji_is_found():
    # " world" is one token: the stop string ends in its second character, and its
    # start lies 12 byte tokens back. The tail must hold the characters before the
    # last token, not just as many characters as the stop string has.
    tokenizer = byte_tokenizer()
    tokens = byte_ids(PARROTS)
    assert len(tokens) == 19
    matcher = StopMatcher(tokenizer, ["🦜🦜🦜 w"])
    assert matcher.check(tokens) == "hello "
    assert [k for k in range(1, len(tokens)) if matcher.check(tokens[:k]) is not None] == []


def test_ordinary_stop_strings_still_match_with_a_byte_level_tokenizer():
    tokenizer = byte_tokenizer()
    tokens = byte_ids("say hello world and more")
    cut = StopMatcher(tokenizer, ["lo w", "zzz"])
    hits = [k for k in range(1, len(tokens) + 1) if cut.check(tokens[:k]) is not None]
    # First hit on the " world" token, which completes "lo w"; cut before it.
    assert hits and cut.check(tokens[: hits[0]]) == "say hel"
    assert decode(tokenizer, tokens[: hits[0]]).endswith(" world")
    assert StopMatcher(tokenizer, ["zzz"]).check(tokens) is None


def test_engine_stops_on_emoji_stop_string_fed_token_by_token():
    tokenizer = byte_tokenizer()
    engine = DecodingEngine(load_model((tiny_model(vocab_size=len(tokenizer)), tokenizer)))
    params = SamplingParams(stop=("🦜🦜🦜",), max_new_tokens=64)
    candidate = Candidate(request=0, index=0, prompt_ids=byte_ids("hi"))
    matchers: dict = {}
    tokens = byte_ids(PARROTS)
    finished_at = None
    for k, token in enumerate(tokens, start=1):
        if engine.append(candidate, [token], params, matchers):
            finished_at = k
            break
    assert finished_at == 18  # the last byte of the third parrot
    assert candidate.finish_reason == "stop"
    assert candidate.text == "hello "


def test_streamed_pieces_never_show_an_emoji_stop_string():
    # Drive StopMatcher and TextStream the way the sampling loop does: a delta per
    # token, with the final text once the stop string is found.
    tokenizer = byte_tokenizer()
    tokens = byte_ids(PARROTS)
    matcher = StopMatcher(tokenizer, ["🦜🦜🦜"])
    stream = TextStream(tokenizer, ["🦜🦜🦜"])
    pieces, final = [], None
    for k in range(1, len(tokens) + 1):
        final = matcher.check(tokens[:k])
        pieces.append(stream.delta(tokens[:k], final_text=final))
        if final is not None:
            break
    assert final == "hello "
    assert "".join(pieces) == final
    assert all("\ufffd" not in piece and "🦜" not in piece for piece in pieces)
