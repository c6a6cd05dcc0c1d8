"""rewards: pluggable reward scorers, usable without LangChain.

Every scorer follows :class:`RewardScorer`: ``score(conversation, completions) ->
list[float]`` (higher is better), with ``ascore`` and ``score_batch``. See
``docs/rewards.md``.
"""

from .base import (
    InvalidScorerConfig,
    RewardScorer,
    RewardScorerError,
    RewardsError,
    conversation_to_messages,
    last_user_text,
)
from .defaults import default_scorer, preference_pairs
from .embedding import EmbeddingSimilarityScorer
from .ensemble import CachedScorer, WeightedScorer
from .function import FunctionScorer
from .json_schema import JSONSchemaScorer
from .judge import LLMJudgeScorer
from .langchain_judge import LangChainJudgeScorer
from .likelihood import LikelihoodScorer
from .reward_model import RewardModelScorer
from .rules import LengthScorer, RegexScorer
from .sentiment import SentimentScorer
from .tool_call import (
    ToolCallMatch,
    ToolCallScorer,
    find_tool_calls,
    format_tool_call,
    parse_tool_calls,
)
from .vllm_reward import VLLMRewardScorer

__all__ = [
    "CachedScorer",
    "EmbeddingSimilarityScorer",
    "FunctionScorer",
    "InvalidScorerConfig",
    "JSONSchemaScorer",
    "LLMJudgeScorer",
    "LangChainJudgeScorer",
    "LengthScorer",
    "LikelihoodScorer",
    "RegexScorer",
    "RewardModelScorer",
    "RewardScorer",
    "RewardScorerError",
    "RewardsError",
    "SentimentScorer",
    "ToolCallMatch",
    "ToolCallScorer",
    "VLLMRewardScorer",
    "WeightedScorer",
    "conversation_to_messages",
    "default_scorer",
    "find_tool_calls",
    "format_tool_call",
    "last_user_text",
    "parse_tool_calls",
    "preference_pairs",
]
