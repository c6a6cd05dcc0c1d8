"""``JSONSchemaScorer``: does the completion hold a JSON value valid against a schema?"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Conversation, InvalidScorerConfig, RewardScorer

__all__ = ["JSONSchemaScorer", "complete_json_prefix", "extract_json"]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.DOTALL)


def extract_json(text: str) -> str:
    """The JSON part of a reply: a fenced block, else from the first ``{`` or ``[``."""
    fenced = _FENCE.search(text)
    if fenced:
        return fenced.group(1).strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    return text[min(starts) :].strip() if starts else text.strip()


def complete_json_prefix(prefix: str) -> str | None:
    """Close a JSON prefix (open strings, arrays, objects) so it parses, or None.

    Used for partial credit: a partial completion whose prefix can still become valid
    JSON is on a good path.
    """
    stack: list[str] = []
    in_string = escape = False
    for char in prefix:
        if in_string:
            if escape:
                escape = False
            elif char == "\\":
                escape = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and (not stack or stack.pop() != char):
            return None
    text = prefix + ('"' if in_string else "")
    text = re.sub(r"[,:]\s*$", "", text.rstrip())
    if text.rstrip().endswith(":"):  # pragma: no cover - removed by the regex above
        text += " null"
    candidate = text + "".join(reversed(stack))
    for attempt in (candidate, re.sub(r',\s*"[^"]*"\s*(?=[}\]]*$)', "", candidate)):
        try:
            json.loads(attempt)
            return attempt
        except json.JSONDecodeError:
            continue
    return None


class JSONSchemaScorer(RewardScorer):
    """1.0 for JSON valid against ``schema``; partial credit otherwise.

    * 1.0 — the reply's JSON parses and validates;
    * 0.5 — it parses but does not validate, or it is a prefix of JSON that can still
      be completed (partial completions) and that completed value validates;
    * 0.25 — a completable prefix that does not validate yet;
    * 0.0 — no JSON at all.

    ``schema`` is a JSON schema dict or a pydantic model class; an invalid schema is
    rejected at construction.
    """

    def __init__(self, schema: Mapping[str, Any] | type) -> None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
            schema = schema.model_json_schema()
        if not isinstance(schema, Mapping):
            raise InvalidScorerConfig(
                f"JSONSchemaScorer needs a JSON schema dict or a pydantic model, got {schema!r:.80}"
            )
        try:
            Draft202012Validator.check_schema(dict(schema))
        except SchemaError as exc:
            raise InvalidScorerConfig(
                f"JSONSchemaScorer: the schema is not valid: {exc.message}"
            ) from exc
        self.schema = dict(schema)
        self.validator = Draft202012Validator(self.schema)

    @property
    def name(self) -> str:
        return f"JSONSchemaScorer({self.schema.get('title', 'schema')})"

    def _score(self, conversation: Conversation, completions: list[str]) -> Sequence[float]:
        out = []
        for text in completions:
            body = extract_json(text)
            try:
                value = json.loads(body)
            except json.JSONDecodeError:
                completed = complete_json_prefix(body) if body[:1] in ("{", "[") else None
                if completed is None:
                    out.append(0.0)
                else:
                    out.append(0.5 if self.validator.is_valid(json.loads(completed)) else 0.25)
                continue
            out.append(1.0 if self.validator.is_valid(value) else 0.5)
        return out
