"""The reward-based strategies against a real vLLM server (``engine="openai"``), which
the ``vllm_server`` fixture starts on 127.0.0.1 and stops by its process group."""

from __future__ import annotations

import http.server
import json
import threading
from typing import ClassVar

import httpx
import pytest

import rewards
from langchain_aligned import AlignedChatModel, BestOfN, Sampling, SpeculativeRejection, generate
from langchain_aligned.engines.select import open_engine
from langchain_aligned.engines.serve import free_port
from langchain_aligned.engines.server_tokenizer import ServerTokenizer
from langchain_aligned.errors import EngineError, EngineUnavailableError, InvalidInputError
from langchain_aligned.models.chat import render_chat

MODEL = "smollm2-135m-instruct"
QUESTIONS = ["Give me one tip for sleeping better.", "How can I save money on groceries?"]


def distinct_words(conversation, reply):
    return float(len(set(reply.split())))


REWARD = rewards.FunctionScorer(distinct_words, per_item=True)


def run(url, strategy, questions=QUESTIONS, seed=0, engine="openai", **kwargs):
    options = dict(reward=REWARD, seed=seed, max_new_tokens=32, temperature=0.8, engine=engine)
    if engine == "openai":
        options["engine_kwargs"] = {"base_url": url, **kwargs.pop("engine_kwargs", {})}
    options.update(kwargs)
    return generate(MODEL, questions, strategy=strategy, **options)


def server_generated_tokens(url: str) -> float:
    text = httpx.get(url.removesuffix("/v1") + "/metrics").text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("vllm:generation_tokens_total")
    )


def test_speculative_rejection_without_rejection_is_best_of_n(vllm_server):
    bon = run(vllm_server, BestOfN(n=4))
    spr = run(vllm_server, SpeculativeRejection(n=4, rejection_rate=0.0))
    for a, b in zip(bon, spr, strict=True):
        assert a.text == b.text and a.stats.candidate_rewards == b.stats.candidate_rewards


def test_rejected_candidates_are_cancelled_on_the_server(vllm_server):
    before = server_generated_tokens(vllm_server)
    bon = run(vllm_server, BestOfN(n=8), max_new_tokens=48)
    after_bon = server_generated_tokens(vllm_server)
    spr = run(vllm_server, SpeculativeRejection(n=8, decision_tokens=8), max_new_tokens=48)
    after_spr = server_generated_tokens(vllm_server)
    ours_bon = sum(r.stats.tokens_generated for r in bon)
    ours_spr = sum(r.stats.tokens_generated for r in spr)
    assert ours_spr < 0.8 * ours_bon
    assert abs((after_bon - before) - ours_bon) <= 16
    # The server keeps decoding while a round is scored and until a closed stream is
    # noticed: a few tokens per rejected candidate (8 per request at most here: 32 in
    # all), far from the 48 − 8 = 40 each a candidate left running would add.
    assert ours_spr <= after_spr - after_bon <= ours_spr + 64
    # Statistics: the server's passes are unseen, so absent rather than zero.
    assert all(r.stats.target_forward_passes is None for r in spr)
    assert all(r.stats.peak_cache_slots is None for r in spr)


def test_the_server_gives_the_in_process_engines_replies(vllm_server, vllm_engine):
    # One seed, one model, one vLLM: the same prompt ids and sampling parameters give
    # the same tokens through the server as in process.
    strategy = SpeculativeRejection(n=4, decision_tokens=8)
    remote = run(vllm_server, strategy, seed=8)
    local = run(None, strategy, seed=8, engine="vllm")
    assert [r.text for r in remote] == [r.text for r in local]
    assert [r.stats.rounds for r in remote] == [r.stats.rounds for r in local]


def test_seeded_runs_repeat(vllm_server):
    first = run(vllm_server, Sampling(), seed=21)
    again = run(vllm_server, Sampling(), seed=21)
    other = run(vllm_server, Sampling(), seed=22)
    assert [r.text for r in first] == [r.text for r in again] != [r.text for r in other]


def test_chat_model_against_the_server(vllm_server):
    llm = AlignedChatModel(
        model=MODEL,
        engine="openai",
        base_url=vllm_server,
        strategy=SpeculativeRejection(n=4, decision_tokens=8),
        reward=REWARD,
        max_tokens=32,
        seed=4,
    )
    reply = llm.invoke("Give me one tip for sleeping better.")
    alignment = reply.response_metadata["alignment"]
    assert alignment["rounds"] and alignment["reward"] == max(alignment["candidate_rewards"])
    assert alignment["target_forward_passes"] is None
    assert "".join(c.text for c in llm.stream("Give me one tip for sleeping better.")) == (
        reply.content
    )


def test_a_model_the_server_does_not_serve_is_named(vllm_server):
    with pytest.raises(EngineError, match=r"does not serve 'gpt-9'; it serves \["):
        run(vllm_server, Sampling(), engine_kwargs={"served_model": "gpt-9"})


def test_the_served_name_is_enough(vllm_server):
    # What a user of any OpenAI client writes: the served name, no local tokenizer.
    # The server's tokenizer (/tokenize, /detokenize, its chat rendering) gives the
    # same prompt ids and the same replies as the model's own tokenizer here.
    served = open_engine("smol", "openai", {"base_url": vllm_server})
    local = open_engine(MODEL, "openai", {"base_url": vllm_server})
    assert served.served_model == local.served_model == "smol"
    assert isinstance(served.tokenizer, ServerTokenizer)
    assert served.eos_ids == local.eos_ids
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    assert served.encode(render_chat(served.handle, messages)) == local.encode(
        render_chat(local.handle, messages)
    )
    ours = run(vllm_server, BestOfN(n=3), stop=("sleep",))
    theirs = generate(
        "smol",
        QUESTIONS,
        strategy=BestOfN(n=3),
        reward=REWARD,
        seed=0,
        max_new_tokens=32,
        temperature=0.8,
        stop=("sleep",),
        engine="openai",
        engine_kwargs={"base_url": vllm_server},
    )
    for a, b in zip(ours, theirs, strict=True):
        assert (a.text, a.token_ids, a.finish_reason) == (b.text, b.token_ids, b.finish_reason)
        assert a.stats.candidate_rewards == b.stats.candidate_rewards
    llm = AlignedChatModel(engine="openai", base_url=vllm_server, model="smol", max_tokens=8)
    assert llm.invoke("Say hi").content


def test_an_unreachable_server_is_named_after_the_retries():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineUnavailableError, match=f"cannot reach the server at {url}/models"):
        run(url, Sampling(), engine_kwargs={"max_retries": 1})


class FailingServer(http.server.BaseHTTPRequestHandler):
    """Lists a model, then answers every completion with an error status."""

    hits: ClassVar[list[str]] = []

    def do_GET(self):
        self._answer(200, {"data": [{"id": MODEL, "max_model_len": 2048}]})

    def do_POST(self):
        FailingServer.hits.append(self.path)
        self._answer(503, {"error": {"message": "the engine is overloaded"}})

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class NoTokenizingServer(FailingServer):
    """An OpenAI-compatible server that is not vLLM: it serves "smol" and has no
    /tokenize."""

    def do_GET(self):
        self._answer(200, {"data": [{"id": "smol", "max_model_len": 2048}]})

    def do_POST(self):
        self._answer(404, {"detail": "Not Found"})


def test_a_served_name_without_a_tokenizer_names_the_two_fixes():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoTokenizingServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        with pytest.raises(EngineError) as caught:
            open_engine("smol", "openai", {"base_url": url, "max_retries": 0})
        message = str(caught.value)
        assert "model='smol'" in message and url in message
        assert "'tokenizer':" in message and "vllm serve" in message
        # The first fix works: the tokenizer named, the served name kept.
        engine = open_engine("smol", "openai", {"base_url": url, "tokenizer": _folder()})
        assert engine.served_model == "smol" and not isinstance(engine.tokenizer, ServerTokenizer)
    finally:
        server.shutdown()


def _folder() -> str:
    from langchain_aligned.models import embedded_model_path

    return str(embedded_model_path(MODEL))


def test_server_errors_are_retried_then_reported_with_the_servers_message():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FailingServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        FailingServer.hits.clear()
        with pytest.raises(EngineError, match="answered 503: the engine is overloaded"):
            run(url, Sampling(), questions=QUESTIONS[:1], engine_kwargs={"max_retries": 2})
        assert FailingServer.hits == ["/v1/completions"] * 3  # one try and two retries
    finally:
        server.shutdown()


def test_bad_server_settings_fail_at_construction():
    with pytest.raises(InvalidInputError, match="needs engine_kwargs=\\{'base_url'"):
        AlignedChatModel(engine="openai")
    with pytest.raises(InvalidInputError, match="base_url='localhost:8000' must be an http"):
        AlignedChatModel(engine="openai", base_url="localhost:8000")
    with pytest.raises(
        InvalidInputError, match="unknown engine_kwargs \\['tensor_parallel_size'\\]"
    ):
        AlignedChatModel(
            engine="openai", base_url="http://x/v1", engine_kwargs={"tensor_parallel_size": 2}
        )


def test_the_servers_tokenizer_agrees_with_the_models_own(vllm_server):
    from transformers import AutoTokenizer

    own = AutoTokenizer.from_pretrained(_folder())
    served = open_engine("smol", "openai", {"base_url": vllm_server}).tokenizer
    text = "Sleep well: a cool, dark room — and no screens. 😴"
    ids = own(text, add_special_tokens=False)["input_ids"]
    assert served.encode(text, add_special_tokens=False) == ids
    assert served.decode(ids) == own.decode(ids, skip_special_tokens=True) == text
    # The vocabulary the server holds covers the tokenizer's (vLLM's model vocabulary
    # may be padded past it).
    assert len(served) >= len(own)
    assert served.convert_tokens_to_ids("<|im_end|>") == own.convert_tokens_to_ids("<|im_end|>")
