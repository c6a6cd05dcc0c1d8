"""The LangChain layer's chat model: ``AlignedChatModel`` over local Hugging Face models.

The layer is thin: messages are converted to chat-format dicts and handed to
:func:`langchain_aligned.decoding.generate` with the configured strategy and reward;
the :class:`~langchain_aligned.decoding.AlignmentStats` come back as
``response_metadata["alignment"]`` and as custom callback events (see
:mod:`langchain_aligned.callbacks` for the event names).

One module per job:

* :mod:`.model` — the fields, validation and the LangChain entry points;
* :mod:`.messages` — LangChain ⇄ chat-format messages, tool-call splitting, building
  the ``AIMessage`` and chunks from a result;
* :mod:`.structured_output` — JSON instructions, extraction, parsers, validity scorer;
* :mod:`.calls` — (messages, tools, options) → one decoding call and its reward;
* :mod:`.batching` — sharing forward passes across the inputs of ``batch``;
* :mod:`.runs` — runs and custom events: how an event reaches the handlers;
* :mod:`.workers` — decoding in worker threads, bridged to (async) generators.

``docs/architecture.md`` shows how a call flows through them.
"""

from .messages import PROVIDER, render_reply, to_hf_messages
from .model import AlignedChatModel

__all__ = ["PROVIDER", "AlignedChatModel", "render_reply", "to_hf_messages"]
