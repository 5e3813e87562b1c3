"""AWS Bedrock deployments: OpenAI chat requests become Converse / ConverseStream calls, signed
by Envoy's `aws_request_signing` filter (SigV4, credentials from Envoy's environment), and
the answers (JSON, binary event streams, errors) become OpenAI's, as the official `openai`
SDK sees them.

The fake Bedrock (`fake_bedrock.py`) recomputes every request's signature with botocore and
refuses bad ones with AWS's 403, so each test also proves the signature of every attempt,
fallbacks included.
"""

from __future__ import annotations

import base64
import json

import anthropic
import openai
import pytest
from botocore.eventstream import EventStreamBuffer

from fake_bedrock import (ACCESS_KEY, EVENT_STREAM, REGION, SECRET_KEY, BedrockFake, bedrock_error,
                          converse_event, converse_exception, converse_message, converse_stream,
                          converse_usage, encode_message, invoke_chunk, invoke_message,
                          invoke_stream, invoke_usage, stream_reply)
from fakes import Reply, openai_error
from harness import CLAUDE_HISTORY, deployment, gateway_for_test, openai_deployment, running_gateway

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
API_KEY_ENV = "FAKE_BEDROCK_API_KEY"
API_KEY = "bedrock-api-key-fake-0123456789abcdef"
CONVERSE_KEYS = {"messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"}


def _bedrock(alias: str, url: str, model: str = f"bedrock/{MODEL}", aws_region_name: str = REGION,
             **params) -> dict:
    return deployment(alias, model, url, aws_region_name=aws_region_name, **params)


@pytest.fixture(scope="module")
def bedrock_fake():
    with BedrockFake(name="bedrock", api_key=API_KEY) as f:
        yield f


@pytest.fixture(scope="module")
def br_session(tmp_path_factory, openai_fake, anthropic_fake, bedrock_fake):
    models = [_bedrock("bedrock-test", bedrock_fake.url),
              _bedrock("bedrock-fb", bedrock_fake.url),
              # Another host, so that only the eu-west-1 signer signs for it.
              _bedrock("bedrock-wrong-region", f"http://localhost:{bedrock_fake.port}",
                       aws_region_name="eu-west-1"),
              _bedrock("bedrock-key", bedrock_fake.url, api_key=f"os.environ/{API_KEY_ENV}"),
              _bedrock("bedrock-nova", bedrock_fake.url, model="bedrock/amazon.nova-pro-v1:0"),
              openai_deployment("gpt-fb", "gpt-4o-mini", openai_fake.url)]
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_EC2_METADATA_DISABLED": "true", API_KEY_ENV: API_KEY}
    with running_gateway(tmp_path_factory.mktemp("bedrock"), openai_fake, anthropic_fake,
                         extra_models=models, env_extra=env,
                         router_settings={"fallbacks": [{"bedrock-fb": ["gpt-test"]},
                                                        {"gpt-fb": ["bedrock-test"]}]}) as g:
        yield g


@pytest.fixture
def br(br_session, bedrock_fake, request):
    yield from gateway_for_test(br_session, request, bedrock_fake)


def sent(fake: BedrockFake, stream: bool = False) -> dict:
    """The last request the fake got: the Converse path for the model, a Converse body,
    correctly signed."""
    req = fake.last
    op = "converse-stream" if stream else "converse"
    assert req.raw_path == f"/model/{MODEL.replace(':', '%3A')}/{op}"
    assert req.json_error is None, req.body[:300]
    assert set(req.json) <= CONVERSE_KEYS, sorted(set(req.json) - CONVERSE_KEYS)
    assert fake.signature_failures == []
    return req.json


def test_fake_event_streams_decode_with_botocore():
    """The fake's frames are AWS's: botocore's own parser decodes them, split anywhere."""
    frames = b"".join(e.raw for e in converse_stream("Hi there", tool_use={
        "toolUseId": "t1", "name": "f", "input": {"a": 1}}))
    frames += converse_exception("throttlingException", "slow down").raw
    buf = EventStreamBuffer()
    buf.add_data(frames[:37])
    buf.add_data(frames[37:])
    messages = list(buf)
    kinds = [m.headers.get(":event-type") or m.headers.get(":exception-type") for m in messages]
    assert kinds[0] == "messageStart" and kinds[-3:] == ["messageStop", "metadata", "throttlingException"]
    assert json.loads(messages[1].payload) == {"contentBlockIndex": 0, "delta": {"text": "Hi t"}}
    # InvokeModel's chunks: base64 of one Anthropic event each.
    buf = EventStreamBuffer()
    buf.add_data(b"".join(e.raw for e in invoke_stream("Hi")))
    chunks = list(buf)
    assert {m.headers[":event-type"] for m in chunks} == {"chunk"}
    first = json.loads(base64.b64decode(json.loads(chunks[0].payload)["bytes"]))
    assert first["type"] == "message_start"
    assert encode_message({":message-type": "event"}, b"{}")[-4:] != b"\0\0\0\0"


def test_text_through_the_sdk(br, bedrock_fake):
    raw = br.client().chat.completions.with_raw_response.create(
        model="bedrock-test",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}],
        temperature=0.3, max_tokens=50, stop=["END"])
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo: Say hi"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 9 and reply.usage.completion_tokens == 5
    assert raw.headers["x-llm-provider"] == "bedrock"
    up = sent(bedrock_fake)
    assert up == {"messages": [{"role": "user", "content": [{"text": "Say hi"}]}],
                  "system": [{"text": "Be brief."}],
                  "inferenceConfig": {"maxTokens": 50, "temperature": 0.3, "stopSequences": ["END"]}}
    req = bedrock_fake.last
    # Signed by Envoy for the Host the fake received; no key of the gateway's own.
    assert req.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert req.headers["host"] == "127.0.0.1"
    assert bedrock_fake.signed_ok == 1


def test_stream_through_the_sdk(br, bedrock_fake):
    chunks = list(br.client().chat.completions.create(
        model="bedrock-test", messages=[{"role": "user", "content": "stream me"}],
        stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 14
    sent(bedrock_fake, stream=True)
    assert bedrock_fake.last.headers.get("accept") == EVENT_STREAM


def test_cache_usage_is_reported(br, bedrock_fake):
    bedrock_fake.enqueue(Reply(json=converse_message(
        "cached", usage=converse_usage(input_tokens=10, output_tokens=3, cache_read=100, cache_write=20))))
    reply = br.client().chat.completions.create(
        model="bedrock-test", messages=[{"role": "user", "content": "hi"}])
    assert reply.usage.prompt_tokens == 130
    assert reply.usage.prompt_tokens_details.cached_tokens == 100


def test_tool_call_and_result_round_trip(br, bedrock_fake):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    bedrock_fake.enqueue(Reply(json=converse_message(
        [{"text": "Let me look."},
         {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}],
        stop_reason="tool_use")))
    client = br.client()
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="bedrock-test", messages=messages, tools=tools,
                                           tool_choice="required")
    up = sent(bedrock_fake)
    assert up["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "Weather",
        "inputSchema": {"json": tools[0]["function"]["parameters"]}}}], "toolChoice": {"any": {}}}
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == \
        ("tooluse_1", "get_weather", {"city": "Paris"})
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": "tooluse_1", "content": "Sunny, 21 C"}]
    second = client.chat.completions.create(model="bedrock-test", messages=messages, tools=tools)
    assert second.choices[0].message.content == "echo: Sunny, 21 C"
    up = sent(bedrock_fake)
    assert up["messages"][1]["content"][-1] == {
        "toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
    assert up["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "Sunny, 21 C"}]}}]


def test_streamed_tool_call(br, bedrock_fake):
    bedrock_fake.enqueue(stream_reply(converse_stream("", stop_reason="tool_use", tool_use={
        "toolUseId": "tooluse_9", "name": "lookup", "input": {"q": "x" * 20}})))
    chunks = list(br.client().chat.completions.create(
        model="bedrock-test", messages=[{"role": "user", "content": "go"}], stream=True,
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id == "tooluse_9" and calls[0].function.name == "lookup"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"q": "x" * 20}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_image_bytes_and_url(br, bedrock_fake):
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    br.client().chat.completions.create(model="bedrock-test", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}])
    assert sent(bedrock_fake)["messages"][0]["content"][1] == {
        "image": {"format": "png", "source": {"bytes": png}}}
    with pytest.raises(openai.BadRequestError) as e:
        br.client().chat.completions.create(model="bedrock-test", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert e.value.body["param"] == "messages[0].content[0].image_url.url"


@pytest.mark.parametrize("status,error_type,exc", [
    (400, "ValidationException", openai.BadRequestError),
    (403, "AccessDeniedException", openai.PermissionDeniedError),
    (429, "ThrottlingException", openai.RateLimitError),
    (429, "ModelNotReadyException", openai.InternalServerError),
])
def test_errors(br, bedrock_fake, status, error_type, exc):
    bedrock_fake.set_default(lambda rec: bedrock_error(status, error_type, f"{error_type} happened"))
    with pytest.raises(exc) as e:
        br.client(max_retries=0).chat.completions.create(
            model="bedrock-test", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["message"] == f"{error_type} happened"
    assert e.value.body["code"] == error_type


def test_exception_opening_a_stream_is_a_status(br, bedrock_fake):
    bedrock_fake.set_default(lambda rec: stream_reply([converse_exception("throttlingException", "Too many")]))
    with pytest.raises(openai.RateLimitError):
        list(br.client(max_retries=0).chat.completions.create(
            model="bedrock-test", messages=[{"role": "user", "content": "hi"}], stream=True))


def test_exception_inside_a_stream_is_an_error_event(br, bedrock_fake):
    bedrock_fake.enqueue(stream_reply(converse_stream("partial")[:3] + [
        converse_exception("modelStreamErrorException", "the model broke")]))
    result = br.stream({"model": "bedrock-test", "stream": True,
                        "messages": [{"role": "user", "content": "hi"}]})
    assert result.status == 200
    errors = [c for c in result.chunks if "error" in c]
    assert errors and "the model broke" in errors[0]["error"]["message"]
    assert result.done_count == 1


def test_bedrock_falls_back_to_openai(br, bedrock_fake, openai_fake):
    bedrock_fake.enqueue(bedrock_error(503, "ServiceUnavailableException", "busy"))
    raw = br.client(max_retries=0).chat.completions.with_raw_response.create(
        model="bedrock-fb", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-llm-provider"] == "openai"
    assert len(bedrock_fake.requests) == 1 and bedrock_fake.signature_failures == []
    assert bedrock_fake.signed_ok == 1
    # The OpenAI attempt carries neither the signature nor the AWS headers.
    req = openai_fake.last
    assert req.headers["authorization"].startswith("Bearer ")
    assert not any(k.startswith("x-amz-") for k in req.headers)


def test_streamed_bedrock_falls_back_to_openai(br, bedrock_fake, openai_fake):
    bedrock_fake.enqueue(stream_reply([converse_exception("serviceUnavailableException", "busy")]))
    chunks = list(br.client(max_retries=0).chat.completions.create(
        model="bedrock-fb", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(openai_fake.requests) == 1 and bedrock_fake.signature_failures == []


@pytest.mark.parametrize("stream", [False, True])
def test_openai_falls_back_to_bedrock(br, bedrock_fake, openai_fake, stream):
    openai_fake.enqueue(Reply(status=503, json=openai_error(503, "down", "server_error")))
    client = br.client(max_retries=0)
    args = {"model": "gpt-fb", "messages": [{"role": "user", "content": "fall"}]}
    if stream:
        chunks = list(client.chat.completions.create(**args, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: fall"
    else:
        raw = client.chat.completions.with_raw_response.create(**args)
        assert raw.headers["x-llm-provider"] == "bedrock"
        assert raw.parse().choices[0].message.content == "echo: fall"
    # Signed afresh for this attempt; the OpenAI key did not follow.
    sent(bedrock_fake, stream=stream)
    assert bedrock_fake.signed_ok == 1
    assert bedrock_fake.last.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")


def test_a_bad_signature_is_refused(br, bedrock_fake):
    """Signed for another region than the fake's: AWS's 403, which the client sees."""
    with pytest.raises(openai.PermissionDeniedError):
        br.client(max_retries=0).chat.completions.create(
            model="bedrock-wrong-region", messages=[{"role": "user", "content": "hi"}])
    assert bedrock_fake.signature_failures and "scope" in bedrock_fake.signature_failures[0]


def test_bedrock_api_key_is_a_bearer_token(br, bedrock_fake):
    reply = br.client().chat.completions.create(
        model="bedrock-key", messages=[{"role": "user", "content": "key"}])
    assert reply.choices[0].message.content == "echo: key"
    req = bedrock_fake.last
    assert req.headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-amz-date" not in req.headers and bedrock_fake.signed_ok == 0


INVOKE_PATH = f"/model/{MODEL.replace(':', '%3A')}/invoke"


def test_messages_to_claude_on_bedrock_pass_through(br, bedrock_fake):
    """Anthropic's Messages API to Claude on Bedrock, through the official `anthropic` SDK:
    InvokeModel with the client's body (thinking signatures, cache marks, metadata kept),
    `anthropic_version` instead of `model`, the beta header as `anthropic_beta`, signed by
    Envoy; the stream's base64 chunks reach the SDK as Anthropic's SSE."""
    client = br.anthropic_client()
    history = CLAUDE_HISTORY
    msg = client.messages.create(
        model="bedrock-test", max_tokens=2048, messages=history, metadata={"user_id": "u-1"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_headers={"anthropic-beta": "context-1m-2025-08-07,interleaved-thinking-2025-05-14"})
    assert msg.content[0].text == "echo: Hello Claude"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (12, 6)
    req = bedrock_fake.last
    assert req.raw_path == INVOKE_PATH
    assert bedrock_fake.signature_failures == [] and bedrock_fake.signed_ok == 1
    assert req.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert req.json["anthropic_version"] == "bedrock-2023-05-31"
    assert "model" not in req.json and "stream" not in req.json
    assert req.json["messages"] == history, "thinking signatures and cache marks kept"
    assert req.json["metadata"] == {"user_id": "u-1"}
    assert req.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert req.json["anthropic_beta"] == ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"]
    assert "x-api-key" not in req.headers and "anthropic-version" not in req.headers

    bedrock_fake.enqueue(stream_reply(invoke_stream("streamed answer", thinking=("think", "sig-xyz"),
                                                    usage=invoke_usage(20, 9))))
    with client.messages.stream(model="bedrock-test", max_tokens=2048, messages=history,
                                thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "streamed answer" and final.stop_reason == "end_turn"
    assert final.content[0].type == "thinking" and final.content[0].signature == "sig-xyz"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (20, 9)
    req = bedrock_fake.last
    assert req.raw_path == INVOKE_PATH + "-with-response-stream"
    assert req.headers.get("accept") == EVENT_STREAM
    assert "stream" not in req.json and req.json["messages"] == history
    assert bedrock_fake.signature_failures == [] and bedrock_fake.signed_ok == 2


def test_messages_to_claude_on_bedrock_errors(br, bedrock_fake):
    """Bedrock's errors, before and inside the stream, in Anthropic's shape and status."""
    client = br.anthropic_client()
    args = {"model": "bedrock-test", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    bedrock_fake.enqueue(bedrock_error(429, "ThrottlingException", "Too many requests"))
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(**args)
    assert e.value.body["error"] == {"type": "rate_limit_error", "message": "Too many requests"}
    bedrock_fake.enqueue(stream_reply([converse_exception("throttlingException", "slow down")]))
    with pytest.raises(anthropic.RateLimitError):
        with client.messages.stream(**args) as stream:
            "".join(stream.text_stream)
    events = invoke_stream("partial answer")[:3]
    bedrock_fake.enqueue(stream_reply(events + [converse_exception("modelStreamErrorException", "the model broke")]))
    with pytest.raises(anthropic.APIStatusError) as e:
        with client.messages.stream(**args) as stream:
            "".join(stream.text_stream)
    assert "the model broke" in str(e.value)


def test_messages_to_claude_on_bedrock_with_an_api_key(br, bedrock_fake):
    client = br.anthropic_client()
    msg = client.messages.create(model="bedrock-key", max_tokens=16,
                                 messages=[{"role": "user", "content": "key"}])
    assert msg.content[0].text == "echo: key"
    req = bedrock_fake.last
    assert req.raw_path == INVOKE_PATH
    assert req.headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-amz-date" not in req.headers and bedrock_fake.signed_ok == 0


def test_messages_to_other_bedrock_models_are_bridged(br, bedrock_fake):
    """A model that is not Claude goes through Converse, its answer back in Anthropic's shape."""
    client = br.anthropic_client()
    msg = client.messages.create(model="bedrock-nova", max_tokens=16,
                                 messages=[{"role": "user", "content": "nova"}])
    assert msg.content[0].text == "echo: nova"
    assert bedrock_fake.last.raw_path == "/model/amazon.nova-pro-v1%3A0/converse"
    assert bedrock_fake.signed_ok == 1
