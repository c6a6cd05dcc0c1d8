"""Rendering conversations: templates, merging, tools, plain fallback, bad input."""

from __future__ import annotations

import pytest
from tiny import tiny_tokenizer

from langchain_aligned.errors import InvalidInputError
from langchain_aligned.models import normalize_messages, render_chat
from langchain_aligned.models.chat import (
    MAX_TOOL_DEMONSTRATIONS,
    format_tool_call,
    placeholder_arguments,
    tool_demonstrations,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
        },
    }
]


def test_consecutive_same_role_messages_are_merged():
    merged = normalize_messages(
        [
            {"role": "user", "content": "hello"},
            {"role": "user", "content": "world"},
            {"role": "assistant", "content": "hi"},
        ]
    )
    assert merged == [
        {"role": "user", "content": "hello\n\nworld"},
        {"role": "assistant", "content": "hi"},
    ]


def test_tool_messages_and_tool_calls_are_never_merged():
    messages = [
        {"role": "user", "content": "add"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "add", "arguments": {"a": 1}}}
            ],
        },
        {"role": "tool", "content": "1", "tool_call_id": "1"},
        {"role": "tool", "content": "2", "tool_call_id": "2"},
    ]
    assert len(normalize_messages(messages)) == 4


def test_chat_template_with_generation_prompt():
    text = render_chat(tiny_tokenizer(), [{"role": "user", "content": "hello"}])
    assert text == "<|user|> hello </s> <|assistant|>"


def test_tools_reach_a_template_without_tool_support_and_history_renders():
    messages = [
        {"role": "user", "content": "add one"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 7}'},
                }
            ],
        },
        {"role": "tool", "content": "1", "tool_call_id": "c1", "name": "add"},
    ]
    text = render_chat(tiny_tokenizer(), messages, tools=TOOLS)
    assert text.startswith("<|system|> You can call these tools:")
    assert '"name": "add"' in text and "Add two integers" in text
    # The assistant's earlier call is shown in the format the model must produce,
    # and a conversation ending with a tool result still gets a generation prompt.
    assert '<tool_call>{"name": "add", "arguments": {"a": 7}}</tool_call>' in text
    assert text.endswith("<|tool|> 1 </s> <|assistant|>")


def test_injected_tools_come_with_one_demonstration_per_tool():
    tools = [
        TOOLS[0],
        {
            "name": "forecast",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                    "days": {"type": ["integer", "null"]},
                    "hourly": {"type": "boolean"},
                },
                "required": ["city", "unit", "days"],
            },
        },
    ]
    demos = tool_demonstrations(tools)
    assert [m["role"] for m in demos] == ["user", "assistant"] * 2
    # Placeholders follow each property's type; only required properties appear.
    assert demos[3]["content"] == format_tool_call(
        "forecast", {"city": "example", "unit": "celsius", "days": 1}
    )
    assert placeholder_arguments(TOOLS[0]["function"]["parameters"]) == {"a": 1}
    text = render_chat(tiny_tokenizer(), [{"role": "user", "content": "go"}], tools=tools)
    # Demonstrations sit between the tool description and the real conversation.
    assert text.index("Call forecast with") < text.index("<|user|> go")
    assert text.index("You can call these tools") < text.index("Call add with a=1.")
    many = [{"name": f"t{i}", "parameters": {}} for i in range(MAX_TOOL_DEMONSTRATIONS + 3)]
    assert len(tool_demonstrations(many)) == 2 * MAX_TOOL_DEMONSTRATIONS


def test_no_demonstrations_before_an_assistant_turn():
    # Demonstrations end with an assistant turn; before another assistant turn they
    # would break role alternation, so they are left out.
    messages = [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "go"}]
    text = render_chat(tiny_tokenizer(), messages, tools=TOOLS)
    assert "You can call these tools" in text and "Call add" not in text


def test_native_tool_templates_receive_the_tools():
    tokenizer = tiny_tokenizer()
    native = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer)
    native.chat_template = (
        "{% if tools %}TOOLS:{% for t in tools %}{{ t['function']['name'] }}{% endfor %}\n{% endif %}"
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if tool_calls %}{% endif %}"
    )
    text = render_chat(native, [{"role": "user", "content": "hi"}], tools=TOOLS)
    assert text.startswith("TOOLS:add")
    assert "You can call these tools" not in text


def test_plain_fallback_format_for_base_models():
    base = tiny_tokenizer(chat_template=False)
    text = render_chat(
        base,
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "bye"},
        ],
    )
    assert text == "System: Be brief.\n\nUser: hello\n\nAssistant: hi\n\nUser: bye\n\nAssistant:"


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([], "empty"),
        ([{"role": "wizard", "content": "x"}], "'wizard'"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "message 0 (user)"),
        (["hello"], "message 0 is a str"),
        ("hello", "list of chat messages"),
    ],
)
def test_bad_messages_name_the_problem(messages, needle):
    with pytest.raises(InvalidInputError) as info:
        render_chat(tiny_tokenizer(), messages)
    assert needle in str(info.value)


def test_bad_tool_schema_is_named():
    with pytest.raises(InvalidInputError, match="tool 0"):
        render_chat(tiny_tokenizer(), [{"role": "user", "content": "x"}], tools=[{"nope": 1}])


def test_placeholders_of_recursive_and_bounded_schemas_validate():
    import jsonschema

    node = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 12},
            "weight": {"type": "integer", "minimum": 5, "maximum": 9},
            "ratio": {"type": "number", "exclusiveMaximum": 1},
            "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
        },
        "required": ["name", "weight", "ratio", "next"],
    }
    schema = {"$ref": "#/$defs/Node", "$defs": {"Node": node}}
    # A required self-reference has valid finite instances only through its null
    # option: the placeholder must stop there instead of recursing forever.
    example = placeholder_arguments(schema)
    jsonschema.validate(example, schema)
    assert example["weight"] == 5 and len(example["name"]) >= 12 and example["ratio"] < 1
    # Without a null option no finite valid instance exists; still no RecursionError.
    me = {"type": "object", "properties": {"me": {"$ref": "#/$defs/Me"}}, "required": ["me"]}
    assert isinstance(placeholder_arguments({"$ref": "#/$defs/Me", "$defs": {"Me": me}}), dict)


BAD_CONVERSATIONS = [
    [],
    [{"role": "wizard", "content": "x"}],
    [{"role": "user", "content": [{"type": "image_url"}]}],
    ["hello"],
    [{"content": "no role"}],
    42,
]


@pytest.mark.parametrize("bad", BAD_CONVERSATIONS, ids=repr)
def test_one_validation_one_error_text_wherever_messages_come_in(bad):
    # The reward scorers, the decoding core and the chat model validate messages with
    # one function: the same bad conversation gets the same words from each.
    from tiny import tiny_pair

    import rewards
    from langchain_aligned import AlignedChatModel, generate
    from langchain_aligned.chat_models import to_hf_messages

    texts = set()
    for check in (
        lambda: rewards.conversation_to_messages(bad, error=InvalidInputError, nonempty=True),
        lambda: generate(tiny_pair(0), [bad], max_new_tokens=2),
        lambda: render_chat(tiny_tokenizer(), bad),
    ):
        with pytest.raises(InvalidInputError) as info:
            check()
        texts.add(str(info.value))
    assert len(texts) == 1, texts
    if bad == []:
        with pytest.raises(InvalidInputError) as info:
            to_hf_messages([])
        assert str(info.value) in texts
        with pytest.raises(InvalidInputError) as info:
            AlignedChatModel(model=tiny_pair(0)).invoke([])
        assert str(info.value) in texts
