"""The drafts command line on a tiny model saved to a folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny import tiny_pair

from langchain_aligned.drafts.__main__ import main


@pytest.fixture()
def target_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGCHAIN_ALIGNED_CACHE", str(tmp_path / "cache"))
    model, tokenizer = tiny_pair(5, layers=3)
    folder = tmp_path / "target"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_distill_prints_the_cached_folder(target_folder, capsys):
    args = ["distill", target_folder, "--num-layers", "1", "--epochs", "1"]
    args += ["--replies-per-prompt", "1", "--max-new-tokens", "4", "--head-tokens", "30"]
    args += ["--quiet"]
    assert main(args) == 0
    first = capsys.readouterr()
    folder = first.out.strip()
    assert (Path(folder) / "model.safetensors").is_file()
    assert len(json.loads((Path(folder) / "head_tokens.json").read_text())) == 30
    assert '"cached": false' in first.err
    assert main(args) == 0
    again = capsys.readouterr()
    assert again.out.strip() == folder and '"cached": true' in again.err


def test_bad_input_is_a_named_error(target_folder, capsys):
    assert main(["distill", target_folder, "--num-layers", "3", "--quiet"]) == 2
    assert "num_layers=3" in capsys.readouterr().err
    assert main(["distill", target_folder, "--epochs", "0", "--quiet"]) == 2
    assert "epochs=0" in capsys.readouterr().err


def test_align_takes_given_pairs_and_prints_the_cached_folder(target_folder, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "\n".join(
            json.dumps({"prompt": p, "chosen": "the cat sat", "rejected": "a dog"})
            for p in ("hello world", "the moon", "a blue mat")
        )
    )
    args = ["align", target_folder, "--pairs", str(pairs), "--epochs", "1", "--quiet"]
    assert main(args) == 0
    first = capsys.readouterr()
    folder = Path(first.out.strip())
    assert (folder / "model.safetensors").is_file() and (folder / "align.json").is_file()
    assert '"pairs": 3' in first.err and '"cached": false' in first.err
    assert main(args) == 0
    assert '"cached": true' in capsys.readouterr().err
    assert main(["align", target_folder, "--pairs", str(tmp_path / "none.json")]) == 2
    assert "cannot read --pairs" in capsys.readouterr().err
    assert main(["align", target_folder, "--pairs", str(pairs), "--beta", "0"]) == 2
    assert "beta=0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["align", target_folder, "--reward", "vibes"])
