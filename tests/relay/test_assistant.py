"""The assistant file: what it describes, every problem listed with its fix, the session's tools
and the model's arguments checked against each tool's schema."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from relay.assistant import Assistant, AssistantBook, Tool, end_call_reason, http_url_problem, validate_arguments
from relay.assistant_file import load_file, parse
from relay.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent
ENV = Assistant(instructions="From the environment.", greeting="Hello from env.", voice="marin")

FILE = '''
instructions = "You are Acme's order line."
greeting = "Acme orders, how can I help?"
voice = "cedar"

[[tools]]
name = "lookup_order"
description = "Look up an order by its number."
url = "https://tools.example.com/lookup?key=abc"
timeout_seconds = 3
[tools.parameters]
type = "object"
required = ["order_id"]
properties.order_id = { type = "string", pattern = "^[0-9]+$" }

[transfer.destinations]
sales = "+15550100001"
"front desk" = "sip:desk@pbx.example.com"

[numbers."+15550002222"]
greeting = "Acme support."
tools = []
end_call.enabled = false

[numbers."+15550003333"]
voice = "alloy"
transfer.destinations = {}
'''


def book(text: str = FILE) -> AssistantBook:
    return parse(tomllib.loads(text), ENV)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        book(text)
    return info.value.problems


# -- what the file describes -------------------------------------------------------------------


def test_the_file_overrides_the_environment_and_numbers_override_the_file() -> None:
    assistants = book()
    default = assistants.default
    assert (default.instructions, default.greeting, default.voice) == (
        "You are Acme's order line.", "Acme orders, how can I help?", "cedar")
    [tool] = default.tools
    assert (tool.name, tool.url, tool.timeout_s) == ("lookup_order", "https://tools.example.com/lookup?key=abc", 3.0)
    assert tool.parameters == {"type": "object", "required": ["order_id"],
                               "properties": {"order_id": {"type": "string", "pattern": "^[0-9]+$"}}}
    assert default.end_call_enabled
    assert default.transfer_destinations == (("sales", "+15550100001"), ("front desk", "sip:desk@pbx.example.com"))

    support = assistants.for_called("+15550002222")
    assert (support.greeting, support.voice, support.instructions) == ("Acme support.", "cedar", default.instructions)
    assert support.tools == () and not support.end_call_enabled
    assert support.transfer_destinations == default.transfer_destinations  # not overridden: inherited

    other = assistants.for_called("+15550003333")
    assert other.voice == "alloy" and other.tools == default.tools and other.transfer_destinations == ()


@pytest.mark.parametrize("number", ["+15559999999", "", None])
def test_other_numbers_get_the_default(number: str | None) -> None:
    assistants = book()
    assert assistants.for_called(number) is assistants.default


def test_an_empty_file_is_the_environment_plus_end_call() -> None:
    assistants = book("")
    assert assistants.default == ENV
    assert [tool["name"] for tool in assistants.default.session_tools()] == ["end_call"]
    assert not assistants.has_tools


def test_the_books_repr_names_tools_but_never_instructions_or_urls() -> None:
    text = repr(book())
    assert "lookup_order" in text and "numbers=2" in text
    assert "order line" not in text and "key=abc" not in text
    assert "order line" not in repr(book().default)


# -- the session's tools -------------------------------------------------------------------------


def test_session_tools_are_flat_functions_with_the_built_ins() -> None:
    tools = {tool["name"]: tool for tool in book().default.session_tools()}
    assert list(tools) == ["lookup_order", "end_call", "transfer_call"]
    assert all(tool["type"] == "function" and "function" not in tool for tool in tools.values())
    assert tools["lookup_order"]["parameters"]["required"] == ["order_id"]
    assert tools["end_call"]["parameters"]["properties"]["reason"]["type"] == "string"
    destination = tools["transfer_call"]["parameters"]["properties"]["destination"]
    assert destination["enum"] == ["sales", "front desk"]


def test_no_destinations_no_transfer_tool_and_end_call_can_be_turned_off() -> None:
    assert [tool["name"] for tool in book().for_called("+15550003333").session_tools()] == ["lookup_order", "end_call"]
    assert book().for_called("+15550002222").session_tools()[-1]["name"] == "transfer_call"
    assert [tool["name"] for tool in book().for_called("+15550002222").session_tools()] == ["transfer_call"]


def test_tool_lookup_by_name() -> None:
    default = book().default
    assert default.tool("lookup_order") is default.tools[0]
    assert default.tool("end_call") is None and default.tool("nope") is None
    assert default.destination("sales") == "+15550100001" and default.destination("nope") is None


# -- the model's arguments -----------------------------------------------------------------------


def lookup() -> Tool:
    return book().default.tools[0]


def test_valid_arguments_are_parsed() -> None:
    assert validate_arguments(lookup(), '{"order_id": "42"}') == {"order_id": "42"}


@pytest.mark.parametrize(("arguments", "says"), [
    ('{"order_id": 42}', "invalid arguments for lookup_order at $.order_id: 42 is not of type 'string'"),
    ('{"order_id": "abc"}', "does not match"),
    ("{}", "'order_id' is a required property"),
    ('{"order_id": "4', "not valid JSON"),
    ('["42"]', "must be a JSON object"),
    ("[" * 100_000, "too long"),
    ("[" * 10_000 + "]" * 10_000, "not valid JSON"),  # nests past the parser's recursion limit
])
def test_invalid_arguments_give_an_error_text_for_the_model(arguments: str, says: str) -> None:
    result = validate_arguments(lookup(), arguments)
    assert isinstance(result, str) and says in result


def test_no_arguments_for_a_tool_without_parameters() -> None:
    tool = Tool("ping", "Ping.", "https://x.example.com")
    assert validate_arguments(tool, "") == {} == validate_arguments(tool, "{}")


def test_transfer_target_and_end_call_reason() -> None:
    default = book().default
    assert default.transfer_target('{"destination": "front desk"}') == ("front desk", "sip:desk@pbx.example.com")
    refused = default.transfer_target('{"destination": "the boss"}')
    assert isinstance(refused, str) and "'the boss' is not one of ['sales', 'front desk']" in refused
    assert end_call_reason('{"reason": "caller said goodbye"}') == "caller said goodbye"
    assert end_call_reason("not json") == "" == end_call_reason('{"reason": 5}')


# -- every problem, with its fix -----------------------------------------------------------------


def test_every_problem_is_listed_at_once() -> None:
    found = problems('''
gretting = "typo"
voice = "robot"
instructions = 5

[[tools]]
name = "end_call"
description = "Mine."
url = "https://x.example.com"

[[tools]]
name = "lookup"
description = ""
url = "http://tools.example.com/lookup"
timeout_seconds = 120
parameters = { type = "object", properties = { id = { type = "strin" } }, required = "id" }

[[tools]]
name = "lookup"
description = "Again."
url = "https://x.example.com"
unknown = 1

[end_call]
enabled = "yes"

[transfer.destinations]
sales = "555-0100"

[numbers."5550002222"]
voice = "nope"
''')
    text = "\n".join(found)
    expected = [
        "gretting is not a known key (did you mean 'greeting'?",
        "voice must be one of alloy",
        "instructions must be a string",
        "tools[0].name 'end_call' is built in (turn it off with [end_call] enabled = false)",
        'tools[1] "lookup".description is needed',
        'tools[1] "lookup".url must start with https:// for a non-local host',
        'tools[1] "lookup".timeout_seconds must be a number of seconds from 0.5 to 30 (got 120)',
        'tools[1] "lookup".parameters at $.properties.id.type is not valid JSON Schema',
        'tools[1] "lookup".parameters at $.required is not valid JSON Schema',
        'tools[2] "lookup".unknown is not a known key',
        "end_call.enabled must be true or false",
        "transfer.destinations.sales must be a phone number in E.164 form",
        'numbers."5550002222" is not a phone number in E.164 form',
        'numbers."5550002222".voice must be one of',
    ]
    for line in expected:
        assert line in text
    assert all(problem.startswith("ASSISTANT_CONFIG: ") for problem in found)
    assert len(found) == len(expected)


def test_duplicate_tool_names() -> None:
    tool = '[[tools]]\nname = "a"\ndescription = "A."\nurl = "https://x.example.com"\n'
    assert problems(tool + tool) == ["ASSISTANT_CONFIG: tools[1] repeats the name 'a': give each tool its own name"]


def test_transfer_call_is_built_in_too() -> None:
    [problem] = problems('[[tools]]\nname = "transfer_call"\ndescription = "X."\nurl = "https://x.example.com"\n')
    assert "'transfer_call' is built in (it is offered when [transfer] has destinations)" in problem


@pytest.mark.parametrize(("parameters", "says"), [
    ('{ type = "array" }', 'with type = "object"'),
    ('{ type = "object", properties = { when = { default = 1979-05-27 } } }', "write dates as strings"),
    ('{ type = "object", "$ref" = "https://evil.example.com/schema.json" }', "must point inside the schema"),
    ('{ type = "object", "$ref" = "#/$defs/missing" }', "must point inside the schema"),
    ('{ type = "object", "$schema" = "http://json-schema.org/draft-07/schema#" }', "leave it out"),
])
def test_bad_parameter_schemas(parameters: str, says: str) -> None:
    [problem] = problems(f'[[tools]]\nname = "a"\ndescription = "A."\nurl = "https://x.example.com"\n'
                         f"parameters = {parameters}\n")
    assert says in problem


def test_a_local_reference_is_accepted_and_used() -> None:
    tool = book('[[tools]]\nname = "a"\ndescription = "A."\nurl = "https://x.example.com"\n'
                '[tools.parameters]\ntype = "object"\nproperties.id = { "$ref" = "#/$defs/id" }\n'
                '"$defs".id = { type = "integer" }\n').default.tools[0]
    assert validate_arguments(tool, '{"id": 3}') == {"id": 3}
    assert "is not of type 'integer'" in str(validate_arguments(tool, '{"id": "3"}'))


@pytest.mark.parametrize(("table", "says"), [
    ('tools = "lookup"', "must be an array of tables"),
    ("end_call = true", "must be a table: [end_call]"),
    ('transfer = "+15550100001"', "must be a table: [transfer.destinations]"),
    ('transfer.destinations = "+15550100001"', "must be a table of name"),
    ('transfer.destinations."bad!name" = "+15550100001"', "names must be 1 to 64 letters"),
    ('numbers = "+15550100001"', "must be a table of called numbers"),
    ('numbers."+15550002222" = "x"', "must be a table"),
    ('numbers."+15550002222".numbers."+15550003333".voice = "ash"', "numbers cannot nest"),
])
def test_misshapen_tables(table: str, says: str) -> None:
    assert says in "\n".join(problems(table))


@pytest.mark.parametrize(("url", "says"), [
    ("https://tools.example.com/x", None),
    ("http://127.0.0.1:9000/x", None),
    ("http://localhost/x", None),
    ("http://[::1]:9000/x", None),
    ("http://tools.example.com/x", "must start with https:// for a non-local host"),
    ("ftp://tools.example.com/x", "must be an https:// URL"),
    ("https://user:pw@tools.example.com/x", "must not carry a user name or password"),
    ("https://tools.example.com/x#frag", "must not have a #fragment"),
    ("https://tools.example.com:99999/x", "invalid port"),
])
def test_url_rules(url: str, says: str | None) -> None:
    problem = http_url_problem(url)
    assert problem is None if says is None else (problem is not None and says in problem)


@pytest.mark.parametrize("target", ["+15550100001", "sip:desk@pbx.example.com", "sip:desk@10.0.0.1;transport=tls"])
def test_good_destinations(target: str) -> None:
    assert book(f'transfer.destinations.x = "{target}"').default.destination("x") == target


@pytest.mark.parametrize("target", ["15550100001", "+0555", "sip:", "sips:a@b", "sip:a b@c", "tel:+15550100001"])
def test_bad_destinations(target: str) -> None:
    assert "must be a phone number in E.164 form" in problems(f'transfer.destinations.x = "{target}"')[0]


# -- the file itself -----------------------------------------------------------------------------


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "assistant.toml"
    path.write_text(FILE)
    assert load_file(str(path), ENV) == book()


@pytest.mark.parametrize(("content", "says"), [
    (None, "no such file"),
    (b"voice = ", "not valid TOML"),
    (b"\xff\xfe", "not valid TOML"),
])
def test_a_file_that_cannot_be_read(tmp_path: Path, content: bytes | None, says: str) -> None:
    path = tmp_path / "assistant.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_file(str(path), ENV)
    [problem] = info.value.problems
    assert problem.startswith(f"ASSISTANT_CONFIG ({path}): ") and says in problem


@pytest.mark.parametrize("example", ["docs/assistant.example.toml", "scripts/assets/assistant.local.toml"])
def test_the_shipped_examples_are_valid(example: str) -> None:
    assistants = load_file(str(ROOT / example), ENV)
    assert assistants.default.tools and assistants.default.transfer_destinations
    json.dumps([assistant.session_tools() for assistant in assistants.all()])


def test_docs_describe_every_key_the_file_may_hold() -> None:
    from relay import assistant_file

    documented = (ROOT / "docs" / "assistant.md").read_text()
    tables = ("tools", "end_call", "transfer", "numbers")
    for key in (*assistant_file._TOP_KEYS, *assistant_file._TOOL_KEYS, "enabled", "destinations"):
        row, heading = f"| `{key}` |", f"### `[{'[' if key == 'tools' else ''}{key}"
        assert (heading if key in tables else row) in documented, key
