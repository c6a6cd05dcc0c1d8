# Source of 01_quickstart.ipynb: edit this script, then run `python cookbook/build_notebooks.py`.

# %% [markdown]
# # Quickstart: aligned decoding as a drop-in LangChain chat model
#
# `AlignedChatModel` is a LangChain `BaseChatModel` over a local Hugging Face model. It
# decodes with a *strategy*: plain sampling, Best-of-N, or Speculative Rejection (Sun et
# al., NeurIPS 2024), which scores **partial** candidates and stops decoding the losing
# ones early. Everything here runs on a laptop CPU with the embedded SmolLM2-135M-Instruct
# model and an embedded reward, no model hub needed.

# %%
import os

# COOKBOOK_SMALL=1 (set by the test suite) picks settings that run in about a minute on a CPU.
SMALL = os.environ.get("COOKBOOK_SMALL") == "1"

# %%
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

import rewards
from langchain_aligned import AlignedChatModel, BestOfN, Sampling, SpeculativeRejection

reward = rewards.default_scorer()  # built from embedded models only
N = 4 if SMALL else 8
MAX_TOKENS = 32 if SMALL else 64
print(reward.name)

# %% [markdown]
# ## A drop-in inside an LCEL chain
# Any chain that takes a chat model takes `AlignedChatModel`.

# %%
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
print(chain.invoke({"question": "Give me one tip for sleeping better."}))

# %% [markdown]
# ## Sampling, Best-of-N and Speculative Rejection side by side
# Same prompts, same seed, same reward. Speculative Rejection should reach a reward close
# to Best-of-N's while decoding far fewer tokens.

# %%
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
    print(f"{name:<24}{question:<32}{value:>8.3f}{tokens:>8}{seconds:>9.1f}")

# %% [markdown]
# ## What the metadata holds
# Every reply carries the strategy's statistics under `response_metadata["alignment"]`,
# plus `usage_metadata`. The same numbers reach callbacks (`on_llm_end`) and the last chunk
# of a stream.

# %%
message = llm.invoke("Suggest a name for a small bakery.")
alignment = message.response_metadata["alignment"]
for key in [
    "strategy",
    "reward",
    "candidate_rewards",
    "num_candidates",
    "tokens_generated",
    "tokens_returned",
    "reward_calls",
    "generation_seconds",
    "scoring_seconds",
]:
    print(f"{key:>20}: {alignment[key]}")
for r in alignment["rounds"]:
    print(r)
print(message.usage_metadata)

# %% [markdown]
# ## Streaming
# Speculative Rejection streams live once one candidate remains; otherwise the winner streams once chosen.

# %%
for chunk in llm.stream("Write a one-sentence thank-you note to a teacher."):
    print(chunk.content, end="", flush=True)
print()
