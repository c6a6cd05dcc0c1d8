# Source of 02_reward_scorers.ipynb: edit this script, then run `python cookbook/build_notebooks.py`.

# %% [markdown]
# # Reward scorers
#
# The top-level `rewards` package holds pluggable `RewardScorer`s, usable without
# LangChain: `score(conversation, completions) -> list[float]`. Every scorer accepts
# partial text (Speculative Rejection scores candidates mid-sentence).

# %%
import os

# COOKBOOK_SMALL=1 (set by the test suite) picks settings that run in about a minute on a CPU.
SMALL = os.environ.get("COOKBOOK_SMALL") == "1"

# %%
import rewards

conversation = [{"role": "user", "content": "How can I save money on groceries?"}]
completions = [
    "Plan your meals for the week, make a shopping list and stick to it, and buy store brands.",
    "Groceries are things you buy.",
    "Plan your meals, compare unit prices and",  # a partial completion
    "",
]

# %% [markdown]
# ## A plain function


# %%
def mentions_plan(conversation, texts):
    return [float("plan" in t.lower()) for t in texts]


print(rewards.FunctionScorer(mentions_plan).score(conversation, completions))

# %% [markdown]
# ## Embedding similarity (embedded all-MiniLM-L6-v2) and sentiment (VADER)

# %%
similarity = rewards.EmbeddingSimilarityScorer()
print([round(s, 3) for s in similarity.score(conversation, completions)])
print([round(s, 3) for s in rewards.SentimentScorer().score(conversation, completions)])

# %% [markdown]
# ## A causal LM as judge (the embedded SmolLM2)

# %%
judge = rewards.LLMJudgeScorer(model="smollm2-135m-instruct")
print([round(s, 3) for s in judge.score(conversation, completions)])

# %% [markdown]
# ## A weighted ensemble, normalised per call

# %%
ensemble = rewards.WeightedScorer(
    {similarity: 1.0, rewards.LengthScorer(min_chars=20, max_chars=400): 0.5, judge: 1.0},
    normalization="zscore",
)
print([round(s, 3) for s in ensemble.score(conversation, completions)])
print("default scorer:", rewards.default_scorer().name)

# %% [markdown]
# ## A Hugging Face reward model
# On a GPU machine, name any sequence-classification reward model:
#
# ```python
# rm = rewards.RewardModelScorer("Skywork/Skywork-Reward-Llama-3.1-8B-v0.2")
# rm = rewards.RewardModelScorer("RLHFlow/ArmoRM-Llama3-8B-v0.1", head="helpsteer-helpfulness")
# ```
#
# Here (no model hub) the same code path runs on a tiny reward model built in memory:

# %%
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

words = sorted({w for t in [*completions, conversation[0]["content"]] for w in t.lower().split()})
vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "</s>", *words])}
backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tokenizer = PreTrainedTokenizerFast(
    tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="</s>"
)
config = LlamaConfig(
    vocab_size=len(vocab),
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    pad_token_id=0,
    num_labels=1,
)
reward_model = LlamaForSequenceClassification(config).eval()
rm = rewards.RewardModelScorer((reward_model, tokenizer))
print([round(s, 4) for s in rm.score(conversation, completions)])
