# Source of 05_callbacks_and_plots.ipynb: edit this script, then run `python cookbook/build_notebooks.py`.

# %% [markdown]
# # Callbacks and plots
#
# `AlignmentStatsHandler` aggregates statistics across calls; custom events
# (`aligned.round`, `aligned.scored`, `aligned.verify`, `aligned.done`) arrive during
# decoding, also through `astream_events`.

# %%
import os

# COOKBOOK_SMALL=1 (set by the test suite) picks settings that run in about a minute on a CPU.
SMALL = os.environ.get("COOKBOOK_SMALL") == "1"

# %%
import matplotlib.pyplot as plt

import rewards
from langchain_aligned import AlignedChatModel, AlignmentStatsHandler, SpeculativeRejection

handler = AlignmentStatsHandler()
N = 8 if SMALL else 32
llm = AlignedChatModel(
    strategy=SpeculativeRejection(n=N, rejection_rate=0.5, decision_tokens=8),
    reward=rewards.default_scorer(),
    max_tokens=32 if SMALL else 80,
    seed=0,
    callbacks=[handler],
)
questions = ["How do I keep a houseplant alive?", "Give two reasons to exercise."][
    : 1 if SMALL else 2
]
messages = [llm.invoke(q) for q in questions]
handler.summary()

# %%
stats = messages[0].response_metadata["alignment"]
rounds = stats["rounds"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.plot([r["decision_token"] for r in rounds], [r["alive"] for r in rounds], "o-", label="alive")
ax1.plot(
    [r["decision_token"] for r in rounds], [r["rejected"] for r in rounds], "s--", label="rejected"
)
ax1.set_xlabel("decision token")
ax1.set_ylabel("candidates")
ax1.legend()
ax1.set_title("Survivors per round")
ax2.hist(stats["candidate_rewards"], bins=10)
ax2.axvline(stats["reward"], color="red", label="returned")
ax2.set_xlabel("reward")
ax2.legend()
ax2.set_title("Rewards of complete candidates")
fig.tight_layout()

# %%
from langchain_core.callbacks import BaseCallbackHandler

from langchain_aligned import PromptSteeredDraft, SpeculativeSampling

events = []


class Recorder(BaseCallbackHandler):
    def on_custom_event(self, name, data, **kwargs):
        events.append((name, data))


spec = AlignedChatModel(
    strategy=SpeculativeSampling(draft=PromptSteeredDraft("Answer briefly."), num_draft_tokens=4),
    max_tokens=32 if SMALL else 96,
    seed=0,
    callbacks=[Recorder()],
)
spec.invoke("Describe the sea.")
accepted = [d["accepted"] / d["proposed"] for n, d in events if n == "aligned.verify"]
plt.figure(figsize=(6, 3))
plt.plot(accepted, ".-")
plt.ylim(0, 1.05)
plt.xlabel("verification step")
plt.ylabel("accepted / proposed")
plt.title("Acceptance over time")
