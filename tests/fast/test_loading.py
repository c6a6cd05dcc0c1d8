"""load_model: every source kind, the per-process cache, device/dtype, bad input."""

from __future__ import annotations

import sys
import threading

import pytest
import torch
from tiny import tiny_pair, tiny_tokenizer

from langchain_aligned.errors import AlignedError, InvalidInputError, ModelLoadError
from langchain_aligned.models import (
    ModelHandle,
    clear_model_cache,
    load_model,
    quiet_short_load,
    resolve_device,
    resolve_dtype,
)
from langchain_aligned.models import loading as loading_module
from rewards import hardware


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-model")
    model, tokenizer = tiny_pair(3)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_pair_and_handle_sources():
    pair = tiny_pair(0)
    handle = load_model(pair)
    assert isinstance(handle, ModelHandle)
    assert handle.model is pair[0] and handle.tokenizer is pair[1]
    assert load_model(handle) is handle
    assert load_model(pair) is handle  # cached by identity
    assert handle.vocab_size == len(tiny_tokenizer())
    assert handle.eos_token_ids == {tiny_tokenizer().eos_token_id}
    assert handle.has_chat_template


def test_local_folder_loads_once_per_process_even_from_many_threads(saved_folder, monkeypatch):
    clear_model_cache()
    calls = []
    real = loading_module._load_uncached

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(loading_module, "_load_uncached", counting)
    handles = []

    def worker():
        handles.append(load_model(str(saved_folder), device="cpu", dtype="float32"))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(h is handles[0] for h in handles)
    torch.testing.assert_close(
        handles[0].model.lm_head.weight, tiny_pair(3)[0].lm_head.weight, rtol=0, atol=0
    )
    # Another dtype is another cache entry.
    half = load_model(str(saved_folder), device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and len(calls) == 2


def test_local_folder_refuses_pickled_weights_by_default(tmp_path):
    # A pickled checkpoint can run code when loaded: local folders load safetensors only.
    model, tokenizer = tiny_pair(4)
    model.config.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        load_model(str(tmp_path), device="cpu", dtype="float32")


def test_unknown_hub_id_names_the_id_and_the_hub():
    with pytest.raises(ModelLoadError) as info:
        load_model("no-such-owner/no-such-model-xyz", device="cpu", dtype="float32")
    message = str(info.value)
    assert "no-such-owner/no-such-model-xyz" in message
    assert "hub" in message and "id is wrong" in message


def test_missing_local_path_and_gguf_are_named(tmp_path):
    with pytest.raises(ModelLoadError, match=r"missing\.gguf"):
        load_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelLoadError, match="not/a/real/dir/x"):
        load_model("./not/a/real/dir/x")


@pytest.mark.parametrize("bad", [None, 42, "", ("a", "b", "c")])
def test_bad_sources_raise_invalid_input(bad):
    with pytest.raises(InvalidInputError):
        load_model(bad)


def test_pair_that_is_not_a_model_is_rejected():
    with pytest.raises(InvalidInputError, match="causal language model"):
        load_model((object(), tiny_tokenizer()))


def test_device_and_dtype_resolution():
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) in (torch.float32, torch.bfloat16)
    with pytest.raises(InvalidInputError, match="dtype='int3'"):
        resolve_dtype("int3", torch.device("cpu"))
    with pytest.raises(InvalidInputError, match="device='warp-drive'"):
        resolve_device("warp-drive")


def test_trust_remote_code_is_off_by_default(saved_folder, monkeypatch):
    seen = {}
    from transformers import AutoModelForCausalLM

    real = AutoModelForCausalLM.from_pretrained

    def spy(location, **kwargs):
        seen.update(kwargs)
        return real(location, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    clear_model_cache()
    load_model(str(saved_folder), device="cpu", dtype="float32")
    assert seen["trust_remote_code"] is False
    assert seen["use_safetensors"] is True


def test_errors_share_one_root():
    assert issubclass(ModelLoadError, AlignedError)
    assert issubclass(InvalidInputError, AlignedError)


@pytest.fixture
def progress_bars_on(monkeypatch):
    """transformers' progress bars switched on (as for a user who set nothing)."""
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(hf_logging, "_tqdm_active", True)
    return hf_logging


def test_small_local_load_draws_no_progress_bar(saved_folder, progress_bars_on, capfd):
    # transformers 5.x draws "Loading weights" for every from_pretrained; a load that
    # takes a fraction of a second must not print one.
    clear_model_cache()
    load_model(str(saved_folder), device="cpu", dtype="float32")
    err = capfd.readouterr().err
    assert "Loading" not in err and "it/s" not in err, err
    assert progress_bars_on.is_progress_bar_enabled()  # the user's setting is back


def test_the_users_progress_setting_is_restored(saved_folder, progress_bars_on, monkeypatch):
    hf_logging = progress_bars_on
    with quiet_short_load(saved_folder):
        assert not hf_logging.is_progress_bar_enabled()
        with quiet_short_load(saved_folder):  # nested (or concurrent) loads share it
            assert not hf_logging.is_progress_bar_enabled()
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
    with pytest.raises(RuntimeError), quiet_short_load(saved_folder):
        raise RuntimeError("load failed")
    assert hf_logging.is_progress_bar_enabled()
    # A user who turned bars off keeps them off.
    monkeypatch.setattr(hf_logging, "_tqdm_active", False)
    with quiet_short_load(saved_folder):
        pass
    assert not hf_logging.is_progress_bar_enabled()
    # huggingface_hub's own (download) bars are never touched.
    from huggingface_hub.utils import are_progress_bars_disabled

    hub_before = are_progress_bars_disabled()
    monkeypatch.setattr(hf_logging, "_tqdm_active", True)
    with quiet_short_load(saved_folder):
        assert are_progress_bars_disabled() == hub_before
    assert are_progress_bars_disabled() == hub_before


def test_long_loads_keep_their_progress_bars(saved_folder, progress_bars_on, monkeypatch, tmp_path):
    hf_logging = progress_bars_on
    for location in ("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path / "model.gguf", None):
        with quiet_short_load(location):
            assert hf_logging.is_progress_bar_enabled(), location
    monkeypatch.setattr(hardware, "QUIET_LOAD_BYTES", 1)  # a "large" folder
    with quiet_short_load(saved_folder):
        assert hf_logging.is_progress_bar_enabled()


def test_quiet_load_flips_the_switch_transformers_reads(saved_folder, progress_bars_on):
    # The switch is a private module global of transformers.utils.logging; make sure
    # its tqdm factory still reads it (a rename would bring the bars back unnoticed).
    import tqdm

    hf_logging = progress_bars_on
    with quiet_short_load(saved_folder):
        bar = hf_logging.tqdm(range(3), desc="Loading weights", file=sys.stderr)
    assert not isinstance(bar, tqdm.tqdm)
    assert list(bar) == [0, 1, 2]
