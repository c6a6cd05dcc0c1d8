"""Engines beyond this library's own transformers engine: vLLM in process
(:mod:`.vllm_local`) and any vLLM / OpenAI-compatible server (:mod:`.server`).

Both implement the engine seam of :class:`~langchain_aligned.engines.base.ReplyEngine`
over per-candidate token streams (:mod:`.streamed`), so Sampling, Best-of-N and
Speculative Rejection run on them unchanged. vLLM is imported only when an engine is
built. :func:`.select.open_engine` picks the engine an ``engine=`` name asks for.
"""

from .streamed import StreamedEngine, StreamState, TokenDelta

__all__ = ["StreamState", "StreamedEngine", "TokenDelta"]
