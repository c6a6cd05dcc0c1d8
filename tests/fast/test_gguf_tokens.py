"""A GGUF file's BOS/EOS flags reach the tokenizer converted from it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from langchain_aligned.models.gguf_tokens import apply_gguf_token_flags, gguf_token_flags


def write_gguf(path, **flags):
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    for key, value in flags.items():
        writer.add_bool(f"tokenizer.ggml.{key}", value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("bos", [True, False])
def test_the_files_flags_are_read_and_set_on_the_tokenizer(tmp_path, bos):
    path = write_gguf(tmp_path / "m.gguf", add_bos_token=bos, add_eos_token=False)
    assert gguf_token_flags(path) == {"add_bos_token": bos, "add_eos_token": False}
    tokenizer = SimpleNamespace(add_bos_token=not bos, add_eos_token=True)
    apply_gguf_token_flags(tokenizer, path)
    assert tokenizer.add_bos_token is bos and tokenizer.add_eos_token is False


def test_absent_flags_leave_the_tokenizer_as_it_is(tmp_path):
    path = write_gguf(tmp_path / "m.gguf")
    assert gguf_token_flags(path) == {}
    tokenizer = SimpleNamespace(add_bos_token=True)
    apply_gguf_token_flags(tokenizer, path)
    assert tokenizer.add_bos_token is True
