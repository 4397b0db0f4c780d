"""Drives a WattOS server with the official OpenAI and Anthropic Python SDKs, unmodified.

Run by wattos-server/tests/sdk.rs against a server whose catalog has `parrot-1` (echoes the last user
message word by word; calls `lookup` twice when tools are offered; "break" fails mid-stream; "busy" is
rate limited) and `toy-embed` (vector = [len(text), 0.5]).
"""
import json
import os
import sys

import anthropic
import openai
from openai import OpenAI

base = os.environ["WATTOS_BASE_URL"]
client = OpenAI(base_url=base + "/v1", api_key="sk-wattos-test", max_retries=0)

# Chat, non-streaming.
r = client.chat.completions.create(model="parrot-1", messages=[{"role": "user", "content": "hello sdk"}])
assert r.choices[0].message.content == "hello sdk", r
assert r.choices[0].finish_reason == "stop"
assert r.usage.total_tokens == 10 and r.usage.prompt_tokens_details.cached_tokens == 2, r.usage

# Chat, streaming with usage.
text, usage, finish = "", None, None
stream = client.chat.completions.create(
    model="parrot-1",
    messages=[{"role": "user", "content": "streamed words arrive"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage
assert text == "streamed words arrive", text
assert finish == "stop" and usage.completion_tokens == 3

# Tools, non-streaming, then the tool results go back.
tools = [{"type": "function", "function": {"name": "lookup", "description": "weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
r = client.chat.completions.create(model="parrot-1", messages=[{"role": "user", "content": "weather?"}], tools=tools)
calls = r.choices[0].message.tool_calls
assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Berlin", "Paris"], calls
messages = [{"role": "user", "content": "weather?"}, r.choices[0].message.model_dump(exclude_none=True)]
messages += [{"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in calls]
r = client.chat.completions.create(model="parrot-1", messages=messages, tools=tools)
assert r.choices[0].finish_reason == "stop"

# Tools, streaming, accumulated by the SDK's stream helper.
with client.chat.completions.stream(model="parrot-1", messages=[{"role": "user", "content": "weather?"}], tools=tools) as s:
    final = s.get_final_completion()
assert [c.function.name for c in final.choices[0].message.tool_calls] == ["lookup", "lookup"]

# Structured output request shape is accepted.
r = client.chat.completions.create(
    model="parrot-1", messages=[{"role": "user", "content": "{}"}],
    response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
)
assert r.choices[0].message.content == "{}"

# Embeddings: the SDK asks for base64 by default and decodes it.
e = client.embeddings.create(model="toy-embed", input=["ab", "abcd"])
assert [d.embedding for d in e.data] == [[2.0, 0.5], [4.0, 0.5]], e
e = client.embeddings.create(model="toy-embed", input="abc", encoding_format="float")
assert e.data[0].embedding == [3.0, 0.5]

# Models.
assert [m.id for m in client.models.list()] == ["parrot-1", "toy-embed"]
assert client.models.retrieve("parrot-1").owned_by == "wattos"

# Errors map to the SDK's exception classes.
def expect(exc, fn):
    try:
        fn()
    except exc as e:
        return e
    raise AssertionError(f"expected {exc.__name__}")

expect(openai.NotFoundError, lambda: client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}]))
err = expect(openai.BadRequestError, lambda: client.chat.completions.create(model="parrot-1", messages=[]))
assert err.param == "messages", err.body
err = expect(openai.RateLimitError, lambda: client.chat.completions.create(model="parrot-1", messages=[{"role": "user", "content": "busy"}]))
assert err.response.headers["retry-after"] == "3"
def broken():
    for _ in client.chat.completions.create(model="parrot-1", messages=[{"role": "user", "content": "break"}], stream=True):
        pass
expect(openai.APIError, broken)

# Anthropic SDK against /v1/messages.
ac = anthropic.Anthropic(base_url=base, api_key="sk-wattos-test", max_retries=0)
m = ac.messages.create(model="parrot-1", max_tokens=64, system="brief", messages=[{"role": "user", "content": "hi claude"}])
assert m.content[0].text == "hi claude" and m.stop_reason == "end_turn", m
with ac.messages.stream(model="parrot-1", max_tokens=64, messages=[{"role": "user", "content": "stream me"}]) as s:
    assert "".join(s.text_stream) == "stream me"
m = ac.messages.create(model="parrot-1", max_tokens=64, messages=[{"role": "user", "content": "weather?"}],
                       tools=[{"name": "lookup", "input_schema": {"type": "object"}}])
assert m.stop_reason == "tool_use" and m.content[0].input == {"city": "Berlin"}, m
try:
    ac.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected NotFoundError")
except anthropic.NotFoundError:
    pass

print("python SDKs: all checks passed")
