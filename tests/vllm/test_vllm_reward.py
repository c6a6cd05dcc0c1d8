"""``rewards.VLLMRewardScorer`` on vLLM's pooling runner, in process and behind a server,
against ``rewards.RewardModelScorer`` on the same weights."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_tokenizer
from transformers import LlamaConfig, LlamaForSequenceClassification

import rewards
from langchain_aligned.engines.serve import VLLMServer, free_port

CONVERSATION = [{"role": "user", "content": "what is a good answer"}]
REPLIES = ["yes it is good", "no", "the cat sat on the mat . thanks", "why is the sun red ?"]


@pytest.fixture(scope="session")
def reward_folder(tmp_path_factory) -> str:
    """A random two-head reward model (2 layers, weights of standard deviation 0.3, so
    the text really moves the scores) saved with its tokenizer; 64-wide heads, a size
    vLLM's CPU attention supports."""
    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label={0: "helpful", 1: "harmless"},
        label2id={"helpful": 0, "harmless": 1},
    )
    model = LlamaForSequenceClassification(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    folder = tmp_path_factory.mktemp("reward-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def reward_server(reward_folder, tmp_path_factory):
    log = tmp_path_factory.mktemp("reward-server") / "vllm-serve.log"
    extra = ("--runner", "pooling", "--convert", "classify")
    with VLLMServer(reward_folder, extra, log_path=log) as server:
        yield server.url


@pytest.fixture(scope="session")
def in_process(reward_folder):
    scorer = rewards.VLLMRewardScorer(reward_folder, head="harmless")
    yield scorer
    scorer.close()


def expected(reward_folder, head="harmless"):
    return rewards.RewardModelScorer(reward_folder, head=head, dtype="float32").score(
        CONVERSATION, REPLIES
    )


# fp32 kernels of two implementations: differences of 1e-5 measured; the scores of
# different replies differ by more than 0.05 (checked below), so 1e-3 sees a wrong
# head, a wrong text or a missing template.
TOLERANCE = 1e-3


def test_in_process_scores_are_the_reward_models(in_process, reward_folder):
    reference = expected(reward_folder)
    scores = in_process.score(CONVERSATION, REPLIES)
    assert max(reference) - min(reference) > 0.05
    torch.testing.assert_close(
        torch.tensor(scores), torch.tensor(reference), atol=TOLERANCE, rtol=0
    )
    other = rewards.VLLMRewardScorer(reward_folder, head=0)
    other_head = other.score(CONVERSATION, REPLIES)
    other.close()
    torch.testing.assert_close(
        torch.tensor(other_head), torch.tensor(expected(reward_folder, 0)), atol=TOLERANCE, rtol=0
    )


def test_a_batch_scores_each_item_as_if_alone(in_process):
    items = [(CONVERSATION, REPLIES[:2]), ("hello world", REPLIES[2:]), (CONVERSATION, [])]
    together = in_process.score_batch(items)
    alone = [in_process.score(c, r) if r else [] for c, r in items]
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=1e-5, rtol=0)


def test_the_server_gives_the_in_process_scores(reward_server, reward_folder, in_process):
    remote = rewards.VLLMRewardScorer(
        reward_folder, base_url=reward_server, served_model=reward_folder, head="harmless"
    )
    torch.testing.assert_close(
        torch.tensor(remote.score(CONVERSATION, REPLIES)),
        torch.tensor(in_process.score(CONVERSATION, REPLIES)),
        atol=TOLERANCE,
        rtol=0,
    )


def test_errors_name_the_server_and_the_head(reward_server, reward_folder):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(rewards.RewardScorerError, match=f"cannot reach the reward server at {url}"):
        rewards.VLLMRewardScorer(reward_folder, base_url=url).score(CONVERSATION, REPLIES)
    with pytest.raises(rewards.RewardScorerError, match="answered 404"):
        rewards.VLLMRewardScorer(
            reward_folder, base_url=reward_server, served_model="not-served"
        ).score(CONVERSATION, REPLIES)
    with pytest.raises(rewards.InvalidScorerConfig, match="'kind' is not one of"):
        rewards.VLLMRewardScorer(
            reward_folder, base_url=reward_server, served_model=reward_folder, head="kind"
        ).score(CONVERSATION, REPLIES)
    with pytest.raises(rewards.InvalidScorerConfig, match="base_url='localhost' must be"):
        rewards.VLLMRewardScorer(reward_folder, base_url="localhost")


# About 1,060 tokens: twice the fixture model's 512 positions (its vLLM max_model_len).
LONG_CONVERSATION = [
    {"role": "user", "content": " ".join(["the cat sat on the mat ."] * 150)},
    {"role": "user", "content": "why is the sun red ?"},
]


def test_a_text_past_max_model_len_is_scored_as_transformers_scores_it(
    in_process, reward_server, reward_folder
):
    """One truncation rule: a conversation longer than the engine accepts is cut to the
    model's 512 positions, keeping the replies, by both scorers, which then agree; the
    server too. A max_length above the server's max_model_len is refused, naming it."""
    replies = REPLIES[:2]
    reference = rewards.RewardModelScorer(reward_folder, head="harmless", dtype="float32")
    remote = rewards.VLLMRewardScorer(
        reward_folder, base_url=reward_server, served_model=reward_folder, head="harmless"
    )
    expected_scores = torch.tensor(reference.score(LONG_CONVERSATION, replies))
    for scorer in (in_process, remote):
        torch.testing.assert_close(
            torch.tensor(scorer.score(LONG_CONVERSATION, replies)),
            expected_scores,
            atol=TOLERANCE,
            rtol=0,
        )
    too_long = rewards.VLLMRewardScorer(
        reward_folder, base_url=reward_server, served_model=reward_folder, max_length=1000
    )
    with pytest.raises(rewards.InvalidScorerConfig, match=r"max_length=1000 .* 512 tokens"):
        too_long.score(LONG_CONVERSATION, replies)
