"""Tiny, seeded, in-process models and tokenizers for the fast test tier.

Nothing here touches the network: the tokenizer is a word-level vocabulary built in
memory and the models are randomly initialised from a seeded generator.
"""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|tool|>"]
WORDS = [
    "hello",
    "world",
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "is",
    "good",
    "bad",
    "yes",
    "no",
    "i",
    "you",
    "we",
    "they",
    "it",
    "answer",
    "question",
    "please",
    "thanks",
    "sure",
    "here",
    "what",
    "why",
    "how",
    "when",
    "where",
    "tool",
    "call",
    "json",
    "{",
    "}",
    ":",
    ",",
    ".",
    "!",
    "?",
    "name",
    "arguments",
    "value",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "sun",
    "moon",
    "red",
    "blue",
    "green",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' </s> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


@functools.cache
def tiny_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over a fixed vocabulary (ids are stable)."""
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_model(
    seed: int = 0,
    *,
    vocab_size: int | None = None,
    hidden_size: int = 32,
    layers: int = 2,
    temperature_scale: float = 1.0,
    attn_implementation: str = "sdpa",
) -> LlamaForCausalLM:
    """A 2-layer Llama with random weights drawn from ``torch.Generator(seed)``."""
    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        attn_implementation=attn_implementation,
    )
    model = LlamaForCausalLM(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        # Sharper output logits make sampled replies vary less wildly between seeds
        # while staying random.
        model.lm_head.weight.mul_(temperature_scale)
    model.eval()
    return model


def tiny_pair(seed: int = 0, **kwargs) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """``(model, tokenizer)`` ready for :func:`langchain_aligned.models.load_model`."""
    return tiny_model(seed, **kwargs), tiny_tokenizer()


def tiny_reward_model():
    """A tiny sequence-classification reward model and its tokenizer."""
    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    model = LlamaForSequenceClassification(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return model.eval(), tokenizer
