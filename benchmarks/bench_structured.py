"""Structured output and tool-call validity by strategy on the embedded SmolLM2.

30 prompts ask for a tool call (two tools bound) and 30 ask for a JSON object of a
given schema. For each strategy the share of replies with a valid tool call (parses,
known tool, arguments validate) and with a valid object is reported. Everything goes
through the chat model's public surface with its defaults: ``bind_tools`` (the base
reward is ``rewards.default_scorer()``, joined by ``rewards.ToolCallScorer``) and
``with_structured_output(schema, method="json_schema")`` (joined by
``rewards.JSONSchemaScorer``).

    python -m benchmarks.bench_structured [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import time

from langchain_core.tools import tool

import rewards
from benchmarks.common import plot_path, write_json
from langchain_aligned import AlignedChatModel, BestOfN, Sampling, SpeculativeRejection


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return "sunny"


TOOL_PROMPTS = [
    f"What is {a} plus {b}? Use the add tool."
    for a, b in zip(range(3, 18), range(40, 55), strict=True)
] + [
    f"What is the weather in {c}? Use the get_weather tool."
    for c in [
        "Paris",
        "Tokyo",
        "Lima",
        "Oslo",
        "Cairo",
        "Delhi",
        "Rome",
        "Quito",
        "Seoul",
        "Perth",
        "Dakar",
        "Hanoi",
        "Bern",
        "Riga",
        "Sofia",
    ]
]
PERSON = {
    "title": "Person",
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
JSON_PROMPTS = [
    f'Reply only with a JSON object {{"name": string, "age": integer}} describing {who}.'
    for who in [
        "a 30-year-old named Ann",
        "a child called Tom aged 7",
        "Maria, 45",
        "an old man named Bob, 80",
        "Li, 22",
        "Sara who is 35",
        "Omar aged 51",
        "Eva, 19",
        "Noah aged 3",
        "Ivy, 60",
        "Leo who is 28",
        "Mia aged 12",
        "Raj, 40",
        "Zoe aged 33",
        "Ken, 70",
        "Ada aged 36",
        "Max, 9",
        "Uma aged 55",
        "Jon, 24",
        "Kim aged 47",
        "Pia, 31",
        "Ali aged 18",
        "Eli, 65",
        "Fay aged 29",
        "Gus, 58",
        "Hal aged 42",
        "Ida, 26",
        "Jay aged 38",
        "Kai, 15",
        "Lou aged 72",
    ]
]


def expected_call(prompt: str) -> tuple[str, dict]:
    """The call a prompt asks for: add(a, b) or get_weather(city)."""
    numbers = [int(x) for x in re.findall(r"\d+", prompt)]
    if numbers:
        return "add", {"a": numbers[0], "b": numbers[1]}
    return "get_weather", {"city": re.search(r"weather in (\w+)", prompt).group(1)}


def call_correct(prompt: str, calls: list[dict]) -> bool:
    """The first call is the one asked for, with the prompt's arguments (add either way round)."""
    if not calls:
        return False
    name, args = expected_call(prompt)
    got = calls[0]
    if got["name"] != name:
        return False
    if name == "add":
        return sorted(got["args"].values(), key=str) == sorted(args.values(), key=str)
    return str(got["args"].get("city", "")).lower() == args["city"].lower()


def object_correct(prompt: str, out: dict) -> bool:
    """Valid, and the name and age are the ones in the prompt (not a copied placeholder)."""
    if not object_valid(out):
        return False
    name = re.search(r"\b[A-Z][a-z]+\b", prompt.split("describing", 1)[1]).group(0)
    age = int(re.search(r"\d+", prompt.split("describing", 1)[1]).group(0))
    return out["parsed"]["name"].strip().lower() == name.lower() and out["parsed"]["age"] == age


def object_valid(out: dict) -> bool:
    """The structured call parsed into a dict that validates against PERSON."""
    if out["parsing_error"] is not None or not isinstance(out["parsed"], dict):
        return False
    return rewards.JSONSchemaScorer(PERSON).score("q", [json.dumps(out["parsed"])])[0] == 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="n=4 candidates, 40 new tokens (30 prompts each)"
    )
    args = parser.parse_args()
    n, max_tokens = (4, 40) if args.quick else (8, 64)
    strategies = {
        "Sampling": Sampling(),
        f"BestOfN n={n}": BestOfN(n=n),
        f"SpeculativeRejection n={n}": SpeculativeRejection(
            n=n, rejection_rate=0.5, decision_tokens=12
        ),
    }
    scorer = rewards.ToolCallScorer([add, get_weather])
    results = {}
    for name, strategy in strategies.items():
        model = AlignedChatModel(strategy=strategy, max_tokens=max_tokens, seed=0, temperature=0.8)
        bound = model.bind_tools([add, get_weather])
        valid_calls = correct_calls = 0
        start = time.perf_counter()
        for prompt in TOOL_PROMPTS:
            message = bound.invoke(prompt)
            calls = "".join(
                "<tool_call>"
                + json.dumps({"name": c["name"], "arguments": c["args"]})
                + "</tool_call>"
                for c in message.tool_calls
            )
            valid = scorer.score(prompt, [calls])[0] == 1.0
            valid_calls += valid
            correct_calls += valid and call_correct(prompt, message.tool_calls)
        tool_seconds = time.perf_counter() - start
        structured = model.with_structured_output(PERSON, method="json_schema", include_raw=True)
        start = time.perf_counter()
        outs = [structured.invoke(p) for p in JSON_PROMPTS]
        json_seconds = time.perf_counter() - start
        valid_objects = sum(object_valid(o) for o in outs)
        correct_objects = sum(object_correct(p, o) for p, o in zip(JSON_PROMPTS, outs, strict=True))
        results[name] = {
            "valid_tool_call_rate": valid_calls / len(TOOL_PROMPTS),
            "correct_tool_call_rate": correct_calls / len(TOOL_PROMPTS),
            "valid_object_rate": valid_objects / len(JSON_PROMPTS),
            "correct_object_rate": correct_objects / len(JSON_PROMPTS),
            "seconds_per_tool_prompt": tool_seconds / len(TOOL_PROMPTS),
            "seconds_per_json_prompt": json_seconds / len(JSON_PROMPTS),
        }
        print(
            f"{name:<28} valid tool calls {results[name]['valid_tool_call_rate']:.0%} "
            f"(correct {results[name]['correct_tool_call_rate']:.0%})   "
            f"valid objects {results[name]['valid_object_rate']:.0%} "
            f"(correct {results[name]['correct_object_rate']:.0%})   "
            f"({tool_seconds / len(TOOL_PROMPTS):.1f} s / {json_seconds / len(JSON_PROMPTS):.1f} s per prompt)",
            flush=True,
        )
    path = write_json(
        "structured",
        {
            "model": "smollm2-135m-instruct",
            "temperature": 0.8,
            "n": n,
            "max_tokens": max_tokens,
            "tool_prompts": len(TOOL_PROMPTS),
            "json_prompts": len(JSON_PROMPTS),
            "results": results,
        },
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    names = list(results)
    width = 0.38
    width = 0.2
    for offset, (key, label) in enumerate(
        [
            ("valid_tool_call_rate", "valid tool call"),
            ("correct_tool_call_rate", "correct tool call"),
            ("valid_object_rate", "valid JSON object"),
            ("correct_object_rate", "correct JSON object"),
        ]
    ):
        xs = [i + (offset - 1.5) * width for i in range(len(names))]
        ax.bar(xs, [100 * results[n][key] for n in names], width, label=label)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel(f"% of {len(TOOL_PROMPTS)} prompts")
    ax.set_title("SmolLM2-135M: validity by strategy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot_path("structured"), dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
