# Source of 04_agents.ipynb: edit this script, then run `python cookbook/build_notebooks.py`.

# %% [markdown]
# # Agents: `create_agent` with tools, with and without `AlignmentMiddleware`
#
# `AlignedChatModel` supports `bind_tools`: tools reach the prompt (through the chat
# template, or a system block for templates without tool support) and `<tool_call>` blocks in
# the output become `AIMessage.tool_calls`. `AlignmentMiddleware` wraps every model call of
# *any* chat model: it draws n candidates, scores them (here: tool-call validity) and keeps
# the best.

# %%
import os

# COOKBOOK_SMALL=1 (set by the test suite) picks settings that run in about a minute on a CPU.
SMALL = os.environ.get("COOKBOOK_SMALL") == "1"

# %%
from langchain.agents import create_agent
from langchain_core.tools import tool

import rewards
from langchain_aligned import AlignedChatModel, AlignmentMiddleware, Sampling


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


tools = [add, word_count]
MAX_TOKENS = 48 if SMALL else 96
llm = AlignedChatModel(strategy=Sampling(), max_tokens=MAX_TOKENS, seed=0)

# %%
questions = [
    "What is 17 plus 25? Use the add tool.",
    "How many words are in 'the cat sat on the mat'?",
][: 1 if SMALL else 2]
validity = rewards.ToolCallScorer([t for t in tools])
for label, middleware in {
    "plain": [],
    "aligned n=4": [AlignmentMiddleware(reward=validity, n=2 if SMALL else 4)],
}.items():
    agent = create_agent(llm, tools, middleware=middleware)
    for question in questions:
        result = agent.invoke({"messages": [("user", question)]}, {"recursion_limit": 6})
        calls = [c for m in result["messages"] for c in (getattr(m, "tool_calls", None) or [])]
        print(
            f"{label:<12} tool calls: {[(c['name'], c['args']) for c in calls]}  final: {result['messages'][-1].content[:60]!r}"
        )
